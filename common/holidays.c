/*
 * Iran's official solar holidays (the original's fixed Jalali list), and the
 * holidays table's rows kept sorted by day so a lookup is a binary search.
 */
#include <stdlib.h>
#include <string.h>

#include "holidays.h"
#include "jalali.h"
#include "tz.h"

static const struct {
	int jm, jd;
	const char *title;
} fixed[] = {
    {1, 1, "عید نوروز"},
    {1, 2, "عید نوروز"},
    {1, 3, "عید نوروز"},
    {1, 4, "عید نوروز"},
    {1, 12, "روز جمهوری اسلامی"},
    {1, 13, "روز طبیعت (سیزده‌بدر)"},
    {3, 14, "رحلت حضرت امام خمینی (ره)"},
    {3, 15, "قیام خونین ۱۵ خرداد"},
    {11, 22, "پیروزی انقلاب اسلامی ایران"},
    {12, 29, "روز ملی شدن صنعت نفت ایران"},
};

_Static_assert(sizeof(fixed) / sizeof(fixed[0]) <= HOLIDAYS_FIXED_MAX, "HOLIDAYS_FIXED_MAX too small");

const char *holidays_fixed_title(int jm, int jd)
{
	for (size_t i = 0; i < ARRAY_LEN(fixed); i++)
		if (fixed[i].jm == jm && fixed[i].jd == jd)
			return fixed[i].title;
	return NULL;
}

int holidays_fixed_year(int jy, struct holiday *out, size_t max)
{
	if (jy < JALALI_YEAR_MIN || jy > JALALI_YEAR_MAX)
		return -1;
	size_t n = 0;
	for (size_t i = 0; i < ARRAY_LEN(fixed) && n < max; i++) {
		struct holiday *h = &out[n];
		/* every entry exists in every year (12/29 too), so this cannot fail */
		if (jalali_to_days(jy, fixed[i].jm, fixed[i].jd, &h->day) != 0)
			continue;
		tz_civil_from_days(h->day, &h->gy, &h->gm, &h->gd);
		h->jy = jy;
		h->jm = fixed[i].jm;
		h->jd = fixed[i].jd;
		h->title = fixed[i].title;
		n++;
	}
	return (int)n;
}

/* Index of the first row with rows[i].day >= day. */
static size_t lower_bound(const struct holiday_set *s, long day)
{
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->rows[mid].day < day)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void holidays_set_add(struct holiday_set *s, long day, bool removed)
{
	/* Rows usually come in date order (ORDER BY date): then this appends. */
	size_t at = s->n > 0 && s->rows[s->n - 1].day < day ? s->n : lower_bound(s, day);
	if (at < s->n && s->rows[at].day == day) {
		s->rows[at].removed = removed; /* one row per day: the later one wins */
		return;
	}
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 64;
		s->rows = xrealloc(s->rows, s->cap * sizeof(s->rows[0]));
	}
	memmove(&s->rows[at + 1], &s->rows[at], (s->n - at) * sizeof(s->rows[0]));
	s->rows[at].day = day;
	s->rows[at].removed = removed;
	s->n++;
}

void holidays_set_free(struct holiday_set *s)
{
	free(s->rows);
	s->rows = NULL;
	s->n = s->cap = 0;
}

bool holidays_is_holiday(const struct holiday_set *s, long day)
{
	if (s && s->n > 0) {
		size_t i = lower_bound(s, day);
		if (i < s->n && s->rows[i].day == day)
			return !s->rows[i].removed;
	}
	return holidays_fixed_title_on(day) != NULL;
}

const char *holidays_fixed_title_on(long day)
{
	int jy, jm, jd;
	if (jalali_from_days(day, &jy, &jm, &jd) != 0)
		return NULL;
	return holidays_fixed_title(jm, jd);
}

bool holidays_lookup(long day, void *arg)
{
	return holidays_is_holiday(arg, day);
}
