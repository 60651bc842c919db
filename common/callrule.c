/*
 * The call-allowed decision (COMPAT §3.6) and the hint of when to ask again:
 * the seconds until the next window opens, capped at long_retry.
 */
#include "callrule.h"
#include "tz.h"

#define DAY_SECONDS       86400L
#define SEARCH_DAYS_AHEAD 400 /* a year of holidays and empty weekdays, and then some */

static bool day_is_skipped(const struct callrule_config *cfg, long day, callrule_holiday_fn is_holiday, void *arg)
{
	return cfg->skip_holidays && is_holiday && is_holiday(day, arg);
}

/* Earliest start among day_of_week's windows that is > after (-1: none). */
static int first_start_after(const struct callrule_config *cfg, int dow, int after)
{
	int best = -1;
	for (size_t i = 0; i < cfg->nwindows; i++) {
		const struct callrule_window *w = &cfg->windows[i];
		if (w->day_of_week == dow && w->start > after && (best < 0 || w->start < best))
			best = w->start;
	}
	return best;
}

bool callrule_next_open(const struct callrule_config *cfg, long day, int sec, callrule_holiday_fn is_holiday, void *arg,
                        long max_days, long *open_day, int *open_sec)
{
	for (long d = 0; d <= max_days; d++) {
		int start = first_start_after(cfg, tz_weekday_iran(day + d), d == 0 ? sec : -1);
		if (start < 0 || day_is_skipped(cfg, day + d, is_holiday, arg))
			continue;
		*open_day = day + d;
		*open_sec = start;
		return true;
	}
	return false;
}

/*
 * Seconds from (day, sec) until the next window opens, or long_retry when that
 * is later (or never). Only the days that could beat long_retry are searched.
 */
static int next_open_retry(const struct callrule_config *cfg, long day, int sec, callrule_holiday_fn is_holiday,
                           void *arg)
{
	long cap = cfg->long_retry, open_day;
	int open_sec;
	long days = (sec + cap) / DAY_SECONDS; /* the last day whose windows can open within cap */
	if (!callrule_next_open(cfg, day, sec, is_holiday, arg, days < SEARCH_DAYS_AHEAD ? days : SEARCH_DAYS_AHEAD,
	                        &open_day, &open_sec))
		return cfg->long_retry;
	long wait = (open_day - day) * DAY_SECONDS - sec + open_sec;
	return (int)(wait < cap ? wait : cap);
}

void callrule_decide(const struct callrule_config *cfg, long day, int sec, callrule_holiday_fn is_holiday, void *arg,
                     struct callrule_decision *out)
{
	out->allowed = false;
	out->retry_after = cfg->short_retry;
	if (cfg->wallet_balance <= 0) {
		out->reason = CALLRULE_INSUFFICIENT_FUNDS;
		return;
	}
	if (!cfg->enabled) {
		out->reason = CALLRULE_DISABLED;
		return;
	}
	if (day_is_skipped(cfg, day, is_holiday, arg)) {
		out->reason = CALLRULE_HOLIDAY;
	} else {
		int dow = tz_weekday_iran(day);
		bool any = false;
		for (size_t i = 0; i < cfg->nwindows; i++) {
			const struct callrule_window *w = &cfg->windows[i];
			if (w->day_of_week != dow)
				continue;
			any = true;
			if (sec >= w->start && sec <= w->end) {
				out->allowed = true;
				out->reason = CALLRULE_ALLOWED;
				out->retry_after = 0;
				return;
			}
		}
		out->reason = any ? CALLRULE_OUTSIDE_WINDOW : CALLRULE_NO_WINDOW;
	}
	out->retry_after = next_open_retry(cfg, day, sec, is_holiday, arg);
}

const char *callrule_reason_str(enum callrule_reason r)
{
	switch (r) {
	case CALLRULE_ALLOWED:
		return NULL;
	case CALLRULE_INSUFFICIENT_FUNDS:
		return "insufficient_funds";
	case CALLRULE_DISABLED:
		return "disabled";
	case CALLRULE_HOLIDAY:
		return "holiday";
	case CALLRULE_NO_WINDOW:
		return "no_window";
	case CALLRULE_OUTSIDE_WINDOW:
		return "outside_allowed_time_window";
	}
	return NULL;
}
