-- Stats (issue 7): what GET /api/stats/* reads, so that no request scans call_attempts or
-- number_state (docs/architecture.md, "Stats").
--
-- 1. Rollups of call_attempts, written only by the stats worker (workers/stats) from its own
--    consumer group on the results stream: each batch of stream entries is looked up in
--    call_attempts by stream_id and counted in the same transaction that records the last entry
--    applied (stats_state), so a redelivery or a crash never counts an attempt twice.
-- 2. Counters of number_state per company and status, and of the numbers pool, kept by
--    statement-level triggers (transition tables) on every path that changes those tables.
--    The triggers only append to stats_number_deltas (no row lock shared by concurrent writers
--    on the ingestion path); the stats worker folds the deltas into stats_number_counts every
--    second, and readers add both.
--
-- Days and hours are local to TIMEZONE (stats_state.timezone); company_id 0 in stats_daily,
-- stats_hourly and stats_minutely is the sum over every company (the endpoints without a company).

-- ---------------------------------------------------------------------------------------------
-- 1. Rollups

CREATE TABLE stats_state (
    id           integer PRIMARY KEY CHECK (id = 1),
    last_ms      bigint NOT NULL DEFAULT 0, -- the last results-stream entry applied (<ms>-<seq>):
    last_seq     bigint NOT NULL DEFAULT 0, -- every entry up to it has been counted or skipped
    backfilled   boolean NOT NULL DEFAULT false, -- false: the worker rebuilds before it applies entries
    timezone     text,                           -- the TIMEZONE the rollups' days and hours are cut in
    applied      bigint NOT NULL DEFAULT 0,      -- attempts counted from the stream since the last rebuild
    rebuilt_at   timestamptz,
    rebuilt_rows bigint,                         -- attempts the last rebuild counted
    updated_at   timestamptz
);
INSERT INTO stats_state (id) VALUES (1);

-- Attempts per company (0 = all), local day and status.
CREATE TABLE stats_daily (
    company_id integer NOT NULL,
    day        date NOT NULL,
    status     text NOT NULL,
    attempts   bigint NOT NULL,
    PRIMARY KEY (company_id, day, status)
);

-- Per local hour: the instant the local hour began.
CREATE TABLE stats_hourly (
    company_id integer NOT NULL,
    hour       timestamptz NOT NULL,
    status     text NOT NULL,
    attempts   bigint NOT NULL,
    PRIMARY KEY (company_id, hour, status)
);

-- Per minute, for the attempts of the last stats_minutes_kept() (25 hours): attempts-summary's
-- hours=N to the minute for N <= 24 (beyond, from the start of the local hour). Older rows are
-- pruned by the worker.
CREATE TABLE stats_minutely (
    company_id integer NOT NULL,
    minute     timestamptz NOT NULL,
    status     text NOT NULL,
    attempts   bigint NOT NULL,
    PRIMARY KEY (company_id, minute, status)
);

-- dashboard-stats: per company, local day, scenario (grp 1) or outbound line (grp 2) and status.
-- Attempts without one are not counted here (COMPAT §2.11 skips them).
CREATE TABLE stats_daily_groups (
    company_id integer NOT NULL,
    grp        smallint NOT NULL CHECK (grp IN (1, 2)),
    day        date NOT NULL,
    group_id   integer NOT NULL,
    status     text NOT NULL,
    attempts   bigint NOT NULL,
    PRIMARY KEY (company_id, grp, day, group_id, status)
);

-- The same per minute, for the last stats_group_minutes_kept() (2 hours: time_filter=1h).
CREATE TABLE stats_minutely_groups (
    company_id integer NOT NULL,
    grp        smallint NOT NULL CHECK (grp IN (1, 2)),
    minute     timestamptz NOT NULL,
    group_id   integer NOT NULL,
    status     text NOT NULL,
    attempts   bigint NOT NULL,
    PRIMARY KEY (company_id, grp, minute, group_id, status)
);

-- /api/stats/agents: per company, local day and agent; connected = COMPAT §2.11's connected set.
CREATE TABLE stats_agents_daily (
    company_id integer NOT NULL,
    day        date NOT NULL,
    agent_id   integer NOT NULL,
    attempts   bigint NOT NULL,
    connected  bigint NOT NULL,
    last_at    timestamptz NOT NULL,
    PRIMARY KEY (company_id, day, agent_id)
);

-- How long the minute rollups keep their rows (attempts-summary to the minute up to 24 hours,
-- dashboard-stats' 1h is 61 minute buckets; a month of minutes would be 580,000 rows per busy
-- company). An attempt older than this when it is counted is not put in the minute table at all.
CREATE FUNCTION stats_minutes_kept() RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT interval '25 hours' $$;
CREATE FUNCTION stats_group_minutes_kept() RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT interval '2 hours' $$;

-- COMPAT §2.11's connected set (= the billable statuses).
CREATE FUNCTION stats_connected(s text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT s IN ('CONNECTED', 'DISCONNECTED', 'FAILED', 'NOT_INTERESTED', 'HANGUP', 'UNKNOWN') $$;

-- The session's batch of attempts to add (temporary, emptied at every commit): filled by
-- stats_apply (one row per attempt) or stats_rebuild (pre-aggregated), then folded into every
-- rollup by stats_fold. minute is NULL for an attempt too old for the minute tables.
CREATE FUNCTION stats_batch_open() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('pg_temp.stats_batch') IS NULL THEN
        CREATE TEMP TABLE stats_batch (
            pos         integer,
            company_id  integer NOT NULL,
            day         date NOT NULL,
            hour        timestamptz NOT NULL,
            minute      timestamptz,
            status      text NOT NULL,
            scenario_id integer,
            line_id     integer,
            agent_id    integer,
            n           bigint NOT NULL,
            last_at     timestamptz NOT NULL
        ) ON COMMIT DELETE ROWS;
    END IF;
END
$$;

-- Adds the session's stats_batch to every rollup (upserts, one per table).
CREATE FUNCTION stats_fold() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_daily AS t (company_id, day, status, attempts)
    SELECT v.c, b.day, b.status, sum(b.n) FROM stats_batch b, LATERAL (VALUES (b.company_id), (0)) v(c)
     GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (company_id, day, status) DO UPDATE SET attempts = t.attempts + EXCLUDED.attempts;

    INSERT INTO stats_hourly AS t (company_id, hour, status, attempts)
    SELECT v.c, b.hour, b.status, sum(b.n) FROM stats_batch b, LATERAL (VALUES (b.company_id), (0)) v(c)
     GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (company_id, hour, status) DO UPDATE SET attempts = t.attempts + EXCLUDED.attempts;

    INSERT INTO stats_minutely AS t (company_id, minute, status, attempts)
    SELECT v.c, b.minute, b.status, sum(b.n) FROM stats_batch b, LATERAL (VALUES (b.company_id), (0)) v(c)
     WHERE b.minute IS NOT NULL
     GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (company_id, minute, status) DO UPDATE SET attempts = t.attempts + EXCLUDED.attempts;

    INSERT INTO stats_daily_groups AS t (company_id, grp, day, group_id, status, attempts)
    SELECT b.company_id, g.grp, b.day, g.id, b.status, sum(b.n)
      FROM stats_batch b, LATERAL (VALUES (1::smallint, b.scenario_id), (2::smallint, b.line_id)) g(grp, id)
     WHERE g.id IS NOT NULL
     GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (company_id, grp, day, group_id, status) DO UPDATE SET attempts = t.attempts + EXCLUDED.attempts;

    INSERT INTO stats_minutely_groups AS t (company_id, grp, minute, group_id, status, attempts)
    SELECT b.company_id, g.grp, b.minute, g.id, b.status, sum(b.n)
      FROM stats_batch b, LATERAL (VALUES (1::smallint, b.scenario_id), (2::smallint, b.line_id)) g(grp, id)
     WHERE g.id IS NOT NULL AND b.minute >= now() - stats_group_minutes_kept()
     GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (company_id, grp, minute, group_id, status) DO UPDATE SET attempts = t.attempts + EXCLUDED.attempts;

    INSERT INTO stats_agents_daily AS t (company_id, day, agent_id, attempts, connected, last_at)
    SELECT b.company_id, b.day, b.agent_id, sum(b.n), COALESCE(sum(b.n) FILTER (WHERE stats_connected(b.status)), 0),
           max(b.last_at)
      FROM stats_batch b WHERE b.agent_id IS NOT NULL
     GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (company_id, day, agent_id) DO UPDATE
       SET attempts = t.attempts + EXCLUDED.attempts, connected = t.connected + EXCLUDED.connected,
           last_at = GREATEST(t.last_at, EXCLUDED.last_at);
END
$$;

-- Stream ids "<ms>-<seq>" compare as the pair of integers.
CREATE FUNCTION stream_id_ms(id text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$ SELECT split_part(id, '-', 1)::bigint $$;
CREATE FUNCTION stream_id_seq(id text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$ SELECT split_part(id, '-', 2)::bigint $$;

/*
 * Counts one batch of results-stream entries (p_ids, in stream order, as the stats group
 * delivered them). p_finished is the first entry the results group has not finished (its oldest
 * pending entry, else the one after its last delivered): every entry before it was committed
 * or dead-lettered before the worker asked Redis, so an entry before it that is in neither
 * call_attempts nor dead_letters was applied and then removed (its company deleted) and is
 * skipped. An entry at or after it that is in neither is not applied yet: that entry and every
 * later one wait (not acknowledged) for a later call.
 *
 * In one transaction: the entries up to the first waiting one that are after the last entry
 * applied (stats_state) and found in call_attempts (of an existing company) are added to every
 * rollup, and the last entry of that prefix becomes the last applied. Returns o_status 'ok' or
 * 'rebuild' (nothing done: the rollups must be rebuilt first), o_done = entries processed (the
 * prefix: acknowledge them), o_applied = attempts counted among them.
 *
 * Company deletes: the companies' BEFORE DELETE trigger takes stats_state's row lock as this
 * function does first, so a delete either completes before this reads call_attempts (its rows
 * are gone) or waits until this commits and then removes what it added.
 */
CREATE FUNCTION stats_apply(p_ids text[], p_finished text, p_tz text,
                            OUT o_status text, OUT o_done integer, OUT o_applied integer)
LANGUAGE plpgsql AS $$
DECLARE
    st stats_state;
    f_ms bigint := stream_id_ms(p_finished);
    f_seq bigint := stream_id_seq(p_finished);
    v_cut integer;
BEGIN
    SELECT * INTO st FROM stats_state WHERE id = 1 FOR UPDATE;
    IF NOT st.backfilled OR st.timezone IS DISTINCT FROM p_tz THEN
        o_status := 'rebuild'; o_done := 0; o_applied := 0;
        RETURN;
    END IF;
    PERFORM stats_batch_open();

    -- the attempts of the entries not applied before; a stream id is unique in call_attempts
    INSERT INTO stats_batch (pos, company_id, day, hour, minute, status, scenario_id, line_id, agent_id, n, last_at)
    SELECT e.pos, a.company_id, (a.attempted_at AT TIME ZONE p_tz)::date, date_trunc('hour', a.attempted_at, p_tz),
           CASE WHEN a.attempted_at >= now() - stats_minutes_kept() THEN date_trunc('minute', a.attempted_at) END,
           a.status, a.scenario_id, a.outbound_line_id, a.agent_id, 1, a.attempted_at
      FROM unnest(p_ids) WITH ORDINALITY e(sid, pos)
      JOIN call_attempts a ON a.stream_id = e.sid
     WHERE (stream_id_ms(e.sid), stream_id_seq(e.sid)) > (st.last_ms, st.last_seq)
       AND a.company_id IN (SELECT c.id FROM companies c);

    -- the first entry to wait for: new, not counted, not dead-lettered, not finished by results
    SELECT min(e.pos) INTO v_cut
      FROM unnest(p_ids) WITH ORDINALITY e(sid, pos)
     WHERE (stream_id_ms(e.sid), stream_id_seq(e.sid)) > (st.last_ms, st.last_seq)
       AND (stream_id_ms(e.sid), stream_id_seq(e.sid)) >= (f_ms, f_seq)
       AND NOT EXISTS (SELECT 1 FROM stats_batch b WHERE b.pos = e.pos)
       AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.stream_id = e.sid);
    o_done := COALESCE(v_cut, cardinality(p_ids) + 1) - 1;
    IF v_cut IS NOT NULL THEN
        DELETE FROM stats_batch b WHERE b.pos >= v_cut;
    END IF;
    SELECT count(*) INTO o_applied FROM stats_batch;
    IF o_applied > 0 THEN
        PERFORM stats_fold();
    END IF;
    IF o_done > 0 AND (stream_id_ms(p_ids[o_done]), stream_id_seq(p_ids[o_done])) > (st.last_ms, st.last_seq) THEN
        UPDATE stats_state
           SET last_ms = stream_id_ms(p_ids[o_done]), last_seq = stream_id_seq(p_ids[o_done]),
               applied = stats_state.applied + o_applied, updated_at = now()
         WHERE id = 1;
    END IF;
    o_status := 'ok';
END
$$;

/*
 * Rebuilds every rollup from call_attempts: the attempts without a stream id (written by SQL,
 * not by the results worker) and those of entries up to p_upto ("<ms>-<seq>", inclusive), of
 * existing companies; p_upto becomes the last entry applied. The worker calls it when
 * stats_state.backfilled is false (a new installation, or `dialerctl stats-rebuild`), its group
 * is gone, or the TIMEZONE changed, after moving its group to p_upto (workers/stats: every entry
 * up to it was finished by the results group). Readers see the old rollups until it commits.
 * Set-based, one aggregate per table straight from call_attempts (a grain fine enough for all
 * of them would be as large as call_attempts itself; docs/benchmarks.md). Returns the attempts
 * counted.
 */
CREATE FUNCTION stats_rebuild(p_upto text, p_tz text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    u_ms bigint := stream_id_ms(p_upto);
    u_seq bigint := stream_id_seq(p_upto);
    total bigint;
BEGIN
    PERFORM 1 FROM stats_state WHERE id = 1 FOR UPDATE;
    PERFORM set_config('work_mem', '256MB', true); -- the aggregates hash in memory
    DELETE FROM stats_daily;
    DELETE FROM stats_hourly;
    DELETE FROM stats_minutely;
    DELETE FROM stats_daily_groups;
    DELETE FROM stats_minutely_groups;
    DELETE FROM stats_agents_daily;

    -- per hour, then the days and every company's sums from those rows
    INSERT INTO stats_hourly (company_id, hour, status, attempts)
    SELECT a.company_id, date_trunc('hour', a.attempted_at, p_tz), a.status, count(*)
      FROM call_attempts a
     WHERE (a.stream_id IS NULL OR (stream_id_ms(a.stream_id), stream_id_seq(a.stream_id)) <= (u_ms, u_seq))
       AND a.company_id IN (SELECT c.id FROM companies c)
     GROUP BY 1, 2, 3;
    INSERT INTO stats_hourly (company_id, hour, status, attempts)
    SELECT 0, hour, status, sum(attempts) FROM stats_hourly GROUP BY 2, 3;
    INSERT INTO stats_daily (company_id, day, status, attempts)
    SELECT company_id, (hour AT TIME ZONE p_tz)::date, status, sum(attempts) FROM stats_hourly GROUP BY 1, 2, 3;
    SELECT COALESCE(sum(attempts), 0) INTO total FROM stats_daily WHERE company_id = 0;

    INSERT INTO stats_minutely (company_id, minute, status, attempts)
    SELECT a.company_id, date_trunc('minute', a.attempted_at), a.status, count(*)
      FROM call_attempts a
     WHERE (a.stream_id IS NULL OR (stream_id_ms(a.stream_id), stream_id_seq(a.stream_id)) <= (u_ms, u_seq))
       AND a.company_id IN (SELECT c.id FROM companies c) AND a.attempted_at >= now() - stats_minutes_kept()
     GROUP BY 1, 2, 3;
    INSERT INTO stats_minutely (company_id, minute, status, attempts)
    SELECT 0, minute, status, sum(attempts) FROM stats_minutely GROUP BY 2, 3;

    INSERT INTO stats_daily_groups (company_id, grp, day, group_id, status, attempts)
    SELECT a.company_id, g.grp, (a.attempted_at AT TIME ZONE p_tz)::date, g.id, a.status, count(*)
      FROM call_attempts a, LATERAL (VALUES (1::smallint, a.scenario_id), (2::smallint, a.outbound_line_id)) g(grp, id)
     WHERE (a.stream_id IS NULL OR (stream_id_ms(a.stream_id), stream_id_seq(a.stream_id)) <= (u_ms, u_seq))
       AND a.company_id IN (SELECT c.id FROM companies c) AND g.id IS NOT NULL
     GROUP BY 1, 2, 3, 4, 5;

    -- the last couple of hours: through the attempts' (company_id, attempted_at) index
    INSERT INTO stats_minutely_groups (company_id, grp, minute, group_id, status, attempts)
    SELECT a.company_id, g.grp, date_trunc('minute', a.attempted_at), g.id, a.status, count(*)
      FROM companies c
      JOIN call_attempts a ON a.company_id = c.id AND a.attempted_at >= now() - stats_group_minutes_kept(),
           LATERAL (VALUES (1::smallint, a.scenario_id), (2::smallint, a.outbound_line_id)) g(grp, id)
     WHERE (a.stream_id IS NULL OR (stream_id_ms(a.stream_id), stream_id_seq(a.stream_id)) <= (u_ms, u_seq))
       AND g.id IS NOT NULL
     GROUP BY 1, 2, 3, 4, 5;

    INSERT INTO stats_agents_daily (company_id, day, agent_id, attempts, connected, last_at)
    SELECT a.company_id, (a.attempted_at AT TIME ZONE p_tz)::date, a.agent_id, count(*),
           count(*) FILTER (WHERE stats_connected(a.status)), max(a.attempted_at)
      FROM call_attempts a
     WHERE (a.stream_id IS NULL OR (stream_id_ms(a.stream_id), stream_id_seq(a.stream_id)) <= (u_ms, u_seq))
       AND a.company_id IN (SELECT c.id FROM companies c) AND a.agent_id IS NOT NULL
     GROUP BY 1, 2, 3;

    UPDATE stats_state
       SET last_ms = u_ms, last_seq = u_seq, backfilled = true, timezone = p_tz, applied = 0,
           rebuilt_at = now(), rebuilt_rows = total, updated_at = now()
     WHERE id = 1;
    RETURN total;
END
$$;

-- Drops minute rows past their keeping time (the worker, every minute), per company through
-- the primary keys.
CREATE FUNCTION stats_prune() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    a bigint;
    b bigint;
BEGIN
    DELETE FROM stats_minutely m USING (SELECT id FROM companies UNION ALL SELECT 0) c
     WHERE m.company_id = c.id AND m.minute < now() - stats_minutes_kept();
    GET DIAGNOSTICS a = ROW_COUNT;
    DELETE FROM stats_minutely_groups m USING companies c
     WHERE m.company_id = c.id AND m.minute < now() - stats_group_minutes_kept();
    GET DIAGNOSTICS b = ROW_COUNT;
    RETURN a + b;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- 2. Number counters (numbers-summary)

-- Numbers per company and current status (number_state), and company 0 / 'ALL' = the pool.
CREATE TABLE stats_number_counts (
    company_id integer NOT NULL,
    status     text NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (company_id, status)
);
-- Changes not folded into stats_number_counts yet (append-only for writers).
CREATE TABLE stats_number_deltas (
    company_id integer NOT NULL,
    status     text NOT NULL,
    n          bigint NOT NULL
);

INSERT INTO stats_number_counts (company_id, status, n)
SELECT company_id, status, count(*) FROM number_state GROUP BY 1, 2;
INSERT INTO stats_number_counts (company_id, status, n) SELECT 0, 'ALL', count(*) FROM numbers;

CREATE FUNCTION stats_number_state_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_number_deltas (company_id, status, n)
    SELECT company_id, status, count(*) FROM new_rows GROUP BY 1, 2;
    RETURN NULL;
END
$$;

CREATE FUNCTION stats_number_state_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_number_deltas (company_id, status, n)
    SELECT company_id, status, -count(*) FROM old_rows GROUP BY 1, 2;
    RETURN NULL;
END
$$;

-- Fires for every UPDATE statement, also with no row (an upsert without conflicts): rows whose
-- status did not change cancel out.
CREATE FUNCTION stats_number_state_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows) THEN
        RETURN NULL;
    END IF;
    INSERT INTO stats_number_deltas (company_id, status, n)
    SELECT company_id, status, sum(n)
      FROM (SELECT company_id, status, 1 AS n FROM new_rows
            UNION ALL SELECT company_id, status, -1 FROM old_rows) x
     GROUP BY 1, 2 HAVING sum(n) <> 0;
    RETURN NULL;
END
$$;

CREATE FUNCTION stats_numbers_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_number_deltas (company_id, status, n)
    SELECT 0, 'ALL', count(*) FROM new_rows HAVING count(*) > 0;
    RETURN NULL;
END
$$;

CREATE FUNCTION stats_numbers_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_number_deltas (company_id, status, n)
    SELECT 0, 'ALL', -count(*) FROM old_rows HAVING count(*) > 0;
    RETURN NULL;
END
$$;

-- TRUNCATE (an operator's, or a test's): the counters of the table restart from zero.
CREATE FUNCTION stats_numbers_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'numbers' THEN
        DELETE FROM stats_number_deltas WHERE company_id = 0;
        DELETE FROM stats_number_counts WHERE company_id = 0;
    ELSE
        DELETE FROM stats_number_deltas WHERE company_id <> 0;
        DELETE FROM stats_number_counts WHERE company_id <> 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER stats_number_state_inserted AFTER INSERT ON number_state
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION stats_number_state_inserted();
CREATE TRIGGER stats_number_state_updated AFTER UPDATE ON number_state
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION stats_number_state_updated();
CREATE TRIGGER stats_number_state_deleted AFTER DELETE ON number_state
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION stats_number_state_deleted();
CREATE TRIGGER stats_number_state_truncated AFTER TRUNCATE ON number_state
    FOR EACH STATEMENT EXECUTE FUNCTION stats_numbers_truncated();
CREATE TRIGGER stats_numbers_inserted AFTER INSERT ON numbers
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION stats_numbers_inserted();
CREATE TRIGGER stats_numbers_deleted AFTER DELETE ON numbers
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION stats_numbers_deleted();
CREATE TRIGGER stats_numbers_truncated AFTER TRUNCATE ON numbers
    FOR EACH STATEMENT EXECUTE FUNCTION stats_numbers_truncated();

-- Folds the deltas into the counts (the stats worker, every second). Returns the deltas folded.
CREATE FUNCTION stats_number_fold() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    k bigint;
BEGIN
    WITH d AS (DELETE FROM stats_number_deltas RETURNING company_id, status, n),
         s AS (SELECT company_id, status, sum(n) AS n, count(*) AS k FROM d GROUP BY 1, 2),
         u AS (INSERT INTO stats_number_counts AS c (company_id, status, n)
               SELECT company_id, status, n FROM s ORDER BY 1, 2
               ON CONFLICT (company_id, status) DO UPDATE SET n = c.n + EXCLUDED.n)
    SELECT COALESCE(sum(s.k), 0) INTO k FROM s;
    DELETE FROM stats_number_counts WHERE n = 0 AND company_id <> 0;
    RETURN k;
END
$$;

-- Counts everything again from number_state and numbers (`dialerctl stats-rebuild`), with
-- writers of both tables held off meanwhile (SHARE locks) so that no change falls between the
-- count and the deltas it replaces.
CREATE FUNCTION stats_number_recount() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE numbers, number_state IN SHARE MODE;
    DELETE FROM stats_number_deltas;
    DELETE FROM stats_number_counts;
    INSERT INTO stats_number_counts (company_id, status, n)
    SELECT company_id, status, count(*) FROM number_state GROUP BY 1, 2;
    INSERT INTO stats_number_counts (company_id, status, n) SELECT 0, 'ALL', count(*) FROM numbers;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- 3. Company deletes (company_delete, or any DELETE FROM companies)

-- Before the rows go: serialize with stats_apply (see there).
CREATE FUNCTION stats_company_deleting() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM stats_state WHERE id = 1 FOR UPDATE;
    RETURN NULL;
END
$$;

-- After: the companies' rollups go, and leave the all-companies rows.
CREATE FUNCTION stats_company_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH d AS (DELETE FROM stats_daily WHERE company_id IN (SELECT id FROM old_rows) RETURNING day, status, attempts)
    UPDATE stats_daily t SET attempts = t.attempts - x.n
      FROM (SELECT day, status, sum(attempts) AS n FROM d GROUP BY 1, 2) x
     WHERE t.company_id = 0 AND t.day = x.day AND t.status = x.status;
    WITH d AS (DELETE FROM stats_hourly WHERE company_id IN (SELECT id FROM old_rows) RETURNING hour, status, attempts)
    UPDATE stats_hourly t SET attempts = t.attempts - x.n
      FROM (SELECT hour, status, sum(attempts) AS n FROM d GROUP BY 1, 2) x
     WHERE t.company_id = 0 AND t.hour = x.hour AND t.status = x.status;
    WITH d AS (DELETE FROM stats_minutely WHERE company_id IN (SELECT id FROM old_rows) RETURNING minute, status, attempts)
    UPDATE stats_minutely t SET attempts = t.attempts - x.n
      FROM (SELECT minute, status, sum(attempts) AS n FROM d GROUP BY 1, 2) x
     WHERE t.company_id = 0 AND t.minute = x.minute AND t.status = x.status;
    DELETE FROM stats_daily_groups WHERE company_id IN (SELECT id FROM old_rows);
    DELETE FROM stats_minutely_groups WHERE company_id IN (SELECT id FROM old_rows);
    DELETE FROM stats_agents_daily WHERE company_id IN (SELECT id FROM old_rows);
    DELETE FROM stats_number_counts WHERE company_id IN (SELECT id FROM old_rows);
    DELETE FROM stats_number_deltas WHERE company_id IN (SELECT id FROM old_rows);
    RETURN NULL;
END
$$;

CREATE TRIGGER stats_company_deleting BEFORE DELETE ON companies
    FOR EACH STATEMENT EXECUTE FUNCTION stats_company_deleting();
CREATE TRIGGER stats_company_deleted AFTER DELETE ON companies
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION stats_company_deleted();
