CREATE TABLE users (
  id UUID PRIMARY KEY,
  password_hash VARCHAR(255) NOT NULL,
  reset_token VARCHAR(64),
  api_key_prefix CHAR(8)
);
