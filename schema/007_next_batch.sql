-- next-batch (issue 5): every batch is recorded (COMPAT §3.3 step 6), and a
-- partial index keeps the candidates' scan on numbers that can be dialed at all.

CREATE TABLE dialer_batches (
    id             text PRIMARY KEY,         -- 32 hex characters
    company_id     integer NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    requested_size integer NOT NULL,
    returned_size  integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dialer_batches_company_idx ON dialer_batches (company_id, created_at);

CREATE INDEX numbers_dialable_idx ON numbers (id) WHERE global_status = 'ACTIVE' AND assigned_at IS NULL;
