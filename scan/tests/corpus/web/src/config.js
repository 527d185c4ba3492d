export const firebaseConfig = {
  apiKey: "AIzalpUnlYO1CDzZe8UiUZNnE0FPieRqn2p7A4O",
  authDomain: "shop-ljmguf.firebaseapp.com",
  projectId: "shop-izgbmz",
  appId: "1:037468632153:web:7be000e40eba569f9fac7b",
};

const stripe = require("stripe")("sk_live_2FNyMTuBYNr06lcMpDFZtjgmISxc1KibBO");
const mapsKey = 'AIzaeasbr8mdTe_uYit2j_o5N8U5tW8CSjbyO_K';
export const adminToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIweGVhYW11dXExIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDM2MDB9.3Mn3Ab4vxj0aI0dd5vFxfijVZZt3OayPrZZ_KztFlfs";
