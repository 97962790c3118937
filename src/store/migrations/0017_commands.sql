-- Issue 24: commands written in pull-request comments. One row per comment, so that a
-- command is carried out once however often its delivery comes (the key is the comment's
-- id). `state` is `new` until the command worker has done it (`done`); `due_at` is when the
-- worker may take it (again: a worker that died holding it lets it go after a minute).
-- `reply_id` is deployhook's one reply in the pull request, edited as the command goes on.
CREATE TABLE commands (
    repository   TEXT    NOT NULL,
    comment_id   INTEGER NOT NULL,
    pull_request INTEGER NOT NULL,
    author       TEXT    NOT NULL,
    installation INTEGER,
    command      TEXT    NOT NULL,
    delivery_id  TEXT    NOT NULL,
    received_at  INTEGER NOT NULL,
    state        TEXT    NOT NULL,
    due_at       INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    outcome      TEXT,
    reply_id     INTEGER,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (repository, comment_id)
) WITHOUT ROWID;
CREATE INDEX commands_due ON commands (state, due_at);
CREATE INDEX commands_by_time ON commands (updated_at);
CREATE INDEX commands_by_author ON commands (repository, author, received_at);
