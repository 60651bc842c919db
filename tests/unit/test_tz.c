/*
 * Table-driven tests of tz.c: ISO 8601 instants as the dialer agents send
 * them, and local time in Asia/Tehran.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "tz.h"

static void test_parse_instant(void **state)
{
	static const struct {
		const char *in;
		int ok;
		int64_t usec;
	} cases[] = {
	    {"2026-02-18T10:00:00.123456+00:00", 1, 1771408800123456LL},
	    {"2026-02-18T10:00:00Z", 1, 1771408800000000LL},
	    {"2026-02-18t10:00:00z", 1, 1771408800000000LL},
	    {"2026-02-18 13:30:00+03:30", 1, 1771408800000000LL},
	    {"2026-02-18T13:30:00+0330", 1, 1771408800000000LL},
	    {"2026-02-18T05:00:00-05:00", 1, 1771408800000000LL},
	    {"2026-02-18T10:00:00.5Z", 1, 1771408800500000LL},
	    {"2026-02-18T10:00:00.123456789Z", 1, 1771408800123456LL},
	    {"1970-01-01T00:00:00Z", 1, 0},
	    {"2024-02-29T00:00:00Z", 1, 1709164800000000LL},
	    {"2026-02-18T10:00:00", 0, 0},  /* naive */
	    {"2026-02-18", 0, 0},           /* a date */
	    {"2026-02-30T10:00:00Z", 0, 0}, /* no such day */
	    {"2025-02-29T10:00:00Z", 0, 0}, /* not a leap year */
	    {"2026-13-01T10:00:00Z", 0, 0},
	    {"2026-02-18T24:00:00Z", 0, 0},
	    {"2026-02-18T10:60:00Z", 0, 0},
	    {"2026-02-18T10:00:00.Z", 0, 0},
	    {"2026-02-18T10:00:00.1234567890Z", 0, 0},
	    {"2026-02-18T10:00:00+24:00", 0, 0},
	    {"2026-02-18T10:00:00+3:30", 0, 0},
	    {"2026-02-18T10:00:00Z trailing", 0, 0},
	    {"2026-2-18T10:00:00Z", 0, 0},
	    {"yesterday", 0, 0},
	    {"", 0, 0},
	    {"1771408800", 0, 0},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t us = -1;
		int rc = tz_parse_instant(cases[i].in, &us);
		if (rc != (cases[i].ok ? 0 : -1))
			fail_msg("%s: rc %d", cases[i].in, rc);
		if (cases[i].ok && us != cases[i].usec)
			fail_msg("%s: %lld, expected %lld", cases[i].in, (long long)us, (long long)cases[i].usec);
	}
	int64_t us;
	assert_int_equal(tz_parse_instant(NULL, &us), -1);
}

static void test_tehran(void **state)
{
	struct tz_local l;
	char buf[40];
	(void)state;
	assert_int_equal(tz_init("Asia/Tehran"), 0);
	tz_local_from_utc(1771408800, &l); /* 2026-02-18T10:00Z = 13:30 in Tehran */
	assert_int_equal(l.y, 2026);
	assert_int_equal(l.m, 2);
	assert_int_equal(l.d, 18);
	assert_int_equal(l.sec, 13 * 3600 + 30 * 60);
	assert_int_equal(l.utc_offset, 12600);
	assert_int_equal(tz_weekday_iran(l.day), 4); /* a Wednesday */
	tz_format_local(1771408800, buf, sizeof(buf));
	assert_string_equal(buf, "2026-02-18T13:30:00+03:30");
	assert_int_equal(tz_local_midnight(2026, 2, 18), 1771360200); /* 2026-02-17T20:30Z */
	assert_int_equal(tz_init("Nowhere/Atlantis"), -1);
	assert_int_equal(tz_init("../etc/passwd"), -1);
}

/* Local (Tehran) calendar days as the filters send them. */
static void test_local_day_start(void **state)
{
	static const struct {
		const char *in;
		int days_after;
		long long start; /* -1: refused */
	} cases[] = {
	    {"2026-02-18", 0, 1771360200}, /* 2026-02-17T20:30Z */
	    {"2026-02-18", 1, 1771446600}, /* the next midnight */
	    {"2026-2-8", 0, 1770496200},   /* one-digit month and day */
	    {"\xdb\xb2\xdb\xb0\xdb\xb2\xdb\xb6-\xdb\xb0\xdb\xb2-\xdb\xb1\xdb\xb8", 0, 1771360200}, /* Persian */
	    {"2026-02-28", 1, 1772310600}, /* 2026-03-01T00:00+03:30 */
	    {"2026-02-30", 0, -1},
	    {"2026-13-01", 0, -1},
	    {"1800-01-01", 0, -1},
	    {"18-02-2026", 0, -1},
	    {"", 0, -1},
	};
	(void)state;
	assert_int_equal(tz_init("Asia/Tehran"), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		time_t t = 0;
		int rc = tz_local_day_start(cases[i].in, cases[i].days_after, &t);
		if (cases[i].start < 0) {
			if (rc != -1)
				fail_msg("%s: accepted", cases[i].in);
		} else if (rc != 0 || (long long)t != cases[i].start) {
			fail_msg("%s +%d: rc %d, %lld, expected %lld", cases[i].in, cases[i].days_after, rc,
			         (long long)t, cases[i].start);
		}
	}
}

/* Gregorian dates as the stats ranges and the filters send them, to civil days. */
static void test_parse_day(void **state)
{
	static const struct {
		const char *in;
		long day; /* -1: refused */
	} cases[] = {
	    {"1970-01-01", 0},
	    {"2026-02-18", 20502},
	    {"2026-2-8", 20492},
	    {"2026/02/18", 20502},
	    {"\xdb\xb2\xdb\xb0\xdb\xb2\xdb\xb6-\xdb\xb0\xdb\xb2-\xdb\xb1\xdb\xb8", 20502}, /* Persian */
	    {"\xd9\xa2\xd9\xa0\xd9\xa2\xd9\xa6-\xd9\xa0\xd9\xa2-\xd9\xa1\xd9\xa8", 20502}, /* Arabic-Indic */
	    {"2024-02-29", 19782},
	    {"1900-01-01", -25567},
	    {"9999-12-31", 2932896},
	    {"2025-02-29", -1}, /* not a leap year */
	    {"2026-02-30", -1},
	    {"2026-04-31", -1},
	    {"2026-13-01", -1},
	    {"1899-12-31", -1},
	    {"2026-02-18T00:00:00", -1},
	    {"18-02-2026", -1},
	    {"yesterday", -1},
	    {"", -1},
	};
	long day;
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		day = -7;
		int rc = tz_parse_day(cases[i].in, &day);
		if (cases[i].day == -1) {
			if (rc != -1 || day != -7)
				fail_msg("%s: rc %d, day %ld: expected refused, day untouched", cases[i].in, rc, day);
		} else if (rc != 0 || day != cases[i].day) {
			fail_msg("%s: rc %d, day %ld, expected %ld", cases[i].in, rc, day, cases[i].day);
		}
	}
	assert_int_equal(tz_parse_day(NULL, &day), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_instant),
	    cmocka_unit_test(test_tehran),
	    cmocka_unit_test(test_local_day_start),
	    cmocka_unit_test(test_parse_day),
	};
	return cmocka_run_group_tests_name("tz", tests, NULL, NULL);
}
