-- Issue "safe to face the internet and to run for months". What the writer does per call,
-- per deploy and per delivery stays the same however long the backlogs grow.

-- The oldest pending call of each ordering key is its head: only heads can be sent, so only
-- heads are searched, through an index by installation and due time.
ALTER TABLE outbox ADD COLUMN head INTEGER NOT NULL DEFAULT 0;
UPDATE outbox SET head = 1
WHERE state = 'pending'
  AND id IN (SELECT MIN(id) FROM outbox WHERE state = 'pending' GROUP BY ordering_key);
CREATE INDEX outbox_heads ON outbox (COALESCE(installation_id, 0), next_attempt_at)
    WHERE state = 'pending' AND head = 1;
-- The few calls in flight, found without reading the others.
CREATE INDEX outbox_in_flight ON outbox (in_flight) WHERE in_flight != 0;

-- A rate limit pauses an installation's calls (0: the token's): one row, instead of moving
-- every call it has waiting.
CREATE TABLE outbox_pauses (
    installation INTEGER PRIMARY KEY,
    until        INTEGER NOT NULL
);

-- Retention deletes finished deploys by age, oldest first.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state = 'finished';

-- Dashboard sessions signed out before they expired: a signed-out cookie stays refused
-- across restarts until it would have expired anyway.
CREATE TABLE revoked_sessions (
    id         TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL  -- Unix seconds
) WITHOUT ROWID;
