-- The dashboard lists the newest deliveries every few seconds; without an index that is a
-- scan of the whole table, which grows with every delivery.
CREATE INDEX deliveries_by_time ON deliveries (received_at);
