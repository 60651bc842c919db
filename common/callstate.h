/*
 * A company's call-allowed state as the database holds it: one statement
 * (CALLSTATE_SQL) loads the config, the weekly windows and the holidays
 * table's rows near today; callstate_from_result turns a row of it into
 * callrule's inputs and callstate_decide answers for an instant. The one place
 * shared by next-batch, GET /api/{company}/schedule/status and the scheduler.
 */
#ifndef DIALER_CALLSTATE_H
#define DIALER_CALLSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <libpq-fe.h>

#include "callrule.h"
#include "common.h"
#include "holidays.h"
#include "tz.h"

/* How far ahead (days) the holidays table is read, and next_window searched. */
#define CALLSTATE_HORIZON_DAYS 400
#define CALLSTATE_STR_(x)      #x
#define CALLSTATE_STR(x)       CALLSTATE_STR_(x)

/*
 * $1 company id, $2 the SKIP_HOLIDAYS default ("true"/"false"). Creates the
 * company's config row with COMPAT §3.6's defaults when missing (the only
 * write), locks nothing. Columns, read by name: enabled, wallet_balance,
 * version, skip_holidays, disabled_by_dialer, cost_per_connected, windows
 * (text "dow start end,..." in seconds since local midnight, NULL when none)
 * and holidays (json [[civil day, removed, title], ...], NULL when none): the
 * table's rows from two days before the database's current_date (which covers
 * local today in any zone) to CALLSTATE_HORIZON_DAYS after it. The official
 * solar holidays are not rows: holidays.c computes them.
 */
#define CALLSTATE_SQL                                                                                                 \
	"SELECT c.enabled, c.wallet_balance, c.version, c.skip_holidays, c.disabled_by_dialer, c.cost_per_connected," \
	" (SELECT string_agg(i.day_of_week || ' ' || extract(epoch FROM i.start_time)::integer || ' ' ||"             \
	"   extract(epoch FROM i.end_time)::integer, ',' ORDER BY i.day_of_week, i.start_time)"                       \
	"  FROM schedule_intervals i WHERE i.company_id = $1::integer) AS windows,"                                   \
	" (SELECT json_agg(json_build_array(h.date - DATE '1970-01-01', h.removed, h.title) ORDER BY h.date)"         \
	"  FROM holidays h WHERE h.date BETWEEN current_date - 2 AND current_date + " CALLSTATE_STR(                  \
	    CALLSTATE_HORIZON_DAYS) ") AS holidays"                                                                   \
	                            " FROM company_config_get($1::integer, $2::boolean) c"

/*
 * CALLSTATE_SQL for every active company at once (the scheduler's pass):
 * $1 the SKIP_HOLIDAYS default. Creates the missing config rows with
 * COMPAT §3.6's defaults (one INSERT, in a CTE), locks nothing. One row per
 * active company, ordered by company_id, with CALLSTATE_SQL's columns plus
 * company_id; `holidays` is read once and given on the first row only (NULL
 * on the others: it is the same for every company).
 */
#define CALLSTATE_ALL_SQL                                                                                      \
	"WITH live AS (SELECT id FROM companies WHERE is_active),"                                             \
	" created AS (INSERT INTO company_config (company_id, skip_holidays)"                                  \
	"  SELECT l.id, $1::boolean FROM live l"                                                               \
	"   WHERE NOT EXISTS (SELECT 1 FROM company_config k WHERE k.company_id = l.id)"                       \
	"  ON CONFLICT (company_id) DO NOTHING RETURNING *),"                                                  \
	" conf AS (SELECT k.* FROM company_config k JOIN live l ON l.id = k.company_id"                        \
	"  UNION ALL SELECT * FROM created)"                                                                   \
	" SELECT c.company_id, c.enabled, c.wallet_balance, c.version, c.skip_holidays, c.disabled_by_dialer," \
	" c.cost_per_connected,"                                                                               \
	" (SELECT string_agg(i.day_of_week || ' ' || extract(epoch FROM i.start_time)::integer || ' ' ||"      \
	"   extract(epoch FROM i.end_time)::integer, ',' ORDER BY i.day_of_week, i.start_time)"                \
	"  FROM schedule_intervals i WHERE i.company_id = c.company_id) AS windows,"                           \
	" CASE WHEN row_number() OVER (ORDER BY c.company_id) = 1 THEN"                                        \
	" (SELECT json_agg(json_build_array(h.date - DATE '1970-01-01', h.removed, h.title) ORDER BY h.date)"  \
	"  FROM holidays h WHERE h.date BETWEEN current_date - 2 AND current_date + " CALLSTATE_STR(           \
	    CALLSTATE_HORIZON_DAYS) ") END AS holidays"                                                        \
	                            " FROM conf c ORDER BY c.company_id"

/* Table rows that are holidays (not tombstones), for their titles. */
struct callstate_title {
	long day;
	char *title;
};

/* Everything callrule needs, plus what next-batch and the status answer.
 * Owned by the caller; release with callstate_free. */
struct callstate {
	bool enabled;
	bool skip_holidays;
	bool disabled_by_dialer;
	long long wallet_balance;
	long long cost_per_connected;
	long version;
	struct callrule_window *windows;
	size_t nwindows;
	struct holiday_set holidays; /* table rows only, tombstones included */
	struct callstate_title *titles;
	size_t ntitles;
};

/* A decision at one instant, in local time (jy..next_window: callstate_explain). */
struct callstate_result {
	struct callrule_decision decision;
	time_t now;
	struct tz_local local; /* now in TIMEZONE */
	int jy, jm, jd;        /* today's Jalali date */
	const char *holiday;   /* today's holiday title, or NULL; borrowed from the callstate or static */
	/* When blocked by holiday, no_window or outside_allowed_time_window: the
	 * instant the next window opens (holidays skipped when skip_holidays),
	 * within CALLSTATE_HORIZON_DAYS. False otherwise (allowed, insufficient
	 * funds, disabled, or no window ahead). */
	bool has_next_window;
	time_t next_window;
};

/*
 * Fills out from row `row` of a result with CALLSTATE_SQL's columns (found by
 * name, so a wider query may add its own). Returns 0, or -1 when a column is
 * missing or malformed (out is then empty). Caller frees with callstate_free.
 */
int callstate_from_result(const PGresult *res, int row, struct callstate *out) MUSTCHECK;

/* Releases what callstate_from_result allocated; cs itself is the caller's. */
void callstate_free(struct callstate *cs);

/*
 * Decides COMPAT §3.6's call-allowed check for instant now (no I/O; the
 * process's TZ must be set by tz_init): wallet, switch, holiday, windows. The
 * wallet block is only reported; persisting the auto-disable is the caller's.
 * short_retry / long_retry: SHORT_RETRY_SECONDS / LONG_RETRY_SECONDS. Fills
 * decision, now and local; the rest is callstate_explain's.
 */
void callstate_decide(const struct callstate *cs, time_t now, int short_retry, int long_retry,
                      struct callstate_result *out);

/* After callstate_decide, what /schedule/status shows besides the decision
 * (kept off next-batch's and the scheduler's path): today's Jalali date and
 * holiday title, and the next window. */
void callstate_explain(const struct callstate *cs, struct callstate_result *out);

/* Title of the holiday on civil day `day` (a table row, else the official
 * solar one unless a tombstone took it out), or NULL. Borrowed. */
const char *callstate_holiday_title(const struct callstate *cs, long day);

/*
 * The decision the scheduler publishes each second for next-batch: Redis key
 * CALLSTATE_KEY_FMT (company id), a JSON object {"allowed", "reason",
 * "retry_after", "schedule_version", "timezone", "computed_at" (epoch ms)}
 * set with PX CALLSTATE_TTL_MS. Whatever changes the inputs (schedule or
 * billing PUT, a report's call_allowed) deletes the key; a reader treats a
 * missing value, or one older than CALLSTATE_FRESH_MS, as unknown and decides
 * itself from the database (it never dispatches when it cannot tell).
 */
#define CALLSTATE_KEY_FMT  "dialer:callstate:%ld"
#define CALLSTATE_TTL_MS   5000
#define CALLSTATE_FRESH_MS 3000

struct callstate_published {
	bool allowed;
	char reason[40]; /* "" when allowed */
	int retry_after; /* 0 when allowed */
	long version;
	long long computed_at_ms;
};

/* The JSON to publish for a decision (caller frees). */
char *callstate_published_json(const struct callstate *cs, const struct callstate_result *r, long long computed_at_ms);

/* Parses a published value; -1 when malformed or older than CALLSTATE_FRESH_MS at now_ms
 * (or from more than a second in the future). */
int callstate_published_parse(const char *json, long long now_ms, struct callstate_published *out) MUSTCHECK;

#endif
