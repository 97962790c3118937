-- Issue 23: approvals per environment. A deployment into an environment with `approvals`
-- is stored in state 'approval' — no claim picks it — until enough people approved it; it
-- then becomes 'queued' as any other. A rejection, or its deadline passing, finishes it
-- (`failure`). See store/approvals.rs.

-- How many distinct people must approve (NULL: none was asked for), until when (Unix
-- milliseconds), and whether the change's author (deploy_user) may be one of them: fixed
-- when the deployment starts waiting, so a later change of the config file neither loosens
-- nor tightens what a waiting deployment was asked.
ALTER TABLE jobs ADD COLUMN approvals_needed INTEGER;
ALTER TABLE jobs ADD COLUMN approval_deadline INTEGER;
ALTER TABLE jobs ADD COLUMN self_approval INTEGER NOT NULL DEFAULT 0;
-- Whose own change it is (the payload's deploy_user and the deployment's creator, space
-- separated, lowercase), and who may approve it (logins and @org/team, space separated;
-- empty: anyone whose role allows it), as asked when it started waiting.
ALTER TABLE jobs ADD COLUMN approval_authors TEXT;
ALTER TABLE jobs ADD COLUMN approval_reviewers TEXT;
-- The deployments waiting for approval, by deadline: what the clock ends next.
CREATE INDEX jobs_awaiting ON jobs (approval_deadline, deployment_id) WHERE state = 'approval';

-- One verdict per person per deployment: 'approve' or 'reject' (with its reason). Pruned
-- with its job.
CREATE TABLE approvals (
    deployment_id INTEGER NOT NULL,
    login         TEXT    NOT NULL,  -- GitHub login, as the person signed in with it
    verdict       TEXT    NOT NULL,  -- approve | reject
    reason        TEXT,              -- a rejection's
    at            INTEGER NOT NULL,
    PRIMARY KEY (deployment_id, login)
) WITHOUT ROWID;
