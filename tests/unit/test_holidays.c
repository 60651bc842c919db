/*
 * Holidays: the fixed solar list and its dates in several years, and the
 * table rows (tombstones, custom days) deciding over the rule in any order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "holidays.h"
#include "jalali.h"
#include "tz.h"

static void test_titles(void **state)
{
	static const int on[][2] = {{1, 1},  {1, 2},  {1, 3},  {1, 4},   {1, 12},
	                            {1, 13}, {3, 14}, {3, 15}, {11, 22}, {12, 29}};
	static const int off[][2] = {{1, 5},   {1, 11},  {1, 14},  {3, 13}, {3, 16}, {11, 21},
	                             {11, 23}, {12, 28}, {12, 30}, {0, 0},  {13, 1}, {-1, 1}};
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(on); i++) {
		const char *t = holidays_fixed_title(on[i][0], on[i][1]);
		assert_non_null(t);
		assert_true(strlen(t) > 0);
	}
	for (size_t i = 0; i < ARRAY_LEN(off); i++)
		assert_null(holidays_fixed_title(off[i][0], off[i][1]));
	assert_string_equal(holidays_fixed_title(1, 1), "عید نوروز");
	assert_string_equal(holidays_fixed_title(11, 22), "پیروزی انقلاب اسلامی ایران");
}

struct ycase {
	int jy;
	int g[10][3]; /* Gregorian dates of the ten holidays, in order */
};

/* Dates from Iran's official calendars for 1403 and 1404. */
static const struct ycase years[] = {
    {1403,
     {{2024, 3, 20},
      {2024, 3, 21},
      {2024, 3, 22},
      {2024, 3, 23},
      {2024, 3, 31},
      {2024, 4, 1},
      {2024, 6, 3},
      {2024, 6, 4},
      {2025, 2, 10},
      {2025, 3, 19}}},
    {1404,
     {{2025, 3, 21},
      {2025, 3, 22},
      {2025, 3, 23},
      {2025, 3, 24},
      {2025, 4, 1},
      {2025, 4, 2},
      {2025, 6, 4},
      {2025, 6, 5},
      {2026, 2, 11},
      {2026, 3, 20}}},
};

static void test_fixed_year_dates(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(years); i++) {
		struct holiday h[HOLIDAYS_FIXED_MAX];
		assert_int_equal(holidays_fixed_year(years[i].jy, h, ARRAY_LEN(h)), 10);
		for (int k = 0; k < 10; k++) {
			const int *g = years[i].g[k];
			if (h[k].gy != g[0] || h[k].gm != g[1] || h[k].gd != g[2])
				fail_msg("%d #%d (%d/%d): got %d-%d-%d, want %d-%d-%d", years[i].jy, k, h[k].jm,
				         h[k].jd, h[k].gy, h[k].gm, h[k].gd, g[0], g[1], g[2]);
			assert_int_equal(h[k].day, tz_days_from_civil(g[0], g[1], g[2]));
		}
	}
}

/* Every year 1300..1500: ten holidays, sorted, self-consistent. */
static void test_fixed_year_all(void **state)
{
	(void)state;
	for (int jy = 1300; jy <= 1500; jy++) {
		struct holiday h[HOLIDAYS_FIXED_MAX];
		int n = holidays_fixed_year(jy, h, ARRAY_LEN(h));
		assert_int_equal(n, 10);
		for (int k = 0; k < n; k++) {
			int y, m, d;
			long day;
			assert_int_equal(h[k].jy, jy);
			assert_int_equal(jalali_to_days(h[k].jy, h[k].jm, h[k].jd, &day), 0);
			assert_int_equal(day, h[k].day);
			tz_civil_from_days(day, &y, &m, &d);
			assert_true(y == h[k].gy && m == h[k].gm && d == h[k].gd);
			assert_ptr_equal(h[k].title, holidays_fixed_title(h[k].jm, h[k].jd));
			assert_true(holidays_is_holiday(NULL, day));
			if (k > 0)
				assert_true(h[k].day > h[k - 1].day);
		}
	}
	/* the whole rule, day by day: exactly ten a year */
	long from, to;
	assert_int_equal(jalali_to_days(1400, 1, 1, &from), 0);
	assert_int_equal(jalali_to_days(1410, 1, 1, &to), 0);
	int count = 0;
	for (long day = from; day < to; day++)
		count += holidays_is_holiday(NULL, day);
	assert_int_equal(count, 100);
}

static void test_fixed_year_limits(void **state)
{
	struct holiday h[HOLIDAYS_FIXED_MAX];
	(void)state;
	memset(h, 0, sizeof(h));
	assert_int_equal(holidays_fixed_year(1404, h, 3), 3);
	assert_int_equal(h[2].jd, 3);
	assert_int_equal(h[3].day, 0); /* nothing written past max */
	assert_int_equal(holidays_fixed_year(1404, h, 0), 0);
	assert_int_equal(holidays_fixed_year(0, h, ARRAY_LEN(h)), -1);
	assert_int_equal(holidays_fixed_year(JALALI_YEAR_MAX + 1, h, ARRAY_LEN(h)), -1);
	assert_int_equal(holidays_fixed_year(JALALI_YEAR_MAX, h, ARRAY_LEN(h)), 10);
	assert_int_equal(holidays_fixed_year(JALALI_YEAR_MIN, h, ARRAY_LEN(h)), 10);
	/* days the calendar cannot name are not holidays */
	assert_false(holidays_is_holiday(NULL, tz_days_from_civil(100, 1, 1)));
	assert_false(holidays_is_holiday(NULL, tz_days_from_civil(9000, 3, 21)));
}

/* Table rows decide for their day: a tombstone removes, any other row adds. */
static void test_rows_decide(void **state)
{
	(void)state;
	struct holiday_set s = {0};
	long nowruz, tasua = tz_days_from_civil(2025, 7, 5), plain = tz_days_from_civil(2025, 5, 20);
	assert_int_equal(jalali_to_days(1404, 1, 1, &nowruz), 0);
	assert_true(holidays_is_holiday(&s, nowruz)); /* empty set: the rule */
	assert_false(holidays_is_holiday(&s, tasua));
	holidays_set_add(&s, tasua, false);
	holidays_set_add(&s, nowruz, true);
	holidays_set_add(&s, plain, true); /* a tombstone on a plain day */
	assert_false(holidays_is_holiday(&s, nowruz));
	assert_true(holidays_is_holiday(&s, nowruz + 1));
	assert_true(holidays_is_holiday(&s, tasua));
	assert_false(holidays_is_holiday(&s, plain));
	assert_true(holidays_lookup(tasua, &s));
	assert_false(holidays_lookup(nowruz, &s));
	assert_true(holidays_lookup(nowruz, NULL));
	/* a later row for the same day replaces the earlier one */
	holidays_set_add(&s, nowruz, false);
	assert_true(holidays_is_holiday(&s, nowruz));
	holidays_set_add(&s, tasua, true);
	assert_false(holidays_is_holiday(&s, tasua));
	assert_int_equal(s.n, 3);
	holidays_set_free(&s);
	assert_null(s.rows);
	assert_int_equal(s.n, 0);
	holidays_set_free(&s); /* twice is fine */
}

/* Thousands of rows added in sorted, reverse and shuffled order give the same answers. */
static void test_any_order(void **state)
{
	(void)state;
	enum { SPAN = 3000, ROWS = 1200 };
	long base;
	assert_int_equal(jalali_to_days(1403, 1, 1, &base), 0);
	static long days[ROWS];
	static bool removed[ROWS];
	static signed char want[SPAN]; /* -1: no row */
	unsigned seed = 12345;
	memset(want, -1, sizeof(want));
	for (int i = 0; i < ROWS; i++) {
		long off;
		do {
			seed = seed * 1103515245u + 12345u;
			off = (long)((seed >> 8) % SPAN);
		} while (want[off] != -1);
		days[i] = base + off;
		removed[i] = (seed >> 4) & 1;
		want[off] = removed[i] ? 0 : 1;
	}
	static long sorted[ROWS];
	static bool sorted_rm[ROWS];
	for (long off = 0, k = 0; off < SPAN; off++) {
		if (want[off] != -1) {
			sorted[k] = base + off;
			sorted_rm[k++] = want[off] == 0;
		}
	}
	for (int order = 0; order < 3; order++) {
		struct holiday_set s = {0};
		for (int k = 0; k < ROWS; k++) {
			/* by day, by day backwards, and a scrambled permutation (7919 is prime to ROWS) */
			if (order == 0) {
				holidays_set_add(&s, sorted[k], sorted_rm[k]);
			} else if (order == 1) {
				holidays_set_add(&s, sorted[ROWS - 1 - k], sorted_rm[ROWS - 1 - k]);
			} else {
				int i = (int)(((unsigned)k * 7919u) % ROWS);
				holidays_set_add(&s, days[i], removed[i]);
			}
		}
		assert_int_equal(s.n, ROWS);
		for (size_t k = 1; k < s.n; k++)
			assert_true(s.rows[k - 1].day < s.rows[k].day);
		int tombstoned_fixed = 0;
		for (long off = -10; off < SPAN + 10; off++) {
			long day = base + off;
			bool rule = holidays_is_holiday(NULL, day);
			bool w = off >= 0 && off < SPAN && want[off] != -1 ? want[off] == 1 : rule;
			if (holidays_is_holiday(&s, day) != w)
				fail_msg("order %d, day offset %ld: got %d", order, off, !w);
			if (off >= 0 && off < SPAN && want[off] == 0 && rule)
				tombstoned_fixed++;
		}
		assert_true(tombstoned_fixed > 0);
		holidays_set_free(&s);
	}
}

/* A scrambled insertion order: a permutation of the rows, checked against
 * a linear scan of the last row per day. */
static void test_random_permutation(void **state)
{
	(void)state;
	enum { N = 500 };
	static long days[N];
	static bool rm[N];
	unsigned seed = 99;
	struct holiday_set s = {0};
	long base = tz_days_from_civil(2025, 1, 1);
	for (int i = 0; i < N; i++) {
		seed = seed * 1664525u + 1013904223u;
		days[i] = base + (long)((seed >> 10) % 400); /* duplicates on purpose */
		rm[i] = (seed >> 3) & 1;
		holidays_set_add(&s, days[i], rm[i]);
	}
	for (long d = base - 5; d < base + 405; d++) {
		int last = -1;
		for (int i = 0; i < N; i++)
			if (days[i] == d)
				last = i;
		bool w = last >= 0 ? !rm[last] : holidays_is_holiday(NULL, d);
		assert_int_equal(holidays_is_holiday(&s, d), w);
	}
	holidays_set_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_titles),
	    cmocka_unit_test(test_fixed_year_dates),
	    cmocka_unit_test(test_fixed_year_all),
	    cmocka_unit_test(test_fixed_year_limits),
	    cmocka_unit_test(test_rows_decide),
	    cmocka_unit_test(test_any_order),
	    cmocka_unit_test(test_random_permutation),
	};
	return cmocka_run_group_tests_name("holidays", tests, NULL, NULL);
}
