-- Version 15 → 16, as SQLite's migration 0016_approvals (issue 23: approvals per
-- environment; it says why): a job waits in state 'approval' with the approvals it needs,
-- its deadline and whether its author may approve it; one verdict per person per
-- deployment.
ALTER TABLE jobs ADD COLUMN approvals_needed BIGINT;
ALTER TABLE jobs ADD COLUMN approval_deadline BIGINT;
ALTER TABLE jobs ADD COLUMN self_approval BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN approval_authors TEXT COLLATE "C";
ALTER TABLE jobs ADD COLUMN approval_reviewers TEXT COLLATE "C";
CREATE INDEX jobs_awaiting ON jobs (approval_deadline, deployment_id) WHERE state = 'approval';
CREATE TABLE approvals (
    deployment_id BIGINT  NOT NULL,
    login         TEXT COLLATE "C"    NOT NULL,
    verdict       TEXT COLLATE "C"    NOT NULL,
    reason        TEXT COLLATE "C",
    at            BIGINT  NOT NULL,
    PRIMARY KEY (deployment_id, login)
);
