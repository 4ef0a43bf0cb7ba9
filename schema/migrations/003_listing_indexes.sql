-- Indexes for the list endpoints: newest first by time-ordered id, filtered by
-- type, key, subscription or status.
CREATE INDEX events_type_id_idx ON events (type, id);
CREATE INDEX events_key_id_idx ON events (key, id) WHERE key IS NOT NULL;
CREATE INDEX deliveries_subscription_id_idx ON deliveries (subscription_id, id);
DROP INDEX deliveries_status_idx;
CREATE INDEX deliveries_status_id_idx ON deliveries (status, id);
