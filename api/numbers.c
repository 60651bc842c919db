/*
 * The numbers pool (/api/numbers, COMPAT §2.9 with the preface's changes):
 * list, count, add, one number and its attempts, status/delete/reset, bulk,
 * and the selection of an export (its job: api/export.c).
 * Filters go through common/selection; per-company state is number_state.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "config.h"
#include "events.h"
#include "importresult.h"
#include "numaction.h"
#include "pgjson.h"
#include "phone.h"
#include "selection.h"
#include "tz.h"
#include "util.h"

#define ADD_MAX 100000 /* entries of one POST /api/numbers */

/* NumberOut (COMPAT §2.1) from the page subquery x: the assigned agent and the
 * lock (number_locks) are looked up only for the rows of the page. */
#define NUMBER_INNER                                                                                        \
	"n.id, n.phone_number, n.global_status, n.last_called_at, n.last_called_company_id, n.created_at, " \
	"s.status, s.total_attempts, s.last_attempt_at, s.updated_at AS status_changed_at, "                \
	"s.last_user_message, s.assigned_agent_id "
#define NUMBER_OUTER                                                                                              \
	"SELECT x.id, x.phone_number, x.global_status, api_ts(x.last_called_at) AS last_called_at, "              \
	"x.last_called_company_id, (SELECT api_ts(l.assigned_at) FROM number_locks l WHERE l.number_id = x.id) "  \
	"AS assigned_at, (SELECT l.batch_id FROM number_locks l WHERE l.number_id = x.id) AS assigned_batch_id, " \
	"x.status, "                                                                                              \
	"COALESCE(x.total_attempts, 0) AS total_attempts, api_ts(x.last_attempt_at) AS last_attempt_at, "         \
	"api_ts(x.status_changed_at) AS last_status_change_at, x.last_user_message, x.assigned_agent_id, "        \
	"(SELECT json_build_object('id', ag.id, 'username', ag.username, 'first_name', ag.first_name, "           \
	"'last_name', ag.last_name, 'phone_number', ag.phone_number, 'agent_type', ag.agent_type, 'is_active', "  \
	"ag.is_active) FROM users ag WHERE ag.id = x.assigned_agent_id) AS assigned_agent, api_ts(x.created_at) " \
	"AS created_at FROM ("

struct nreq {
	struct selection sel;
	struct selection_query q;
	long long *ids, *excluded, *agents;
	long number_id;
	long skip, limit;
	enum numaction act;
	const char *new_status; /* borrowed from the body or a static table */
	bool single;            /* reply one NumberOut, not an array */
	long matched, done;     /* bulk: rows selected, rows changed */
	void (*next)(struct http_ctx *c);
};

static void nreq_free(void *p)
{
	struct nreq *r = p;
	selection_query_free(&r->q);
	free(r->ids);
	free(r->excluded);
	free(r->agents);
	free(r);
}

static struct nreq *nreq_new(struct http_ctx *c)
{
	struct nreq *r = xcalloc(1, sizeof(*r));
	c->state = r;
	c->state_free = nreq_free;
	r->sel.select_all = true;
	return r;
}

/* ---- target company (COMPAT §2.9 _resolve_company_id) ---- */

static void search_agents_found(struct http_ctx *c, PGresult *res)
{
	struct nreq *r = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	int n = PQntuples(res);
	r->agents = xmalloc((size_t)(n ? n : 1) * sizeof(*r->agents));
	for (int i = 0; i < n; i++)
		r->agents[i] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
	r->sel.search_agents = r->agents;
	r->sel.nsearch_agents = (size_t)n;
	r->next(c);
}

/* With a search and a company, finds the company's users the search names
 * (selection.h explains why this is a separate step), then r->next(c). */
static void search_agents_then_next(struct http_ctx *c)
{
	struct nreq *r = c->state;
	char *phone, *name, cid[24];
	if (!c->company_id || selection_search_patterns(r->sel.search, &phone, &name)) {
		r->next(c);
		return;
	}
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	const char *p[3] = {cid, name, phone};
	http_db(c, SELECTION_SEARCH_AGENTS_SQL, 3, p, search_agents_found);
	free(phone);
	free(name);
}

/* Resolves the named company (active or not, as the original) or the user's
 * own, then calls next(c); a superuser without either has no target (0). */
static void resolve_target(struct http_ctx *c, const char *name, void (*next)(struct http_ctx *c))
{
	struct nreq *r = c->state;
	r->next = next;
	company_or_own_then(c, name, false, search_agents_then_next);
}

/* ---- query-string and body parsing ---- */

/* start_date / end_date into the selection; false after replying 400. */
static bool dates_or_reply(struct http_ctx *c, const char *start, const char *end, bool bulk)
{
	struct nreq *r = c->state;
	if (start && *start) {
		if (tz_local_day_start(start, 0, &r->sel.start)) {
			http_error(c, 400, "BAD_REQUEST", bulk ? "Invalid date format" : "Invalid start_date");
			return false;
		}
		r->sel.has_start = true;
	}
	if (end && *end) {
		if (tz_local_day_start(end, 1, &r->sel.end)) {
			http_error(c, 400, "BAD_REQUEST", bulk ? "Invalid date format" : "Invalid end_date");
			return false;
		}
		r->sel.has_end = true;
	}
	return true;
}

static bool enum_query_or_reply(struct http_ctx *c, const char *name, bool (*valid)(const char *), const char **out)
{
	const char *v = http_query(c, name);
	*out = NULL;
	if (!v || !*v)
		return true;
	if (!valid(v)) {
		http_invalid(c, name, "unknown value");
		return false;
	}
	*out = v;
	return true;
}

/* The list/count filters of the query string (422s, then 400s for dates). */
static bool list_filters_or_reply(struct http_ctx *c, bool paged)
{
	struct nreq *r = c->state;
	long agent;
	const char *search = http_query(c, "search");
	if (!enum_query_or_reply(c, "status", selection_status_valid, &r->sel.status) ||
	    !enum_query_or_reply(c, "global_status", selection_global_status_valid, &r->sel.global_status) ||
	    query_long_or_reply(c, "agent_id", 1, 2147483647L, 0, &agent))
		return false;
	r->sel.agent_id = agent;
	if (search && util_utf8_chars(search) > SELECTION_SEARCH_MAX) {
		http_invalid(c, "search", "must be at most 100 characters");
		return false;
	}
	r->sel.search = search;
	if (paged) {
		if (selection_parse_sort(http_query(c, "sort_by"), NULL, &r->sel.sort, &r->sel.ascending)) {
			http_invalid(c, "sort_by", "must be one of created_at, last_attempt_at, status");
			return false;
		}
		if (selection_parse_sort(NULL, http_query(c, "sort_order"), &(enum selection_sort){0},
		                         &r->sel.ascending)) {
			http_invalid(c, "sort_order", "must be asc or desc");
			return false;
		}
		if (query_page_or_reply(c, &r->skip, &r->limit))
			return false;
	}
	return dates_or_reply(c, http_query(c, "start_date"), http_query(c, "end_date"), false);
}

/* Applies the caller's role and target company to the selection. */
static bool scope_or_reply(struct http_ctx *c)
{
	struct nreq *r = c->state;
	r->sel.company_id = c->company_id;
	if (!c->user.is_admin)
		r->sel.only_agent_id = c->user.id; /* agents see only their own numbers */
	selection_query_free(&r->q);               /* an action rebuilds it to show the number afterwards */
	if (selection_build(&r->sel, &r->q)) {
		http_invalid(c, "selection", "too many ids or too long a search");
		return false;
	}
	return true;
}

/* ---- GET /api/numbers, GET /api/numbers/{id} ---- */

static void page_done(struct http_ctx *c, PGresult *res)
{
	struct nreq *r = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	if (!r->single) {
		http_reply_json(c, 200, pgjson_rows(res));
		return;
	}
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "Number not found");
		return;
	}
	http_reply_json(c, 200, pgjson_row(res, 0));
}

/* Runs the page query of r->q (built) and replies with NumberOut rows. */
static void query_page(struct http_ctx *c)
{
	struct nreq *r = c->state;
	char lim[24], off[24], top[24];
	char *sql;
	snprintf(lim, sizeof(lim), "%ld", r->single ? 1 : r->limit);
	snprintf(off, sizeof(off), "%ld", r->single ? 0 : r->skip);
	int kl = selection_param(&r->q, lim), ko = selection_param(&r->q, off);
	if (r->single || !c->company_id || r->sel.sort == SELECTION_SORT_CREATED_AT) {
		sql = xasprintf(NUMBER_OUTER "SELECT " NUMBER_INNER "%s %s LIMIT $%d OFFSET $%d) x", r->q.from_where,
		                r->q.order_by, kl, ko);
	} else {
		/*
		 * Sorting by a per-company column over a LEFT JOIN would sort every
		 * number. Instead: the numbers that have the column (walked in order
		 * on number_state's index) and those that don't (by id; NOT EXISTS,
		 * which the planner estimates well where "s.col IS NULL" on the outer
		 * join it estimates as nearly nothing), each cut to
		 * skip + limit rows, then merged: NULLS LAST, as the original.
		 */
		const char *col = r->sel.sort == SELECTION_SORT_STATUS ? "status" : "last_attempt_at";
		const char *dir = r->sel.ascending ? "ASC" : "DESC";
		snprintf(top, sizeof(top), "%ld", r->skip + r->limit);
		int kt = selection_param(&r->q, top);
		sql = xasprintf(
		    NUMBER_OUTER
		    "(SELECT " NUMBER_INNER "%s AND s.%s IS NOT NULL ORDER BY s.%s %s, s.number_id %s"
		    " LIMIT $%d) UNION ALL (SELECT " NUMBER_INNER "%s AND NOT EXISTS (SELECT 1 FROM number_state z"
		    " WHERE z.company_id = $%d AND z.number_id = n.id AND z.%s IS NOT NULL)"
		    " ORDER BY n.id %s LIMIT $%d) ORDER BY %s %s NULLS LAST, id %s LIMIT $%d OFFSET $%d) x",
		    r->q.from_where, col, col, dir, dir, kt, r->q.from_where, r->q.company_param, col, dir, kt,
		    r->sel.sort == SELECTION_SORT_STATUS ? "status" : "last_attempt_at", dir, dir, kl, ko);
	}
	http_db(c, sql, r->q.nparams, r->q.params, page_done);
	free(sql);
}

static void list_scoped(struct http_ctx *c)
{
	if (scope_or_reply(c))
		query_page(c);
}

static void list(struct http_ctx *c)
{
	nreq_new(c);
	if (list_filters_or_reply(c, true))
		resolve_target(c, http_query(c, "company"), list_scoped);
}

static void count_done(struct http_ctx *c, PGresult *res)
{
	if (http_db_ok_or_reply(c, res))
		http_reply_json(c, 200,
		                json_pack("{s:I}", "total", (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10)));
}

static void count_scoped(struct http_ctx *c)
{
	struct nreq *r = c->state;
	const struct selection *f = &r->sel;
	/*
	 * The panel's per-status tabs: with nothing but a company, a status and
	 * maybe an agent, the count is an index-only scan of number_state (its
	 * rows reference existing numbers), not a join over the pool.
	 */
	if (c->company_id && f->status && strcmp(f->status, "IN_QUEUE") && !f->global_status && !f->search &&
	    !f->has_start && !f->has_end) {
		char cid[24], agent[24], only[24];
		snprintf(cid, sizeof(cid), "%ld", c->company_id);
		snprintf(agent, sizeof(agent), "%ld", f->agent_id);
		snprintf(only, sizeof(only), "%ld", c->user.is_admin ? 0L : c->user.id);
		const char *p[4] = {cid, f->status, agent, only};
		http_db(c,
		        "SELECT count(*) FROM number_state s WHERE s.company_id = $1 AND s.status = $2"
		        " AND ($3::int = 0 OR s.assigned_agent_id = $3::int) AND ($4::int = 0 OR s.assigned_agent_id = "
		        "$4::int)",
		        4, p, count_done);
		return;
	}
	if (!scope_or_reply(c))
		return;
	char *sql = xasprintf("SELECT count(*) %s", r->q.from_where);
	http_db(c, sql, r->q.nparams, r->q.params, count_done);
	free(sql);
}

static void count(struct http_ctx *c)
{
	nreq_new(c);
	if (list_filters_or_reply(c, false))
		resolve_target(c, http_query(c, "company"), count_scoped);
}

/* One number as the selection sees it (agents: only when assigned to them). */
static void one_scoped(struct http_ctx *c)
{
	struct nreq *r = c->state;
	r->sel.select_all = false;
	r->sel.ids = r->ids;
	r->sel.nids = 1;
	r->single = true;
	if (scope_or_reply(c))
		query_page(c);
}

static bool number_id_or_reply(struct http_ctx *c, struct nreq *r)
{
	if (param_id_or_reply(c, 0, "number_id", &r->number_id))
		return false;
	r->ids = xmalloc(sizeof(*r->ids));
	r->ids[0] = r->number_id;
	return true;
}

static void get_one(struct http_ctx *c)
{
	struct nreq *r = nreq_new(c);
	if (number_id_or_reply(c, r))
		resolve_target(c, http_query(c, "company"), one_scoped);
}

/* ---- GET /api/numbers/{id}/attempts ---- */

static void attempts_visible(struct http_ctx *c, PGresult *res)
{
	struct nreq *r = c->state;
	char id[24], lim[24], off[24];
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "Number not found");
		return;
	}
	char cid[24];
	snprintf(id, sizeof(id), "%ld", r->number_id);
	snprintf(lim, sizeof(lim), "%ld", r->limit);
	snprintf(off, sizeof(off), "%ld", r->skip);
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	const char *p[4] = {id, c->company_id ? cid : NULL, lim, off};
	http_db(c,
	        "SELECT id, company_id, number_id, phone_number, status, reason, api_ts(attempted_at) AS attempted_at,"
	        " agent_id, scenario_id, outbound_line_id, user_message, batch_id, api_ts(created_at) AS created_at"
	        " FROM call_attempts WHERE number_id = $1 AND ($2::int IS NULL OR company_id = $2::int)"
	        " ORDER BY attempted_at DESC, id DESC LIMIT $3 OFFSET $4",
	        4, p, rows_reply_done);
}

static void attempts_scoped(struct http_ctx *c)
{
	struct nreq *r = c->state;
	r->sel.select_all = false;
	r->sel.ids = r->ids;
	r->sel.nids = 1;
	if (!scope_or_reply(c))
		return;
	char *sql = xasprintf("SELECT n.id %s", r->q.from_where);
	http_db(c, sql, r->q.nparams, r->q.params, attempts_visible);
	free(sql);
}

static void attempts(struct http_ctx *c)
{
	struct nreq *r = nreq_new(c);
	if (!number_id_or_reply(c, r) || query_page_or_reply(c, &r->skip, &r->limit))
		return;
	resolve_target(c, http_query(c, "company"), attempts_scoped);
}

/* ---- actions: PUT /{id}/status, DELETE /{id}, POST /{id}/reset, and bulk ---- */

/* Status changes and resets are per company; a delete is global. */
static bool company_needed_or_reply(struct http_ctx *c, const char *field)
{
	struct nreq *r = c->state;
	if (r->act == NUMACTION_DELETE || c->company_id)
		return true;
	http_error(c, 400, "COMPANY_REQUIRED", "%s is required to %s", field,
	           r->act == NUMACTION_RESET ? "reset numbers" : "change the status of numbers");
	return false;
}

/* The action's statement (common/numaction) over the built selection r->q: one number or many. */
static void run_action(struct http_ctx *c, http_db_cb done)
{
	struct nreq *r = c->state;
	char *sql = numaction_sql(&r->q, r->act, c->user.is_superuser, c->company_id, r->new_status, 0, NULL);
	http_db(c, sql, r->q.nparams, r->q.params, done);
	free(sql);
}

static void action_reply(struct http_ctx *c);

static void action_done(struct http_ctx *c, PGresult *res)
{
	struct nreq *r = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	if (strtol(PQgetvalue(res, 0, 0), NULL, 10) == 0) {
		http_error(c, 404, "NOT_FOUND", "Number not found"); /* deleted meanwhile */
		return;
	}
	if (strtol(PQgetvalue(res, 0, 1), NULL, 10) == 0) {
		const char *st = PQgetisnull(res, 0, 2) ? "IN_QUEUE" : PQgetvalue(res, 0, 2);
		http_error(c, 400, "IMMUTABLE_STATUS", "Status %s cannot be changed by non-superuser", st);
		return;
	}
	log_info("event=number_changed action=%s id=%ld company=%ld status=%s", numaction_name(r->act), r->number_id,
	         c->company_id, r->new_status ? r->new_status : "-");
	events_emit_async_new(c->thr->redis, EVENTS_NUMBER_UPDATED, c->company_id,
	                      json_pack("{s:s, s:I, s:s?, s:i, s:i, s:b}", "action", numaction_name(r->act),
	                                "number_id", (json_int_t)r->number_id, "status", r->new_status, "matched", 1,
	                                "changed", 1, "bulk", 0));
	hopper_flush_then(c, action_reply);
}

static void action_reply(struct http_ctx *c)
{
	struct nreq *r = c->state;
	if (r->act == NUMACTION_DELETE) {
		http_reply_json(c, 200, json_pack("{s:b, s:I}", "deleted", 1, "id", (json_int_t)r->number_id));
		return;
	}
	one_scoped(c); /* the number as it is now */
}

static void action_scoped(struct http_ctx *c)
{
	struct nreq *r = c->state;
	if (!company_needed_or_reply(c, "company"))
		return;
	r->sel.select_all = false;
	r->sel.ids = r->ids;
	r->sel.nids = 1;
	if (scope_or_reply(c))
		run_action(c, action_done);
}

static void action_number_found(struct http_ctx *c, PGresult *res)
{
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "Number not found");
		return;
	}
	resolve_target(c, http_query(c, "company"), action_scoped);
}

/* COMPAT §6 order: 403 Admins only, 404 number, company 404/403, 400 guard. */
static void action_start(struct http_ctx *c, enum numaction act)
{
	struct nreq *r = nreq_new(c);
	char id[24];
	r->act = act;
	if (!require_admin_or_reply(c) || !number_id_or_reply(c, r))
		return;
	if (act == NUMACTION_STATUS) {
		const char *st;
		if (field_object_or_reply(c, true) || field_str_or_reply(c, "status", 1, 32, true, &st))
			return;
		if (!selection_status_valid(st)) {
			http_invalid(c, "status", "unknown call status");
			return;
		}
		r->new_status = st;
	}
	snprintf(id, sizeof(id), "%ld", r->number_id);
	const char *p[1] = {id};
	http_db(c, "SELECT 1 FROM numbers WHERE id = $1", 1, p, action_number_found);
}

static void set_status(struct http_ctx *c)
{
	action_start(c, NUMACTION_STATUS);
}

static void delete_one(struct http_ctx *c)
{
	action_start(c, NUMACTION_DELETE);
}

static void reset_one(struct http_ctx *c)
{
	action_start(c, NUMACTION_RESET);
}

/* ---- POST /api/numbers ---- */

static int cmp_phone(const void *a, const void *b)
{
	return memcmp(a, b, 12);
}

/* What the insert's reply needs besides the count. */
struct add_state {
	struct import_tally t;
	char *array; /* '{0912...,...}' of the unique valid numbers */
};

static void add_state_free(void *p)
{
	struct add_state *a = p;
	import_tally_free(&a->t);
	free(a->array);
	free(a);
}

static void add_reply(struct http_ctx *c, long inserted)
{
	struct add_state *a = c->state;
	log_info("event=numbers_added rows=%lld inserted=%ld invalid=%lld", a->t.rows, inserted, a->t.invalid);
	if (inserted > 0) /* the pool is global: scoped to the adding user's company (none: superusers) */
		events_emit_async_new(c->thr->redis, EVENTS_NUMBER_UPDATED, c->user.company_id,
		                      json_pack("{s:s, s:n, s:n, s:I, s:I, s:b}", "action", "add", "number_id",
		                                "status", "matched", (json_int_t)a->t.rows, "changed",
		                                (json_int_t)inserted, "bulk", 1));
	http_reply_json(c, 200, import_tally_result(&a->t, inserted));
}

static void added(struct http_ctx *c, PGresult *res)
{
	if (http_db_ok_or_reply(c, res))
		add_reply(c, strtol(PQgetvalue(res, 0, 0), NULL, 10));
}

static void add(struct http_ctx *c)
{
	json_t *arr, *v;
	size_t i, n, nuniq = 0;
	char(*phones)[12] = NULL;
	if (!require_admin_or_reply(c) || field_object_or_reply(c, true))
		return;
	arr = json_object_get(c->body, "phone_numbers");
	if (!json_is_array(arr)) {
		http_invalid(c, "phone_numbers",
		             json_is_null(arr) || !arr ? "field required" : "must be an array of strings");
		return;
	}
	n = json_array_size(arr);
	if (n > ADD_MAX) {
		http_invalid(c, "phone_numbers", "at most 100000 entries per request (upload a file for more)");
		return;
	}
	json_array_foreach(arr, i, v) if (!json_is_string(v))
	{
		char field[48];
		snprintf(field, sizeof(field), "phone_numbers[%zu]", i);
		http_invalid(c, field, "must be a string");
		return;
	}
	struct add_state *a = xcalloc(1, sizeof(*a));
	c->state = a;
	c->state_free = add_state_free;
	import_tally_init(&a->t);
	a->t.rows = (long long)n;
	phones = xmalloc((n ? n : 1) * sizeof(*phones));
	json_array_foreach(arr, i, v)
	{
		const char *s = json_string_value(v);
		if (phone_normalize(s, phones[a->t.valid]) == 0) {
			a->t.valid++;
			continue;
		}
		import_tally_invalid(&a->t, (long long)(i + 1), json_string(s));
	}
	qsort(phones, (size_t)a->t.valid, sizeof(*phones), cmp_phone);
	for (long k = 0; k < a->t.valid; k++)
		if (k == 0 || memcmp(phones[k], phones[nuniq - 1], 12))
			memcpy(phones[nuniq++], phones[k], 12);
	if (nuniq == 0) {
		free(phones);
		add_reply(c, 0);
		return;
	}
	a->array = xmalloc(nuniq * 12 + 3);
	size_t len = 0;
	a->array[len++] = '{';
	for (size_t k = 0; k < nuniq; k++) {
		if (k)
			a->array[len++] = ',';
		memcpy(a->array + len, phones[k], 11);
		len += 11;
	}
	a->array[len++] = '}';
	a->array[len] = '\0';
	free(phones);
	const char *p[1] = {a->array};
	http_db(c,
	        "WITH ins AS (INSERT INTO numbers (phone_number) SELECT unnest($1::text[])"
	        " ON CONFLICT (phone_number) DO NOTHING RETURNING 1) SELECT count(*) FROM ins",
	        1, p, added);
}

/* ---- POST /api/numbers/bulk ---- */

static const char *const bulk_actions[] = {"update_status", "reset", "delete", NULL};
static const char *const sort_fields[] = {"created_at", "last_attempt_at", "status", NULL};
static const char *const sort_orders[] = {"asc", "desc", NULL};

/* An optional array of ids; *out owned by the caller. */
static int ids_or_reply(struct http_ctx *c, const char *name, long long **out, size_t *nout)
{
	json_t *arr = json_object_get(c->body, name), *v;
	size_t i;
	*out = NULL;
	*nout = 0;
	if (!arr || json_is_null(arr))
		return 0;
	if (!json_is_array(arr)) {
		http_invalid(c, name, "must be an array of integers");
		return -1;
	}
	if (json_array_size(arr) > SELECTION_IDS_MAX) {
		http_invalid(c, name, "at most 100000 ids (use select_all with filters)");
		return -1;
	}
	json_array_foreach(arr, i, v) if (!json_is_integer(v))
	{
		http_invalid(c, name, "must be an array of integers");
		return -1;
	}
	*nout = json_array_size(arr);
	*out = xmalloc((*nout ? *nout : 1) * sizeof(**out));
	json_array_foreach(arr, i, v)(*out)[i] = json_integer_value(v);
	return 0;
}

static void bulk_reply(struct http_ctx *c);

static void bulk_done(struct http_ctx *c, PGresult *res)
{
	struct nreq *r = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	r->matched = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	r->done = strtol(PQgetvalue(res, 0, 1), NULL, 10);
	log_info("event=numbers_bulk action=%s company=%ld matched=%ld done=%ld", numaction_name(r->act), c->company_id,
	         r->matched, r->done);
	if (r->done > 0)
		events_emit_async_new(c->thr->redis, EVENTS_NUMBER_UPDATED, c->company_id,
		                      json_pack("{s:s, s:n, s:s?, s:I, s:I, s:b}", "action", numaction_name(r->act),
		                                "number_id", "status", r->new_status, "matched", (json_int_t)r->matched,
		                                "changed", (json_int_t)r->done, "bulk", 1));
	hopper_flush_then(c, bulk_reply);
}

static void bulk_reply(struct http_ctx *c)
{
	struct nreq *r = c->state;
	http_reply_json(c, 200, numaction_result(r->act, r->matched, r->done));
}

/* Over BULK_SYNC_LIMIT matched numbers the action is a job (api/export.c); at or under it, one
 * statement here, as before. update_status without a status is answered here: COMPAT §6. */
static void bulk_counted(struct http_ctx *c, PGresult *res)
{
	struct nreq *r = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	long n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	if (r->act == NUMACTION_STATUS && !r->new_status) {
		if (n > 0)
			http_error(c, 400, "BAD_REQUEST", "Unsupported action");
		else
			bulk_reply(c); /* nothing matched: {0, 0, 0}, as the original */
		return;
	}
	if (n > cfg.bulk_sync_limit) {
		numbers_bulk_job_start(c, &r->sel, r->act, r->new_status);
		return;
	}
	run_action(c, bulk_done);
}

static void bulk_scoped(struct http_ctx *c)
{
	struct nreq *r = c->state;
	char lim[24];
	/* update_status without a status needs no company: bulk_counted answers it */
	bool unsupported = r->act == NUMACTION_STATUS && !r->new_status;
	if ((!unsupported && !company_needed_or_reply(c, "company_name")) || !scope_or_reply(c))
		return;
	/* counts at most one past the limit: deciding costs no more than the limit's worth */
	snprintf(lim, sizeof(lim), "%ld", (long)cfg.bulk_sync_limit + 1);
	const char **p = xmalloc((size_t)(r->q.nparams + 1) * sizeof(*p));
	for (int i = 0; i < r->q.nparams; i++) /* not memcpy: params is NULL when there are none */
		p[i] = r->q.params[i];
	p[r->q.nparams] = lim;
	char *sql = xasprintf("SELECT count(*) FROM (SELECT 1 %s LIMIT $%d) x", r->q.from_where, r->q.nparams + 1);
	http_db(c, sql, r->q.nparams + 1, p, bulk_counted);
	free(sql);
	free(p);
}

/*
 * The selection fields of a bulk or export body (COMPAT §2.9) into r->sel (the dates only as
 * given: dates_or_reply comes after the caller's own 400s), then "No numbers selected" (400,
 * before the company: COMPAT §6). *company is the body's company_name. Returns 0, or -1 after
 * replying.
 */
static int body_selection_or_reply(struct http_ctx *c, struct nreq *r, const char **company, const char **start,
                                   const char **end)
{
	const char *sort_by, *sort_order;
	int select_all;
	long long agent = 0;
	bool has_agent;
	if (ids_or_reply(c, "ids", &r->ids, &r->sel.nids) ||
	    ids_or_reply(c, "excluded_ids", &r->excluded, &r->sel.nexcluded) ||
	    field_bool_or_reply(c, "select_all", &select_all) ||
	    field_enum_or_reply(c, "filter_status", selection_call_statuses, &r->sel.status) ||
	    field_enum_or_reply(c, "filter_global_status", selection_global_statuses, &r->sel.global_status) ||
	    field_str_or_reply(c, "search", 0, SELECTION_SEARCH_MAX, false, &r->sel.search) ||
	    field_enum_or_reply(c, "sort_by", sort_fields, &sort_by) ||
	    field_enum_or_reply(c, "sort_order", sort_orders, &sort_order) ||
	    field_str_or_reply(c, "start_date", 0, 32, false, start) ||
	    field_str_or_reply(c, "end_date", 0, 32, false, end) ||
	    field_str_or_reply(c, "company_name", 1, 64, false, company) ||
	    field_int_or_reply(c, "agent_id", 1, 2147483647LL, false, &has_agent, &agent))
		return -1;
	if (selection_parse_sort(sort_by, sort_order, &r->sel.sort, &r->sel.ascending))
		abort(); /* both checked against the same lists above */
	r->sel.agent_id = has_agent ? (long)agent : 0;
	r->sel.select_all = select_all == 1;
	r->sel.ids = r->ids;
	r->sel.excluded = r->excluded;
	if (!r->sel.select_all && r->sel.nids == 0) {
		http_error(c, 400, "BAD_REQUEST", "No numbers selected");
		return -1;
	}
	return 0;
}

static void bulk(struct http_ctx *c)
{
	struct nreq *r = nreq_new(c);
	const char *action, *company, *start, *end;
	if (!require_admin_or_reply(c) || field_object_or_reply(c, true) ||
	    field_enum_or_reply(c, "action", bulk_actions, &action) ||
	    field_enum_or_reply(c, "status", selection_call_statuses, &r->new_status))
		return;
	if (!action) {
		http_invalid(c, "action", "field required");
		return;
	}
	r->act = !strcmp(action, "delete")  ? NUMACTION_DELETE
	         : !strcmp(action, "reset") ? NUMACTION_RESET
	                                    : NUMACTION_STATUS;
	if (body_selection_or_reply(c, r, &company, &start, &end))
		return;
	if (r->act != NUMACTION_STATUS)
		r->new_status = NULL;
	if (dates_or_reply(c, start, end, true))
		resolve_target(c, company, bulk_scoped);
}

/* ---- POST /api/numbers/export: the selection here, the job in api/export.c ---- */

static void export_scoped(struct http_ctx *c)
{
	struct nreq *r = c->state;
	r->sel.company_id = c->company_id;
	numbers_export_start(c, &r->sel);
}

static void export(struct http_ctx *c)
{
	struct nreq *r = nreq_new(c);
	const char *company, *start, *end;
	if (!require_admin_or_reply(c) || field_object_or_reply(c, true) ||
	    body_selection_or_reply(c, r, &company, &start, &end))
		return;
	if (dates_or_reply(c, start, end, true))
		resolve_target(c, company, export_scoped);
}

static const struct route routes[] = {
    {"GET", "/api/numbers", list, AUTH_JWT, 0},
    {"POST", "/api/numbers", add, AUTH_JWT, RF_JSON},
    {"GET", "/api/numbers/stats", count, AUTH_JWT, 0},
    {"POST", "/api/numbers/bulk", bulk, AUTH_JWT, RF_JSON},
    {"POST", "/api/numbers/export", export, AUTH_JWT, RF_JSON},
    {"GET", "/api/numbers/{number_id}", get_one, AUTH_JWT, 0},
    {"DELETE", "/api/numbers/{number_id}", delete_one, AUTH_JWT, 0},
    {"GET", "/api/numbers/{number_id}/attempts", attempts, AUTH_JWT, 0},
    {"PUT", "/api/numbers/{number_id}/status", set_status, AUTH_JWT, RF_JSON},
    {"POST", "/api/numbers/{number_id}/reset", reset_one, AUTH_JWT, 0},
};

void numbers_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
