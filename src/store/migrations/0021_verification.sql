-- Verification after a deploy (issue 25): a job whose command succeeded in an environment
-- with `verify` is `verifying` until its check held or failed. When it began (the timeout
-- counts from there, across restarts) and since when the check has passed without a
-- failure (NULL: not passing now). A verifying job holds its repository and environment
-- as a running one does.
ALTER TABLE jobs ADD COLUMN verify_started_at INTEGER;
ALTER TABLE jobs ADD COLUMN verify_held_since INTEGER;
