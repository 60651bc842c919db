/*
 * Reader benchmark for common/sheet.c: generates number files and times
 * sheet_read_phones over them with a callback that only counts. Run by
 * bench/sheet-read.sh, which builds it and adds peak RSS (/usr/bin/time -v).
 *
 *   sheet-read gen-csv FILE ROWS          name,phone rows (mixed phone formats)
 *   sheet-read gen-xlsx FILE ROWS [cm]    the same as XLSX; cm: libxlsxwriter's
 *                                         constant_memory mode (inline strings),
 *                                         else shared strings; every third phone
 *                                         is a numeric cell
 *   sheet-read read FILE                  read it, print rows, bytes and seconds
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xlsxwriter.h>

#include "sheet.h"

static void phone(long i, char *out, size_t cap)
{
	long n = 100000000 + (i * 7919) % 900000000; /* 9 digits */

	switch (i % 4) {
	case 0:
		snprintf(out, cap, "09%09ld", n % 1000000000);
		break;
	case 1:
		snprintf(out, cap, "+98 9%02ld %03ld %04ld", n / 10000000 % 100, n / 10000 % 1000, n % 10000);
		break;
	case 2:
		snprintf(out, cap, "9%09ld", n % 1000000000);
		break;
	default:
		snprintf(out, cap, "0098-9%09ld", n % 1000000000);
		break;
	}
}

static int gen_csv(const char *path, long rows)
{
	FILE *f = fopen(path, "w");
	char p[64];

	if (!f)
		return 1;
	fprintf(f, "name,phone,city\r\n");
	for (long i = 0; i < rows; i++) {
		phone(i, p, sizeof(p));
		fprintf(f, "\"person %ld\",%s,Tehran\r\n", i, p);
	}
	return fclose(f) ? 1 : 0;
}

static int gen_xlsx(const char *path, long rows, int cm)
{
	lxw_workbook_options o = {.constant_memory = (uint8_t)cm};
	lxw_workbook *wb = workbook_new_opt(path, &o);
	lxw_worksheet *ws;
	char p[64], name[64];

	if (!wb)
		return 1;
	ws = workbook_add_worksheet(wb, "numbers");
	worksheet_write_string(ws, 0, 0, "name", NULL);
	worksheet_write_string(ws, 0, 1, "شماره موبایل", NULL);
	for (long i = 0; i < rows; i++) {
		snprintf(name, sizeof(name), "person %ld", i);
		worksheet_write_string(ws, (lxw_row_t)(i + 1), 0, name, NULL);
		if (i % 3 == 2) {
			worksheet_write_number(ws, (lxw_row_t)(i + 1), 1,
			                       9000000000.0 + (double)((i * 7919) % 999999999), NULL);
		} else {
			phone(i, p, sizeof(p));
			worksheet_write_string(ws, (lxw_row_t)(i + 1), 1, p, NULL);
		}
	}
	return workbook_close(wb) == LXW_NO_ERROR ? 0 : 1;
}

struct count {
	long rows;
	size_t bytes;
	int progress_calls;
};

static int on_row(void *ctx, long line, const char *v, size_t n)
{
	struct count *c = ctx;
	(void)line, (void)v;
	c->rows++;
	c->bytes += n;
	return 0;
}

static int on_progress(void *ctx, const struct sheet_progress *p)
{
	struct count *c = ctx;
	(void)p;
	c->progress_calls++;
	return 0;
}

int main(int argc, char **argv)
{
	struct timespec t0, t1;
	struct count c = {0};
	struct sheet_opts o = {.progress = on_progress};
	char err[512];
	enum sheet_format fmt;
	int rc;

	if (argc >= 4 && !strcmp(argv[1], "gen-csv"))
		return gen_csv(argv[2], atol(argv[3]));
	if (argc >= 4 && !strcmp(argv[1], "gen-xlsx"))
		return gen_xlsx(argv[2], atol(argv[3]), argc > 4 && !strcmp(argv[4], "cm"));
	if (argc != 3 || strcmp(argv[1], "read")) {
		fprintf(stderr, "usage: %s gen-csv FILE ROWS | gen-xlsx FILE ROWS [cm] | read FILE\n", argv[0]);
		return 2;
	}
	fmt = sheet_detect(argv[2], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = sheet_read_phones_opts(argv[2], fmt, &o, on_row, &c, err, sizeof(err));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (rc) {
		fprintf(stderr, "read failed: %s\n", err);
		return 1;
	}
	printf("%s: %s rows=%ld value_bytes=%zu progress_calls=%d seconds=%.3f\n", argv[2],
	       fmt == SHEET_XLSX ? "xlsx" : "csv", c.rows, c.bytes, c.progress_calls,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return 0;
}
