/*
 * A company's wallet (COMPAT §2.6, /api/{company}/billing): superusers read and
 * set the balance and the cost per connected call; every change is written to
 * the wallet ledger, which the company's admins may also read
 * (/api/{company}/billing/transactions).
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "config.h"
#include "pgjson.h"
#include "tz.h"
#include "util.h"

/* Wallet values beyond this are refused: they fit a double exactly, so the
 * panel (JavaScript numbers) reads back what it wrote. */
#define BILLING_ABS_MAX  1000000000000000LL
#define BILLING_NOTE_MAX 500

/* BillingInfo (COMPAT §2.1) from a company_config row. */
#define BILLING_COLUMNS "wallet_balance, cost_per_connected, 'Toman' AS currency, disabled_by_dialer"

struct bill {
	bool has_wallet, has_cost;
	long long wallet, cost; /* as given */
	const char *note;       /* borrowed from c->body */
	char cids[24];
	long long old_wallet, old_cost, new_wallet, new_cost;
	json_t *out; /* BillingInfo after the change */
};

static void bill_free(void *p)
{
	struct bill *b = p;
	json_decref(b->out);
	free(b);
}

/* ------------------------------------------------------------------- read */

static void info_done(struct http_ctx *c, PGresult *res)
{
	if (company_config_ok_or_reply(c, res))
		http_reply_json(c, 200, pgjson_row(res, 0));
}

static void get_company(struct http_ctx *c)
{
	char cid[24];
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	const char *p[2] = {cid, cfg.skip_holidays ? "true" : "false"};
	/* company_config_get creates the row with COMPAT §3.6's defaults */
	http_db(c, "SELECT " BILLING_COLUMNS " FROM company_config_get($1, $2) WHERE company_id IS NOT NULL", 2, p,
	        info_done);
}

static void get(struct http_ctx *c)
{
	if (require_superuser_or_reply(c))
		company_from_path(c, get_company);
}

/* ------------------------------------------------------------------ write */

static void reply_out(struct http_ctx *c)
{
	struct bill *b = c->state;
	http_reply_json(c, 200, json_incref(b->out));
}

static void committed(struct http_ctx *c, PGresult *res)
{
	struct bill *b = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	log_info("event=billing_updated company=%s user=%s wallet=%lld->%lld cost=%lld->%lld", c->company,
	         c->user.username, b->old_wallet, b->new_wallet, b->old_cost, b->new_cost);
	company_callstate_drop_then(c, reply_out);
}

static void written(struct http_ctx *c, PGresult *res)
{
	struct bill *b = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	b->out = pgjson_row(res, 0);
	http_tx_commit(c, committed);
}

static void locked(struct http_ctx *c, PGresult *res)
{
	struct bill *b = c->state;
	char wallet[24], cost[24], old_wallet[24], old_cost[24], uid[24];
	if (!http_db_ok_or_reply(c, res))
		return;
	if (PQntuples(res) != 1) {
		http_error(c, 404, "NOT_FOUND", "Company not found");
		return;
	}
	b->old_wallet = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	b->old_cost = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	b->new_wallet = b->has_wallet ? b->wallet : b->old_wallet;
	b->new_cost = b->has_cost ? b->cost : b->old_cost;
	snprintf(wallet, sizeof(wallet), "%lld", b->new_wallet);
	snprintf(cost, sizeof(cost), "%lld", b->new_cost);
	snprintf(old_wallet, sizeof(old_wallet), "%lld", b->old_wallet);
	snprintf(old_cost, sizeof(old_cost), "%lld", b->old_cost);
	snprintf(uid, sizeof(uid), "%ld", c->user.id);
	const char *p[7] = {b->cids, wallet, cost, old_wallet, old_cost, uid, b->note};
	/*
	 * COMPAT §2.6: a present field bumps the version even when its value is
	 * unchanged; a positive wallet clears disabled_by_dialer only while the
	 * company is enabled (a PUT never re-enables dialing). The ledger gets an
	 * adjustment for a changed balance, then a rate row for a changed cost,
	 * only with the config row updated (locked: a company deleted meanwhile
	 * takes them with it; schema 016).
	 */
	http_db(c,
	        "WITH u AS (UPDATE company_config SET wallet_balance = $2, cost_per_connected = $3,"
	        "  version = version + 1, updated_at = now(),"
	        "  disabled_by_dialer = CASE WHEN $2::bigint > 0 AND enabled THEN false ELSE disabled_by_dialer END"
	        "  WHERE company_id = $1 RETURNING " BILLING_COLUMNS "),"
	        " l AS (INSERT INTO wallet_ledger (company_id, kind, amount, balance_after, cost_per_connected,"
	        "  user_id, note)"
	        "  SELECT $1, v.kind, v.amount, $2, v.rate, $6, $7 FROM (VALUES"
	        "   (1, 'adjustment', $2::bigint - $4::bigint, NULL::bigint, $2::bigint <> $4::bigint),"
	        "   (2, 'rate', 0, $3::bigint, $3::bigint <> $5::bigint)) v (ord, kind, amount, rate, wanted)"
	        "  WHERE v.wanted AND EXISTS (SELECT 1 FROM u) ORDER BY v.ord)"
	        " SELECT * FROM u",
	        7, p, written);
}

static void ensured(struct http_ctx *c, PGresult *res)
{
	struct bill *b = c->state;
	if (!company_config_ok_or_reply(c, res))
		return;
	const char *p[1] = {b->cids};
	http_db(c, "SELECT wallet_balance, cost_per_connected FROM company_config WHERE company_id = $1 FOR UPDATE", 1,
	        p, locked);
}

static void tx_started(struct http_ctx *c, PGresult *res)
{
	struct bill *b = c->state;
	if (!http_db_ok_or_reply(c, res))
		return;
	/* a separate statement: a row this one inserts would be invisible to a
	 * FOR UPDATE in the same statement */
	const char *p[2] = {b->cids, cfg.skip_holidays ? "true" : "false"};
	http_db(c, "SELECT 1 FROM company_config_get($1, $2)", 2, p, ensured);
}

static void put_company(struct http_ctx *c)
{
	struct bill *b = xcalloc(1, sizeof(*b));
	c->state = b;
	c->state_free = bill_free;
	if (field_object_or_reply(c, true) ||
	    field_int_or_reply(c, "wallet_balance", -BILLING_ABS_MAX, BILLING_ABS_MAX, false, &b->has_wallet,
	                       &b->wallet) ||
	    field_int_or_reply(c, "cost_per_connected", -BILLING_ABS_MAX, BILLING_ABS_MAX, false, &b->has_cost,
	                       &b->cost) ||
	    field_str_or_reply(c, "note", 1, BILLING_NOTE_MAX, false, &b->note))
		return;
	if (!b->has_wallet && !b->has_cost) { /* nothing to change: no version bump */
		get_company(c);
		return;
	}
	snprintf(b->cids, sizeof(b->cids), "%ld", c->company_id);
	http_tx_begin(c, tx_started);
}

static void put(struct http_ctx *c)
{
	if (require_superuser_or_reply(c))
		company_from_path(c, put_company);
}

/* ----------------------------------------------------------------- ledger */

static const char *const ledger_kinds[] = {"charge", "adjustment", "rate", NULL};

/* The UTC instant (epoch seconds, as text) a local calendar day starts, plus
 * days_after days; "" when the parameter is absent or empty. -1 after a 400. */
static int day_bound_or_reply(struct http_ctx *c, const char *name, int days_after, char out[24])
{
	const char *s = http_query(c, name);
	time_t t;
	out[0] = '\0';
	if (!s || !*s)
		return 0;
	if (tz_local_day_start(s, days_after, &t)) {
		http_error(c, 400, "INVALID_DATE", "Invalid %s", name);
		return -1;
	}
	snprintf(out, 24, "%lld", (long long)t);
	return 0;
}

/* One filter for the count and the page; every value a parameter. Kept
 * sargable for wallet_ledger_company_idx (company_id, created_at, id). */
#define LEDGER_WHERE                                                          \
	" WHERE company_id = $1 AND ($2::text IS NULL OR kind = $2)"          \
	" AND ($3::bigint IS NULL OR created_at >= to_timestamp($3::bigint))" \
	" AND ($4::bigint IS NULL OR created_at < to_timestamp($4::bigint))"

static void ledger_company(struct http_ctx *c)
{
	struct list_page *pg = xcalloc(1, sizeof(*pg));
	const char *kind = http_query(c, "kind");
	char cid[24], from[24], to[24], skip[24], limit[24], msg[96];
	c->state = pg;
	c->state_free = free;
	if (day_bound_or_reply(c, "start_date", 0, from) || day_bound_or_reply(c, "end_date", 1, to) ||
	    query_page_or_reply(c, &pg->skip, &pg->limit))
		return;
	if (kind && !*kind)
		kind = NULL;
	if (kind) {
		const char *const *k = ledger_kinds;
		while (*k && strcmp(*k, kind))
			k++;
		if (!*k) {
			snprintf(msg, sizeof(msg), "must be one of %s, %s, %s", ledger_kinds[0], ledger_kinds[1],
			         ledger_kinds[2]);
			http_invalid(c, "kind", msg);
			return;
		}
	}
	snprintf(cid, sizeof(cid), "%ld", c->company_id);
	snprintf(skip, sizeof(skip), "%ld", pg->skip);
	snprintf(limit, sizeof(limit), "%ld", pg->limit);
	const char *p[6] = {cid, kind, *from ? from : NULL, *to ? to : NULL, skip, limit};
	http_db(c,
	        "SELECT (SELECT count(*) FROM wallet_ledger" LEDGER_WHERE ") AS total,"
	        " (SELECT COALESCE(json_agg(json_build_object('id', id, 'kind', kind, 'amount', amount,"
	        "   'balance_after', balance_after, 'cost_per_connected', cost_per_connected,"
	        "   'attempt_id', attempt_id, 'user_id', user_id, 'note', note,"
	        "   'created_at', api_ts(created_at)) ORDER BY created_at DESC, id DESC), '[]'::json)"
	        "  FROM (SELECT * FROM wallet_ledger" LEDGER_WHERE
	        "   ORDER BY created_at DESC, id DESC OFFSET $5 LIMIT $6) t) AS items",
	        6, p, list_page_done);
}

/* Superusers, and the company's own admins (read-only). */
static void ledger(struct http_ctx *c)
{
	if (require_admin_or_reply(c))
		company_from_path(c, ledger_company);
}

static const struct route routes[] = {
    {"GET", "/api/{company}/billing", get, AUTH_JWT, 0},
    {"PUT", "/api/{company}/billing", put, AUTH_JWT, RF_JSON},
    {"GET", "/api/{company}/billing/transactions", ledger, AUTH_JWT, 0},
};

void billing_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
