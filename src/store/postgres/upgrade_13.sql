-- From version 12 to 13, as SQLite's migration 0013 (issue 26, item 2: an older merge must
-- never roll an environment back). The same Rust step follows in the same transaction:
-- the keys of the waits for checks become zero-padded milliseconds, and the marks are
-- seeded from the jobs, waits and queued creations on record.
CREATE TABLE merge_marks (
    repository   TEXT COLLATE "C"    NOT NULL,
    environment  TEXT COLLATE "C"    NOT NULL,
    stage        TEXT COLLATE "C"    NOT NULL,
    merged_at    BIGINT  NOT NULL,
    pull_request BIGINT  NOT NULL,
    sha          TEXT COLLATE "C"    NOT NULL,
    updated_at   BIGINT  NOT NULL,
    PRIMARY KEY (repository, environment, stage)
);
ALTER TABLE merges ADD COLUMN merged_at BIGINT;
