-- Released batches are kept SCHED_BATCH_KEEP_DAYS (30) for history, then
-- deleted by the scheduler's sweep in bounded chunks; this index finds them.
CREATE INDEX dialer_batches_released_idx ON dialer_batches (created_at) WHERE released;
