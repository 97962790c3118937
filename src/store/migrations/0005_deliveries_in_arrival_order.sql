-- Deliveries move to a table in arrival order (its rowid) with their key in a unique index.
-- The old table was ordered by (hook id, delivery id), which GitHub draws at random, and
-- carried a second index by time for the dashboard: every delivery wrote to two random
-- places in the file. Now a batch of deliveries appends to one page, plus one place in the
-- key index, and the dashboard reads the newest rows off the end of the table.
CREATE TABLE deliveries_in_order (
    id          INTEGER PRIMARY KEY,  -- arrival order
    hook_id     INTEGER NOT NULL,     -- X-GitHub-Hook-ID; 0 when the header was absent
    delivery_id TEXT    NOT NULL,     -- X-GitHub-Delivery; generated when absent
    event       TEXT    NOT NULL,
    action      TEXT,
    repository  TEXT,
    received_at INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,     -- accepted | recorded | ignored
    message     TEXT    NOT NULL
);
INSERT INTO deliveries_in_order
    (hook_id, delivery_id, event, action, repository, received_at, outcome, message)
SELECT hook_id, delivery_id, event, action, repository, received_at, outcome, message
FROM deliveries ORDER BY received_at;
DROP TABLE deliveries;
ALTER TABLE deliveries_in_order RENAME TO deliveries;
-- A redelivery has the same hook and delivery id, so the key makes it a no-op.
CREATE UNIQUE INDEX deliveries_by_key ON deliveries (hook_id, delivery_id);
