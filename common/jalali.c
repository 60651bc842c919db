/*
 * Gregorian <-> Jalali conversion. The leap years follow Iran's astronomical
 * rule, encoded as the years where the 33-year leap pattern "breaks" (below).
 */
#include <stdio.h>
#include <string.h>

#include "jalali.h"
#include "tz.h"

/*
 * Jalali years at which the leap pattern restarts. Between two breaks the
 * leap years repeat with period 33 counted from the earlier break: in each
 * 33-year cycle the leap years sit 4 years apart from the 1st year (relative
 * years 1, 5, ..., 29 → 8 of them), except that a final stretch shorter than
 * a full cycle shifts the last leap year by one (the "jump - n < 6" case
 * below). The table covers years -61..3177, wider than JALALI_YEAR_MIN..MAX.
 */
static const int breaks[] = {-61,  9,    38,   199,  426,  686,  756,  818,  1111, 1181,
                             1210, 1635, 2060, 2097, 2192, 2262, 2324, 2394, 2456, 3178};

/* Floor division and modulo, so the formulas work for negative operands. */
static long fdiv(long a, long b)
{
	long q = a / b;
	return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static long fmod_(long a, long b)
{
	return a - fdiv(a, b) * b;
}

struct jyear {
	int leap_phase; /* years since the last leap year: 0 means jy is leap */
	int gy;         /* Gregorian year in which jy begins */
	int march;      /* day of March on which 1 Farvardin falls */
};

/*
 * Describes Jalali year jy (1..3177). Counts the leap years from the first
 * break to jy (through each whole span between breaks, then the partial
 * span), compares with the Gregorian leap days over the same stretch, and so
 * places 1 Farvardin in March; then finds jy's position in its 33-year cycle.
 */
static void jyear_describe(int jy, struct jyear *out)
{
	long leap_j = -14; /* Jalali leap days counted up to breaks[0] */
	long jp = breaks[0], jump = 0;
	for (size_t i = 1; i < ARRAY_LEN(breaks); i++) {
		long jm = breaks[i];
		jump = jm - jp;
		if (jy < jm)
			break;
		leap_j += fdiv(jump, 33) * 8 + fdiv(fmod_(jump, 33), 4);
		jp = jm;
	}
	long n = jy - jp; /* years since the break that starts jy's span */
	leap_j += fdiv(n, 33) * 8 + fdiv(fmod_(n, 33) + 3, 4);
	if (fmod_(jump, 33) == 4 && jump - n == 4)
		leap_j++;

	long gy = jy + 621;
	long leap_g = fdiv(gy, 4) - fdiv((fdiv(gy, 100) + 1) * 3, 4) - 150;
	out->gy = (int)gy;
	out->march = (int)(20 + leap_j - leap_g);

	/* Near the end of a span the cycle is re-anchored to the next break. */
	if (jump - n < 6)
		n = n - jump + fdiv(jump + 4, 33) * 33;
	long phase = fmod_(fmod_(n + 1, 33) - 1, 4);
	out->leap_phase = (int)phase;
}

static bool year_ok(int jy)
{
	return jy >= JALALI_YEAR_MIN && jy <= JALALI_YEAR_MAX;
}

bool jalali_is_leap(int jy)
{
	struct jyear y;
	if (!year_ok(jy))
		return false;
	jyear_describe(jy, &y);
	return y.leap_phase == 0;
}

int jalali_month_length(int jy, int jm)
{
	if (jm < 1 || jm > 12)
		return 0;
	if (jm <= 6)
		return 31;
	if (jm <= 11)
		return 30;
	return jalali_is_leap(jy) ? 30 : 29;
}

/* Civil day number of 1 Farvardin of jy (1..3177). */
static long year_start(int jy)
{
	struct jyear y;
	jyear_describe(jy, &y);
	return tz_days_from_civil(y.gy, 3, y.march);
}

int jalali_to_days(int jy, int jm, int jd, long *day)
{
	if (!year_ok(jy) || jd < 1 || jd > jalali_month_length(jy, jm))
		return -1;
	/* Months 1..6 have 31 days, 7..12 have 30 (Esfand's last is checked above). */
	long doy = jm <= 7 ? (jm - 1) * 31 : 6 * 31 + (jm - 7) * 30;
	*day = year_start(jy) + doy + jd - 1;
	return 0;
}

int jalali_from_days(long day, int *jy, int *jm, int *jd)
{
	int gy, gm, gd;
	/* Guard the arithmetic: 1 Farvardin 1 is in 622, the end of 3177 in 3799. */
	if (day < tz_days_from_civil(600, 1, 1) || day > tz_days_from_civil(3900, 1, 1))
		return -1;
	tz_civil_from_days(day, &gy, &gm, &gd);
	int y = gy - 621; /* the Jalali year that begins in March of gy */
	if (y > JALALI_YEAR_MAX)
		y = JALALI_YEAR_MAX;
	if (y >= JALALI_YEAR_MIN && day < year_start(y))
		y--;
	if (!year_ok(y))
		return -1;
	long k = day - year_start(y);
	if (k >= 365 + (jalali_is_leap(y) ? 1 : 0))
		return -1; /* after the last day of JALALI_YEAR_MAX */
	if (k < 186) {
		*jm = (int)(k / 31) + 1;
		*jd = (int)(k % 31) + 1;
	} else {
		k -= 186;
		*jm = (int)(k / 30) + 7;
		*jd = (int)(k % 30) + 1;
	}
	*jy = y;
	return 0;
}

void jalali_format_day(long day, char out[16])
{
	int jy = 0, jm = 0, jd = 0;
	if (jalali_from_days(day, &jy, &jm, &jd))
		jy = jm = jd = 0;
	snprintf(out, 16, "%04d-%02d-%02d", jy, jm, jd);
}

static bool gregorian_ok(int gy, int gm, int gd)
{
	static const int len[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (gy < 1 || gy > 9999 || gm < 1 || gm > 12 || gd < 1)
		return false;
	bool leap = (gy % 4 == 0 && gy % 100 != 0) || gy % 400 == 0;
	return gd <= len[gm - 1] + (gm == 2 && leap ? 1 : 0);
}

int jalali_from_gregorian(int gy, int gm, int gd, int *jy, int *jm, int *jd)
{
	if (!gregorian_ok(gy, gm, gd))
		return -1;
	return jalali_from_days(tz_days_from_civil(gy, gm, gd), jy, jm, jd);
}

int jalali_to_gregorian(int jy, int jm, int jd, int *gy, int *gm, int *gd)
{
	long day;
	if (jalali_to_days(jy, jm, jd, &day) != 0)
		return -1;
	tz_civil_from_days(day, gy, gm, gd);
	return 0;
}

/* Reads one digit (ASCII, U+06F0..9 or U+0660..9) at *p; advances p. */
static int read_digit(const unsigned char **p)
{
	const unsigned char *s = *p;
	if (s[0] >= '0' && s[0] <= '9') {
		*p += 1;
		return s[0] - '0';
	}
	if (s[0] == 0xDB && s[1] >= 0xB0 && s[1] <= 0xB9) {
		*p += 2;
		return s[1] - 0xB0;
	}
	if (s[0] == 0xD9 && s[1] >= 0xA0 && s[1] <= 0xA9) {
		*p += 2;
		return s[1] - 0xA0;
	}
	return -1;
}

/* Reads 1..maxdigits digits into *out. Returns 0 or -1. */
static int read_number(const unsigned char **p, int maxdigits, int *out)
{
	int v = 0, n = 0, d;
	while ((d = read_digit(p)) >= 0) {
		if (++n > maxdigits)
			return -1;
		v = v * 10 + d;
	}
	if (n == 0)
		return -1;
	*out = v;
	return 0;
}

int jalali_parse_ymd(const char *s, int *y, int *m, int *d)
{
	int yy, mm, dd;
	if (!s)
		return -1;
	const unsigned char *p = (const unsigned char *)s;
	if (read_number(&p, 4, &yy) != 0)
		return -1;
	unsigned char sep = *p;
	if (sep != '-' && sep != '/')
		return -1;
	p++;
	if (read_number(&p, 2, &mm) != 0 || *p != sep)
		return -1;
	p++;
	if (read_number(&p, 2, &dd) != 0 || *p != '\0')
		return -1;
	if (yy < 1 || mm < 1 || mm > 12 || dd < 1 || dd > 31)
		return -1;
	*y = yy;
	*m = mm;
	*d = dd;
	return 0;
}
