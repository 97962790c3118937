-- From version 18 to 19, as SQLite's migration 0019 (issue 24: a tag deploys once however
-- many webhooks deliver it).
CREATE TABLE tag_deploys (
    repository  TEXT COLLATE "C" NOT NULL,
    environment TEXT COLLATE "C" NOT NULL,
    tag         TEXT COLLATE "C" NOT NULL,
    sha         TEXT COLLATE "C" NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX tag_deploys_by_tag ON tag_deploys (repository, environment, tag, sha, recorded_at);
CREATE INDEX tag_deploys_by_time ON tag_deploys (recorded_at);
