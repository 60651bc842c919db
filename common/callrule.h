/*
 * The call-allowed decision (COMPAT §3.6), one pure function shared by
 * next-batch, /schedule/status and the scheduler: wallet, switch, holiday,
 * weekday windows, then the time of day, in that order.
 */
#ifndef DIALER_CALLRULE_H
#define DIALER_CALLRULE_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

/* One weekly window: day_of_week Saturday = 0 ... Friday = 6; start and end
 * in seconds since local midnight, both inclusive, start < end. */
struct callrule_window {
	int day_of_week;
	int start;
	int end;
};

struct callrule_config {
	long long wallet_balance;
	bool enabled;
	bool skip_holidays;
	const struct callrule_window *windows; /* any order */
	size_t nwindows;
	int short_retry; /* SHORT_RETRY_SECONDS (300): insufficient_funds, disabled */
	int long_retry;  /* LONG_RETRY_SECONDS (900): holiday, no_window, outside_allowed_time_window */
};

enum callrule_reason {
	CALLRULE_ALLOWED = 0,
	CALLRULE_INSUFFICIENT_FUNDS,
	CALLRULE_DISABLED,
	CALLRULE_HOLIDAY,
	CALLRULE_NO_WINDOW,
	CALLRULE_OUTSIDE_WINDOW,
};

struct callrule_decision {
	bool allowed;
	enum callrule_reason reason;
	int retry_after; /* 0 when allowed */
};

/* Is civil day (tz.h numbering) a holiday? */
typedef bool (*callrule_holiday_fn)(long day, void *arg);

/*
 * Decides for local civil day `day` at `sec` seconds after local midnight.
 * Blocked by insufficient_funds/disabled: retry = short_retry. Blocked by
 * holiday/no_window/outside: retry = the seconds until the next window opens
 * (skipping holidays when skip_holidays), when that is sooner than
 * long_retry, else long_retry. Pure: no I/O, no clock.
 */
void callrule_decide(const struct callrule_config *cfg, long day, int sec, callrule_holiday_fn is_holiday, void *arg,
                     struct callrule_decision *out);

/*
 * When the next window opens at or after (day, sec) — later today (a start
 * after sec), or on a later day, skipping holidays when skip_holidays — looking
 * at most max_days ahead. True with *open_day / *open_sec set, else false.
 */
bool callrule_next_open(const struct callrule_config *cfg, long day, int sec, callrule_holiday_fn is_holiday, void *arg,
                        long max_days, long *open_day, int *open_sec);

/* The wire string of a reason ("insufficient_funds", ...), NULL for allowed. */
const char *callrule_reason_str(enum callrule_reason r);

#endif
