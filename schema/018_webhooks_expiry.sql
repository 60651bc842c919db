-- Webhooks (schema 012), two additions (docs/architecture.md, "Webhooks").
--
-- Expiry: a delivery queued more than WEBHOOK_MAX_AGE_SECONDS ago is no longer claimed, and
-- retention marks it failed ("expired: …") — a paused webhook's backlog, or one a failing
-- receiver did not get through in time, used to wait forever (the age was only checked after an
-- attempt). Retention finds those rows every 10 s by their age: a small partial index, only the
-- pending rows (finished ones, most of the table, are not in it).
CREATE INDEX webhook_deliveries_pending_age_idx ON webhook_deliveries (created_at) WHERE state = 'pending';

-- When an attempt started (the worker's wall clock as it handed the request to libcurl). The log
-- derived it as created_at - duration_ms, and created_at is when the outcome was recorded:
-- outcomes held through a PostgreSQL outage showed the time of recording. NULL for attempts
-- logged before this column (the API then falls back to created_at - duration_ms).
ALTER TABLE webhook_attempts ADD COLUMN attempted_at timestamptz;
