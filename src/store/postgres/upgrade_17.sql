-- From version 16 to 17, as SQLite's migration 0017 (issue 24: comment commands).
CREATE TABLE commands (
    repository   TEXT COLLATE "C" NOT NULL,
    comment_id   BIGINT  NOT NULL,
    pull_request BIGINT  NOT NULL,
    author       TEXT COLLATE "C" NOT NULL,
    installation BIGINT,
    command      TEXT COLLATE "C" NOT NULL,
    delivery_id  TEXT COLLATE "C" NOT NULL,
    received_at  BIGINT  NOT NULL,
    state        TEXT COLLATE "C" NOT NULL,
    due_at       BIGINT  NOT NULL,
    attempts     BIGINT  NOT NULL DEFAULT 0,
    outcome      TEXT COLLATE "C",
    reply_id     BIGINT,
    updated_at   BIGINT  NOT NULL,
    PRIMARY KEY (repository, comment_id)
);
CREATE INDEX commands_due ON commands (state, due_at);
CREATE INDEX commands_by_time ON commands (updated_at);
CREATE INDEX commands_by_author ON commands (repository, author, received_at);
