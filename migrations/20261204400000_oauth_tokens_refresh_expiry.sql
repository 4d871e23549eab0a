-- When each company's refresh token expires, beside its sealed tokens, so `/metrics` of any
-- `qbo serve` (with or without QBO_TOKEN_KEY) can say how long a company has before someone
-- must run `qbo auth login`. Only the instant is kept in the clear, never a token; NULL
-- until the tokens are next saved (a refresh, an import, `qbo auth rekey`) or when QBO has
-- not said (a refresh token imported but not yet used).
ALTER TABLE ops.oauth_tokens ADD COLUMN refresh_expires_at timestamptz;
