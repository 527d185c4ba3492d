const GITLAB_TOKEN = "glpat-vD6VLPwAkrJa44cYQAv7";
const client = new Octokit({ auth: "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" });
export const dbUrl = "mongodb+srv://app:umtLR7luwaGA3vYaxON@cluster0.7603s.mongodb.net/shop";
const password = "VVnj4FcIizzJ8AF7Z";
