-- Issue 23: the audit log. Who did what, where, from which address, and whether it was done
-- or refused: one row per operator action, written in the transaction of the action itself
-- (see store/audit.rs). Append-only: rows are never changed, and go only with the deploys'
-- retention age.
--
-- AUTOINCREMENT: an id is never given twice, even once retention has pruned every row, so
-- an id quoted from the log (or a page's `before=`) always means the same entry.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,   -- Unix milliseconds (UTC)
    login       TEXT    NOT NULL,   -- the actor: a GitHub login, or the admin token's claim
    via         TEXT    NOT NULL,   -- github | personal_token | admin_token
    action      TEXT    NOT NULL,   -- sign_in, lock, rollback… (model::audit::AuditAction)
    repository  TEXT,
    environment TEXT,
    target      TEXT,               -- a deployment id, a commit, a call's id, a token's name
    detail      TEXT    NOT NULL,   -- a lock's reason, a refusal's sentence…
    address     TEXT    NOT NULL,   -- the client's address
    outcome     TEXT    NOT NULL    -- done | refused
);
-- The page's filters, newest first a page at a time (`id < before`): each walks its index
-- backwards and stops at the page's end, however many rows the log holds.
CREATE INDEX audit_by_login ON audit (login, id);
CREATE INDEX audit_by_action ON audit (action, id);
CREATE INDEX audit_by_environment ON audit (environment, id);
CREATE INDEX audit_by_repository ON audit (repository, id);
