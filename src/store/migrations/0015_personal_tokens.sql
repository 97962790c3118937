-- Issue 23: people. A personal token lets the CLI act as the person who made it on the
-- dashboard. Only its SHA-256 is kept (the token is 160 random bits, so a fast hash is
-- enough: there is nothing to guess from it); `id` is the public name that revokes it.
CREATE TABLE personal_tokens (
    id         TEXT    PRIMARY KEY,
    hash       TEXT    NOT NULL UNIQUE,
    login      TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
) WITHOUT ROWID;
CREATE INDEX personal_tokens_by_login ON personal_tokens (login, created_at);
