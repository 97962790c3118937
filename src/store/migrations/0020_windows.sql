-- Issue 25: deploy windows and freezes. What each deployment is for them (0: automatic —
-- a merge, a promotion, a preview, a tag; 1: deliberate — asked for by a person; 2: forced
-- or a rollback), read from its payload when it is queued (model::window::Clearance), so a
-- claim finds the oldest or newest one that may pass a window or freeze in one step down
-- an index, however many wait behind it. Queued jobs from before get theirs in Rust, after
-- this script (schema::after_script).
ALTER TABLE jobs ADD COLUMN clearance INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET clearance = 2 WHERE forced = 1;
CREATE INDEX jobs_by_clearance ON jobs (repository, environment, clearance, deployment_id)
    WHERE state = 'queued';
-- The start and end of each freeze announced to the notification receivers: once per
-- edge, across restarts and replicas (the leader inserts, and notifies only if it did).
CREATE TABLE freeze_notices (
    environment  TEXT    NOT NULL,
    freeze_from  INTEGER NOT NULL,
    freeze_until INTEGER NOT NULL,
    edge         TEXT    NOT NULL,   -- 'start' | 'end'
    sent_at      INTEGER NOT NULL,
    PRIMARY KEY (environment, freeze_from, freeze_until, edge)
);
CREATE INDEX freeze_notices_by_time ON freeze_notices (sent_at);
