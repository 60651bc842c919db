/*
 * Gregorian <-> Jalali (Solar Hijri) dates, as Iran's official calendar: the
 * leap years follow the astronomical (vernal equinox) rule, encoded as the
 * 33-year-cycle breaks, for Jalali years 1..3177.
 */
#ifndef DIALER_JALALI_H
#define DIALER_JALALI_H

#include <stdbool.h>

#include "common.h"

#define JALALI_YEAR_MIN 1
#define JALALI_YEAR_MAX 3177

/* Converts a Gregorian date. Returns 0, or -1 when the date is invalid or out
 * of range (the Jalali outputs are then untouched). */
int jalali_from_gregorian(int gy, int gm, int gd, int *jy, int *jm, int *jd) MUSTCHECK;

/* Converts a Jalali date. Returns 0, or -1 when it is invalid (e.g. 30
 * Esfand of a common year) or out of range. */
int jalali_to_gregorian(int jy, int jm, int jd, int *gy, int *gm, int *gd) MUSTCHECK;

/* True when Jalali year jy has 366 days (30 Esfand exists). */
bool jalali_is_leap(int jy);

/* Days in Jalali month jm (1..12) of year jy: 31, 30, or 29/30 for Esfand. */
int jalali_month_length(int jy, int jm);

/* Civil day number (days since 1970-01-01, see tz.h) to Jalali and back. */
int jalali_from_days(long day, int *jy, int *jm, int *jd) MUSTCHECK;
int jalali_to_days(int jy, int jm, int jd, long *day) MUSTCHECK;

/* The Jalali date of civil day `day` as "YYYY-MM-DD" into out (NUL-terminated), as the API
 * shows it beside the Gregorian one; "0000-00-00" when the day is outside Jalali years
 * 1..3177 (callers pass days in range). */
void jalali_format_day(long day, char out[16]);

/*
 * Parses "YYYY-MM-DD" written with ASCII, Persian (U+06F0..9) or
 * Arabic-Indic (U+0660..9) digits; months and days may have one digit, the
 * year 1..4 digits; "YYYY/MM/DD" (same separator twice) is accepted too.
 * Nothing else around it (no spaces). Checks only the shape and ranges
 * year >= 1, 1..12, 1..31 (not the calendar: use jalali_to_days for that).
 * Returns 0, or -1 (outputs untouched); s may be NULL (-1).
 */
int jalali_parse_ymd(const char *s, int *y, int *m, int *d) MUSTCHECK;

#endif
