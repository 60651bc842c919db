/*
 * One transaction per batch of results, set-based: the batch is loaded into a
 * per-connection temporary staging table in one statement, then a fixed list
 * of statements resolves, inserts, charges and dead-letters the whole batch,
 * all sent in one libpq pipeline (one round-trip per batch, whatever its
 * size). Why this shape, and the figures: docs/architecture.md, "Results
 * worker".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply.h"
#include "config.h"
#include "util.h"

/* The staging table: the entry as read (seq = position in the batch), then
 * what the statements resolve. ON COMMIT DELETE ROWS: empty at every BEGIN. */
static const char stage_ddl[] =
    "CREATE TEMP TABLE results_stage ("
    " seq integer NOT NULL, stream_id text NOT NULL, deliveries integer NOT NULL, bad text, raw jsonb,"
    " company_id integer, company text, phone text, phone_raw text, number_id bigint, status text,"
    " attempted_us bigint, scenario_id integer, outbound_line_id integer, agent_id integer,"
    " agent_phone text, reason text, user_message text, batch_id text, call_allowed text, rid text,"
    " accepted_us bigint,"
    " dup boolean NOT NULL DEFAULT false, dead text, n_id bigint, n_phone text, a_id integer,"
    " sc_id integer, ln_id integer, attempt_id bigint"
    ") ON COMMIT DELETE ROWS";

/*
 * Statistics for the staging table, once per connection: a batch-sized sample analyzed and
 * committed (the rows go, the statistics stay). Temporary tables are never analyzed by
 * autovacuum; without this the planner guessed one live row per batch and chose nested loops
 * that re-ran a lookup of the whole batch for every entry (737 ms for one statement). The
 * row count it plans with still follows the table's actual size, so it fits any batch size.
 */
static const char stage_stats[] =
    "BEGIN;"
    " INSERT INTO results_stage (seq, stream_id, deliveries, company_id, company, phone, phone_raw, status,"
    "  attempted_us, user_message, batch_id, rid, accepted_us)"
    " SELECT g, g::text, 1, 1, 'c', '09' || (100000000 + g), '09' || (100000000 + g), 'CONNECTED', g,"
    "  'message ' || g, md5(g::text), 'rid-' || g, g FROM generate_series(1, 1000) g;"
    " ANALYZE results_stage;"
    " COMMIT";

#define NCOLS 22
#define STAGE_COLS                                                                                         \
	"seq, stream_id, deliveries, bad, raw, company_id, company, phone, phone_raw, number_id, status, " \
	"attempted_us, scenario_id, outbound_line_id, agent_id, agent_phone, reason, user_message, "       \
	"batch_id, call_allowed, rid, accepted_us"

static const char load_sql[] =
    "INSERT INTO results_stage (" STAGE_COLS ") SELECT * FROM unnest($1::int[], $2::text[], $3::int[],"
    " $4::text[], $5::jsonb[], $6::int[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::text[],"
    " $12::bigint[], $13::int[], $14::int[], $15::int[], $16::text[], $17::text[], $18::text[], $19::text[],"
    " $20::text[], $21::text[], $22::bigint[])";

#define LIVE         "s.dead IS NULL AND NOT s.dup"
#define BILLABLE     "('CONNECTED', 'NOT_INTERESTED', 'HANGUP', 'UNKNOWN', 'DISCONNECTED', 'FAILED')"
#define CHARGED_ROWS "s.attempt_id IS NOT NULL AND s.status IN " BILLABLE

/* The statements after the load, in order (COMPAT §3.5 steps 1-9, §3.6 charging). */
static const char *const steps[] = {
    /* Every lookup in a big table is a correlated subquery on a unique key (one index probe per
     * entry) or "key = ANY (ARRAY(keys of the batch))" (one index scan bounded by the batch): no
     * join the planner could turn into a scan of call_attempts or numbers (a join was planned as
     * a hash over all of call_attempts, another as a merge over the numbers' index). */
    /* 0: entries applied or dead-lettered before (redelivered after a crash between COMMIT and XACK,
     * or claimed from a stalled copy) are skipped */
    "UPDATE results_stage s SET dup = true"
    " WHERE s.stream_id = ANY (ARRAY("
    "  SELECT a.stream_id FROM call_attempts a WHERE a.stream_id = ANY (ARRAY(SELECT stream_id FROM results_stage))"
    "  UNION ALL"
    "  SELECT d.stream_id FROM dead_letters d WHERE d.stream_id = ANY (ARRAY(SELECT stream_id FROM results_stage))))",
    /* 1: malformed entries, and the company must be active (step 1); the companies are locked
     * (FOR KEY SHARE: one lock per company and batch) until the commit, so that a company deleted
     * meanwhile takes this batch's rows with it (schema 016: no foreign key on the rows) */
    "UPDATE results_stage s SET dead = COALESCE(s.bad, 'Company not found')"
    " WHERE NOT s.dup AND (s.bad IS NOT NULL OR NOT s.company_id = ANY (ARRAY("
    "  SELECT c.id FROM companies c WHERE c.is_active"
    "   AND c.id = ANY (ARRAY(SELECT DISTINCT s2.company_id FROM results_stage s2)) ORDER BY c.id"
    "   FOR KEY SHARE)))",
    /* 2: a valid phone names the number (a number_id that disagrees is discarded, step 3) */
    "UPDATE results_stage s SET n_id = (SELECT n.id FROM numbers n WHERE n.phone_number = s.phone),"
    "       n_phone = s.phone"
    " WHERE " LIVE " AND s.phone IS NOT NULL",
    /* 3, 4: unknown numbers are created, ACTIVE (step 5), then found; sorted so that concurrent
     * copies take the unique-index locks in one order; one another copy created meanwhile
     * conflicts here and is found by the next statement */
    "INSERT INTO numbers (phone_number)"
    " SELECT DISTINCT s.phone FROM results_stage s WHERE " LIVE " AND s.phone IS NOT NULL AND s.n_id IS NULL"
    "  ORDER BY 1 ON CONFLICT (phone_number) DO NOTHING",
    "UPDATE results_stage s SET n_id = (SELECT n.id FROM numbers n WHERE n.phone_number = s.phone)"
    " WHERE " LIVE " AND s.phone IS NOT NULL AND s.n_id IS NULL",
    /* 5: otherwise the number_id; nothing found is "Number not found" */
    "UPDATE results_stage s SET (n_id, n_phone) = (SELECT n.id, n.phone_number FROM numbers n WHERE n.id = s.number_id)"
    " WHERE " LIVE " AND s.phone IS NULL",
    "UPDATE results_stage s SET dead = 'Number not found' WHERE " LIVE " AND s.n_id IS NULL",
    /* 7: the agent (step 6): by agent_id within the company, else by agent_phone within the
     * company; not an AGENT → no agent; an inactive AGENT → the entry cannot apply.
     * ("company_id + 0": looked up by the unique id or phone, never by the company's index) */
    "UPDATE results_stage s"
    "   SET (a_id, dead) = (SELECT CASE WHEN u.is_active THEN u.id END,"
    "                              CASE WHEN NOT u.is_active THEN 'Agent is inactive' END"
    "                         FROM users u WHERE u.role = 'AGENT' AND u.id = COALESCE("
    "           (SELECT y.id FROM users y WHERE y.id = s.agent_id AND y.company_id + 0 = s.company_id),"
    "           (SELECT y.id FROM users y"
    "             WHERE y.phone_number = s.agent_phone AND y.company_id + 0 = s.company_id)))"
    " WHERE " LIVE " AND (s.agent_id IS NOT NULL OR s.agent_phone IS NOT NULL)",
    /* 8: scenario and line ids are kept only when they name a row of the company (else NULL) */
    "UPDATE results_stage s"
    "   SET sc_id = (SELECT x.id FROM scenarios x WHERE x.id = s.scenario_id AND x.company_id + 0 = s.company_id),"
    "       ln_id = (SELECT x.id FROM outbound_lines x"
    "                 WHERE x.id = s.outbound_line_id AND x.company_id + 0 = s.company_id)"
    " WHERE " LIVE " AND (s.scenario_id IS NOT NULL OR s.outbound_line_id IS NOT NULL)",
    /* 9: lock the numbers in id order, so that concurrent copies never deadlock in the trigger */
    "SELECT n.id FROM numbers n"
    " WHERE n.id = ANY (ARRAY(SELECT s.n_id FROM results_stage s WHERE " LIVE ")) ORDER BY n.id FOR UPDATE",
    /* 10: a number deleted since it was found (the lock skipped it) cannot take the result */
    "UPDATE results_stage s SET dead = 'Number deleted while the result was applied'"
    " WHERE " LIVE " AND NOT EXISTS (SELECT 1 FROM numbers n WHERE n.id = s.n_id)",
    /* 11: the attempts, in stream order (steps 8-9 through the call_attempts trigger); a stream id
     * another copy committed meanwhile conflicts and is skipped */
    "WITH ins AS ("
    "  INSERT INTO call_attempts (company_id, number_id, phone_number, status, reason, attempted_at,"
    "   agent_id, scenario_id, outbound_line_id, user_message, batch_id, stream_id)"
    "  SELECT s.company_id, s.n_id, s.n_phone, s.status, s.reason,"
    "   'epoch'::timestamptz + s.attempted_us * interval '1 microsecond',"
    "   s.a_id, s.sc_id, s.ln_id, s.user_message, s.batch_id, s.stream_id"
    "   FROM results_stage s WHERE " LIVE " ORDER BY s.seq"
    "  ON CONFLICT (stream_id) WHERE stream_id IS NOT NULL DO NOTHING"
    "  RETURNING id, stream_id)"
    " UPDATE results_stage s SET attempt_id = ins.id FROM ins WHERE s.stream_id = ins.stream_id",
    /* 12: the wallet rows exist (COMPAT §3.6: created on first use) */
    "INSERT INTO company_config (company_id, skip_holidays)"
    " SELECT DISTINCT s.company_id, $1::boolean FROM results_stage s WHERE " CHARGED_ROWS
    " ON CONFLICT (company_id) DO NOTHING",
    /* 13: lock them as the billing PUT does, in company order, as late as possible */
    "SELECT count(*) FROM (SELECT c.company_id FROM company_config c"
    " WHERE c.company_id = ANY (ARRAY(SELECT s.company_id FROM results_stage s WHERE " CHARGED_ROWS "))"
    " ORDER BY c.company_id FOR UPDATE) l",
    /* 14: charge in attempt order (COMPAT §3.6): cost ≤ 0 → nothing; the j-th billable attempt
     * of a company is charged while balance − (j−1)·cost > 0, min(cost, what is left), with a
     * ledger row; the one reaching 0 and every later one (balance ≤ 0) disable the company and
     * bump its version, as the original does once per report. Returns the companies disabled. */
    "WITH b AS (SELECT s.company_id, s.attempt_id,"
    "            row_number() OVER (PARTITION BY s.company_id ORDER BY s.attempt_id) AS j"
    "             FROM results_stage s WHERE " CHARGED_ROWS "),"
    " n AS (SELECT b.company_id, count(*) AS cnt FROM b GROUP BY b.company_id),"
    /* numeric: j · cost would overflow bigint for huge rates (the billing PUT allows ±10^15) */
    " c AS (SELECT cc.company_id, cc.wallet_balance::numeric AS b0, cc.cost_per_connected::numeric AS cost"
    "         FROM company_config cc WHERE cc.company_id = ANY (ARRAY(SELECT company_id FROM n))),"
    " l AS (INSERT INTO wallet_ledger (company_id, kind, amount, balance_after, cost_per_connected, attempt_id)"
    "        SELECT b.company_id, 'charge', -LEAST(c.cost, c.b0 - (b.j - 1) * c.cost),"
    "               GREATEST(0, c.b0 - b.j * c.cost), c.cost, b.attempt_id"
    "          FROM b JOIN c USING (company_id)"
    "         WHERE c.cost > 0 AND c.b0 - (b.j - 1) * c.cost > 0 ORDER BY b.company_id, b.j),"
    " e AS (SELECT c.company_id,"
    "              CASE WHEN c.cost <= 0 THEN 0 WHEN c.b0 <= 0 THEN n.cnt"
    "                   ELSE GREATEST(0, n.cnt - div(c.b0 + c.cost - 1, c.cost) + 1) END AS events,"
    "              CASE WHEN c.cost > 0 AND c.b0 > 0 THEN GREATEST(0, c.b0 - n.cnt * c.cost)"
    "                   ELSE c.b0 END AS balance"
    "         FROM c JOIN n USING (company_id)),"
    " u AS (UPDATE company_config cc"
    "          SET wallet_balance = e.balance, enabled = cc.enabled AND e.events = 0,"
    "              disabled_by_dialer = cc.disabled_by_dialer OR e.events > 0,"
    "              version = cc.version + e.events, updated_at = now()"
    "         FROM e WHERE cc.company_id = e.company_id AND (e.events > 0 OR e.balance <> cc.wallet_balance)"
    "       RETURNING cc.company_id, e.events)"
    " SELECT company_id FROM u WHERE events > 0 ORDER BY company_id",
    /* 15: what cannot apply is kept, with the entry and why */
    "INSERT INTO dead_letters (company_id, stream_id, entry, reason, deliveries)"
    " SELECT (SELECT c.id FROM companies c WHERE c.id = s.company_id), s.stream_id,"
    "        COALESCE(s.raw, jsonb_strip_nulls(jsonb_build_object('v', '1', 'company_id', s.company_id::text,"
    "         'company', s.company, 'phone', s.phone, 'phone_raw', s.phone_raw, 'number_id', s.number_id::text,"
    "         'status', s.status, 'attempted_at', s.attempted_us::text, 'scenario_id', s.scenario_id::text,"
    "         'outbound_line_id', s.outbound_line_id::text, 'agent_id', s.agent_id::text,"
    "         'agent_phone', s.agent_phone, 'reason', s.reason, 'user_message', s.user_message,"
    "         'batch_id', s.batch_id, 'call_allowed', s.call_allowed, 'rid', s.rid,"
    "         'accepted_at', s.accepted_us::text))),"
    "        s.dead, s.deliveries"
    "   FROM results_stage s WHERE s.dead IS NOT NULL AND NOT s.dup ORDER BY s.seq"
    " ON CONFLICT (stream_id) DO NOTHING RETURNING stream_id, reason",
    /* 16: the counts */
    "SELECT count(*) FILTER (WHERE s.attempt_id IS NOT NULL),"
    "       count(*) FILTER (WHERE s.dup OR (s.dead IS NULL AND s.attempt_id IS NULL)),"
    "       count(*) FILTER (WHERE s.attempt_id IS NOT NULL"
    "        AND ((s.scenario_id IS NOT NULL AND s.sc_id IS NULL)"
    "         OR (s.outbound_line_id IS NOT NULL AND s.ln_id IS NULL)))"
    "  FROM results_stage s",
};

enum {
	STEP_LOCK = 9,
	STEP_CONFIG = 12,
	STEP_CHARGE = 14,
	STEP_DEAD = 15,
	STEP_COUNTS = 16,
	NSTEPS = (int)ARRAY_LEN(steps)
};

static const char *num(char out[24], long v, bool given)
{
	if (!given)
		return NULL;
	snprintf(out, 24, "%ld", v);
	return out;
}

/* The staging row of entry e (position seq) as text values; *raw is set to
 * the entry's JSON when it is malformed (caller frees). */
static void row_values(const struct result_entry *e, int seq, char nums[9][24], char **raw, const char *v[NCOLS])
{
	const bool bad = e->bad[0] != '\0';
	*raw = bad ? entry_json(e) : NULL;
	v[0] = num(nums[0], seq, true);
	v[1] = e->id;
	v[2] = num(nums[1], e->deliveries, true);
	v[3] = bad ? e->bad : NULL;
	v[4] = *raw;
	/* a malformed entry keeps only its ids; its typed values may be unusable */
	v[5] = num(nums[2], e->company_id, e->company_id > 0);
	v[6] = bad ? NULL : e->company;
	v[7] = bad ? NULL : e->phone;
	v[8] = bad ? NULL : e->phone_raw;
	v[9] = num(nums[3], e->number_id, !bad && e->number_id > 0);
	v[10] = bad ? NULL : e->status;
	v[11] = num(nums[4], e->attempted_us, !bad);
	v[12] = num(nums[5], e->scenario_id, !bad && e->scenario_id > 0);
	v[13] = num(nums[6], e->outbound_line_id, !bad && e->outbound_line_id > 0);
	v[14] = num(nums[7], e->agent_id, !bad && e->agent_id > 0);
	v[15] = bad ? NULL : e->agent_phone;
	v[16] = bad ? NULL : e->reason;
	v[17] = bad ? NULL : e->user_message;
	v[18] = bad ? NULL : e->batch_id;
	v[19] = bad ? NULL : e->call_allowed;
	v[20] = bad ? NULL : e->rid;
	v[21] = num(nums[8], e->accepted_us, e->accepted_us > 0); /* kept on a dead letter's entry */
}

static void set_error(struct apply_summary *out, const char *what, const char *msg)
{
	snprintf(out->error, sizeof(out->error), "%s: %s", what, msg);
	for (char *p = out->error; *p; p++)
		if (*p == '\n' || *p == '"')
			*p = ' ';
}

/* Maps a failed result's SQLSTATE to what the caller should do. */
static int classify(PGconn *pg, const PGresult *res)
{
	if (PQstatus(pg) != CONNECTION_OK)
		return APPLY_LOST;
	const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (!st)
		return APPLY_LOST;
	/* 40: rollback (serialization, deadlock); 53: resources; 55P03: lock timeout; 57: cancel,
	 * shutdown; 08: connection */
	if (!strncmp(st, "40", 2) || !strncmp(st, "53", 2) || !strcmp(st, "55P03") || !strncmp(st, "57", 2) ||
	    !strncmp(st, "08", 2))
		return APPLY_TRANSIENT;
	return APPLY_FAILED;
}

int apply_prepare(PGconn *pg)
{
	PGresult *res = PQexec(pg, "SELECT to_regclass('pg_temp.results_stage') IS NULL");
	int rc = -1;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_error("event=stage_check_failed error=\"%s\"", PQresultErrorMessage(res));
		goto out;
	}
	if (!strcmp(PQgetvalue(res, 0, 0), "t")) {
		PQclear(res);
		res = PQexec(pg, stage_ddl);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			log_error("event=stage_create_failed error=\"%s\"", PQresultErrorMessage(res));
			goto out;
		}
		PQclear(res);
		res = PQexec(pg, stage_stats);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			log_error("event=stage_analyze_failed error=\"%s\"", PQresultErrorMessage(res));
			goto out;
		}
	}
	rc = 0;
out:
	PQclear(res);
	return rc;
}

/* Reads the pipeline's results: one per statement sent (kept in keep[i] for the
 * statements whose rows are needed), then the sync. Returns an enum apply_rc. */
static int collect(PGconn *pg, int nsent, PGresult **keep, struct apply_summary *out)
{
	int rc = APPLY_OK;
	for (int i = 0; i < nsent; i++) {
		PGresult *res = PQgetResult(pg);
		if (!res) {
			set_error(out, "pipeline", PQerrorMessage(pg));
			return APPLY_LOST;
		}
		ExecStatusType st = PQresultStatus(res);
		if (rc == APPLY_OK && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
			rc = st == PGRES_PIPELINE_ABORTED ? APPLY_LOST : classify(pg, res);
			/* statement 0 is BEGIN, 1 the load, 2.. the steps, the last COMMIT */
			char what[32];
			snprintf(what, sizeof(what), "statement %d", i);
			set_error(out, what, PQresultErrorMessage(res));
		}
		if (keep && keep[i] == NULL && rc == APPLY_OK && st == PGRES_TUPLES_OK)
			keep[i] = res;
		else
			PQclear(res);
		PGresult *end = PQgetResult(pg); /* NULL closes each statement's results */
		PQclear(end);
	}
	PGresult *sync = PQgetResult(pg);
	if (!sync || PQresultStatus(sync) != PGRES_PIPELINE_SYNC) {
		if (rc == APPLY_OK) {
			set_error(out, "sync", PQerrorMessage(pg));
			rc = APPLY_LOST;
		}
	}
	PQclear(sync);
	return rc;
}

int apply_batch(PGconn *pg, const struct result_entry *entries, int n, struct apply_summary *out)
{
	struct buf cols[NCOLS] = {{0}};
	const char *params[NCOLS];
	char *raws_stack[1] = {NULL};
	char **raws = n > 1 ? xcalloc((size_t)n, sizeof(char *)) : raws_stack;
	PGresult *keep[NSTEPS + 3] = {0};
	const char *skip_param[1] = {cfg.skip_holidays ? "true" : "false"};
	int rc, sent = 0;

	memset(out, 0, sizeof(*out));
	for (int i = 0; i < n; i++) {
		char nums[9][24];
		const char *v[NCOLS];
		row_values(&entries[i], i, nums, &raws[i], v);
		for (int c = 0; c < NCOLS; c++)
			buf_array_elem(&cols[c], v[c]);
	}
	for (int c = 0; c < NCOLS; c++) {
		struct buf wrapped = {0};
		buf_add(&wrapped, "{", 1);
		buf_add(&wrapped, cols[c].p, cols[c].len);
		buf_add(&wrapped, "}", 1);
		free(cols[c].p);
		cols[c] = wrapped;
		params[c] = cols[c].p;
	}

	if (!PQenterPipelineMode(pg)) {
		set_error(out, "pipeline", PQerrorMessage(pg));
		rc = APPLY_LOST;
		goto out;
	}
	/* BEGIN, the load, the steps and COMMIT go out together: one round-trip */
	bool ok = PQsendQueryParams(pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
	sent += ok;
	ok = ok && PQsendQueryParams(pg, load_sql, NCOLS, NULL, params, NULL, NULL, 0);
	sent += ok;
	for (int i = 0; ok && i < NSTEPS; i++) {
		bool config = i == STEP_CONFIG;
		ok = PQsendQueryParams(pg, steps[i], config ? 1 : 0, NULL, config ? skip_param : NULL, NULL, NULL, 0);
		sent += ok;
	}
	ok = ok && PQsendQueryParams(pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
	sent += ok;
	if (!PQpipelineSync(pg) || !ok) {
		set_error(out, "send", PQerrorMessage(pg));
		rc = APPLY_LOST;
		PQexitPipelineMode(pg);
		goto out;
	}
	rc = collect(pg, sent, keep, out);
	if (!PQexitPipelineMode(pg) && rc == APPLY_OK) {
		set_error(out, "pipeline", PQerrorMessage(pg));
		rc = APPLY_LOST;
	}
	if (rc != APPLY_OK) {
		if (PQstatus(pg) == CONNECTION_OK && PQtransactionStatus(pg) != PQTRANS_IDLE)
			PQclear(PQexec(pg, "ROLLBACK"));
		goto out;
	}

	/* results: keep[i + 2] belongs to steps[i] (after BEGIN and the load) */
	PGresult *charged = keep[STEP_CHARGE + 2], *dead = keep[STEP_DEAD + 2], *counts = keep[STEP_COUNTS + 2],
	         *locked = keep[STEP_LOCK + 2];
	if (locked && PQntuples(locked) > 0) {
		out->nnumbers = PQntuples(locked);
		out->numbers = xmalloc((size_t)out->nnumbers * sizeof(*out->numbers));
		for (int i = 0; i < out->nnumbers; i++)
			out->numbers[i] = strtoll(PQgetvalue(locked, i, 0), NULL, 10);
	}
	if (counts && PQntuples(counts) == 1) {
		out->applied = atoi(PQgetvalue(counts, 0, 0));
		out->duplicates = atoi(PQgetvalue(counts, 0, 1));
		out->unknown_refs = atoi(PQgetvalue(counts, 0, 2));
	}
	if (charged) {
		out->ndisabled = PQntuples(charged);
		for (int i = 0; i < out->ndisabled && i < APPLY_DISABLED_MAX; i++)
			out->disabled[i] = atol(PQgetvalue(charged, i, 0));
	}
	if (dead) {
		out->dead = PQntuples(dead);
		for (int i = 0; i < out->dead; i++)
			log_warn("event=dead_letter stream_id=%s reason=\"%s\"", PQgetvalue(dead, i, 0),
			         PQgetvalue(dead, i, 1));
	}
out:
	for (size_t i = 0; i < ARRAY_LEN(keep); i++)
		PQclear(keep[i]);
	for (int c = 0; c < NCOLS; c++)
		free(cols[c].p);
	for (int i = 0; i < n; i++)
		free(raws[i]);
	if (raws != raws_stack)
		free(raws);
	return rc;
}
