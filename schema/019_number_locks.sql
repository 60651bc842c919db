-- next-batch's locks in PostgreSQL move from numbers.assigned_* to a table of their own.
--
-- Why: the scheduler mirrors every handed-out number's lock into PostgreSQL (~100,000 a second at
-- 1,000 batches/s), and as an UPDATE of numbers each was a new version of a wide row: re-checked
-- against the phone CHECK (a regular expression), and, for the ~93% that did not fit on their page
-- (fillfactor 90, 100 consecutive numbers a batch), new entries in all four indexes of numbers,
-- trigram GIN included, plus the dead versions vacuum then had to clear from them. In a `perf
-- record -a` of bench/next-batch.sh that one backend was 48% of both cores, more than the API,
-- Redis and wrk together. A lock is now a row of number_locks: a bigint key, one btree, nothing to
-- check; releasing it is a DELETE. numbers is written by imports, results and admin actions only.
--
-- The readers: NumberOut's assigned_at / assigned_batch_id (api/numbers.c), the refill's "not
-- locked in the database" (common/hopper.c), the lock sweep (scheduler/locks.c), a reset or an
-- IN_QUEUE status (common/numaction.c), a result (call_attempts_apply below), deletes (the
-- cascades below).
CREATE TABLE number_locks (
    number_id   bigint PRIMARY KEY,
    batch_id    text NOT NULL,
    company_id  integer NOT NULL,
    assigned_at timestamptz NOT NULL
);

INSERT INTO number_locks (number_id, batch_id, company_id, assigned_at)
SELECT id, assigned_batch_id, assigned_company_id, assigned_at
  FROM numbers WHERE assigned_at IS NOT NULL AND assigned_batch_id IS NOT NULL
   AND assigned_company_id IS NOT NULL;

ALTER TABLE numbers DROP COLUMN assigned_at, DROP COLUMN assigned_batch_id,
                    DROP COLUMN assigned_company_id;

-- As in 010_export.sql, with the lock released by a DELETE instead of three columns set NULL.
CREATE OR REPLACE FUNCTION call_attempts_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO number_state AS s (company_id, number_id, status, total_attempts, last_attempt_at,
                                   last_attempt_id, last_user_message, assigned_agent_id, updated_at,
                                   last_scenario_id, last_outbound_line_id)
    SELECT DISTINCT ON (company_id, number_id)
           company_id, number_id, status, (count(*) OVER w)::integer, attempted_at, id, user_message,
           agent_id, now(), scenario_id, outbound_line_id
      FROM new_rows
    WINDOW w AS (PARTITION BY company_id, number_id)
     ORDER BY company_id, number_id, id DESC
    ON CONFLICT (company_id, number_id) DO UPDATE
       SET status = EXCLUDED.status,
           total_attempts = s.total_attempts + EXCLUDED.total_attempts,
           last_attempt_at = EXCLUDED.last_attempt_at,
           last_attempt_id = EXCLUDED.last_attempt_id,
           last_user_message = EXCLUDED.last_user_message,
           assigned_agent_id = EXCLUDED.assigned_agent_id,
           last_scenario_id = EXCLUDED.last_scenario_id,
           last_outbound_line_id = EXCLUDED.last_outbound_line_id,
           updated_at = now();

    UPDATE numbers n
       SET last_called_at = GREATEST(n.last_called_at, r.attempted_at),
           last_called_company_id = r.company_id,
           global_status = global_status_for(r.status)
      FROM (SELECT DISTINCT ON (number_id) number_id, attempted_at, company_id, status
              FROM new_rows ORDER BY number_id, id DESC) r
     WHERE n.id = r.number_id;

    DELETE FROM number_locks WHERE number_id IN (SELECT number_id FROM new_rows);

    UPDATE scenarios SET has_results = true
     WHERE NOT has_results AND id IN (SELECT scenario_id FROM new_rows WHERE scenario_id IS NOT NULL);
    UPDATE outbound_lines SET has_results = true
     WHERE NOT has_results AND id IN (SELECT outbound_line_id FROM new_rows WHERE outbound_line_id IS NOT NULL);
    RETURN NULL;
END
$$;

-- As in 002_numbers.sql, without the numbers update (a deleted company's locks go with the
-- companies cascade below).
CREATE OR REPLACE FUNCTION company_delete(cid integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM call_attempts WHERE company_id = cid;
    UPDATE numbers SET last_called_company_id = NULL WHERE last_called_company_id = cid;
    DELETE FROM number_state WHERE company_id = cid;
    DELETE FROM scenarios WHERE company_id = cid;
    DELETE FROM outbound_lines WHERE company_id = cid;
    DELETE FROM schedule_intervals WHERE company_id = cid;
    DELETE FROM company_config WHERE company_id = cid;
    UPDATE users SET company_id = NULL, updated_at = now() WHERE company_id = cid AND is_superuser;
    DELETE FROM users WHERE company_id = cid;
    DELETE FROM companies WHERE id = cid;
END
$$;

-- As in 016_hot_path_fks.sql, plus the locks of a deleted number or company.
CREATE OR REPLACE FUNCTION deleted_cascade() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'numbers' THEN
        DELETE FROM number_state s USING old_rows o WHERE s.number_id = o.id;
        DELETE FROM number_locks l USING old_rows o WHERE l.number_id = o.id;
    ELSE
        DELETE FROM number_state s USING old_rows o WHERE s.company_id = o.id;
        DELETE FROM wallet_ledger l USING old_rows o WHERE l.company_id = o.id;
        DELETE FROM number_locks l USING old_rows o WHERE l.company_id = o.id;
    END IF;
    RETURN NULL;
END
$$;
