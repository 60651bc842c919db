/*
 * The dialer's API (/api/dialer, COMPAT §2.10): next-batch (the call-allowed
 * state, then one Redis script that pops, locks and records a batch from the
 * company's hopper, which the API refills in bulk from PostgreSQL),
 * report-result (validated,
 * appended to the results stream, answered 202 once Redis has it) and the
 * registration of scenarios and outbound lines (§3.7). Bearer DIALER_TOKEN,
 * or a per-company dialer token that implies the company.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "callstate.h"
#include "config.h"
#include "hopper.h"
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

/* The lists a batch carries (COMPAT §3.3 step 7; active_agents is seed 000's). */
enum { L_SCENARIOS, L_LINES, L_INBOUND, L_OUTBOUND, L_AGENTS, L_COUNT };
static const char *const list_keys[L_COUNT] = {"active_scenarios", "outbound_lines", "inbound_agents",
                                               "outbound_agents", "active_agents"};

struct next_batch {
	long size;
	json_t *lists[L_COUNT]; /* this batch's references to the cached lists */
	char batch_id[33];
	json_t *numbers;     /* popped so far: [{id, phone_number}] */
	struct buf ids;      /* their ids, comma-separated (the batch record) */
	uint64_t started_ns; /* a short batch waits for refills from then on (next_batch_waited) */
	int pops;
	bool final;
	bool by_text; /* EVAL instead of EVALSHA (Redis did not know the script) */
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
	json_decref(nb->numbers);
	for (int i = 0; i < L_COUNT; i++)
		json_decref(nb->lists[i]);
	free(nb->ids.p);
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
	for (int i = 0; i < L_COUNT; i++)
		json_object_set_new(out, list_keys[i], json_array());
	metrics_count("next_batch_blocked", 1);
	log_debug("event=next_batch_blocked company=%s reason=%s", c->company, nb->reason);
	http_reply_json(c, 200, out);
}

/* ---- the hopper (common/hopper.h; docs/architecture.md "next-batch") ---- */

/*
 * The company's active scenarios, lines and agents (COMPAT §3.3 step 7), per
 * loop thread for NEXT_BATCH_LISTS_TTL_MS: a batch then costs no database
 * round trip at all. A change (a registration, an agent added) reaches the
 * dialers within that time.
 */
#define NEXT_BATCH_LISTS_TTL_MS 1000
#define NEXT_BATCH_LISTS_SLOTS  64

static __thread struct lists_slot {
	long company_id;
	uint64_t expires_ns;
	json_t *lists[L_COUNT];
} lists_cache[NEXT_BATCH_LISTS_SLOTS];

static const char LISTS_SQL[] =
    "WITH ag AS (SELECT id, COALESCE(NULLIF(btrim(concat_ws(' ', first_name, last_name)), ''), username)"
    "  AS full_name, phone_number, agent_type FROM users"
    "  WHERE company_id = $1::int AND role = 'AGENT' AND is_active)"
    " SELECT COALESCE((SELECT json_agg(json_build_object('id', id, 'name', name, 'display_name', display_name)"
    "  ORDER BY id) FROM scenarios WHERE company_id = $1::int AND is_active), '[]'),"
    " COALESCE((SELECT json_agg(json_build_object('id', id, 'phone_number', phone_number, 'display_name',"
    "  display_name) ORDER BY id) FROM outbound_lines WHERE company_id = $1::int AND is_active), '[]'),"
    " COALESCE((SELECT json_agg(json_build_object('id', id, 'full_name', full_name, 'phone_number',"
    "  phone_number) ORDER BY id) FROM ag WHERE agent_type IN ('INBOUND', 'BOTH')), '[]'),"
    " COALESCE((SELECT json_agg(json_build_object('id', id, 'full_name', full_name, 'phone_number',"
    "  phone_number) ORDER BY id) FROM ag WHERE agent_type IN ('OUTBOUND', 'BOTH')), '[]'),"
    " COALESCE((SELECT json_agg(json_build_object('id', id, 'full_name', full_name, 'phone_number',"
    "  phone_number) ORDER BY id) FROM ag), '[]')";

static struct lists_slot *lists_slot(long company_id)
{
	return &lists_cache[(unsigned long)company_id % NEXT_BATCH_LISTS_SLOTS];
}

/*
 * Per loop thread and company: whether this thread runs a refill now, and how
 * many numbers its last one read (the low-water mark).
 */
#define NEXT_BATCH_COLD_MS 10000
#define HOPPER_SLOTS       64

static __thread struct hopper_slot {
	long company_id;
	long k;
	bool running;
} hopper_slots[HOPPER_SLOTS];

static struct hopper_slot *hopper_slot(long company_id)
{
	struct hopper_slot *s = &hopper_slots[(unsigned long)company_id % HOPPER_SLOTS];
	if (s->company_id != company_id && !s->running)
		*s = (struct hopper_slot){.company_id = company_id, .k = HOPPER_REFILL_MIN};
	return s->company_id == company_id ? s : NULL;
}

/* One refill, detached from the request that started it (it may reply meanwhile). */
struct refill {
	struct api_thread *thr;
	long company_id;
	long size;        /* of the batch that started it */
	long k;           /* numbers read (asked for) */
	int rows;         /* numbers read */
	bool whole;       /* the read saw the company's whole pool (it found fewer than asked) */
	bool wrapped;     /* the walk went past the highest id, on from the lowest */
	bool steal;       /* take over what other hoppers merely hold */
	int parts;        /* HOPPER_FILL_LUA calls not answered yet */
	long long pushed; /* by the parts answered */
	bool failed;      /* a part failed, or found a flush */
	char epoch[24];
	char fill_ms[24];
	char keys[4][64]; /* list, meta, refill lock, dry */
};

static void refill_go(struct api_thread *thr, long company_id, long size);

/* A refill pushes in parts of this many numbers, so that Redis serves pops between them. */
#define HOPPER_FILL_PART 2000

static void refill_end(struct refill *r)
{
	struct hopper_slot *s = hopper_slot(r->company_id);
	if (s)
		s->running = false;
	free(r);
}

static void refill_unlock(struct refill *r)
{
	const char *argv[2] = {"DEL", r->keys[2]};
	rds_command(r->thr->redis, NULL, NULL, 2, argv, NULL);
	refill_end(r);
}

/* The read saw the whole pool, or went round while already taking held numbers over (a
 * round of the walk since a read first went round): more reads would find no more. */
static bool refill_went_round(const struct refill *r)
{
	return r->whole || (r->wrapped && r->steal);
}

static void refill_filled(redisReply *reply, void *arg)
{
	struct refill *r = arg;
	if (!reply || reply->type != REDIS_REPLY_INTEGER) {
		if (!r->failed)
			log_warn("event=hopper_fill_failed company_id=%ld error=\"%s\"", r->company_id,
			         reply && reply->str ? reply->str : "redis unavailable");
		r->failed = true;
	} else if (reply->integer < 0)
		r->failed = true; /* a flush since the refill began: nothing of it may be dispatched */
	else
		r->pushed += reply->integer;
	if (--r->parts > 0)
		return;
	metrics_count("hopper_refills", 1);
	metrics_count("hopper_numbers_pushed", (uint64_t)r->pushed);
	log_debug("event=hopper_refilled company_id=%ld read=%d asked=%ld pushed=%lld flushed=%d", r->company_id,
	          r->rows, r->k, r->pushed, r->failed);
	/* most of what it read is held by other companies' hoppers: read on past them at once, twice
	 * as far (kept in the meta, so that whichever refill of the company comes next does), instead
	 * of waiting for a pop to find the hopper low */
	bool chase = !r->failed && !refill_went_round(r) && r->pushed * 2 < r->rows;
	char far[24];
	snprintf(far, sizeof(far), "%ld", 2L * r->rows > HOPPER_REFILL_MAX ? HOPPER_REFILL_MAX : 2L * r->rows);
	/* a chase that went round takes over held numbers from then on, until it finds enough */
	const char *set[] = {"HSET", r->keys[1], "chase", far, "steal", r->steal || r->wrapped ? "1" : "0"},
	           *del[] = {"HDEL", r->keys[1], "chase", "steal"};
	if (!r->failed)
		rds_command(r->thr->redis, NULL, NULL, chase ? 6 : 4, chase ? set : del, NULL);
	struct api_thread *thr = r->thr;
	long company_id = r->company_id, size = r->size;
	refill_end(r);
	if (chase)
		refill_go(thr, company_id, size);
}

static void refill_read(PGresult *res, void *arg)
{
	struct refill *r = arg;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warn("event=hopper_read_failed company_id=%ld error=\"%s\"", r->company_id,
		         res ? PQresultErrorMessage(res) : "database unavailable");
		refill_unlock(r);
		return;
	}
	int rows = PQntuples(res);
	/* fewer than asked: the read saw the company's whole pool, so what other hoppers merely hold
	 * is taken over (so it is by a read that went round, or follows one that did: refill_filled),
	 * and an empty hopper after it, or after a whole round of taking over, means nothing to find
	 * (the company rests HOPPER_DRY_MS) */
	r->rows = rows;
	r->whole = rows < r->k;
	r->wrapped = rows > 0 && !strcmp(PQgetvalue(res, rows - 1, 2), "t");
	char cid[24], cursor[24], dry_ms[16], now_ms[24], hold_ms[16];
	snprintf(cid, sizeof(cid), "%ld", r->company_id);
	snprintf(cursor, sizeof(cursor), "%s", rows ? PQgetvalue(res, rows - 1, 0) : "0");
	snprintf(dry_ms, sizeof(dry_ms), "%d", HOPPER_DRY_MS);
	snprintf(hold_ms, sizeof(hold_ms), "%d", HOPPER_MAX_AGE_MS);
	snprintf(now_ms, sizeof(now_ms), "%lld", (long long)(util_wall_us() / 1000));
	enum { FIXED = 3 + 7 + 10 };
	int part = rows < HOPPER_FILL_PART ? rows : HOPPER_FILL_PART;
	const char **argv = xmalloc((size_t)(FIXED + 2 * part) * sizeof(*argv));
	char **entries = xmalloc((size_t)(part ? part : 1) * sizeof(*entries));
	r->parts = rows ? (rows + HOPPER_FILL_PART - 1) / HOPPER_FILL_PART : 1;
	for (int from = 0, n = r->parts; n > 0; n--, from += HOPPER_FILL_PART) {
		int m = rows - from < part ? rows - from : part, argc = 0;
		argv[argc++] = "EVAL";
		argv[argc++] = HOPPER_FILL_LUA;
		argv[argc++] = "7";
		argv[argc++] = r->keys[0];
		argv[argc++] = HOPPER_LOCKS;
		argv[argc++] = HOPPER_EPOCH;
		argv[argc++] = r->keys[1];
		argv[argc++] = r->keys[2];
		argv[argc++] = r->keys[3];
		argv[argc++] = HOPPER_SET;
		argv[argc++] = r->epoch;
		argv[argc++] = now_ms;
		argv[argc++] = r->fill_ms;
		argv[argc++] = cursor;
		argv[argc++] = refill_went_round(r) ? "1" : "0";
		argv[argc++] = cid;
		argv[argc++] = dry_ms;
		argv[argc++] = r->whole || r->wrapped || r->steal ? "1" : "0";
		argv[argc++] = n == 1 ? "1" : "0";
		argv[argc++] = hold_ms;
		for (int i = 0; i < m; i++)
			argv[argc++] = PQgetvalue(res, from + i, 0);
		for (int i = 0; i < m; i++) {
			entries[i] = xasprintf("%s:%s:%s", PQgetvalue(res, from + i, 0), PQgetvalue(res, from + i, 1),
			                       r->fill_ms);
			argv[argc++] = entries[i];
		}
		rds_command(r->thr->redis, refill_filled, r, argc, argv, NULL);
		for (int i = 0; i < m; i++)
			free(entries[i]);
	}
	free(entries);
	free(argv);
}

/*
 * How many numbers a refill reads: the company's demand over
 * NEXT_BATCH_AHEAD_MS (what left the list since the last refill, over the
 * time since), at least four batches and HOPPER_REFILL_MIN, at most
 * HOPPER_REFILL_MAX. A hopper holds its numbers away from the other
 * companies: no more than it needs until the next refill is in. After a
 * refill that found most of its numbers held by other hoppers, the next reads
 * twice as far (chase), so that the walk gets past them, or round.
 */
#define NEXT_BATCH_AHEAD_MS 250

static long refill_size(long size, redisReply **meta)
{
	const redisReply *after = meta[0], *at = meta[1], *chase = meta[2], *len = meta[4];
	long k = 4 * size > HOPPER_REFILL_MIN ? 4 * size : HOPPER_REFILL_MIN;
	if (after->type == REDIS_REPLY_STRING && at->type == REDIS_REPLY_STRING && len->type == REDIS_REPLY_INTEGER) {
		long long gone = strtoll(after->str, NULL, 10) - len->integer;
		long long dt = (long long)(util_wall_us() / 1000) - strtoll(at->str, NULL, 10);
		if (gone > 0 && dt < NEXT_BATCH_COLD_MS) {
			long long ahead = gone * NEXT_BATCH_AHEAD_MS / (dt > 0 ? dt : 1);
			if (ahead > k)
				k = ahead > HOPPER_REFILL_MAX ? HOPPER_REFILL_MAX : (long)ahead;
		}
	}
	if (chase->type == REDIS_REPLY_STRING && strtol(chase->str, NULL, 10) > k)
		k = strtol(chase->str, NULL, 10);
	return k > HOPPER_REFILL_MAX ? HOPPER_REFILL_MAX : k;
}

static void refill_begun(redisReply *reply, void *arg)
{
	struct refill *r = arg;
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 8 ||
	    reply->element[0]->type != REDIS_REPLY_INTEGER || reply->element[0]->integer != 1 ||
	    reply->element[1]->type != REDIS_REPLY_STRING || reply->element[2]->type != REDIS_REPLY_STRING) {
		refill_end(r); /* another refill runs, the company is dry, or Redis is away */
		return;
	}
	snprintf(r->epoch, sizeof(r->epoch), "%s", reply->element[1]->str);
	r->k = refill_size(r->size, reply->element + 3);
	r->steal = reply->element[6]->type == REDIS_REPLY_STRING && !strcmp(reply->element[6]->str, "1");
	struct hopper_slot *s = hopper_slot(r->company_id);
	if (s)
		s->k = r->k;
	char cid[24], k[24], cooldown[24];
	snprintf(cid, sizeof(cid), "%ld", r->company_id);
	snprintf(k, sizeof(k), "%ld", r->k);
	snprintf(cooldown, sizeof(cooldown), "%d", cfg.call_cooldown_days);
	/* entries carry the time the read started: a result committed after it is covered by the
	 * lock's grace, an entry older than HOPPER_MAX_AGE_MS is not dispatched */
	snprintf(r->fill_ms, sizeof(r->fill_ms), "%lld", (long long)(util_wall_us() / 1000));
	const char *p[4] = {cid, k, cooldown, reply->element[2]->str};
	pgpool_query(r->thr->db, HOPPER_CANDIDATES_SQL, 4, p, refill_read, r);
}

/* Starts a refill of the company's hopper unless this thread runs one already. */
static void refill_go(struct api_thread *thr, long company_id, long size)
{
	struct hopper_slot *s = hopper_slot(company_id);
	if (!s || s->running)
		return;
	s->running = true;
	struct refill *r = xcalloc(1, sizeof(*r));
	r->thr = thr;
	r->company_id = company_id;
	r->size = size;
	snprintf(r->keys[0], sizeof(r->keys[0]), HOPPER_LIST_FMT, company_id);
	snprintf(r->keys[1], sizeof(r->keys[1]), HOPPER_META_FMT, company_id);
	snprintf(r->keys[2], sizeof(r->keys[2]), HOPPER_REFILL_FMT, company_id);
	snprintf(r->keys[3], sizeof(r->keys[3]), HOPPER_DRY_FMT, company_id);
	char lock_ms[16];
	snprintf(lock_ms, sizeof(lock_ms), "%d", HOPPER_REFILL_LOCK_MS);
	const char *argv[] = {"EVAL",     HOPPER_BEGIN_LUA, "5",        r->keys[2], HOPPER_EPOCH,
	                      r->keys[1], r->keys[3],       r->keys[0], lock_ms};
	rds_command(thr->redis, refill_begun, r, (int)ARRAY_LEN(argv), argv, NULL);
}

static long refill_low_water(long company_id, long size)
{
	const struct hopper_slot *s = hopper_slot(company_id);
	long low = 2 * size + 4 * (long)HOPPER_REFILL_MIN;
	return s && s->k > low ? s->k : low;
}

/* How long a short batch waits for a refill (re-popping with backoff) before it goes out as is;
 * an empty one waits longer, unless the company's pool is dry: an empty batch costs a dialer a
 * whole retry, a wait of a second or two less. */
#define NEXT_BATCH_WAIT_MS       300
#define NEXT_BATCH_EMPTY_WAIT_MS 2000

static void batch_reply(struct http_ctx *c)
{
	struct next_batch *nb = c->state;
	long returned = (long)json_array_size(nb->numbers);
	json_t *out = next_batch_head(c);
	json_object_set_new(out, "batch",
	                    json_pack("{s:s, s:I, s:I, s:O}", "batch_id", nb->batch_id, "size_requested",
	                              (json_int_t)nb->size, "size_returned", (json_int_t)returned, "numbers",
	                              nb->numbers));
	for (int i = 0; i < L_COUNT; i++)
		json_object_set(out, list_keys[i], nb->lists[i]);
	metrics_count("next_batch_numbers", (uint64_t)returned);
	log_info("event=next_batch company=%s batch=%s requested=%ld returned=%ld pops=%d", c->company, nb->batch_id,
	         nb->size, returned, nb->pops);
	http_reply_json(c, 200, out);
}

static void pop(struct http_ctx *c, bool final);

/* Whether a short batch has waited for refills as long as it may. */
static bool next_batch_waited(const struct next_batch *nb)
{
	uint64_t waited = util_now_ns() - nb->started_ns;
	return waited >=
	       (uint64_t)(json_array_size(nb->numbers) ? NEXT_BATCH_WAIT_MS : NEXT_BATCH_EMPTY_WAIT_MS) * 1000000u;
}

static char pop_sha[41];

static void pop_sha_init(void)
{
	util_sha1_hex(HOPPER_POP_LUA, strlen(HOPPER_POP_LUA), pop_sha); /* Redis's name for the script */
}

static void pop_again(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct http_ctx *c = arg;
	struct next_batch *nb = c->state;
	pop(c, next_batch_waited(nb));
}

static void popped(struct http_ctx *c, redisReply *reply)
{
	struct next_batch *nb = c->state;
	if (reply && reply->type == REDIS_REPLY_ERROR && !strncmp(reply->str, "NOSCRIPT", 8) && !nb->by_text) {
		nb->by_text = true; /* a restarted Redis: the text once, EVALSHA works again after it */
		nb->pops--;
		pop(c, nb->final);
		return;
	}
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4 ||
	    reply->element[3]->type != REDIS_REPLY_ARRAY) {
		log_warn("event=hopper_pop_failed company=%s error=\"%s\"", c->company,
		         reply && reply->str ? reply->str : "redis unavailable");
		http_error(c, 503, "SERVICE_UNAVAILABLE", "Redis is unavailable, retry shortly");
		return;
	}
	long long remaining = reply->element[0]->integer, dropped = reply->element[2]->integer;
	bool dry = reply->element[1]->integer != 0;
	const redisReply *got = reply->element[3];
	for (size_t i = 0; i + 1 < got->elements; i += 2) {
		json_array_append_new(nb->numbers,
		                      json_pack("{s:I, s:s}", "id", (json_int_t)strtoll(got->element[i]->str, NULL, 10),
		                                "phone_number", got->element[i + 1]->str));
		buf_add(&nb->ids, nb->ids.len ? "," : "", nb->ids.len ? 1 : 0);
		buf_add(&nb->ids, got->element[i]->str, got->element[i]->len);
	}
	if (dropped)
		metrics_count("hopper_entries_dropped", (uint64_t)dropped);
	long have = (long)json_array_size(nb->numbers);
	/* the hopper runs low (below what the last refill read, which follows the demand):
	 * refill it before it is empty; the refill is this thread's, detached from the request */
	if (!dry && remaining < refill_low_water(c->company_id, nb->size))
		refill_go(c->thr, c->company_id, nb->size);
	if (have >= nb->size || nb->final) {
		batch_reply(c);
		return;
	}
	/* short: wait for the refill, or record what there is when there is nothing to wait for */
	if (dry || next_batch_waited(nb)) {
		pop(c, true);
		return;
	}
	int ms = 1 << (nb->pops < 6 ? nb->pops : 6); /* 2, 4, … 64 ms */
	struct timeval tv = {0, ms * 1000};
	if (event_base_once(c->thr->base, -1, EV_TIMEOUT, pop_again, c, &tv))
		pop(c, true);
}

/*
 * One pop (HOPPER_POP_LUA): up to the numbers still missing, locked, and the
 * batch recorded when it is complete or final (the numbers of earlier pops
 * for this batch included).
 */
static void pop(struct http_ctx *c, bool final)
{
	struct next_batch *nb = c->state;
	char list[48], dry[48], n[24], now[24], lock_ms[24], age[24], cid[24], req[24], prev[24];
	snprintf(list, sizeof(list), HOPPER_LIST_FMT, c->company_id);
	snprintf(dry, sizeof(dry), HOPPER_DRY_FMT, c->company_id);
	snprintf(n, sizeof(n), "%ld", nb->size - (long)json_array_size(nb->numbers));
	snprintf(now, sizeof(now), "%lld", (long long)(util_wall_us() / 1000));
	snprintf(lock_ms, sizeof(lock_ms), "%lld", (long long)cfg.assignment_timeout_minutes * 60000);
	snprintf(age, sizeof(age), "%d", HOPPER_MAX_AGE_MS);
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	snprintf(req, sizeof(req), "%ld", nb->size);
	snprintf(prev, sizeof(prev), "%zu", json_array_size(nb->numbers));
	nb->final = final;
	nb->pops++;
	/* EVALSHA: the script's text goes to Redis once (again after a NOSCRIPT, see popped) */
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, pop_sha_init);
	const char *argv[] = {nb->by_text ? "EVAL" : "EVALSHA",
	                      nb->by_text ? HOPPER_POP_LUA : pop_sha,
	                      "4",
	                      list,
	                      HOPPER_LOCKS,
	                      HOPPER_BATCHES,
	                      dry,
	                      n,
	                      now,
	                      lock_ms,
	                      age,
	                      nb->batch_id,
	                      cid,
	                      req,
	                      final ? "1" : "2",
	                      nb->ids.p ? nb->ids.p : "",
	                      prev};
	http_redis(c, popped, (int)ARRAY_LEN(argv), argv, NULL);
}

void dialer_thread_exit(void)
{
	for (size_t i = 0; i < ARRAY_LEN(lists_cache); i++)
		for (int k = 0; k < L_COUNT; k++) {
			json_decref(lists_cache[i].lists[k]);
			lists_cache[i].lists[k] = NULL;
		}
}

/* The batch keeps its own references: the slot may be refreshed (or taken by another company) meanwhile. */
static void lists_take(struct http_ctx *c, struct lists_slot *ls)
{
	struct next_batch *nb = c->state;
	for (int i = 0; i < L_COUNT; i++)
		nb->lists[i] = json_incref(ls->lists[i]);
}

static void lists_loaded(struct http_ctx *c, PGresult *res)
{
	if (!http_db_ok_or_reply(c, res))
		return;
	struct lists_slot *ls = lists_slot(c->company_id);
	for (int i = 0; i < L_COUNT; i++) {
		json_decref(ls->lists[i]);
		ls->lists[i] = json_loads(PQgetvalue(res, 0, i), 0, NULL);
		if (!ls->lists[i])
			ls->lists[i] = json_array();
	}
	ls->company_id = c->company_id;
	ls->expires_ns = util_now_ns() + (uint64_t)NEXT_BATCH_LISTS_TTL_MS * 1000000u;
	lists_take(c, ls);
	pop(c, false);
}

/* Allowed: the lists (cached), then the numbers from the hopper. */
static void pick_batch(struct http_ctx *c)
{
	struct next_batch *nb = c->state;
	if (util_random_hex(nb->batch_id, 16)) {
		http_error(c, 500, "INTERNAL_ERROR", "cannot generate a batch id");
		return;
	}
	nb->numbers = json_array();
	nb->started_ns = util_now_ns();
	struct lists_slot *ls = lists_slot(c->company_id);
	if (ls->company_id == c->company_id && util_now_ns() < ls->expires_ns) {
		lists_take(c, ls);
		pop(c, false);
		return;
	}
	char cid[24];
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	const char *p[1] = {cid};
	http_db(c, LISTS_SQL, 1, p, lists_loaded);
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
