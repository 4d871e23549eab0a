-- Each company's OAuth tokens for `QBO_TOKEN_STORE=postgres`, so every machine of a fleet
-- shares them and a refresh is serialised by the row's lock. Only sealed bytes are stored:
-- XChaCha20-Poly1305 under QBO_TOKEN_KEY (which never enters the database), a random nonce
-- per write, the realm id as associated data. key_id is a hash naming which key sealed the
-- row (for rotation with `qbo auth rekey`); it reveals nothing of the key.
CREATE TABLE ops.oauth_tokens (
    realm_id    text        PRIMARY KEY CHECK (realm_id ~ '^[0-9]+$'),
    key_id      text        NOT NULL,
    nonce       bytea       NOT NULL CHECK (octet_length(nonce) = 24),
    ciphertext  bytea       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
