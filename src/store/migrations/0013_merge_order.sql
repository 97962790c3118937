-- Issue 26, item 2: an older merge must never roll an environment back.

-- Per repository and environment, the newest merge accepted for deployment ('accepted':
-- its deployment's creation was queued) and the newest an automatic deploy started
-- ('started'). An automatic deploy of an older merge is refused against them. Marks only
-- move forward, and retention never prunes them: they hold long after the older merge's
-- delivery is gone. (See store/merges/marks.rs.) Migration 13's Rust step seeds them from
-- the jobs, waits and queued creations on record.
CREATE TABLE merge_marks (
    repository   TEXT    NOT NULL,
    environment  TEXT    NOT NULL,
    stage        TEXT    NOT NULL,      -- 'accepted' | 'started'
    merged_at    INTEGER NOT NULL,      -- Unix milliseconds (UTC)
    pull_request INTEGER NOT NULL,      -- 0: none named
    sha          TEXT    NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (repository, environment, stage)
) WITHOUT ROWID;

-- When the merge was made (Unix milliseconds; NULL before this version, or none known):
-- retention keeps the record of each environment's newest merge by it.
ALTER TABLE merges ADD COLUMN merged_at INTEGER;

-- Waits for checks sort by merge time as zero-padded milliseconds from now on (they sorted
-- as the text GitHub sent); the Rust step rewrites the keys of the waits on record.
