/*
 * Local time in the configured zone, through the C library's tzdata support
 * (TZ set once at start; localtime_r and mktime are thread-safe after tzset).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jalali.h"
#include "tz.h"

static char zone_name[64] = "UTC";

int tz_init(const char *zone)
{
	char path[160];
	if (!zone || !*zone || strlen(zone) >= sizeof(zone_name) || strstr(zone, ".."))
		return -1;
	snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", zone);
	if (strcmp(zone, "UTC") != 0 && access(path, R_OK) != 0)
		return -1;
	if (setenv("TZ", zone, 1) != 0)
		return -1;
	tzset();
	snprintf(zone_name, sizeof(zone_name), "%s", zone);
	return 0;
}

const char *tz_name(void)
{
	return zone_name;
}

/* Howard Hinnant's days_from_civil / civil_from_days. */
long tz_days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	long era = (y >= 0 ? y : y - 399) / 400;
	long yoe = y - era * 400;
	long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

void tz_civil_from_days(long z, int *y, int *m, int *d)
{
	z += 719468;
	long era = (z >= 0 ? z : z - 146096) / 146097;
	long doe = z - era * 146097;
	long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	long mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

void tz_format_day(long day, char out[16])
{
	int y, m, d;
	tz_civil_from_days(day, &y, &m, &d);
	snprintf(out, 16, "%04d-%02d-%02d", y, m, d);
}

int tz_weekday_iran(long day)
{
	/* 1970-01-01 was a Thursday (Iranian weekday 5). */
	long w = (day + 5) % 7;
	return (int)(w < 0 ? w + 7 : w);
}

void tz_local_from_utc(time_t t, struct tz_local *out)
{
	struct tm tm;
	localtime_r(&t, &tm);
	out->y = tm.tm_year + 1900;
	out->m = tm.tm_mon + 1;
	out->d = tm.tm_mday;
	out->hh = tm.tm_hour;
	out->mm = tm.tm_min;
	out->ss = tm.tm_sec > 59 ? 59 : tm.tm_sec;
	out->day = tz_days_from_civil(out->y, out->m, out->d);
	out->sec = out->hh * 3600 + out->mm * 60 + out->ss;
	out->utc_offset = (int)tm.tm_gmtoff;
}

time_t tz_local_midnight(int y, int m, int d)
{
	struct tm tm = {0};
	tm.tm_year = y - 1900;
	tm.tm_mon = m - 1;
	tm.tm_mday = d;
	tm.tm_isdst = -1;
	return mktime(&tm);
}

void tz_format_local(time_t t, char *buf, size_t len)
{
	struct tm tm;
	localtime_r(&t, &tm);
	long off = tm.tm_gmtoff;
	char sign = off < 0 ? '-' : '+';
	if (off < 0)
		off = -off;
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d%c%02ld:%02ld", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	         tm.tm_hour, tm.tm_min, tm.tm_sec > 59 ? 59 : tm.tm_sec, sign, off / 3600, (off % 3600) / 60);
}

/* n decimal digits at *p into *out; advances *p. */
static int digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		char ch = (*p)[i];
		if (ch < '0' || ch > '9')
			return -1;
		v = v * 10 + (ch - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

int tz_parse_instant(const char *s, int64_t *usec)
{
	int y, mo, d, h, mi, sec, oh = 0, om = 0, y2, m2, d2;
	int64_t frac = 0;
	const char *p = s;
	if (!s || digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d))
		return -1;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return -1;
	p++;
	if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &sec))
		return -1;
	if (*p == '.' || *p == ',') {
		int n = 0;
		p++;
		for (; *p >= '0' && *p <= '9'; p++, n++) {
			if (n >= 9)
				return -1;
			if (n < 6)
				frac = frac * 10 + (*p - '0');
		}
		if (n == 0)
			return -1;
		for (; n < 6; n++)
			frac *= 10;
	}
	int sign = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '-' ? -1 : 1;
		if (digits(&p, 2, &oh))
			return -1;
		if (*p == ':')
			p++;
		if (digits(&p, 2, &om))
			return -1;
	} else {
		return -1; /* no offset: the instant is unknown */
	}
	if (*p || y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59 || oh > 23 || om > 59)
		return -1;
	long day = tz_days_from_civil(y, mo, d);
	tz_civil_from_days(day, &y2, &m2, &d2);
	if (y2 != y || m2 != mo || d2 != d)
		return -1;
	int64_t secs = (int64_t)day * 86400 + h * 3600 + mi * 60 + sec - (int64_t)sign * (oh * 3600 + om * 60);
	*usec = secs * 1000000 + frac;
	return 0;
}

int tz_parse_day(const char *ymd, long *day)
{
	int y, m, d, y2, m2, d2;
	if (jalali_parse_ymd(ymd, &y, &m, &d) || y < 1900 || y > 9999)
		return -1;
	long v = tz_days_from_civil(y, m, d);
	tz_civil_from_days(v, &y2, &m2, &d2);
	if (y2 != y || m2 != m || d2 != d)
		return -1;
	*day = v;
	return 0;
}

int tz_local_day_start(const char *ymd, int days_after, time_t *out)
{
	int y, m, d;
	long day;
	if (tz_parse_day(ymd, &day))
		return -1;
	tz_civil_from_days(day + days_after, &y, &m, &d);
	*out = tz_local_midnight(y, m, d);
	return 0;
}
