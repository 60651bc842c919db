/*
 * The dialer's API (/api/dialer, COMPAT §2.10): next-batch (the call-allowed
 * state, then one statement that picks, locks and records a batch),
 * report-result (validated,
 * appended to the results stream, answered 202 once Redis has it) and the
 * registration of scenarios and outbound lines (§3.7). Bearer DIALER_TOKEN,
 * or a per-company dialer token that implies the company.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "callstate.h"
#include "config.h"
#include "metrics.h"
#include "phone.h"
#include "selection.h"
#include "tz.h"
#include "util.h"
#include "worker.h"

/* ---- which company (SPEC §4, COMPAT preface 1) ---- */

/*
 * Active companies by name, per loop thread, for DIALER_COMPANY_TTL_MS: the
 * hot paths (report-result, next-batch) would otherwise spend a database
 * round trip per request on a lookup that changes a few times a year. A
 * company deactivated or renamed is seen within that time.
 */
#define DIALER_COMPANY_TTL_MS 5000
#define DIALER_COMPANY_SLOTS  64

static __thread struct company_slot {
	char name[65];
	long id;
	uint64_t expires_ns;
} company_cache[DIALER_COMPANY_SLOTS];

static struct company_slot *company_slot(const char *name)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 16777619u;
	return &company_cache[h % DIALER_COMPANY_SLOTS];
}

/* Sets the company, checks the token's company, continues. */
static void dialer_company_set(struct http_ctx *c, long id, const char *name)
{
	c->company_id = id;
	free(c->company);
	c->company = xstrdup(name);
	if (c->dialer_company_id && c->dialer_company_id != c->company_id) {
		http_error(c, 403, "FORBIDDEN", "Access denied to this company");
		return;
	}
	c->next(c);
}

static void dialer_company_loaded(struct http_ctx *c, PGresult *res)
{
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "Company not found");
		return;
	}
	const char *name = PQgetvalue(res, 0, 1);
	long id = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	if (strlen(name) < sizeof(company_cache[0].name)) {
		struct company_slot *slot = company_slot(name);
		snprintf(slot->name, sizeof(slot->name), "%s", name);
		slot->id = id;
		slot->expires_ns = util_now_ns() + (uint64_t)DIALER_COMPANY_TTL_MS * 1000000u;
	}
	dialer_company_set(c, id, name);
}

/*
 * Resolves the dialer's company: `name` when given (an active company, else
 * 404; a company token naming another company gets 403), else the company of
 * a per-company token, else DEFAULT_COMPANY under the global token. Sets
 * c->company_id / c->company, then calls next(c).
 */
static void dialer_company(struct http_ctx *c, const char *name, void (*next)(struct http_ctx *c))
{
	c->next = next;
	if (!name || !*name)
		name = c->dialer_company_id ? c->dialer_company : cfg.default_company;
	struct company_slot *slot = company_slot(name);
	if (slot->id && !strcmp(slot->name, name) && util_now_ns() < slot->expires_ns) {
		dialer_company_set(c, slot->id, slot->name);
		return;
	}
	const char *p[1] = {name};
	http_db(c, "SELECT id, name FROM companies WHERE name = $1 AND is_active", 1, p, dialer_company_loaded);
}

/* ---- register-scenarios, register-outbound-lines (COMPAT §3.7) ---- */

struct reg_kind {
	const char *list;      /* body key of the items */
	const char *key;       /* the item's identity */
	size_t key_max;        /* its length limit */
	const char *sql;       /* $1 company, $2 jsonb [{key, display_name}] */
	const char *log_event; /* for the log line */
};

/*
 * One statement: the distinct incoming keys (the last duplicate wins), their
 * display names updated where they differ, the missing ones created active,
 * and every active row the payload leaves out deactivated. Inactive rows
 * that are present stay inactive: the panel owns the flag.
 */
#define REG_SQL(table, key)                                                                                            \
	"WITH inp AS (SELECT DISTINCT ON (" key ") " key                                                               \
	", display_name FROM ROWS FROM (jsonb_to_recordset($2::jsonb)"                                                 \
	" AS (" key " text, display_name text)) WITH ORDINALITY AS t(" key ", display_name, ord)"                      \
	" ORDER BY " key ", ord DESC), "                                                                               \
	"upd AS (UPDATE " table " x SET display_name = inp.display_name, updated_at = now() FROM inp"                  \
	" WHERE x.company_id = $1 AND x." key " = inp." key " AND x.display_name <> inp.display_name RETURNING 1), "   \
	"ins AS (INSERT INTO " table " (company_id, " key ", display_name) SELECT $1, " key ", display_name FROM inp"  \
	" ON CONFLICT (company_id, " key ") DO NOTHING RETURNING 1), "                                                 \
	"off AS (UPDATE " table " x SET is_active = false, updated_at = now() WHERE x.company_id = $1 AND x.is_active" \
	" AND x." key " NOT IN (SELECT " key " FROM inp) RETURNING 1) "                                                \
	"SELECT (SELECT count(*) FROM inp), (SELECT count(*) FROM ins), (SELECT count(*) FROM upd),"                   \
	" (SELECT count(*) FROM off)"

static const struct reg_kind reg_scenarios = {
    "scenarios", "name", 128, REG_SQL("scenarios", "name"), "scenarios_registered",
};
static const struct reg_kind reg_lines = {
    "outbound_lines", "phone_number", 32, REG_SQL("outbound_lines", "phone_number"), "outbound_lines_registered",
};

#define REG_ITEMS_MAX 10000

struct reg_state {
	const struct reg_kind *kind;
	char *items; /* the validated items as JSON */
};

static void reg_state_free(void *p)
{
	struct reg_state *s = p;
	free(s->items);
	free(s);
}

static long col(PGresult *res, int i)
{
	return strtol(PQgetvalue(res, 0, i), NULL, 10);
}

static void registered(struct http_ctx *c, PGresult *res)
{
	struct reg_state *s = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	log_info("event=%s company=%s registered=%ld created=%ld updated=%ld deactivated=%ld", s->kind->log_event,
	         c->company, col(res, 0), col(res, 1), col(res, 2), col(res, 3));
	http_reply_json(c, 200,
	                json_pack("{s:I, s:I, s:I, s:I}", "registered", (json_int_t)col(res, 0), "created",
	                          (json_int_t)col(res, 1), "updated", (json_int_t)col(res, 2), "deactivated",
	                          (json_int_t)col(res, 3)));
}

static void reg_company(struct http_ctx *c)
{
	struct reg_state *s = c->state;
	char cid[24];
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	const char *p[2] = {cid, s->items};
	http_db(c, s->kind->sql, 2, p, registered);
}

/* A string of 1..max characters at item[key]; 422 naming "list[i].key". */
static int item_str_or_reply(struct http_ctx *c, json_t *item, const char *list, size_t i, const char *key, size_t max)
{
	char label[96];
	const char *v;
	snprintf(label, sizeof(label), "%s[%zu].%s", list, i, key);
	return field_str_in_or_reply(c, item, key, label, 1, max, true, &v);
}

static void reg_start(struct http_ctx *c, const struct reg_kind *kind)
{
	const char *company;
	json_t *list, *item;
	size_t i;
	if (field_object_or_reply(c, true) || field_str_or_reply(c, "company", 1, 64, false, &company))
		return;
	list = json_object_get(c->body, kind->list);
	if (!json_is_array(list)) {
		http_invalid(c, kind->list, !list || json_is_null(list) ? "field required" : "must be an array");
		return;
	}
	if (json_array_size(list) > REG_ITEMS_MAX) {
		http_invalid(c, kind->list, "at most 10000 items");
		return;
	}
	json_array_foreach(list, i, item)
	{
		const char *k;
		json_t *v;
		char field[96];
		if (!json_is_object(item)) {
			snprintf(field, sizeof(field), "%s[%zu]", kind->list, i);
			http_invalid(c, field, "must be an object");
			return;
		}
		/* extra=forbid, as the original's item models */
		json_object_foreach(item, k, v) if (strcmp(k, kind->key) && strcmp(k, "display_name"))
		{
			snprintf(field, sizeof(field), "%s[%zu].%s", kind->list, i, k);
			http_invalid(c, field, "extra fields not permitted");
			return;
		}
		if (item_str_or_reply(c, item, kind->list, i, kind->key, kind->key_max) ||
		    item_str_or_reply(c, item, kind->list, i, "display_name", 255))
			return;
	}
	struct reg_state *s = xcalloc(1, sizeof(*s));
	s->kind = kind;
	s->items = json_dumps(list, JSON_COMPACT);
	c->state = s;
	c->state_free = reg_state_free;
	dialer_company(c, company, reg_company);
}

static void register_scenarios(struct http_ctx *c)
{
	reg_start(c, &reg_scenarios);
}

static void register_lines(struct http_ctx *c)
{
	reg_start(c, &reg_lines);
}

/* ---- next-batch (COMPAT §2.10, §3.3; issue 5 item 1) ---- */

/* size: COMPAT validates 1..500; MAX_BATCH_SIZE caps what is returned. */
#define NEXT_BATCH_SIZE_MAX 500

struct next_batch {
	long size;
	char batch_id[33];
	time_t now;
	bool allowed;
	char reason[40];
	int retry;
	long version;
	struct callstate cs;
	bool cs_loaded;
};

static void next_batch_free(void *p)
{
	struct next_batch *nb = p;
	if (nb->cs_loaded)
		callstate_free(&nb->cs);
	free(nb);
}

/* The response's header keys (COMPAT §2.10), every one always present. */
static json_t *next_batch_head(struct http_ctx *c)
{
	struct next_batch *nb = c->state;
	char now[40];
	tz_format_local(nb->now, now, sizeof(now));
	return json_pack("{s:b, s:s, s:s, s:I, s:o, s:o}", "call_allowed", nb->allowed, "timezone", tz_name(),
	                 "server_time", now, "schedule_version", (json_int_t)nb->version, "reason",
	                 nb->allowed ? json_null() : json_string(nb->reason), "retry_after_seconds",
	                 nb->allowed ? json_null() : json_integer(nb->retry));
}

static void next_batch_blocked(struct http_ctx *c)
{
	struct next_batch *nb = c->state;
	json_t *out = next_batch_head(c);
	json_object_set_new(out, "batch", json_null());
	static const char *const lists[] = {"active_scenarios", "outbound_lines", "inbound_agents", "outbound_agents",
	                                    "active_agents"};
	for (size_t i = 0; i < ARRAY_LEN(lists); i++)
		json_object_set_new(out, lists[i], json_array());
	metrics_count("next_batch_blocked", 1);
	log_debug("event=next_batch_blocked company=%s reason=%s", c->company, nb->reason);
	http_reply_json(c, 200, out);
}

static json_t *json_col(PGresult *res, int col)
{
	json_t *j = json_loads(PQgetvalue(res, 0, col), 0, NULL);
	return j ? j : json_array();
}

/*
 * Where each company's last batch ended, per loop thread. Without it every
 * batch scans from the lowest id past every number earlier batches locked
 * (and their dead index entries, until vacuum): the cost grows with the
 * numbers handed out. With it a batch starts after the previous one and
 * wraps around to the start when it runs out; the cursor is forgotten after
 * NEXT_BATCH_CURSOR_TTL_MS so that numbers made dialable again below it (a
 * reset, an expired lock or cooldown) are served oldest first within that
 * time.
 */
#define NEXT_BATCH_CURSOR_TTL_MS 30000
#define NEXT_BATCH_CURSORS       64

static __thread struct batch_cursor {
	long company_id;
	long long last_id;
	uint64_t expires_ns;
} batch_cursors[NEXT_BATCH_CURSORS];

static struct batch_cursor *batch_cursor(long company_id)
{
	return &batch_cursors[(unsigned long)company_id % NEXT_BATCH_CURSORS];
}

static long long batch_cursor_get(long company_id)
{
	struct batch_cursor *bc = batch_cursor(company_id);
	if (bc->company_id != company_id || util_now_ns() >= bc->expires_ns)
		return 0;
	return bc->last_id;
}

static void batch_cursor_set(long company_id, long long last_id)
{
	struct batch_cursor *bc = batch_cursor(company_id);
	if (bc->company_id != company_id || util_now_ns() >= bc->expires_ns) {
		bc->company_id = company_id;
		bc->expires_ns = util_now_ns() + (uint64_t)NEXT_BATCH_CURSOR_TTL_MS * 1000000u;
	}
	bc->last_id = last_id;
}

static void batch_picked(struct http_ctx *c, PGresult *res)
{
	struct next_batch *nb = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	long returned = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	if (!PQgetisnull(res, 0, 7))
		batch_cursor_set(c->company_id, strtoll(PQgetvalue(res, 0, 7), NULL, 10));
	json_t *out = next_batch_head(c);
	json_object_set_new(out, "batch",
	                    json_pack("{s:s, s:I, s:I, s:o}", "batch_id", nb->batch_id, "size_requested",
	                              (json_int_t)nb->size, "size_returned", (json_int_t)returned, "numbers",
	                              json_col(res, 1)));
	json_object_set_new(out, "active_scenarios", json_col(res, 2));
	json_object_set_new(out, "outbound_lines", json_col(res, 3));
	json_object_set_new(out, "inbound_agents", json_col(res, 4));
	json_object_set_new(out, "outbound_agents", json_col(res, 5));
	json_object_set_new(out, "active_agents", json_col(res, 6));
	metrics_count("next_batch_numbers", returned);
	log_info("event=next_batch company=%s batch=%s requested=%ld returned=%ld", c->company, nb->batch_id, nb->size,
	         returned);
	http_reply_json(c, 200, out);
}

/* COMPAT §3.3 step 4: ACTIVE, not locked, outside the cooldown, never
 * dialed by this company since its last reset. */
#define CANDIDATE                                                                                      \
	"SELECT n.id FROM numbers n WHERE n.global_status = 'ACTIVE' AND n.assigned_at IS NULL"        \
	" AND (n.last_called_at IS NULL OR n.last_called_at < now() - make_interval(days => $4::int))" \
	" AND NOT EXISTS (SELECT 1 FROM number_state s WHERE s.company_id = $1::int AND s.number_id = n.id)"

/*
 * One statement: candidates after the cursor, then from the start if those
 * were too few, in id order, locked with SKIP LOCKED so concurrent dialers
 * never wait for nor share a number; marked with the batch; the batch
 * recorded (even empty); and the company's active scenarios, lines and
 * agents, as JSON; and where the batch ended, for the cursor.
 */
static void pick_batch(struct http_ctx *c)
{
	struct next_batch *nb = c->state;
	char cid[24], size[24], cooldown[24], cursor[24];
	if (util_random_hex(nb->batch_id, 16)) {
		http_error(c, 500, "INTERNAL_ERROR", "cannot generate a batch id");
		return;
	}
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	snprintf(size, sizeof(size), "%ld", nb->size);
	snprintf(cooldown, sizeof(cooldown), "%d", cfg.call_cooldown_days);
	snprintf(cursor, sizeof(cursor), "%lld", batch_cursor_get(c->company_id));
	const char *p[5] = {cid, size, nb->batch_id, cooldown, cursor};
	http_db(
	    c,
	    "WITH hi AS (" CANDIDATE " AND n.id > $5::bigint ORDER BY n.id LIMIT $2::int FOR UPDATE OF n SKIP LOCKED),"
	    " lo AS (" CANDIDATE " AND n.id <= $5::bigint ORDER BY n.id"
	    "  LIMIT ($2::int - (SELECT count(*) FROM hi)) FOR UPDATE OF n SKIP LOCKED),"
	    " upd AS (UPDATE numbers n SET assigned_at = now(), assigned_batch_id = $3, assigned_company_id = $1::int"
	    "  WHERE n.id IN (SELECT id FROM hi UNION ALL SELECT id FROM lo) RETURNING n.id, n.phone_number),"
	    " bat AS (INSERT INTO dialer_batches (id, company_id, requested_size, returned_size, number_ids)"
	    "  SELECT $3, $1::int, $2::int, count(*), COALESCE(array_agg(id), '{}') FROM upd RETURNING returned_size),"
	    " ag AS (SELECT id, COALESCE(NULLIF(btrim(concat_ws(' ', first_name, last_name)), ''), username)"
	    "  AS full_name, phone_number, agent_type FROM users"
	    "  WHERE company_id = $1::int AND role = 'AGENT' AND is_active)"
	    " SELECT (SELECT returned_size FROM bat),"
	    " COALESCE((SELECT json_agg(json_build_object('id', id, 'phone_number', phone_number) ORDER BY id)"
	    "  FROM upd), '[]'),"
	    " COALESCE((SELECT json_agg(json_build_object('id', id, 'name', name, 'display_name', display_name)"
	    "  ORDER BY id) FROM scenarios WHERE company_id = $1::int AND is_active), '[]'),"
	    " COALESCE((SELECT json_agg(json_build_object('id', id, 'phone_number', phone_number, 'display_name',"
	    "  display_name) ORDER BY id) FROM outbound_lines WHERE company_id = $1::int AND is_active), '[]'),"
	    " COALESCE((SELECT json_agg(json_build_object('id', id, 'full_name', full_name, 'phone_number',"
	    "  phone_number) ORDER BY id) FROM ag WHERE agent_type IN ('INBOUND', 'BOTH')), '[]'),"
	    " COALESCE((SELECT json_agg(json_build_object('id', id, 'full_name', full_name, 'phone_number',"
	    "  phone_number) ORDER BY id) FROM ag WHERE agent_type IN ('OUTBOUND', 'BOTH')), '[]'),"
	    " COALESCE((SELECT json_agg(json_build_object('id', id, 'full_name', full_name, 'phone_number',"
	    "  phone_number) ORDER BY id) FROM ag), '[]'),"
	    " COALESCE((SELECT max(id) FROM lo), (SELECT max(id) FROM hi))",
	    5, p, batch_picked);
}

static void decided(struct http_ctx *c)
{
	struct next_batch *nb = c->state;
	if (nb->allowed)
		pick_batch(c);
	else
		next_batch_blocked(c);
}

static void auto_disabled(struct http_ctx *c, PGresult *res)
{
	struct next_batch *nb = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) == 1) {
		nb->version = strtol(PQgetvalue(res, 0, 0), NULL, 10);
		log_info("event=company_auto_disabled company=%s reason=insufficient_funds version=%ld", c->company,
		         nb->version);
	}
	decided(c);
}

/*
 * Blocked by an empty wallet: COMPAT §3.6 step 1 persists the disable, here on
 * the dialer path as in the original (the scheduler only publishes). The
 * UPDATE re-checks both conditions, so an already disabled or meanwhile
 * funded company is left alone (and keeps its version).
 */
static void decided_or_disable(struct http_ctx *c)
{
	struct next_batch *nb = c->state;
	char cid[24];
	if (nb->allowed || strcmp(nb->reason, "insufficient_funds")) {
		decided(c);
		return;
	}
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	const char *p[1] = {cid};
	http_db(c,
	        "UPDATE company_config SET enabled = false, disabled_by_dialer = true, version = version + 1,"
	        " updated_at = now() WHERE company_id = $1 AND enabled AND wallet_balance <= 0 RETURNING version",
	        1, p, auto_disabled);
}

/* The database's answer (the published state was missing or stale). */
static void callstate_loaded(struct http_ctx *c, PGresult *res)
{
	struct next_batch *nb = c->state;
	struct callstate_result r;
	if (!company_config_ok_or_reply(c, res))
		return;
	if (callstate_from_result(res, 0, &nb->cs)) {
		http_error(c, 500, "INTERNAL_ERROR", "cannot read the company's schedule");
		return;
	}
	nb->cs_loaded = true;
	callstate_decide(&nb->cs, nb->now, cfg.short_retry_seconds, cfg.long_retry_seconds, &r);
	nb->allowed = r.decision.allowed;
	nb->retry = r.decision.retry_after;
	nb->version = nb->cs.version;
	snprintf(nb->reason, sizeof(nb->reason), "%s", nb->allowed ? "" : callrule_reason_str(r.decision.reason));
	metrics_count("next_batch_state_from_db", 1);
	if (!nb->cs.enabled) {
		decided(c); /* already disabled: nothing to persist */
		return;
	}
	decided_or_disable(c);
}

static void published_read(struct http_ctx *c, redisReply *reply)
{
	struct next_batch *nb = c->state;
	struct callstate_published pub;
	long long now_ms = util_wall_us() / 1000;
	if (reply && reply->type == REDIS_REPLY_STRING && callstate_published_parse(reply->str, now_ms, &pub) == 0) {
		nb->allowed = pub.allowed;
		nb->retry = pub.retry_after;
		nb->version = pub.version;
		snprintf(nb->reason, sizeof(nb->reason), "%s", pub.reason);
		metrics_count("next_batch_state_from_redis", 1);
		decided_or_disable(c);
		return;
	}
	/* missing, stale or Redis unavailable: decide from the database */
	char cid[24];
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	const char *p[2] = {cid, cfg.skip_holidays ? "true" : "false"};
	http_db(c, CALLSTATE_SQL, 2, p, callstate_loaded);
}

static void next_batch_company(struct http_ctx *c)
{
	char key[48];
	snprintf(key, sizeof(key), CALLSTATE_KEY_FMT, c->company_id);
	const char *argv[2] = {"GET", key};
	http_redis(c, published_read, 2, argv, NULL);
}

static void next_batch(struct http_ctx *c)
{
	long size;
	if (query_long_or_reply(c, "size", 1,
	                        NEXT_BATCH_SIZE_MAX > cfg.max_batch_size ? NEXT_BATCH_SIZE_MAX : cfg.max_batch_size,
	                        cfg.default_batch_size, &size))
		return;
	if (size > cfg.max_batch_size)
		size = cfg.max_batch_size;
	struct next_batch *nb = xcalloc(1, sizeof(*nb));
	nb->size = size;
	nb->now = time(NULL);
	c->state = nb;
	c->state_free = next_batch_free;
	dialer_company(c, http_query(c, "company"), next_batch_company);
}

/* ---- report-result (COMPAT §2.10, §3.5; issue 5 item 2) ---- */

#define REPORT_FIELDS_MAX 40

/* The validated report, as the stream entry's field/value pairs. */
struct report {
	const char *argv[2 + 2 * REPORT_FIELDS_MAX + 1];
	int argc;
	char *owned[REPORT_FIELDS_MAX];
	int nowned;
	int call_allowed; /* -1 absent */
};

static void report_free(void *p)
{
	struct report *r = p;
	for (int i = 0; i < r->nowned; i++)
		free(r->owned[i]);
	free(r);
}

/* Appends a field; value copied (NULL or "" are skipped: absent). */
static void report_add(struct report *r, const char *name, const char *value)
{
	if (!value || !*value)
		return;
	char *v = xstrdup(value);
	r->owned[r->nowned++] = v;
	r->argv[r->argc++] = name;
	r->argv[r->argc++] = v;
}

static void report_add_int(struct report *r, const char *name, bool given, long long v)
{
	char buf[24];
	if (!given)
		return;
	snprintf(buf, sizeof(buf), "%lld", v);
	report_add(r, name, buf);
}

static void report_queued(struct http_ctx *c, redisReply *reply)
{
	if (!reply || reply->type != REDIS_REPLY_STRING) {
		metrics_count("report_result_redis_failed", 1);
		http_error(c, 503, "UNAVAILABLE", "Result store unavailable, retry later");
		return;
	}
	metrics_count("report_result_accepted", 1);
	http_reply_json(c, 202, json_pack("{s:b, s:s#}", "accepted", 1, "stream_id", reply->str, (int)reply->len));
}

static void report_enqueue(struct http_ctx *c)
{
	struct report *r = c->state;
	char cid[24];
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	report_add(r, "company_id", cid);
	report_add(r, "company", c->company);
	/* No MAXLEN here: trimming would drop entries nobody has applied yet; the
	 * results worker trims what every group has acknowledged. */
	r->argv[0] = "XADD";
	r->argv[1] = STREAM_RESULTS;
	/* argv[2] is "*" (placed by report_start) */
	http_redis(c, report_queued, r->argc, r->argv, NULL);
}

static void switch_set(struct http_ctx *c, PGresult *res)
{
	if (!http_db_ok_or_reply(c, res))
		return;
	log_info("event=dialer_switch company=%s call_allowed=%d version=%s", c->company,
	         ((struct report *)c->state)->call_allowed, PQgetvalue(res, 0, 0));
	company_callstate_drop_then(c, report_enqueue);
}

static void report_company(struct http_ctx *c)
{
	struct report *r = c->state;
	if (r->call_allowed < 0) {
		report_enqueue(c);
		return;
	}
	char cid[24];
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	const char *p[3] = {cid, r->call_allowed ? "true" : "false", cfg.skip_holidays ? "true" : "false"};
	http_db(c, "SELECT company_call_allowed_set($1, $2, $3)", 3, p, switch_set);
}

static void report_result(struct http_ctx *c)
{
	const char *company, *phone, *status, *attempted, *reason, *agent_phone, *message, *batch;
	bool has_number, has_scenario, has_line, has_agent;
	long long number_id, scenario_id, line_id, agent_id;
	int call_allowed;
	int64_t at_us;
	char norm[12] = "", agent_norm[12] = "", at[24], now[24];

	if (field_object_or_reply(c, true) || field_str_or_reply(c, "company", 1, 64, false, &company) ||
	    field_str_or_reply(c, "phone_number", 0, PHONE_INPUT_MAX, true, &phone) ||
	    field_enum_or_reply(c, "status", selection_call_statuses, &status) ||
	    field_str_or_reply(c, "attempted_at", 1, 64, true, &attempted) ||
	    field_int_or_reply(c, "number_id", 1, 9007199254740991LL, false, &has_number, &number_id) ||
	    field_int_or_reply(c, "scenario_id", 1, 2147483647LL, false, &has_scenario, &scenario_id) ||
	    field_int_or_reply(c, "outbound_line_id", 1, 2147483647LL, false, &has_line, &line_id) ||
	    field_int_or_reply(c, "agent_id", 1, 2147483647LL, false, &has_agent, &agent_id) ||
	    field_str_or_reply(c, "reason", 0, 1024, false, &reason) ||
	    field_str_or_reply(c, "agent_phone", 0, PHONE_INPUT_MAX, false, &agent_phone) ||
	    field_str_or_reply(c, "user_message", 0, 4096, false, &message) ||
	    field_str_or_reply(c, "batch_id", 0, 64, false, &batch) ||
	    field_bool_or_reply(c, "call_allowed", &call_allowed))
		return;
	if (!status) {
		http_invalid(c, "status", "field required");
		return;
	}
	if (tz_parse_instant(attempted, &at_us)) {
		http_invalid(c, "attempted_at",
		             "must be an ISO 8601 datetime with an offset, e.g. 2026-02-18T10:00:00+03:30");
		return;
	}
	if (phone_normalize(phone, norm) && !has_number) {
		http_error(c, 400, "BAD_REQUEST", "phone_number or number_id is required");
		return;
	}
	if (agent_phone && phone_normalize(agent_phone, agent_norm))
		agent_norm[0] = '\0'; /* as the original: an unusable agent phone names no agent */

	struct report *r = xcalloc(1, sizeof(*r));
	c->state = r;
	c->state_free = report_free;
	r->call_allowed = call_allowed;
	r->argc = 3;
	r->argv[2] = "*";
	snprintf(at, sizeof(at), "%lld", (long long)at_us);
	snprintf(now, sizeof(now), "%lld", (long long)util_wall_us());
	report_add(r, "v", "1");
	report_add(r, "phone", norm);
	report_add(r, "phone_raw", phone);
	report_add_int(r, "number_id", has_number, number_id);
	report_add(r, "status", status);
	report_add(r, "attempted_at", at);
	report_add_int(r, "scenario_id", has_scenario, scenario_id);
	report_add_int(r, "outbound_line_id", has_line, line_id);
	report_add_int(r, "agent_id", has_agent, agent_id);
	report_add(r, "agent_phone", agent_norm);
	report_add(r, "reason", reason);
	report_add(r, "user_message", message);
	report_add(r, "batch_id", batch);
	if (call_allowed >= 0)
		report_add(r, "call_allowed", call_allowed ? "1" : "0");
	report_add(r, "rid", c->rid);
	report_add(r, "accepted_at", now); /* wall clock, µs: the worker measures ingestion lag from it */
	dialer_company(c, company, report_company);
}

static const struct route routes[] = {
    {"GET", "/api/dialer/next-batch", next_batch, AUTH_DIALER, 0},
    {"POST", "/api/dialer/report-result", report_result, AUTH_DIALER, RF_JSON},
    {"POST", "/api/dialer/register-scenarios", register_scenarios, AUTH_DIALER, RF_JSON},
    {"POST", "/api/dialer/register-outbound-lines", register_lines, AUTH_DIALER, RF_JSON},
};

void dialer_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
