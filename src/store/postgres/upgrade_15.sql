-- From version 14 to 15, as SQLite's migration 0015 (issue 23: personal tokens).
CREATE TABLE personal_tokens (
    id         TEXT COLLATE "C"    PRIMARY KEY,
    hash       TEXT COLLATE "C"    NOT NULL UNIQUE,
    login      TEXT COLLATE "C"    NOT NULL,
    name       TEXT COLLATE "C"    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX personal_tokens_by_login ON personal_tokens (login, created_at);
