/*
 * Iran's holidays: the official solar ones computed for any Jalali year, and
 * a set that merges them with the holidays table's rows (lunar, custom, and
 * tombstones for computed dates a superuser removed).
 */
#ifndef DIALER_HOLIDAYS_H
#define DIALER_HOLIDAYS_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

struct holiday {
	long day;          /* civil day number (tz.h) */
	int gy, gm, gd;    /* Gregorian */
	int jy, jm, jd;    /* Jalali */
	const char *title; /* static Persian title */
};

#define HOLIDAYS_FIXED_MAX 16

/* Title of the official solar holiday on Jalali month/day, or NULL. */
const char *holidays_fixed_title(int jm, int jd);

/* The same for civil day `day` (tz.h numbering), or NULL. */
const char *holidays_fixed_title_on(long day);

/* Writes the official solar holidays of Jalali year jy (sorted by date, at
 * most max: HOLIDAYS_FIXED_MAX is always enough) into out; returns how many,
 * or -1 when jy is out of range. Titles are static. */
int holidays_fixed_year(int jy, struct holiday *out, size_t max) MUSTCHECK;

/* Rows of the holidays table over some range of days. Owned by the caller;
 * holidays_set_free releases what holidays_set_add allocated. Start from
 * {0}; fill only through holidays_set_add, which keeps rows sorted by day. */
struct holiday_set {
	struct holiday_row {
		long day;
		bool removed; /* a tombstone: the computed holiday on this day is off */
	} * rows;
	size_t n, cap;
};

/* Adds the row for civil day (any order; a second row for the same day
 * replaces the first). Keeps rows sorted by day: appending in date order
 * (ORDER BY date) is amortized O(1), an out-of-order row costs a memmove. */
void holidays_set_add(struct holiday_set *s, long day, bool removed);
/* Frees the rows; s is empty and reusable afterwards. */
void holidays_set_free(struct holiday_set *s);

/* Whether civil day is a holiday: a table row decides when there is one
 * (removed -> no), otherwise the official solar rule. s may be NULL. */
bool holidays_is_holiday(const struct holiday_set *s, long day);

/* Adapter for callrule_decide: arg is a const struct holiday_set * (or NULL). */
bool holidays_lookup(long day, void *arg);

#endif
