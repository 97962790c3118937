-- Issue 24: tag and release deploys, one per tag, commit and environment within an hour.
-- A tag pushed (or a release published) reaches deployhook once per webhook that sees it:
-- an organisation's and a repository's webhook both deliver it, under different delivery
-- ids, and it would deploy twice. Merges have `merges` for this; tags have this table.
-- `sha` is the pushed commit, or '' for a release (whose commit is resolved later).
CREATE TABLE tag_deploys (
    repository  TEXT    NOT NULL,
    environment TEXT    NOT NULL,
    tag         TEXT    NOT NULL,
    sha         TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL
);
CREATE INDEX tag_deploys_by_tag ON tag_deploys (repository, environment, tag, sha, recorded_at);
CREATE INDEX tag_deploys_by_time ON tag_deploys (recorded_at);
