-- Issue 15, "from first run to daily use": given-up calls an operator resolves, and every
-- delivery on the dashboard, refused ones too.

-- A given-up call (state 'failed') is retried (back to 'pending') or dismissed (state
-- 'dismissed', with who and when). Dismissed rows stay visible as such until retention
-- prunes them with the deliveries' age: who dismissed what is worth a few weeks.
ALTER TABLE outbox ADD COLUMN dismissed_by TEXT;
ALTER TABLE outbox ADD COLUMN dismissed_at INTEGER;
CREATE INDEX outbox_dismissed ON outbox (dismissed_at) WHERE state = 'dismissed';

-- What GitHub's headers said of an acknowledged delivery (JSON: [[name, value], …]), for
-- its page: X-GitHub-*, User-Agent, Content-Type, Content-Length only, never a signature.
ALTER TABLE deliveries ADD COLUMN headers TEXT;
-- The delivery that recorded a merge: its page lists the deployments the merge led to
-- (jobs of the same repository, environment and commit).
ALTER TABLE merges ADD COLUMN delivery_id TEXT;
CREATE INDEX merges_by_delivery ON merges (delivery_id) WHERE delivery_id IS NOT NULL;
-- Deployments by what they deploy, for the same page; and by the delivery that queued them.
CREATE INDEX jobs_by_commit ON jobs (repository, sha);
CREATE INDEX jobs_by_delivery ON jobs (delivery_id);

-- Deliveries refused before anything was recorded (bad or missing signature, too large,
-- wrong content type, malformed): the newest ones only (see store::refused::KEEP), written
-- in batches off the request path.
CREATE TABLE refused_deliveries (
    id          INTEGER PRIMARY KEY,  -- arrival order
    received_at INTEGER NOT NULL,
    status      INTEGER NOT NULL,     -- the HTTP status answered
    reason      TEXT    NOT NULL,     -- short name, as in deployhook_deliveries_rejected
    message     TEXT    NOT NULL,     -- what the client was told
    client      TEXT    NOT NULL,     -- the peer's address
    event       TEXT,                 -- X-GitHub-Event, as sent (bounded)
    delivery_id TEXT,                 -- X-GitHub-Delivery, as sent (bounded)
    hook_id     TEXT,                 -- X-GitHub-Hook-ID, as sent (bounded)
    headers     TEXT    NOT NULL      -- JSON, as for deliveries
);
