-- next-batch (issue 5): every batch is recorded (COMPAT §3.3 step 6) with the
-- numbers it locked, so that expired locks are found through the batches
-- (the scheduler) and no index on numbers has to follow the lock columns.
--
-- Why: a lock is an UPDATE of numbers.assigned_*; when no index covers those
-- columns (nor has them in a predicate) and the page has room, PostgreSQL
-- makes it a HOT update (no index entries written). With an index on
-- assigned_at every lock wrote a new entry into each of the table's indexes,
-- trigram GIN included.

CREATE TABLE dialer_batches (
    id             text PRIMARY KEY,         -- 32 hex characters
    company_id     integer NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    requested_size integer NOT NULL,
    returned_size  integer NOT NULL,
    number_ids     bigint[] NOT NULL DEFAULT '{}',
    released       boolean NOT NULL DEFAULT false, -- its expired locks were returned (scheduler)
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dialer_batches_company_idx ON dialer_batches (company_id, created_at);
CREATE INDEX dialer_batches_open_idx ON dialer_batches (created_at) WHERE NOT released AND returned_size > 0;

DROP INDEX numbers_assigned_at_idx;
ALTER TABLE numbers SET (fillfactor = 90);
