/*
 * callrule_decide, table-driven: COMPAT §3.6's order of reasons, window edges
 * to the second, and the retry hint within a day, across days and holidays.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "callrule.h"
#include "tz.h"

#define H(h, m, s) ((h)*3600 + (m)*60 + (s))
#define DAY        86400
#define SAT        0
#define SUN        1
#define MON        2
#define TUE        3
#define WED        4
#define THU        5
#define FRI        6
#define MAXW       8

/* Day offsets from base (a Saturday) that are holidays, as a bit mask. */
struct hol {
	long base;
	unsigned long long mask;
	int calls;
};

static bool hol_fn(long day, void *arg)
{
	struct hol *h = arg;
	long off = day - h->base;
	h->calls++;
	return off >= 0 && off < 64 && (h->mask >> off & 1);
}

static bool always_holiday(long day, void *arg)
{
	(void)day;
	++*(int *)arg;
	return true;
}

struct ccase {
	const char *name;
	long long wallet;
	bool enabled, skip;
	unsigned long long holidays; /* bit k: base + k is a holiday */
	int today;                   /* offset from base: its weekday is SAT + today % 7 */
	int sec;
	int long_retry; /* 0: 900 */
	struct callrule_window w[MAXW];
	enum callrule_reason want;
	int retry;
};

#define WORKDAY(d)                           \
	{                                    \
		(d), H(9, 0, 0), H(17, 0, 0) \
	}
#define ALLWEEK WORKDAY(SAT), WORKDAY(SUN), WORKDAY(MON), WORKDAY(TUE), WORKDAY(WED), WORKDAY(THU), WORKDAY(FRI)

static const struct ccase cases[] = {
    /* the order of the reasons */
    {"wallet 0 beats disabled and holiday",
     0,
     false,
     true,
     1,
     0,
     H(10, 0, 0),
     0,
     {ALLWEEK},
     CALLRULE_INSUFFICIENT_FUNDS,
     300},
    {"wallet 0, all else fine", 0, true, true, 0, 0, H(10, 0, 0), 0, {ALLWEEK}, CALLRULE_INSUFFICIENT_FUNDS, 300},
    {"wallet negative", -5, true, false, 0, 0, H(10, 0, 0), 0, {ALLWEEK}, CALLRULE_INSUFFICIENT_FUNDS, 300},
    {"disabled beats holiday", 1, false, true, 1, 0, H(10, 0, 0), 0, {ALLWEEK}, CALLRULE_DISABLED, 300},
    {"disabled, no windows", 1000, false, false, 0, 0, H(10, 0, 0), 0, {{0}}, CALLRULE_DISABLED, 300},
    {"holiday beats no_window", 1, true, true, 1, 0, H(10, 0, 0), 0, {WORKDAY(SUN)}, CALLRULE_HOLIDAY, 900},
    {"holiday inside a window", 1, true, true, 1, 0, H(10, 0, 0), 0, {ALLWEEK}, CALLRULE_HOLIDAY, 900},
    {"holiday ignored when skip_holidays is off", 1, true, false, 1, 0, H(10, 0, 0), 0, {ALLWEEK}, CALLRULE_ALLOWED, 0},
    {"no_window beats the time of day",
     1,
     true,
     true,
     0,
     0,
     H(10, 0, 0),
     0,
     {WORKDAY(SUN), WORKDAY(FRI)},
     CALLRULE_NO_WINDOW,
     900},
    {"no windows at all", 1, true, true, 0, 0, H(10, 0, 0), 0, {{0}}, CALLRULE_NO_WINDOW, 900},
    {"no windows at all, long_retry a week",
     1,
     true,
     true,
     0,
     0,
     H(10, 0, 0),
     7 * DAY,
     {{0}},
     CALLRULE_NO_WINDOW,
     7 * DAY},
    {"allowed", 1, true, true, 0, 0, H(10, 0, 0), 0, {ALLWEEK}, CALLRULE_ALLOWED, 0},
    {"outside", 1, true, true, 0, 0, H(18, 0, 0), 0, {ALLWEEK}, CALLRULE_OUTSIDE_WINDOW, 900},

    /* the edges, to the second */
    {"start - 1", 1, true, true, 0, 0, H(8, 59, 59), 0, {WORKDAY(SAT)}, CALLRULE_OUTSIDE_WINDOW, 1},
    {"start", 1, true, true, 0, 0, H(9, 0, 0), 0, {WORKDAY(SAT)}, CALLRULE_ALLOWED, 0},
    {"end", 1, true, true, 0, 0, H(17, 0, 0), 0, {WORKDAY(SAT)}, CALLRULE_ALLOWED, 0},
    {"end + 1", 1, true, true, 0, 0, H(17, 0, 1), 0, {WORKDAY(SAT)}, CALLRULE_OUTSIDE_WINDOW, 900},
    {"midnight, window from 00:00:00", 1, true, true, 0, 0, 0, 0, {{SAT, 0, H(1, 0, 0)}}, CALLRULE_ALLOWED, 0},
    {"last second, window to 23:59:59",
     1,
     true,
     true,
     0,
     0,
     H(23, 59, 59),
     0,
     {{SAT, H(23, 0, 0), H(23, 59, 59)}},
     CALLRULE_ALLOWED,
     0},
    {"another weekday's window does not count",
     1,
     true,
     true,
     0,
     1,
     H(10, 0, 0),
     0,
     {WORKDAY(SAT), {SUN, 0, 60}},
     CALLRULE_OUTSIDE_WINDOW,
     900},

    /* several windows a day: the gap between them */
    {"first of two",
     1,
     true,
     true,
     0,
     0,
     H(11, 0, 0),
     0,
     {{SAT, H(9, 0, 0), H(12, 0, 0)}, {SAT, H(14, 0, 0), H(17, 0, 0)}},
     CALLRULE_ALLOWED,
     0},
    {"end of the first",
     1,
     true,
     true,
     0,
     0,
     H(12, 0, 0),
     0,
     {{SAT, H(9, 0, 0), H(12, 0, 0)}, {SAT, H(14, 0, 0), H(17, 0, 0)}},
     CALLRULE_ALLOWED,
     0},
    {"gap: just after the first",
     1,
     true,
     true,
     0,
     0,
     H(12, 0, 1),
     0,
     {{SAT, H(9, 0, 0), H(12, 0, 0)}, {SAT, H(14, 0, 0), H(17, 0, 0)}},
     CALLRULE_OUTSIDE_WINDOW,
     900},
    {"gap: 30 s before the second",
     1,
     true,
     true,
     0,
     0,
     H(13, 59, 30),
     0,
     {{SAT, H(9, 0, 0), H(12, 0, 0)}, {SAT, H(14, 0, 0), H(17, 0, 0)}},
     CALLRULE_OUTSIDE_WINDOW,
     30},
    {"gap: exactly long_retry before",
     1,
     true,
     true,
     0,
     0,
     H(13, 45, 0),
     0,
     {{SAT, H(9, 0, 0), H(12, 0, 0)}, {SAT, H(14, 0, 0), H(17, 0, 0)}},
     CALLRULE_OUTSIDE_WINDOW,
     900},
    {"gap: long_retry + 1 before",
     1,
     true,
     true,
     0,
     0,
     H(13, 44, 59),
     0,
     {{SAT, H(9, 0, 0), H(12, 0, 0)}, {SAT, H(14, 0, 0), H(17, 0, 0)}},
     CALLRULE_OUTSIDE_WINDOW,
     900},
    {"gap: long_retry - 1 before",
     1,
     true,
     true,
     0,
     0,
     H(13, 45, 1),
     0,
     {{SAT, H(9, 0, 0), H(12, 0, 0)}, {SAT, H(14, 0, 0), H(17, 0, 0)}},
     CALLRULE_OUTSIDE_WINDOW,
     899},
    {"second of two",
     1,
     true,
     true,
     0,
     0,
     H(14, 0, 0),
     0,
     {{SAT, H(9, 0, 0), H(12, 0, 0)}, {SAT, H(14, 0, 0), H(17, 0, 0)}},
     CALLRULE_ALLOWED,
     0},
    {"before the first of three, long_retry a day",
     1,
     true,
     true,
     0,
     0,
     H(7, 0, 0),
     DAY,
     {{SAT, H(16, 0, 0), H(17, 0, 0)}, {SAT, H(9, 0, 0), H(10, 0, 0)}, {SAT, H(12, 0, 0), H(13, 0, 0)}},
     CALLRULE_OUTSIDE_WINDOW,
     H(2, 0, 0)},
    {"between the second and third (unordered), long_retry a day",
     1,
     true,
     true,
     0,
     0,
     H(14, 0, 0),
     DAY,
     {{SAT, H(16, 0, 0), H(17, 0, 0)}, {SAT, H(9, 0, 0), H(10, 0, 0)}, {SAT, H(12, 0, 0), H(13, 0, 0)}},
     CALLRULE_OUTSIDE_WINDOW,
     H(2, 0, 0)},
    {"windows in random order across days",
     1,
     true,
     true,
     0,
     0,
     H(12, 30, 0),
     7 * DAY,
     {{THU, H(1, 0, 0), H(2, 0, 0)},
      {SAT, H(15, 0, 0), H(16, 0, 0)},
      {SUN, H(0, 0, 0), H(23, 0, 0)},
      {SAT, H(13, 0, 0), H(14, 0, 0)},
      {SAT, H(8, 0, 0), H(9, 0, 0)},
      {FRI, H(12, 0, 0), H(13, 0, 0)}},
     CALLRULE_OUTSIDE_WINDOW,
     H(0, 30, 0)},
    {"inside the third of random-order windows",
     1,
     true,
     true,
     0,
     0,
     H(15, 30, 0),
     0,
     {{THU, H(1, 0, 0), H(2, 0, 0)}, {SAT, H(15, 0, 0), H(16, 0, 0)}, {SAT, H(13, 0, 0), H(14, 0, 0)}},
     CALLRULE_ALLOWED,
     0},

    /* across days */
    {"after the last window, next tomorrow: far",
     1,
     true,
     true,
     0,
     0,
     H(17, 0, 1),
     0,
     {ALLWEEK},
     CALLRULE_OUTSIDE_WINDOW,
     900},
    {"after the last window, long_retry a day",
     1,
     true,
     true,
     0,
     0,
     H(17, 0, 1),
     DAY,
     {ALLWEEK},
     CALLRULE_OUTSIDE_WINDOW,
     H(15, 59, 59)},
    {"10 s before midnight, window tomorrow at 00:00:05",
     1,
     true,
     true,
     0,
     0,
     H(23, 59, 50),
     0,
     {WORKDAY(SAT), {SUN, 5, H(1, 0, 0)}},
     CALLRULE_OUTSIDE_WINDOW,
     15},
    {"no window today, 10 s before midnight, tomorrow at 00:00:05",
     1,
     true,
     true,
     0,
     0,
     H(23, 59, 50),
     0,
     {{SUN, 5, H(1, 0, 0)}},
     CALLRULE_NO_WINDOW,
     15},
    {"Friday to Saturday (the week wraps)",
     1,
     true,
     true,
     0,
     6,
     H(23, 59, 50),
     0,
     {{SAT, 5, H(1, 0, 0)}},
     CALLRULE_NO_WINDOW,
     15},
    {"next window in 3 days, long_retry a week",
     1,
     true,
     true,
     0,
     0,
     H(10, 0, 0),
     7 * DAY,
     {WORKDAY(TUE)},
     CALLRULE_NO_WINDOW,
     3 * DAY - H(1, 0, 0)},
    {"next window a week later, long_retry 8 days",
     1,
     true,
     true,
     0,
     0,
     H(18, 0, 0),
     8 * DAY,
     {WORKDAY(SAT)},
     CALLRULE_OUTSIDE_WINDOW,
     7 * DAY - H(9, 0, 0)},

    /* across holidays */
    {"tomorrow's window on a holiday: skipped",
     1,
     true,
     true,
     1ull << 1,
     0,
     H(23, 59, 50),
     0,
     {WORKDAY(SAT), {SUN, 10, 100}, {MON, 10, 100}},
     CALLRULE_OUTSIDE_WINDOW,
     900},
    {"tomorrow's window on a holiday, skip off: counted",
     1,
     true,
     false,
     1ull << 1,
     0,
     H(23, 59, 50),
     0,
     {WORKDAY(SAT), {SUN, 10, 100}, {MON, 10, 100}},
     CALLRULE_OUTSIDE_WINDOW,
     20},
    {"tomorrow a holiday, long_retry 2 days: the day after",
     1,
     true,
     true,
     1ull << 1,
     0,
     H(23, 59, 50),
     2 * DAY,
     {WORKDAY(SAT), {SUN, 10, 100}, {MON, 10, 100}},
     CALLRULE_OUTSIDE_WINDOW,
     DAY + 20},
    {"today a holiday: its later window is skipped too",
     1,
     true,
     true,
     1,
     0,
     H(1, 0, 0),
     2 * DAY,
     {{SAT, H(2, 0, 0), H(3, 0, 0)}, {SUN, H(2, 0, 0), H(3, 0, 0)}},
     CALLRULE_HOLIDAY,
     DAY + H(1, 0, 0)},
    {"today a holiday, skip off: inside",
     1,
     true,
     false,
     1,
     0,
     H(2, 30, 0),
     2 * DAY,
     {{SAT, H(2, 0, 0), H(3, 0, 0)}, {SUN, H(2, 0, 0), H(3, 0, 0)}},
     CALLRULE_ALLOWED,
     0},
    {"Nowruz-like stretch of 13 holidays",
     1,
     true,
     true,
     0x3fffull,
     0,
     H(10, 0, 0),
     30 * DAY,
     {ALLWEEK},
     CALLRULE_HOLIDAY,
     14 * DAY - H(1, 0, 0)},
    {"holiday today, the next window 13 days on, long_retry 900",
     1,
     true,
     true,
     0x3fffull,
     0,
     H(10, 0, 0),
     0,
     {ALLWEEK},
     CALLRULE_HOLIDAY,
     900},
    {"every window day a holiday for 40 days: long_retry",
     1,
     true,
     true,
     ~0ull,
     3,
     H(10, 0, 0),
     40 * DAY,
     {WORKDAY(TUE)},
     CALLRULE_HOLIDAY,
     40 * DAY},
};

static void run_case(const struct ccase *c, long base)
{
	struct hol h = {.base = base, .mask = c->holidays};
	size_t nw = 0;
	while (nw < MAXW && c->w[nw].end != 0)
		nw++;
	struct callrule_config cfg = {
	    .wallet_balance = c->wallet,
	    .enabled = c->enabled,
	    .skip_holidays = c->skip,
	    .windows = c->w,
	    .nwindows = nw,
	    .short_retry = 300,
	    .long_retry = c->long_retry ? c->long_retry : 900,
	};
	struct callrule_decision d;
	memset(&d, 0xAB, sizeof(d));
	callrule_decide(&cfg, base + c->today, c->sec, hol_fn, &h, &d);
	if (d.reason != c->want || d.retry_after != c->retry || d.allowed != (c->want == CALLRULE_ALLOWED))
		fail_msg("%s: got %s/%d allowed=%d, want %s/%d", c->name, callrule_reason_str(d.reason), d.retry_after,
		         d.allowed, callrule_reason_str(c->want), c->retry);
}

static long saturday(void)
{
	long base = tz_days_from_civil(2025, 3, 22); /* 2 Farvardin 1404, a Saturday */
	assert_int_equal(tz_weekday_iran(base), SAT);
	return base;
}

static void test_table(void **state)
{
	(void)state;
	long base = saturday();
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		run_case(&cases[i], base);
	/* the same table a year of weeks later: only the weekday matters */
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		run_case(&cases[i], base + 7 * 52);
}

/* Every second of a day against a schedule of two windows, checked by brute force. */
static void test_every_second(void **state)
{
	(void)state;
	long base = saturday();
	static const struct callrule_window w[] = {
	    {SAT, H(13, 0, 0), H(13, 30, 0)}, {SAT, H(9, 0, 0), H(12, 0, 0)}, {SUN, H(0, 10, 0), H(5, 0, 0)}};
	struct callrule_config cfg = {1000, true, true, w, ARRAY_LEN(w), 300, 900};
	for (int s = 0; s < DAY; s++) {
		struct callrule_decision d;
		callrule_decide(&cfg, base, s, NULL, NULL, &d);
		bool in = (s >= H(9, 0, 0) && s <= H(12, 0, 0)) || (s >= H(13, 0, 0) && s <= H(13, 30, 0));
		int next = s < H(9, 0, 0) ? H(9, 0, 0) - s : s < H(13, 0, 0) ? H(13, 0, 0) - s : DAY - s + H(0, 10, 0);
		if (next > 900)
			next = 900;
		if (d.allowed != in || d.retry_after != (in ? 0 : next) ||
		    d.reason != (in ? CALLRULE_ALLOWED : CALLRULE_OUTSIDE_WINDOW))
			fail_msg("second %d: allowed=%d retry=%d", s, d.allowed, d.retry_after);
	}
}

/* A NULL holiday function means no holidays; skip_holidays does not matter then. */
static void test_no_holiday_fn(void **state)
{
	(void)state;
	long base = saturday();
	struct callrule_window w[] = {{SAT, H(9, 0, 0), H(17, 0, 0)}};
	struct callrule_config cfg = {1, true, true, w, 1, 300, 900};
	struct callrule_decision d;
	callrule_decide(&cfg, base, H(10, 0, 0), NULL, NULL, &d);
	assert_true(d.allowed);
	assert_int_equal(d.retry_after, 0);
}

/* The holiday function is not consulted when skip_holidays is off, nor
 * further ahead than long_retry reaches. */
static void test_holiday_calls(void **state)
{
	(void)state;
	long base = saturday();
	struct callrule_window w[] = {{SUN, H(9, 0, 0), H(17, 0, 0)}};
	struct hol h = {.base = base, .mask = ~0ull};
	struct callrule_config cfg = {1, true, false, w, 1, 300, 900};
	struct callrule_decision d;
	callrule_decide(&cfg, base, H(10, 0, 0), hol_fn, &h, &d);
	assert_int_equal(d.reason, CALLRULE_NO_WINDOW);
	assert_int_equal(h.calls, 0);
	cfg.skip_holidays = true;
	callrule_decide(&cfg, base, H(10, 0, 0), hol_fn, &h, &d);
	assert_int_equal(d.reason, CALLRULE_HOLIDAY);
	assert_int_equal(d.retry_after, 900);
	assert_in_range(h.calls, 1, 3);
	/* every day a holiday and a huge long_retry: the search gives up after about 400 days */
	int calls = 0;
	cfg.long_retry = 2000000000;
	callrule_decide(&cfg, base, H(10, 0, 0), always_holiday, &calls, &d);
	assert_int_equal(d.reason, CALLRULE_HOLIDAY);
	assert_int_equal(d.retry_after, 2000000000);
	assert_in_range(calls, 50, 420);
}

static void test_reason_str(void **state)
{
	(void)state;
	assert_null(callrule_reason_str(CALLRULE_ALLOWED));
	assert_string_equal(callrule_reason_str(CALLRULE_INSUFFICIENT_FUNDS), "insufficient_funds");
	assert_string_equal(callrule_reason_str(CALLRULE_DISABLED), "disabled");
	assert_string_equal(callrule_reason_str(CALLRULE_HOLIDAY), "holiday");
	assert_string_equal(callrule_reason_str(CALLRULE_NO_WINDOW), "no_window");
	assert_string_equal(callrule_reason_str(CALLRULE_OUTSIDE_WINDOW), "outside_allowed_time_window");
	assert_null(callrule_reason_str((enum callrule_reason)99));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),         cmocka_unit_test(test_every_second),
	    cmocka_unit_test(test_no_holiday_fn), cmocka_unit_test(test_holiday_calls),
	    cmocka_unit_test(test_reason_str),
	};
	return cmocka_run_group_tests_name("callrule", tests, NULL, NULL);
}
