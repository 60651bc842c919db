/*
 * Number files for bench/import-export.sh, with known counts: ROWS data rows
 * under a header (name, phone, city), of which ~3% are invalid, ~2% repeat a
 * number seen earlier in the file (in another format), and the rest are
 * distinct valid mobiles in mixed formats: 09xxxxxxxxx, +98 9xx xxx xxxx,
 * 00989xxxxxxxxx, 9xxxxxxxxx, 0912-345-6789, Persian and Arabic-Indic digits;
 * in the XLSX, some are numeric cells (9123456789). Deterministic (a fixed
 * seed), so the CSV and the XLSX of the same ROWS hold the same numbers.
 *
 *   import-gen csv FILE ROWS     a CSV (CRLF, quoted names)
 *   import-gen xlsx FILE ROWS    an XLSX (libxlsxwriter, constant_memory: inline strings)
 *
 * Prints "rows=N unique=U duplicates=D invalid=I": an import into an empty pool must report
 * inserted=U duplicates=D invalid=I, and a second one inserted=0 duplicates=U+D invalid=I.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xlsxwriter.h>

#define MOD 1000000000ULL /* the 9 digits after "09" */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* The k-th distinct number: k -> (k * 3^18 + c) mod 10^9 is a bijection (3^18 is coprime to 10^9). */
static unsigned suffix(uint64_t k)
{
	return (unsigned)((k * 387420489ULL + 123456789ULL) % MOD);
}

/* Digits of s in Persian (U+06F0..9: DB B0..B9) or Arabic-Indic (U+0660..9: D9 A0..A9). */
static void eastern(char *out, const char *ascii, int persian)
{
	size_t n = 0;
	for (const char *p = ascii; *p; p++) {
		if (*p >= '0' && *p <= '9') {
			out[n++] = persian ? (char)0xDB : (char)0xD9;
			out[n++] = (char)((persian ? 0xB0 : 0xA0) + (*p - '0'));
		} else {
			out[n++] = *p;
		}
	}
	out[n] = '\0';
}

/* A valid spelling of 09<s>; format 7 (XLSX only) is a numeric cell, returned as -1. */
static int render(unsigned s, int fmt, char *out, size_t cap)
{
	char tmp[64];
	switch (fmt) {
	case 0:
		snprintf(out, cap, "09%09u", s);
		break;
	case 1:
		snprintf(out, cap, "+98 9%02u %03u %04u", s / 10000000, s / 10000 % 1000, s % 10000);
		break;
	case 2:
		snprintf(out, cap, "00989%09u", s);
		break;
	case 3:
		snprintf(out, cap, "9%09u", s);
		break;
	case 4:
		snprintf(tmp, sizeof(tmp), "09%09u", s);
		eastern(out, tmp, 1);
		break;
	case 5:
		snprintf(out, cap, "09%02u-%03u-%04u", s / 10000000, s / 10000 % 1000, s % 10000);
		break;
	case 6:
		snprintf(tmp, sizeof(tmp), "+989%09u", s);
		eastern(out, tmp, 0);
		break;
	default:
		return -1;
	}
	return 0;
}

/* An invalid value (never a mobile number after normalization). */
static void invalid(uint64_t r, char *out, size_t cap)
{
	unsigned s = (unsigned)(r >> 8) % MOD;
	switch (r % 6) {
	case 0:
		snprintf(out, cap, "09%08u", s % 100000000); /* 10 digits */
		break;
	case 1:
		snprintf(out, cap, "021%08u", s % 100000000); /* a landline */
		break;
	case 2:
		snprintf(out, cap, "09%09u1", s); /* 12 digits */
		break;
	case 3:
		snprintf(out, cap, "n/a");
		break;
	case 4:
		snprintf(out, cap, "+1 555 %07u", s % 10000000);
		break;
	default:
		snprintf(out, cap, "09%02ux%06u", s % 100, s % 1000000); /* a letter inside */
		break;
	}
}

struct row {
	char phone[96];
	int numeric; /* an XLSX number cell with value 9<s> */
	unsigned s;
};

struct gen {
	uint64_t unique, dups, invalid;
};

static void make_row(struct gen *g, int xlsx, struct row *r)
{
	uint64_t x = next();
	unsigned cls = (unsigned)(x % 1000);
	int fmt = (int)((x >> 10) % (xlsx ? 8 : 7));
	r->numeric = 0;
	if (cls < 30) { /* 3% invalid */
		invalid(next(), r->phone, sizeof(r->phone));
		g->invalid++;
		return;
	}
	if (cls < 50 && g->unique) { /* 2% a repeat of an earlier number */
		r->s = suffix(next() % g->unique);
		g->dups++;
	} else {
		r->s = suffix(g->unique++);
	}
	/* a bare 98xxxxxxxx is a country code (COMPAT §3.1's quirk: invalid), so 9<s> with s = 8… is
	 * written as 09<s> */
	if ((fmt == 3 || fmt == 7) && r->s / 100000000 == 8)
		fmt = 0;
	if (render(r->s, fmt, r->phone, sizeof(r->phone)))
		r->numeric = 1;
}

static int gen_csv(const char *path, long rows, struct gen *g)
{
	FILE *f = fopen(path, "w");
	struct row r;
	if (!f)
		return 1;
	fputs("name,phone,city\r\n", f);
	for (long i = 0; i < rows; i++) {
		make_row(g, 0, &r);
		fprintf(f, "\"person %ld\",%s,Tehran\r\n", i, r.phone);
	}
	return fclose(f) ? 1 : 0;
}

static int gen_xlsx(const char *path, long rows, struct gen *g)
{
	lxw_workbook_options o = {.constant_memory = 1};
	lxw_workbook *wb = workbook_new_opt(path, &o);
	lxw_worksheet *ws;
	char name[64];
	struct row r;
	if (!wb)
		return 1;
	ws = workbook_add_worksheet(wb, "numbers");
	worksheet_write_string(ws, 0, 0, "name", NULL);
	worksheet_write_string(ws, 0, 1, "phone", NULL);
	worksheet_write_string(ws, 0, 2, "city", NULL);
	for (long i = 0; i < rows; i++) {
		lxw_row_t row = (lxw_row_t)(i + 1);
		make_row(g, 1, &r);
		snprintf(name, sizeof(name), "person %ld", i);
		worksheet_write_string(ws, row, 0, name, NULL);
		if (r.numeric)
			worksheet_write_number(ws, row, 1, 9000000000.0 + (double)r.s, NULL);
		else
			worksheet_write_string(ws, row, 1, r.phone, NULL);
		worksheet_write_string(ws, row, 2, "Tehran", NULL);
	}
	return workbook_close(wb) == LXW_NO_ERROR ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct gen g = {0};
	long rows;
	int rc;
	if (argc != 4 || (strcmp(argv[1], "csv") && strcmp(argv[1], "xlsx")) || (rows = atol(argv[3])) <= 0) {
		fprintf(stderr, "usage: %s csv|xlsx FILE ROWS\n", argv[0]);
		return 2;
	}
	rc = !strcmp(argv[1], "csv") ? gen_csv(argv[2], rows, &g) : gen_xlsx(argv[2], rows, &g);
	if (rc) {
		fprintf(stderr, "import-gen: cannot write %s\n", argv[2]);
		return 1;
	}
	printf("rows=%ld unique=%llu duplicates=%llu invalid=%llu\n", rows, (unsigned long long)g.unique,
	       (unsigned long long)g.dups, (unsigned long long)g.invalid);
	return 0;
}
