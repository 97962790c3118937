-- Issue "install deployhook as a GitHub App": the App installation whose token makes a
-- GitHub call (NULL with a personal access token), kept with the call and with the job
-- whose statuses it posts, so a restart still knows which token to use.
ALTER TABLE outbox ADD COLUMN installation_id INTEGER;
ALTER TABLE jobs ADD COLUMN installation_id INTEGER;
