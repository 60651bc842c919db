/*
 * Local time in the configured TIMEZONE (default Asia/Tehran): the process's
 * TZ is set once at start, then localtime_r/mktime do the conversions.
 * Civil days are numbered from 1970-01-01 (day 0), proleptic Gregorian.
 */
#ifndef DIALER_TZ_H
#define DIALER_TZ_H

#include <stdint.h>
#include <time.h>

#include "common.h"

/* Sets TZ to zone (e.g. "Asia/Tehran") and loads it. Call once, before any
 * thread starts. Returns -1 when the zone has no tzdata file. */
int tz_init(const char *zone) MUSTCHECK;

/* The zone name given to tz_init (borrowed; "UTC" before it). */
const char *tz_name(void);

struct tz_local {
	int y, m, d;    /* local civil date */
	int hh, mm, ss; /* local wall time */
	long day;       /* civil day number of y-m-d */
	int sec;        /* seconds since local midnight, 0..86399 */
	int utc_offset; /* seconds east of UTC */
};

/* Breaks t down in the local zone. */
void tz_local_from_utc(time_t t, struct tz_local *out);

/* The UTC instant at which local civil day (y, m, d) begins. */
time_t tz_local_midnight(int y, int m, int d);

/* Formats t in the local zone as "YYYY-MM-DDTHH:MM:SS+03:30" (len >= 32). */
void tz_format_local(time_t t, char *buf, size_t len);

/*
 * Parses an ISO 8601 instant with an explicit offset, as the dialer agents
 * send it: "YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM|+HHMM)" ('T' or ' '
 * between date and time). A value without an offset, an impossible date or
 * time, or trailing text is refused. Gives microseconds since the epoch.
 * Returns 0 or -1.
 */
int tz_parse_instant(const char *s, int64_t *usec) MUSTCHECK;

/*
 * The civil day of the Gregorian date `ymd` ("YYYY-MM-DD", ASCII, Persian or
 * Arabic-Indic digits; see jalali_parse_ymd) into *day. Refuses dates that do
 * not exist (2026-02-30) and years outside 1900..9999. Returns 0 or -1 (*day
 * untouched).
 */
int tz_parse_day(const char *ymd, long *day) MUSTCHECK;

/*
 * The UTC instant at which the local calendar day `ymd` (as tz_parse_day)
 * plus days_after days begins. Returns 0 or -1.
 */
int tz_local_day_start(const char *ymd, int days_after, time_t *out) MUSTCHECK;

/* Civil day number of a proleptic Gregorian date, and back. */
long tz_days_from_civil(int y, int m, int d);
void tz_civil_from_days(long day, int *y, int *m, int *d);
/* Civil day as "YYYY-MM-DD" into out (NUL-terminated). */
void tz_format_day(long day, char out[16]);

/* Iranian weekday of a civil day: Saturday = 0 ... Friday = 6. */
int tz_weekday_iran(long day);

#endif
