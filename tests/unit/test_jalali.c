/*
 * Jalali conversion: published anchors, every day of 1300..1500 both ways,
 * and each Nowruz of 1300..1501 against an astronomical oracle (Meeus).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "jalali.h"
#include "tz.h"

struct anchor {
	int jy, jm, jd;
	int gy, gm, gd;
};

/* Dates as Iranian calendars and the press print them. */
static const struct anchor anchors[] = {
    {1404, 1, 1, 2025, 3, 21},   /* Nowruz 1404 */
    {1403, 1, 1, 2024, 3, 20},   /* Nowruz 1403 (a day early: 1403 is leap) */
    {1300, 1, 1, 1921, 3, 21},   /* Nowruz 1300 */
    {1403, 12, 30, 2025, 3, 20}, /* 1403 is leap */
    {1399, 12, 30, 2021, 3, 20}, /* 1399 is leap */
    {1402, 12, 29, 2024, 3, 19}, /* the last day of a common year */
    {1400, 1, 1, 2021, 3, 21},
    {1405, 1, 1, 2026, 3, 21},
    {1404, 12, 29, 2026, 3, 20},
    {1357, 11, 22, 1979, 2, 11}, /* the revolution's victory */
    {1378, 10, 11, 2000, 1, 1},
    {1399, 10, 12, 2021, 1, 1},
    {1404, 7, 1, 2025, 9, 23}, /* the first day of a 30-day month */
    {1404, 6, 31, 2025, 9, 22},
    {1, 1, 1, 622, 3, 22}, /* the epoch: Julian 19 March 622, proleptic Gregorian 22 March */
};

static void test_anchors(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(anchors); i++) {
		const struct anchor *a = &anchors[i];
		int gy = 0, gm = 0, gd = 0, jy = 0, jm = 0, jd = 0;
		assert_int_equal(jalali_to_gregorian(a->jy, a->jm, a->jd, &gy, &gm, &gd), 0);
		if (gy != a->gy || gm != a->gm || gd != a->gd)
			fail_msg("%d-%d-%d SH: got %d-%d-%d, want %d-%d-%d", a->jy, a->jm, a->jd, gy, gm, gd, a->gy,
			         a->gm, a->gd);
		assert_int_equal(jalali_from_gregorian(a->gy, a->gm, a->gd, &jy, &jm, &jd), 0);
		if (jy != a->jy || jm != a->jm || jd != a->jd)
			fail_msg("%d-%d-%d: got %d-%d-%d SH, want %d-%d-%d", a->gy, a->gm, a->gd, jy, jm, jd, a->jy,
			         a->jm, a->jd);
	}
}

/* Leap years as published (Iran's calendar center) around now. */
static void test_known_leap_years(void **state)
{
	static const int leap[] = {1375, 1379, 1383, 1387, 1391, 1395, 1399, 1403, 1408};
	static const int common[] = {1396, 1397, 1398, 1400, 1401, 1402, 1404, 1405, 1406, 1407};
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(leap); i++)
		assert_true(jalali_is_leap(leap[i]));
	for (size_t i = 0; i < ARRAY_LEN(common); i++)
		assert_false(jalali_is_leap(common[i]));
}

/*
 * Every day from 1 Farvardin 1300 to the end of 1500, walked with an
 * independent day counter: both directions, the Gregorian round trip, month
 * lengths, and 30 Esfand exactly in leap years.
 */
static void test_every_day(void **state)
{
	(void)state;
	long day0, end;
	assert_int_equal(jalali_to_days(1300, 1, 1, &day0), 0);
	assert_int_equal(jalali_to_days(1500, 12, 29, &end), 0);
	if (jalali_is_leap(1500))
		end++;
	int y = 1300, m = 1, d = 1, leaps = 0;
	long n = 0;
	for (long day = day0; day <= end; day++, n++) {
		int jy, jm, jd, gy, gm, gd, ry, rm, rd;
		long back;
		if (jalali_from_days(day, &jy, &jm, &jd) != 0 || jy != y || jm != m || jd != d)
			fail_msg("day %ld: got %d-%d-%d, want %d-%d-%d", day, jy, jm, jd, y, m, d);
		assert_int_equal(jalali_to_days(y, m, d, &back), 0);
		assert_int_equal(back, day);
		tz_civil_from_days(day, &gy, &gm, &gd);
		assert_int_equal(jalali_from_gregorian(gy, gm, gd, &ry, &rm, &rd), 0);
		assert_true(ry == y && rm == m && rd == d);
		assert_int_equal(jalali_to_gregorian(y, m, d, &ry, &rm, &rd), 0);
		assert_true(ry == gy && rm == gm && rd == gd);

		/* advance the counter by the calendar's rule, not the code's */
		int len = m <= 6 ? 31 : m <= 11 ? 30 : 29;
		if (m == 12 && jalali_is_leap(y))
			len = 30;
		assert_int_equal(jalali_month_length(y, m), len);
		if (++d > len) {
			if (m == 12 && len == 30)
				leaps++;
			d = 1;
			if (++m > 12) {
				m = 1;
				y++;
			}
		}
	}
	assert_int_equal(y, 1501);
	assert_int_equal(m, 1);
	assert_int_equal(d, 1);
	/* 201 years: 365 each plus one per leap year; about 8 leaps in 33 years */
	assert_int_equal(n, 201L * 365 + leaps);
	assert_int_equal(leaps, 49);
	long next;
	assert_int_equal(jalali_to_days(1501, 1, 1, &next), 0);
	assert_int_equal(next, end + 1);
	/* 30 Esfand: valid exactly in leap years */
	for (int jy = 1300; jy <= 1500; jy++) {
		long x;
		assert_int_equal(jalali_to_days(jy, 12, 30, &x) == 0, jalali_is_leap(jy));
		assert_int_equal(jalali_to_days(jy, 12, 29, &x), 0);
		assert_int_equal(jalali_month_length(jy, 12), jalali_is_leap(jy) ? 30 : 29);
	}
}

/* Year lengths over the whole range agree with the day numbers. */
static void test_year_lengths(void **state)
{
	(void)state;
	long prev;
	assert_int_equal(jalali_to_days(1, 1, 1, &prev), 0);
	for (int jy = 2; jy <= JALALI_YEAR_MAX; jy++) {
		long cur;
		assert_int_equal(jalali_to_days(jy, 1, 1, &cur), 0);
		long len = cur - prev;
		if (len != (jalali_is_leap(jy - 1) ? 366 : 365))
			fail_msg("year %d has %ld days, is_leap=%d", jy - 1, len, jalali_is_leap(jy - 1));
		prev = cur;
	}
	/* the last convertible day, and the next one is out of range */
	long last;
	int jy, jm, jd;
	assert_int_equal(jalali_to_days(JALALI_YEAR_MAX, 12, jalali_month_length(JALALI_YEAR_MAX, 12), &last), 0);
	assert_int_equal(jalali_from_days(last, &jy, &jm, &jd), 0);
	assert_int_equal(jy, JALALI_YEAR_MAX);
	assert_int_equal(jalali_from_days(last + 1, &jy, &jm, &jd), -1);
	assert_int_equal(jalali_from_days(tz_days_from_civil(5000, 1, 1), &jy, &jm, &jd), -1);
	assert_int_equal(jalali_from_days(-1000000000L, &jy, &jm, &jd), -1);
	assert_int_equal(jalali_from_days(1000000000L, &jy, &jm, &jd), -1);
	long first;
	assert_int_equal(jalali_to_days(1, 1, 1, &first), 0);
	assert_int_equal(jalali_from_days(first - 1, &jy, &jm, &jd), -1);
}

/* ---- the oracle: Meeus, Astronomical Algorithms (2nd ed.), ch. 27 ---- */

/* Table 27.C: the 24 periodic terms A, B (degrees), C (degrees per century). */
static const double equinox_terms[24][3] = {
    {485, 324.96, 1934.136}, {203, 337.23, 32964.467}, {199, 342.08, 20.186},   {182, 27.85, 445267.112},
    {156, 73.14, 45036.886}, {136, 171.52, 22518.443}, {77, 222.54, 65928.934}, {74, 296.72, 3034.906},
    {70, 243.58, 9037.513},  {58, 119.81, 33718.147},  {52, 297.17, 150.678},   {50, 21.02, 2281.226},
    {45, 247.54, 29929.562}, {44, 325.15, 31555.956},  {29, 60.93, 4443.417},   {18, 155.12, 67555.328},
    {17, 288.79, 4562.452},  {16, 198.04, 62894.029},  {14, 199.76, 31436.921}, {12, 95.39, 14577.848},
    {12, 287.11, 31931.756}, {12, 320.81, 34777.259},  {9, 227.73, 1222.114},   {8, 15.45, 16859.074},
};

static double deg2rad(double d)
{
	return d * M_PI / 180.0;
}

/* ΔT = TT - UT in seconds (Espenak & Meeus polynomials, 1900..2150). */
static double delta_t(double y)
{
	double t;
	if (y < 1920) {
		t = y - 1900;
		return -2.79 + 1.494119 * t - 0.0598939 * t * t + 0.0061966 * t * t * t - 0.000197 * t * t * t * t;
	}
	if (y < 1941) {
		t = y - 1920;
		return 21.20 + 0.84493 * t - 0.076100 * t * t + 0.0020936 * t * t * t;
	}
	if (y < 1961) {
		t = y - 1950;
		return 29.07 + 0.407 * t - t * t / 233 + t * t * t / 2547;
	}
	if (y < 1986) {
		t = y - 1975;
		return 45.45 + 1.067 * t - t * t / 260 - t * t * t / 718;
	}
	if (y < 2005) {
		t = y - 2000;
		return 63.86 + 0.3345 * t - 0.060374 * t * t + 0.0017275 * pow(t, 3) + 0.000651814 * pow(t, 4) +
		       0.00002373599 * pow(t, 5);
	}
	if (y < 2050) {
		t = y - 2000;
		return 62.92 + 0.32217 * t + 0.005589 * t * t;
	}
	t = (y - 1820) / 100;
	return -20 + 32 * t * t - 0.5628 * (2150 - y);
}

/* The March equinox of Gregorian year y (1000..3000) as a Unix time (UT). */
static double march_equinox_unix(int year)
{
	double y = (year - 2000) / 1000.0;
	/* Table 27.B, years +1000..+3000 */
	double jde0 =
	    2451623.80984 + 365242.37404 * y + 0.05169 * y * y - 0.00411 * y * y * y - 0.00057 * y * y * y * y;
	double t = (jde0 - 2451545.0) / 36525;
	double w = deg2rad(35999.373 * t - 2.47);
	double dl = 1 + 0.0334 * cos(w) + 0.0007 * cos(2 * w);
	double s = 0;
	for (size_t i = 0; i < ARRAY_LEN(equinox_terms); i++)
		s += equinox_terms[i][0] * cos(deg2rad(equinox_terms[i][1] + equinox_terms[i][2] * t));
	double jde = jde0 + 0.00001 * s / dl; /* Terrestrial Time */
	return (jde - 2440587.5) * 86400.0 - delta_t(year);
}

#define IRST_OFFSET (3.5 * 3600) /* 52.5°E: UTC+3:30 */
#define NOON_MARGIN 600.0        /* seconds: closer than this to noon is too close to call */

/* Nowruz by Iran's rule: the equinox before noon at 52.5°E makes that day
 * 1 Farvardin, otherwise the next day. *margin: |equinox - noon| in seconds. */
static long oracle_nowruz(int gy, double *margin)
{
	double local = march_equinox_unix(gy) + IRST_OFFSET;
	double day = floor(local / 86400.0);
	double tod = local - day * 86400.0;
	*margin = fabs(tod - 43200.0);
	return (long)day + (tod < 43200.0 ? 0 : 1);
}

/* The oracle itself against equinoxes published by the USNO (UTC, minutes). */
static void test_oracle_self_check(void **state)
{
	static const struct {
		int y, m, d, hh, mm;
	} pub[] = {
	    {2000, 3, 20, 7, 35},  {2019, 3, 20, 21, 58}, {2020, 3, 20, 3, 50}, {2021, 3, 20, 9, 37},
	    {2022, 3, 20, 15, 33}, {2023, 3, 20, 21, 24}, {2024, 3, 20, 3, 6},  {2025, 3, 20, 9, 1},
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(pub); i++) {
		double want = (double)tz_days_from_civil(pub[i].y, pub[i].m, pub[i].d) * 86400.0 + pub[i].hh * 3600 +
		              pub[i].mm * 60;
		double got = march_equinox_unix(pub[i].y);
		if (fabs(got - want) > 120)
			fail_msg("equinox %d: off by %.0f s", pub[i].y, got - want);
	}
}

static void test_nowruz_against_oracle(void **state)
{
	(void)state;
	int checked = 0, skipped = 0, leap_checked = 0;
	long prev_nowruz = 0;
	bool prev_ok = false;
	for (int jy = 1300; jy <= 1501; jy++) {
		double margin;
		long want = oracle_nowruz(jy + 621, &margin);
		long got;
		assert_int_equal(jalali_to_days(jy, 1, 1, &got), 0);
		if (margin < NOON_MARGIN) {
			int y, m, d;
			tz_civil_from_days(want, &y, &m, &d);
			print_message("oracle: skipped %d SH, equinox %.0f s from noon (oracle says %d-%02d-%02d)\n",
			              jy, margin, y, m, d);
			skipped++;
			prev_ok = false;
			continue;
		}
		if (got != want) {
			int y, m, d, wy, wm, wd;
			tz_civil_from_days(got, &y, &m, &d);
			tz_civil_from_days(want, &wy, &wm, &wd);
			fail_msg(
			    "1 Farvardin %d: code says %d-%02d-%02d, the equinox rule %d-%02d-%02d (%.0f s from noon)",
			    jy, y, m, d, wy, wm, wd, margin);
		}
		checked++;
		/* the leap-year boundary: year jy-1's length from two oracle Nowruzes */
		if (prev_ok && jy - 1 >= 1300) {
			assert_int_equal(want - prev_nowruz == 366, jalali_is_leap(jy - 1));
			leap_checked++;
		}
		prev_nowruz = want;
		prev_ok = true;
	}
	print_message("oracle: 1 Farvardin of 1300..1501: %d checked, %d skipped; %d year lengths checked\n", checked,
	              skipped, leap_checked);
	assert_int_equal(checked + skipped, 202);
	assert_true(skipped <= 8);
}

static void test_invalid(void **state)
{
	static const struct {
		int y, m, d;
	} bad_j[] = {
	    {1403, 13, 1},  {1403, 0, 1}, {1403, 1, 32}, {1403, 1, 0}, {1403, 7, 31}, {1402, 12, 30},
	    {1404, 12, 30}, {0, 1, 1},    {-5, 1, 1},    {3178, 1, 1}, {1403, -1, 1}, {1403, 12, 31},
	};
	static const struct {
		int y, m, d;
	} bad_g[] = {
	    {2023, 2, 29}, {2024, 2, 30}, {1900, 2, 29}, {2024, 13, 1}, {2024, 0, 1},  {2024, 4, 31},
	    {2024, 1, 0},  {2024, 1, 32}, {500, 1, 1},   {622, 3, 21},  {10000, 1, 1}, {-1, 3, 21},
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(bad_j); i++) {
		int gy = 7, gm = 7, gd = 7;
		long day = 7;
		if (jalali_to_gregorian(bad_j[i].y, bad_j[i].m, bad_j[i].d, &gy, &gm, &gd) != -1)
			fail_msg("accepted %d-%d-%d SH", bad_j[i].y, bad_j[i].m, bad_j[i].d);
		assert_int_equal(jalali_to_days(bad_j[i].y, bad_j[i].m, bad_j[i].d, &day), -1);
		assert_true(gy == 7 && gm == 7 && gd == 7 && day == 7);
	}
	for (size_t i = 0; i < ARRAY_LEN(bad_g); i++) {
		int jy = 7, jm = 7, jd = 7;
		if (jalali_from_gregorian(bad_g[i].y, bad_g[i].m, bad_g[i].d, &jy, &jm, &jd) != -1)
			fail_msg("accepted %d-%d-%d", bad_g[i].y, bad_g[i].m, bad_g[i].d);
		assert_true(jy == 7 && jm == 7 && jd == 7);
	}
	/* valid edges next to the invalid ones */
	int a, b, c;
	assert_int_equal(jalali_from_gregorian(2024, 2, 29, &a, &b, &c), 0);
	assert_int_equal(jalali_from_gregorian(2000, 2, 29, &a, &b, &c), 0);
	assert_int_equal(jalali_from_gregorian(622, 3, 22, &a, &b, &c), 0);
	assert_int_equal(jalali_month_length(1403, 0), 0);
	assert_int_equal(jalali_month_length(1403, 13), 0);
	assert_false(jalali_is_leap(0));
	assert_false(jalali_is_leap(3178));
}

struct pcase {
	const char *in;
	int ok, y, m, d;
};

static const struct pcase parse_cases[] = {
    {"1404-01-01", 1, 1404, 1, 1},
    {"1404-1-1", 1, 1404, 1, 1},
    {"1403-12-30", 1, 1403, 12, 30},
    {"1402-12-30", 1, 1402, 12, 30}, /* shape only: the calendar is checked elsewhere */
    {"1404/02/31", 1, 1404, 2, 31},
    {"\xdb\xb1\xdb\xb4\xdb\xb0\xdb\xb4-\xdb\xb0\xdb\xb1-\xdb\xb1\xdb\xb3", 1, 1404, 1, 13},  /* ۱۴۰۴-۰۱-۱۳ */
    {"\xdb\xb1\xdb\xb4\xdb\xb0\xdb\xb5/\xdb\xb1\xdb\xb1/\xdb\xb2\xdb\xb2", 1, 1405, 11, 22}, /* ۱۴۰۵/۱۱/۲۲ */
    {"\xd9\xa1\xd9\xa4\xd9\xa0\xd9\xa3-\xd9\xa9-\xd9\xa2\xd9\xa9", 1, 1403, 9, 29},          /* ١٤٠٣-٩-٢٩ */
    {"14\xdb\xb0\xd9\xa4-0\xdb\xb3-\xd9\xa1\xdb\xb4", 1, 1404, 3, 14},                       /* mixed scripts */
    {"0001-01-01", 1, 1, 1, 1},
    {"9999-12-31", 1, 9999, 12, 31},
    {NULL, 0},
    {"", 0},
    {"1404", 0},
    {"1404-01", 0},
    {"1404-01-", 0},
    {"1404--01", 0},
    {"-01-01", 0},
    {"1404-13-01", 0},
    {"1404-00-01", 0},
    {"1404-01-32", 0},
    {"1404-01-00", 0},
    {"0000-01-01", 0},
    {"14041-01-01", 0},
    {"1404-001-01", 0},
    {"1404-01-001", 0},
    {" 1404-01-01", 0},
    {"1404-01-01 ", 0},
    {"1404-01-01-01", 0},
    {"1404/01-01", 0},
    {"1404.01.01", 0},
    {"abcd-ef-gh", 0},
    {"1404-01-1x", 0},
    {"+1404-01-01", 0},
    {"1404-+1-01", 0},
    {"\xdb\xb1\xdb\xb4\xdb\xb0\xdb\xb4-\xdb\xb0\xdb\xb1-", 0},
    {"1404-01-0\xdb", 0},        /* a lead byte cut short */
    {"1404-01-\xdb\xba", 0},     /* U+06FA is a letter, not a digit */
    {"1404-01-\xd9\xaa", 0},     /* U+066A, the Arabic percent sign */
    {"1404-01-\xef\xbc\x91", 0}, /* U+FF11, a full-width digit */
};

static void test_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(parse_cases); i++) {
		const struct pcase *c = &parse_cases[i];
		int y = -7, m = -7, d = -7;
		int rc = jalali_parse_ymd(c->in, &y, &m, &d);
		if (c->ok) {
			if (rc != 0 || y != c->y || m != c->m || d != c->d)
				fail_msg("case %zu (%s): rc=%d %d-%d-%d", i, c->in, rc, y, m, d);
		} else if (rc != -1 || y != -7 || m != -7 || d != -7) {
			fail_msg("case %zu (%s): expected invalid, rc=%d", i, c->in ? c->in : "NULL", rc);
		}
	}
}

/* The text the API shows beside a Gregorian date (stats daily, holidays). */
static void test_format_day(void **state)
{
	static const struct {
		int gy, gm, gd;
		const char *want;
	} cases[] = {
	    {2026, 2, 18, "1404-11-29"},  {2026, 3, 21, "1405-01-01"}, {2026, 11, 22, "1405-09-01"},
	    {2026, 11, 23, "1405-09-02"}, {1900, 1, 1, "1278-10-11"},  {622, 3, 22, "0001-01-01"},
	};
	char out[16];
	long last;
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		jalali_format_day(tz_days_from_civil(cases[i].gy, cases[i].gm, cases[i].gd), out);
		if (strcmp(out, cases[i].want))
			fail_msg("%04d-%02d-%02d: %s, expected %s", cases[i].gy, cases[i].gm, cases[i].gd, out,
			         cases[i].want);
	}
	/* outside Jalali years 1..3177: zeros */
	assert_int_equal(jalali_to_days(JALALI_YEAR_MAX, 12, jalali_month_length(JALALI_YEAR_MAX, 12), &last), 0);
	jalali_format_day(last + 1, out);
	assert_string_equal(out, "0000-00-00");
	jalali_format_day(tz_days_from_civil(622, 3, 21), out);
	assert_string_equal(out, "0000-00-00");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_anchors),           cmocka_unit_test(test_known_leap_years),
	    cmocka_unit_test(test_every_day),         cmocka_unit_test(test_year_lengths),
	    cmocka_unit_test(test_oracle_self_check), cmocka_unit_test(test_nowruz_against_oracle),
	    cmocka_unit_test(test_invalid),           cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_format_day),
	};
	return cmocka_run_group_tests_name("jalali", tests, NULL, NULL);
}
