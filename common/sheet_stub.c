/*
 * TEMPORARY minimal CSV reader behind sheet_stub.h (see there): the first column, or the
 * column named like a phone in a header row; ',' ';' or tab (from the first line), quoted
 * fields, a UTF-8 BOM, CRLF. XLSX is refused. Replaced by branch `readers`' common/sheet.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "sheet_stub.h"

#define FIELD_MAX 4096

static __thread void (*progress_fn)(void *, long long, long long);
static __thread void *progress_ctx;

void sheet_set_progress(void (*fn)(void *ctx, long long done, long long total), void *ctx)
{
	progress_fn = fn;
	progress_ctx = ctx;
}

enum sheet_format sheet_detect(const char *path, const char *filename)
{
	unsigned char b[4] = {0};
	size_t n = filename ? strlen(filename) : 0;
	if (n >= 4 && !strcasecmp(filename + n - 4, ".csv"))
		return SHEET_CSV;
	if (n >= 5 && !strcasecmp(filename + n - 5, ".xlsx"))
		return SHEET_XLSX;
	FILE *f = fopen(path, "rb");
	if (f) {
		n = fread(b, 1, 4, f);
		fclose(f);
		if (n == 4 && !memcmp(b, "PK\3\4", 4))
			return SHEET_XLSX;
	}
	return SHEET_CSV;
}

static bool phone_header(const char *s)
{
	static const char *const names[] = {"phone",        "phone_number",
	                                    "phone number", "mobile",
	                                    "number",       "\xd8\xb4\xd9\x85\xd8\xa7\xd8\xb1\xd9\x87"}; /* شماره */
	for (size_t i = 0; i < ARRAY_LEN(names); i++)
		if (!strcasecmp(s, names[i]))
			return true;
	return false;
}

struct csv {
	char delim;
	int col, want; /* current column; the phone column */
	bool quoted, after_quote, row_nonempty, first_row, prev_cr;
	char field[FIELD_MAX + 1], phone[FIELD_MAX + 1];
	size_t flen, plen;
	bool have_phone;
	long line, row_line;
	/* first row: its fields, to look for a header */
	char *first[64];
	int nfirst;
};

static void end_field(struct csv *c)
{
	c->field[c->flen] = '\0';
	if (c->flen)
		c->row_nonempty = true;
	if (c->first_row && c->nfirst < 64)
		c->first[c->nfirst++] = strdup(c->field);
	if (c->col == c->want) {
		memcpy(c->phone, c->field, c->flen + 1);
		c->plen = c->flen;
		c->have_phone = true;
	}
	c->col++;
	c->flen = 0;
	c->after_quote = false;
}

/* Returns non-zero when fn asked to stop. */
static int end_row(struct csv *c, sheet_row_fn fn, void *ctx)
{
	int rc = 0;
	end_field(c);
	if (c->first_row) {
		c->first_row = false;
		for (int i = 0; i < c->nfirst; i++)
			if (phone_header(c->first[i])) {
				c->want = i;
				c->have_phone = false;
				c->row_nonempty = false; /* the header row is not data */
				break;
			}
		for (int i = 0; i < c->nfirst; i++)
			free(c->first[i]);
		c->nfirst = 0;
	}
	if (c->row_nonempty)
		rc = fn(ctx, c->row_line, c->have_phone ? c->phone : "", c->have_phone ? c->plen : 0);
	c->col = 0;
	c->have_phone = false;
	c->row_nonempty = false;
	return rc;
}

int sheet_read_phones(const char *path, enum sheet_format fmt, sheet_row_fn fn, void *ctx, char *err, size_t errlen)
{
	struct csv *c = NULL;
	char *buf = NULL;
	FILE *f = NULL;
	int rc = -1;
	long long done = 0, total = 0;
	struct stat st;
	bool bom_checked = false;

	if (fmt != SHEET_CSV) {
		snprintf(err, errlen, "XLSX files are not supported yet");
		return -1;
	}
	f = fopen(path, "rb");
	if (!f || fstat(fileno(f), &st)) {
		snprintf(err, errlen, "cannot open the file");
		goto out;
	}
	total = st.st_size;
	c = calloc(1, sizeof(*c));
	buf = malloc(65536);
	if (!c || !buf)
		abort();
	c->first_row = true;
	c->line = 1;
	c->row_line = 1;
	size_t n;
	while ((n = fread(buf, 1, 65536, f)) > 0) {
		size_t i = 0;
		if (!bom_checked) {
			bom_checked = true;
			if (n >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
				i = 3;
		}
		if (!c->delim) { /* from the first line: the most frequent of , ; tab (default ,) */
			int cnt[3] = {0};
			for (size_t k = i; k < n && buf[k] != '\n'; k++)
				cnt[0] += buf[k] == ',', cnt[1] += buf[k] == ';', cnt[2] += buf[k] == '\t';
			c->delim = cnt[1] > cnt[0] && cnt[1] >= cnt[2] ? ';' : cnt[2] > cnt[0] ? '\t' : ',';
		}
		for (; i < n; i++) {
			char ch = buf[i];
			bool was_cr = c->prev_cr;
			c->prev_cr = false;
			if (c->quoted) {
				if (ch == '"') {
					c->quoted = false;
					c->after_quote = true;
					continue;
				}
				if (ch == '\n')
					c->line++;
			} else if (ch == '"') {
				if (c->after_quote || c->flen == 0) { /* opening quote, or "" inside a quoted field */
					if (c->after_quote && c->flen < FIELD_MAX)
						c->field[c->flen++] = '"';
					c->quoted = true;
					c->after_quote = false;
					continue;
				}
			} else if (ch == c->delim) {
				end_field(c);
				continue;
			} else if (ch == '\n' || ch == '\r') {
				if (ch == '\n' && was_cr)
					continue; /* CRLF: the CR ended the row */
				c->prev_cr = ch == '\r';
				if (end_row(c, fn, ctx)) {
					rc = 0;
					goto out;
				}
				c->line++;
				c->row_line = c->line;
				continue;
			}
			if (c->flen >= FIELD_MAX) {
				snprintf(err, errlen, "line %ld: a field longer than %d bytes", c->line, FIELD_MAX);
				goto out;
			}
			c->field[c->flen++] = ch;
		}
		done += (long long)n;
		if (progress_fn)
			progress_fn(progress_ctx, done, total);
	}
	if (ferror(f)) {
		snprintf(err, errlen, "cannot read the file");
		goto out;
	}
	if (c->quoted) {
		snprintf(err, errlen, "line %ld: unterminated quoted field", c->row_line);
		goto out;
	}
	if (c->flen || c->col)
		end_row(c, fn, ctx);
	rc = 0;
out:
	if (c)
		for (int k = 0; k < c->nfirst; k++)
			free(c->first[k]);
	free(c);
	free(buf);
	if (f)
		fclose(f);
	return rc;
}
