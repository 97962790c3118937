-- Issue 16, replicas on PostgreSQL: a job records the server that claimed it, and only
-- that server may record its end. On SQLite one server owns the file, so this only names
-- it; the schemas of both engines stay alike.
ALTER TABLE jobs ADD COLUMN owner TEXT;
