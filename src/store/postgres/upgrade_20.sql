-- From version 19 to 20, as SQLite's migration 0020 (issue 25: deploy windows and freezes).
ALTER TABLE jobs ADD COLUMN clearance BIGINT NOT NULL DEFAULT 0;
UPDATE jobs SET clearance = 2 WHERE forced = 1;
CREATE INDEX jobs_by_clearance ON jobs (repository, environment, clearance, deployment_id)
    WHERE state = 'queued';
CREATE TABLE freeze_notices (
    environment  TEXT COLLATE "C" NOT NULL,
    freeze_from  BIGINT NOT NULL,
    freeze_until BIGINT NOT NULL,
    edge         TEXT COLLATE "C" NOT NULL,
    sent_at      BIGINT NOT NULL,
    PRIMARY KEY (environment, freeze_from, freeze_until, edge)
);
CREATE INDEX freeze_notices_by_time ON freeze_notices (sent_at);
