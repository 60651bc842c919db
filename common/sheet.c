/*
 * Streaming CSV and XLSX readers for number files: a byte-at-a-time CSV state
 * machine over a fixed buffer, and libzip + expat over the workbook's parts
 * with every size, ratio, count and parser-memory limit checked as it streams.
 */
#include "sheet.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Expat was built with XML_DTD (the Billion Laughs setters exist), but only its
 * private expat_config.h says so: declare them. */
#ifndef XML_DTD
#define XML_DTD 1
#endif
#include <expat.h>
#include <zip.h>

#define CHUNK         (64 * 1024) /* one read, one inflate, one parse */
#define HDR_KEY_MAX   64          /* a header cell longer than this names no column */
#define RATIO_FLOOR   (1u << 20)  /* the ratio is checked once an entry inflated this much */
#define PATH_MAX_PART 1024        /* a part name (zip path) longer than this is refused */
#define SNIFF_LINES   10          /* lines looked at to choose the CSV delimiter */

const struct sheet_limits sheet_limits_default = {
    .max_value = 1024,
    .max_rows = 10000000,
    .max_entry_bytes = 1ull << 30,
    .max_total_bytes = 2ull << 30,
    .max_ratio = 200,
    .max_entries = 10000,
    .max_strings = 2000000,
    .max_strings_bytes = 256u << 20,
    .max_xml_memory = 32u << 20,
};

/* ---------------------------------------------------------------------------
 * Rows: what both formats share (header detection, the phone column, limits)
 */

struct reader {
	struct sheet_limits lim; /* resolved: no zero fields */
	sheet_row_fn fn;
	sheet_progress_fn progress;
	void *ctx;
	char *err; /* first error wins */
	size_t errlen;
	bool failed;  /* err holds an error: return -1 */
	bool stopped; /* a callback asked to stop: return 1 */
	struct sheet_progress prog;

	bool header_done; /* the first non-empty row was seen */
	long phone_col;   /* 0-based, once header_done */
	long hdr_col;     /* first row: first cell naming a phone column, or -1 */
	long first_col;   /* first row: leftmost non-empty cell, or -1 */
	char *first_val;  /* its value (max_value bytes) */
	size_t first_len;
	char *val; /* this row's phone value (max_value bytes) */
	size_t val_len;
	bool nonblank; /* this row has a non-empty cell */
};

static void PRINTF_LIKE(2, 3) fail(struct reader *r, const char *fmt, ...)
{
	va_list ap;

	if (r->failed || r->stopped)
		return;
	r->failed = true;
	if (!r->err || !r->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(r->err, r->errlen, fmt, ap);
	va_end(ap);
}

static void stop(struct reader *r)
{
	if (r->failed || r->stopped)
		return;
	r->stopped = true;
	if (r->err && r->errlen)
		snprintf(r->err, r->errlen, "stopped by the caller");
}

static bool done(const struct reader *r)
{
	return r->failed || r->stopped;
}

static void progress(struct reader *r)
{
	if (r->progress && !done(r) && r->progress(r->ctx, &r->prog))
		stop(r);
}

static bool is_blank(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void trim(const char **s, size_t *n)
{
	while (*n && is_blank((unsigned char)**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n && is_blank((unsigned char)(*s)[*n - 1]))
		(*n)--;
}

/*
 * The key a header cell is compared by: ASCII lower case, without blanks, '_',
 * '-', '.', NBSP and zero-width marks (ZWNJ, LRM, RLM), Arabic yeh and kaf as
 * their Persian forms. Returns its length, or -1 when longer than HDR_KEY_MAX.
 */
static int header_key(const char *s, size_t n, char out[HDR_KEY_MAX])
{
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		const char *put = NULL;
		size_t putn = 1;

		if (is_blank(c) || c == '_' || c == '-' || c == '.')
			continue;
		if (c == 0xc2 && i + 1 < n && p[i + 1] == 0xa0) { /* NBSP */
			i++;
			continue;
		}
		if (c == 0xe2 && i + 2 < n && p[i + 1] == 0x80 &&
		    (p[i + 2] == 0x8c || p[i + 2] == 0x8e || p[i + 2] == 0x8f)) { /* ZWNJ, LRM, RLM */
			i += 2;
			continue;
		}
		if (c == 0xd9 && i + 1 < n && p[i + 1] == 0x8a) { /* ي → ی */
			put = "\xdb\x8c";
			putn = 2;
			i++;
		} else if (c == 0xd9 && i + 1 < n && p[i + 1] == 0x83) { /* ك → ک */
			put = "\xda\xa9";
			putn = 2;
			i++;
		}
		if (o + putn > HDR_KEY_MAX)
			return -1;
		if (put) {
			memcpy(out + o, put, putn);
		} else {
			out[o] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
		}
		o += putn;
	}
	return (int)o;
}

/*
 * Header names, as header_key writes them. The Persian ones: number, telephone,
 * mobile, phone number, mobile number, contact number, mobile ("companion")
 * number, mobile phone.
 */
static const char *const header_names[] = {
    "phone",     "phonenumber", "phoneno",   "number",     "mobile",    "mobilenumber", "mobileno",
    "msisdn",    "tel",         "telephone", "cellphone",  "شماره",     "تلفن",         "موبایل",
    "شمارهتلفن", "شمارهموبایل", "شمارهتماس", "شمارههمراه", "تلفنهمراه",
};

static bool header_match(const char *s, size_t n)
{
	char key[HDR_KEY_MAX];
	int k = header_key(s, n, key);

	if (k <= 0)
		return false;
	for (size_t i = 0; i < ARRAY_LEN(header_names); i++)
		if (strlen(header_names[i]) == (size_t)k && !memcmp(header_names[i], key, (size_t)k))
			return true;
	return false;
}

/* Whether column col's text matters in the current row. */
static bool want_col(const struct reader *r, long col)
{
	return !r->header_done || col == r->phone_col;
}

/* One cell of the current row, its text trimmed (at most max_value bytes). */
static void row_cell(struct reader *r, long col, const char *s, size_t n)
{
	trim(&s, &n);
	if (!n)
		return;
	r->nonblank = true;
	if (!r->header_done) {
		if (r->hdr_col < 0 && header_match(s, n))
			r->hdr_col = col;
		if (r->first_col < 0 || col < r->first_col) {
			r->first_col = col;
			memcpy(r->first_val, s, n);
			r->first_len = n;
		}
		return;
	}
	if (col == r->phone_col) {
		memcpy(r->val, s, n);
		r->val_len = n;
	}
}

static void report(struct reader *r, long line, const char *s, size_t n)
{
	if (r->prog.rows >= r->lim.max_rows) {
		fail(r, "more than %ld rows", r->lim.max_rows);
		return;
	}
	r->prog.rows++;
	if (r->fn(r->ctx, line, s, n))
		stop(r);
}

/* The end of the row at line: header detection on the first, else report it. */
static void row_end(struct reader *r, long line)
{
	if (r->nonblank) {
		if (!r->header_done) {
			r->header_done = true;
			if (r->hdr_col >= 0) {
				r->phone_col = r->hdr_col;
			} else {
				r->phone_col = r->first_col;
				report(r, line, r->first_val, r->first_len);
			}
		} else {
			report(r, line, r->val, r->val_len);
		}
	}
	r->nonblank = false;
	r->val_len = 0;
}

/* ---------------------------------------------------------------------------
 * CSV
 */

static ssize_t read_full(int fd, unsigned char *buf, size_t cap)
{
	size_t got = 0;

	while (got < cap) {
		ssize_t n = read(fd, buf + got, cap - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* The delimiter with the most occurrences outside quotes in the first lines; ',' on a tie or none. */
static char csv_sniff(const unsigned char *p, size_t n)
{
	size_t comma = 0, semi = 0, tab = 0;
	int lines = 0;
	bool quoted = false;

	for (size_t i = 0; i < n && lines < SNIFF_LINES; i++) {
		switch (p[i]) {
		case '"':
			quoted = !quoted;
			break;
		case ',':
			comma += !quoted;
			break;
		case ';':
			semi += !quoted;
			break;
		case '\t':
			tab += !quoted;
			break;
		case '\n':
			lines += !quoted;
			break;
		}
	}
	if (semi > comma && semi >= tab)
		return ';';
	if (tab > comma && tab > semi)
		return '\t';
	return ',';
}

static bool is_zip(const unsigned char *p)
{
	return !memcmp(p, "PK\3\4", 4);
}

/* The OLE2 compound file of a legacy .xls or a password-protected workbook (first 4 of 8 magic bytes). */
static bool is_ole(const unsigned char *p)
{
	return !memcmp(p, "\xd0\xcf\x11\xe0", 4);
}

static int xlsx_read(struct reader *r, const char *path);

enum csv_state { CSV_FIELD_START, CSV_UNQUOTED, CSV_QUOTED, CSV_QUOTED_QUOTE };

static int csv_read(struct reader *r, const char *path)
{
	unsigned char *buf = NULL;
	char *field = NULL;
	int fd = -1;
	struct stat st;
	ssize_t n;
	size_t pos = 0, flen = 0;
	const size_t fmax = r->lim.max_value;
	enum csv_state state = CSV_FIELD_START;
	long line = 1, rec_line = 1, quote_line = 0, col = 0;
	bool last_cr = false, fnonblank = false, want;
	char delim;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fail(r, "cannot open file: %s", strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		fail(r, "cannot read file: %s", strerror(EISDIR));
		goto out;
	}
	r->prog.total = st.st_size > 0 ? (uint64_t)st.st_size : 0;
	buf = xmalloc(CHUNK);
	field = xmalloc(fmax);

	n = read_full(fd, buf, CHUNK);
	if (n < 0) {
		fail(r, "cannot read file: %s", strerror(errno));
		goto out;
	}
	if (n >= 4 && (is_zip(buf) || is_ole(buf))) { /* an xlsx (or .xls) under a .csv name: the content wins */
		close(fd);
		fd = -1;
		r->prog.total = 0;
		free(buf);
		free(field);
		return xlsx_read(r, path);
	}
	if (n >= 2 && ((buf[0] == 0xff && buf[1] == 0xfe) || (buf[0] == 0xfe && buf[1] == 0xff))) {
		fail(r, "the file is UTF-16 text: save it as CSV UTF-8");
		goto out;
	}
	if (n >= 3 && buf[0] == 0xef && buf[1] == 0xbb && buf[2] == 0xbf)
		pos = 3;
	/* Excel's "sep=;" first line names the delimiter */
	if ((size_t)n - pos >= 6 && !memcmp(buf + pos, "sep=", 4) && buf[pos + 4] != '"' &&
	    (buf[pos + 5] == '\n' || buf[pos + 5] == '\r')) {
		delim = (char)buf[pos + 4];
		pos += 6;
		if (buf[pos - 1] == '\r' && pos < (size_t)n && buf[pos] == '\n')
			pos++;
		line = rec_line = 2;
	} else {
		delim = csv_sniff(buf + pos, (size_t)n - pos);
	}
	want = want_col(r, 0);

	while (n > 0) {
		r->prog.done += (uint64_t)n;
		if (r->prog.done > r->prog.total)
			r->prog.total = r->prog.done;
		for (size_t i = pos; i < (size_t)n && !done(r); i++) {
			unsigned char c = buf[i];

			if (c == '\n') {
				if (!last_cr)
					line++;
			} else if (c == '\r') {
				line++;
			} else if (c == 0) {
				fail(r, "line %ld: NUL byte: not a UTF-8 text file", line);
				break;
			}
			last_cr = c == '\r';

			switch (state) {
			case CSV_QUOTED_QUOTE:
				if (c == '"') { /* a doubled quote */
					state = CSV_QUOTED;
					goto append;
				}
				state = CSV_UNQUOTED; /* the closing quote: what follows is literal */
				                      /* fallthrough */
			case CSV_FIELD_START:
				if (state == CSV_FIELD_START && c == '"') {
					state = CSV_QUOTED;
					quote_line = line;
					continue;
				}
				/* fallthrough */
			case CSV_UNQUOTED:
				state = CSV_UNQUOTED;
				if (c == (unsigned char)delim || c == '\n' || c == '\r') {
					if (want)
						row_cell(r, col, field, flen);
					else if (fnonblank)
						r->nonblank = true;
					flen = 0;
					fnonblank = false;
					state = CSV_FIELD_START;
					if (c == (unsigned char)delim) {
						if (col < LONG_MAX)
							col++;
					} else {
						row_end(r, rec_line);
						rec_line = line;
						col = 0;
					}
					want = want_col(r, col);
					continue;
				}
				goto append;
			case CSV_QUOTED:
				if (c == '"') {
					state = CSV_QUOTED_QUOTE;
					continue;
				}
				goto append;
			}
		append:
			if (!is_blank(c))
				fnonblank = true;
			if (want && flen < fmax)
				field[flen++] = (char)c;
		}
		if (done(r))
			goto out;
		progress(r);
		if (done(r))
			goto out;
		pos = 0;
		n = read_full(fd, buf, CHUNK);
		if (n < 0) {
			fail(r, "cannot read file: %s", strerror(errno));
			goto out;
		}
	}

	if (state == CSV_QUOTED) {
		fail(r, "line %ld: quoted field not closed at the end of the file (quote opened on line %ld)", rec_line,
		     quote_line);
		goto out;
	}
	if (state != CSV_FIELD_START || col > 0) { /* the last line had no line end */
		if (want)
			row_cell(r, col, field, flen);
		else if (fnonblank)
			r->nonblank = true;
		row_end(r, rec_line);
	}
	if (!done(r)) {
		r->prog.total = r->prog.done;
		progress(r);
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(field);
	return r->failed ? -1 : r->stopped ? 1 : 0;
}

/* ---------------------------------------------------------------------------
 * XML parser memory: a per-thread budget (expat's allocator hooks take no
 * context), so that a giant tag or attribute cannot grow the parser's buffer
 * without bound.
 */

union xmem_hdr {
	size_t size;
	max_align_t align;
};

static __thread size_t xmem_used, xmem_limit;

static void *xmem_malloc(size_t n)
{
	union xmem_hdr *h;

	if (n > xmem_limit || xmem_used > xmem_limit - n)
		return NULL;
	h = malloc(sizeof(*h) + n);
	if (!h)
		return NULL;
	h->size = n;
	xmem_used += n;
	return h + 1;
}

static void xmem_free(void *p)
{
	union xmem_hdr *h;

	if (!p)
		return;
	h = (union xmem_hdr *)p - 1;
	xmem_used -= h->size;
	free(h);
}

static void *xmem_realloc(void *p, size_t n)
{
	union xmem_hdr *h, *q;
	size_t old;

	if (!p)
		return xmem_malloc(n);
	h = (union xmem_hdr *)p - 1;
	old = h->size;
	if (n > old && (n - old > xmem_limit || xmem_used > xmem_limit - (n - old)))
		return NULL;
	q = realloc(h, sizeof(*q) + n);
	if (!q)
		return NULL;
	xmem_used = xmem_used - old + n;
	q->size = n;
	return q + 1;
}

static const XML_Memory_Handling_Suite xmem_suite = {xmem_malloc, xmem_realloc, xmem_free};

/* ---------------------------------------------------------------------------
 * XLSX
 */

enum cell_type { CELL_NUMBER, CELL_SHARED, CELL_TEXT, CELL_BOOL };

struct xlsx {
	struct reader *r;
	zip_t *za;
	XML_Parser p;
	const char *part; /* the entry being parsed, for messages */
	uint64_t inflated_total;

	/* /_rels/.rels and the workbook's rels */
	const char *want_rid; /* the Relationship Id looked for, or NULL */
	char office[PATH_MAX_PART];
	char sheet_target[PATH_MAX_PART];
	char sst_target[PATH_MAX_PART];

	/* workbook.xml */
	long active_tab; /* 0-based, from the first workbookView */
	bool seen_view;
	long sheets_seen;
	char first_rid[256];
	char active_rid[256];

	/* shared strings: texts back to back in one arena; off[i]..off[i+1] is string i */
	char *sst;
	size_t sst_len, sst_cap;
	uint32_t *off; /* sst_n + 1 entries when sst_n > 0 */
	size_t sst_n, off_cap;
	bool in_si, in_t;
	int rph_depth;
	size_t si_len; /* bytes of the current string kept */

	/* the sheet */
	long row_line, last_row, col, last_col;
	enum cell_type ctype;
	bool in_cell, in_v, in_is;
	char *cell; /* max_value bytes */
	size_t cell_len;
	char *num; /* max_value bytes: a number as an integer */
};

static const char *lname(const char *name)
{
	const char *c = strrchr(name, ':');
	return c ? c + 1 : name;
}

static const char *attr(const XML_Char **atts, const char *local, bool prefixed)
{
	for (; atts[0]; atts += 2) {
		const char *c = strrchr(atts[0], ':');
		if ((c != NULL) == prefixed && !strcmp(c ? c + 1 : atts[0], local))
			return atts[1];
	}
	return NULL;
}

static void xfail(struct xlsx *x, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void xfail(struct xlsx *x, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fail(x->r, "%s: %s", x->part, msg);
	XML_StopParser(x->p, XML_FALSE);
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
                               int has_internal_subset)
{
	(void)name, (void)sysid, (void)pubid, (void)has_internal_subset;
	xfail(ud, "DOCTYPE declarations are not allowed in a workbook (entity bomb?)");
}

static void XMLCALL on_entity(void *ud, const XML_Char *name, int is_param, const XML_Char *value, int value_len,
                              const XML_Char *base, const XML_Char *sysid, const XML_Char *pubid,
                              const XML_Char *notation)
{
	(void)name, (void)is_param, (void)value, (void)value_len, (void)base, (void)sysid, (void)pubid, (void)notation;
	xfail(ud, "entity declarations are not allowed in a workbook (entity bomb?)");
}

/* zip_name_locate, exactly and then ignoring case. */
static zip_int64_t find_entry(zip_t *za, const char *name)
{
	zip_int64_t i = zip_name_locate(za, name, 0);
	return i >= 0 ? i : zip_name_locate(za, name, ZIP_FL_NOCASE);
}

/* The claimed uncompressed size of entry i (0 when unknown or absent). */
static uint64_t entry_size(zip_t *za, zip_int64_t i)
{
	zip_stat_t st;

	if (i < 0 || zip_stat_index(za, (zip_uint64_t)i, 0, &st) < 0 || !(st.valid & ZIP_STAT_SIZE))
		return 0;
	return st.size;
}

/*
 * Streams entry idx (named part) through a fresh expat parser with the given
 * handlers and x as user data, checking the entry's claimed and counted sizes.
 * counts: its bytes count as progress. Returns 0, or -1 with x->r failed/stopped.
 */
static int xml_entry(struct xlsx *x, zip_int64_t idx, const char *part, XML_StartElementHandler start,
                     XML_EndElementHandler end, XML_CharacterDataHandler text, bool counts)
{
	struct reader *r = x->r;
	const struct sheet_limits *lim = &r->lim;
	zip_stat_t st;
	zip_file_t *zf = NULL;
	uint64_t inflated = 0, comp = 0;
	int rc = -1;

	x->part = part;
	if (zip_stat_index(x->za, (zip_uint64_t)idx, 0, &st) < 0) {
		fail(r, "%s: %s", part, zip_strerror(x->za));
		return -1;
	}
	if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE) {
		fail(r, "%s: encrypted entries are not supported", part);
		return -1;
	}
	if (st.valid & ZIP_STAT_COMP_SIZE)
		comp = st.comp_size;
	if (st.valid & ZIP_STAT_SIZE) {
		if (st.size > lim->max_entry_bytes) {
			fail(r, "%s: entry claims %llu bytes uncompressed, more than the limit of %llu", part,
			     (unsigned long long)st.size, (unsigned long long)lim->max_entry_bytes);
			return -1;
		}
		if (st.size > RATIO_FLOOR && st.size / (comp ? comp : 1) > lim->max_ratio) {
			fail(r, "%s: entry claims a compression ratio above %u (zip bomb?)", part, lim->max_ratio);
			return -1;
		}
	}

	zf = zip_fopen_index(x->za, (zip_uint64_t)idx, 0);
	if (!zf) {
		fail(r, "%s: cannot open entry: %s", part, zip_strerror(x->za));
		return -1;
	}
	xmem_used = 0;
	xmem_limit = lim->max_xml_memory;
	x->p = XML_ParserCreate_MM(NULL, &xmem_suite, NULL);
	if (!x->p) {
		fail(r, "%s: cannot create an XML parser", part);
		goto out;
	}
	XML_SetUserData(x->p, x);
	XML_SetElementHandler(x->p, start, end);
	XML_SetCharacterDataHandler(x->p, text);
	XML_SetStartDoctypeDeclHandler(x->p, on_doctype);
	XML_SetEntityDeclHandler(x->p, on_entity);
	XML_SetParamEntityParsing(x->p, XML_PARAM_ENTITY_PARSING_NEVER);
	/* defense in depth: declarations are refused above */
	XML_SetBillionLaughsAttackProtectionMaximumAmplification(x->p, 20.0f);
	XML_SetBillionLaughsAttackProtectionActivationThreshold(x->p, 1u << 20);

	for (;;) {
		void *buf = XML_GetBuffer(x->p, CHUNK);
		zip_int64_t n;

		if (!buf) {
			fail(r, "%s: XML too complex: the parser needs more than %zu bytes (giant tag?)", part,
			     lim->max_xml_memory);
			goto out;
		}
		n = zip_fread(zf, buf, CHUNK);
		if (n < 0) {
			fail(r, "%s: corrupt entry: %s", part, zip_file_strerror(zf));
			goto out;
		}
		inflated += (uint64_t)n;
		x->inflated_total += (uint64_t)n;
		if (inflated > lim->max_entry_bytes) {
			fail(r, "%s: entry inflates beyond the limit of %llu bytes", part,
			     (unsigned long long)lim->max_entry_bytes);
			goto out;
		}
		if (inflated > RATIO_FLOOR && inflated / (comp ? comp : 1) > lim->max_ratio) {
			fail(r, "%s: entry inflates more than %u times its compressed size (zip bomb?)", part,
			     lim->max_ratio);
			goto out;
		}
		if (x->inflated_total > lim->max_total_bytes) {
			fail(r, "%s: the workbook inflates beyond the limit of %llu bytes", part,
			     (unsigned long long)lim->max_total_bytes);
			goto out;
		}
		if (XML_ParseBuffer(x->p, (int)n, n == 0) != XML_STATUS_OK) {
			enum XML_Error e = XML_GetErrorCode(x->p);
			if (done(r))
				goto out;
			if (e == XML_ERROR_NO_MEMORY)
				fail(r, "%s: XML too complex: the parser needs more than %zu bytes (giant tag?)", part,
				     lim->max_xml_memory);
			else
				fail(r, "%s: malformed XML at line %lu column %lu: %s", part,
				     (unsigned long)XML_GetCurrentLineNumber(x->p),
				     (unsigned long)XML_GetCurrentColumnNumber(x->p), XML_ErrorString(e));
			goto out;
		}
		if (done(r))
			goto out;
		if (counts) {
			r->prog.done += (uint64_t)n;
			if (r->prog.done > r->prog.total)
				r->prog.total = r->prog.done;
			progress(r);
			if (done(r))
				goto out;
		}
		if (n == 0)
			break;
	}
	rc = 0;
out:
	if (x->p)
		XML_ParserFree(x->p);
	x->p = NULL;
	xmem_limit = 0;
	if (zip_fclose(zf) != 0 && rc == 0) {
		fail(r, "%s: corrupt entry", part);
		rc = -1;
	}
	return rc;
}

/* --- rels: /_rels/.rels (the office document) and the workbook's (sheet, shared strings) --- */

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && !strcmp(s + n - m, suffix);
}

static void copy_target(char *dst, const char *src)
{
	if (strlen(src) < PATH_MAX_PART)
		strcpy(dst, src);
}

static void XMLCALL rels_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	struct xlsx *x = ud;
	const char *id, *type, *target, *mode;

	if (strcmp(lname(name), "Relationship"))
		return;
	id = attr(atts, "Id", false);
	type = attr(atts, "Type", false);
	target = attr(atts, "Target", false);
	mode = attr(atts, "TargetMode", false);
	if (!target || (mode && !strcmp(mode, "External")))
		return;
	if (type && ends_with(type, "/officeDocument") && !x->office[0])
		copy_target(x->office, target);
	if (type && ends_with(type, "/sharedStrings") && !x->sst_target[0])
		copy_target(x->sst_target, target);
	if (id && x->want_rid && !strcmp(id, x->want_rid) && !x->sheet_target[0])
		copy_target(x->sheet_target, target);
}

static void XMLCALL no_end(void *ud, const XML_Char *name)
{
	(void)ud, (void)name;
}

static void XMLCALL no_text(void *ud, const XML_Char *s, int len)
{
	(void)ud, (void)s, (void)len;
}

/*
 * Resolves a relationship target against the directory of base (a part name)
 * into out: "/x" is from the root, "../" climbs. Returns -1 when it does not fit
 * or climbs above the root.
 */
static int resolve(const char *base, const char *target, char out[PATH_MAX_PART])
{
	char tmp[2 * PATH_MAX_PART];
	size_t o = 0;
	const char *s;

	if (target[0] == '/') {
		tmp[0] = '\0';
		target++;
	} else {
		const char *slash = strrchr(base, '/');
		size_t dir = slash ? (size_t)(slash - base) + 1 : 0;
		if (dir >= PATH_MAX_PART)
			return -1;
		memcpy(tmp, base, dir);
		tmp[dir] = '\0';
	}
	if (strlen(tmp) + strlen(target) >= sizeof(tmp))
		return -1;
	strcat(tmp, target);

	/* normalize "." and ".." segments */
	s = tmp;
	while (*s) {
		const char *e = strchr(s, '/');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		if ((len == 1 && s[0] == '.') || len == 0) {
			/* skip */
		} else if (len == 2 && s[0] == '.' && s[1] == '.') {
			if (o == 0)
				return -1;
			o--; /* the '/' after the last segment */
			while (o > 0 && out[o - 1] != '/')
				o--;
		} else {
			if (o + len + 1 >= PATH_MAX_PART)
				return -1;
			memcpy(out + o, s, len);
			o += len;
			if (e)
				out[o++] = '/';
		}
		s += len + (e ? 1 : 0);
	}
	if (o > 0 && out[o - 1] == '/')
		o--;
	out[o] = '\0';
	return o ? 0 : -1;
}

/* --- workbook.xml: the active sheet's relationship id --- */

static void XMLCALL workbook_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	struct xlsx *x = ud;
	const char *ln = lname(name), *v;

	if (!strcmp(ln, "workbookView") && !x->seen_view) {
		x->seen_view = true;
		v = attr(atts, "activeTab", false);
		if (v) {
			char *e;
			long t;
			errno = 0;
			t = strtol(v, &e, 10);
			if (!errno && e != v && !*e && t >= 0)
				x->active_tab = t;
		}
	} else if (!strcmp(ln, "sheet")) {
		v = attr(atts, "id", true);
		if (!v || strlen(v) >= sizeof(x->first_rid))
			v = "";
		if (x->sheets_seen == 0)
			strcpy(x->first_rid, v);
		if (x->sheets_seen == x->active_tab)
			strcpy(x->active_rid, v);
		x->sheets_seen++;
	}
}

/* --- sharedStrings.xml --- */

static void sst_push(struct xlsx *x)
{
	const struct sheet_limits *lim = &x->r->lim;

	if (x->sst_n >= lim->max_strings) {
		xfail(x, "more than %zu shared strings", lim->max_strings);
		return;
	}
	if (x->sst_n + 2 > x->off_cap) {
		x->off_cap = x->off_cap ? 2 * x->off_cap : 1024;
		x->off = xrealloc(x->off, x->off_cap * sizeof(*x->off));
	}
	if (x->sst_n == 0)
		x->off[0] = 0;
	x->sst_n++;
	x->off[x->sst_n] = (uint32_t)x->sst_len;
}

static void XMLCALL sst_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	struct xlsx *x = ud;
	const char *ln = lname(name);

	if (!strcmp(ln, "si")) {
		x->in_si = true;
		x->in_t = false;
		x->rph_depth = 0;
		x->si_len = 0;
	} else if (!strcmp(ln, "t")) {
		x->in_t = x->in_si && x->rph_depth == 0;
	} else if (!strcmp(ln, "rPh")) {
		x->rph_depth++;
	} else if (!strcmp(ln, "sst")) {
		static const char *const counts[] = {"count", "uniqueCount"};
		for (size_t i = 0; i < ARRAY_LEN(counts); i++) {
			const char *v = attr(atts, counts[i], false);
			unsigned long long c;
			char *e;
			if (!v)
				continue;
			errno = 0;
			c = strtoull(v, &e, 10);
			/* uniqueCount is the table's size; count, the cells that refer to it
			 * (legitimately larger), is refused only far beyond the limit */
			if (errno == ERANGE || (e != v && c > x->r->lim.max_strings * (i == 0 ? 10ull : 1ull))) {
				xfail(x, "declares %s strings, more than the limit of %zu", v, x->r->lim.max_strings);
				return;
			}
			if (i == 1 && e != v && !*e && c + 1 > x->off_cap) { /* reserve the offsets (never shrink) */
				x->off_cap = (size_t)c + 1;
				x->off = xrealloc(x->off, x->off_cap * sizeof(*x->off));
			}
		}
	}
}

static void XMLCALL sst_end(void *ud, const XML_Char *name)
{
	struct xlsx *x = ud;
	const char *ln = lname(name);

	if (!strcmp(ln, "si")) {
		x->in_si = false;
		sst_push(x);
	} else if (!strcmp(ln, "t")) {
		x->in_t = false;
	} else if (!strcmp(ln, "rPh")) {
		if (x->rph_depth > 0)
			x->rph_depth--;
	}
}

static void XMLCALL sst_text(void *ud, const XML_Char *s, int len)
{
	struct xlsx *x = ud;
	const struct sheet_limits *lim = &x->r->lim;
	size_t n = (size_t)len;

	if (!x->in_t || x->rph_depth)
		return;
	if (n > lim->max_value - x->si_len)
		n = lim->max_value - x->si_len; /* a long string is kept cut, like any value */
	if (!n)
		return;
	if (x->sst_len + n > lim->max_strings_bytes) {
		xfail(x, "shared strings exceed the limit of %zu bytes", lim->max_strings_bytes);
		return;
	}
	if (x->sst_len + n > x->sst_cap) {
		size_t cap = x->sst_cap ? x->sst_cap : 64 * 1024;
		while (cap < x->sst_len + n)
			cap *= 2;
		if (cap > lim->max_strings_bytes)
			cap = lim->max_strings_bytes;
		x->sst = xrealloc(x->sst, cap);
		x->sst_cap = cap;
	}
	memcpy(x->sst + x->sst_len, s, n);
	x->sst_len += n;
	x->si_len += n;
}

/* --- the sheet --- */

/* "C5" → column 2 (0-based; the row is the enclosing <row>'s). Returns -1 when malformed. */
static long cell_col(const char *ref)
{
	long col = 0;
	const char *p = ref;

	for (; (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'); p++) {
		int d = (*p | 0x20) - 'a' + 1;
		if (col > (LONG_MAX - 26) / 26)
			return -1;
		col = col * 26 + d;
	}
	if (p == ref)
		return -1;
	return col - 1;
}

/*
 * Writes the decimal number s[0..n) as an integer into out when its value is
 * one ("9.123456789E9", "9123456789.0" → "9123456789"). Exact: no floating
 * point, no locale. Returns the length, or -1 when s is not an integral number.
 */
static long number_as_integer(const char *s, size_t n, char *out, size_t cap)
{
	const char *p = s, *end = s + n, *ip, *fp = NULL;
	size_t ilen, flen = 0;
	long exp = 0, point;
	bool neg = false;
	size_t o = 0, start;

	if (p < end && (*p == '-' || *p == '+'))
		neg = *p++ == '-';
	ip = p;
	while (p < end && *p >= '0' && *p <= '9')
		p++;
	ilen = (size_t)(p - ip);
	if (p < end && *p == '.') {
		fp = ++p;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
		flen = (size_t)(p - fp);
	}
	if (ilen + flen == 0)
		return -1;
	if (p < end && (*p == 'e' || *p == 'E')) {
		bool eneg = false;
		const char *ep;
		p++;
		if (p < end && (*p == '-' || *p == '+'))
			eneg = *p++ == '-';
		ep = p;
		while (p < end && *p >= '0' && *p <= '9') {
			if (exp > 1000)
				return -1;
			exp = exp * 10 + (*p - '0');
			p++;
		}
		if (p == ep)
			return -1;
		if (eneg)
			exp = -exp;
	}
	if (p != end || ilen + flen > 400)
		return -1;

	/* the digits D = int digits + fraction digits, the point after `point` of them */
	point = (long)ilen + exp;
	for (size_t i = 0; i < ilen + flen; i++) {
		char d = i < ilen ? ip[i] : fp[i - ilen];
		if ((long)i >= point && d != '0')
			return -1; /* a non-zero fraction */
	}
	if (point > 40)
		return -1; /* no phone number has this many digits; leave it as written */
	if (neg)
		out[o++] = '-';
	start = o;
	for (long i = 0; i < point; i++) {
		char d = (size_t)i < ilen + flen ? ((size_t)i < ilen ? ip[i] : fp[i - (long)ilen]) : '0';
		if (o == start && d == '0')
			continue; /* leading zeros */
		if (o + 1 >= cap)
			return -1;
		out[o++] = d;
	}
	if (o == start) { /* zero */
		o = 0;
		out[o++] = '0';
	}
	return (long)o;
}

static void XMLCALL sheet_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	struct xlsx *x = ud;
	const char *ln = lname(name), *v;

	switch (ln[0]) {
	case 'c':
		if (ln[1])
			return;
		v = attr(atts, "r", false);
		if (v) {
			x->col = cell_col(v);
			if (x->col < 0) {
				xfail(x, "row %ld: bad cell reference %.32s", x->row_line, v);
				return;
			}
		} else {
			x->col = x->last_col < LONG_MAX ? x->last_col + 1 : LONG_MAX;
		}
		x->last_col = x->col;
		v = attr(atts, "t", false);
		if (!v || !strcmp(v, "n"))
			x->ctype = CELL_NUMBER;
		else if (!strcmp(v, "s"))
			x->ctype = CELL_SHARED;
		else if (!strcmp(v, "b"))
			x->ctype = CELL_BOOL;
		else
			x->ctype = CELL_TEXT; /* str, inlineStr, e, d */
		x->in_cell = true;
		x->cell_len = 0;
		return;
	case 'v':
		if (!ln[1])
			x->in_v = x->in_cell;
		return;
	case 'i':
		if (!strcmp(ln, "is")) {
			x->in_is = x->in_cell;
			x->rph_depth = 0;
		}
		return;
	case 't':
		if (!ln[1])
			x->in_t = x->in_is && x->rph_depth == 0;
		return;
	case 'r':
		if (!strcmp(ln, "row")) {
			v = attr(atts, "r", false);
			if (v) {
				char *e;
				long l;
				errno = 0;
				l = strtol(v, &e, 10);
				if (errno || e == v || *e || l < 1) {
					xfail(x, "bad row number %.32s", v);
					return;
				}
				x->row_line = l;
			} else {
				x->row_line = x->last_row < LONG_MAX ? x->last_row + 1 : LONG_MAX;
			}
			x->last_row = x->row_line;
			x->last_col = -1;
		} else if (!strcmp(ln, "rPh")) {
			x->rph_depth++;
		}
		return;
	}
}

/* The end of a cell: its text as the user sees it, to the row. */
static void cell_end(struct xlsx *x)
{
	struct reader *r = x->r;
	const char *s = x->cell;
	size_t n = x->cell_len;
	long k;

	x->in_cell = x->in_v = x->in_is = x->in_t = false;
	if (!n)
		return;
	switch (x->ctype) {
	case CELL_SHARED: {
		unsigned long long i = 0;
		size_t j;
		trim(&s, &n);
		for (j = 0; j < n && s[j] >= '0' && s[j] <= '9' && i < (1ull << 40); j++)
			i = i * 10 + (unsigned)(s[j] - '0');
		if (j == 0 || j != n || i >= x->sst_n) {
			xfail(x, "row %ld: shared string index %.*s out of range (%zu strings)", x->row_line, (int)n, s,
			      x->sst_n);
			return;
		}
		s = x->sst + x->off[i];
		n = x->off[i + 1] - x->off[i];
		break;
	}
	case CELL_NUMBER:
		trim(&s, &n);
		k = number_as_integer(s, n, x->num, r->lim.max_value);
		if (k >= 0) {
			s = x->num;
			n = (size_t)k;
		}
		break;
	case CELL_BOOL:
		trim(&s, &n);
		if (n == 1 && (s[0] == '0' || s[0] == '1')) {
			s = s[0] == '1' ? "TRUE" : "FALSE";
			n = strlen(s);
		}
		break;
	case CELL_TEXT:
		break;
	}
	row_cell(r, x->col, s, n);
}

static void XMLCALL sheet_end(void *ud, const XML_Char *name)
{
	struct xlsx *x = ud;
	const char *ln = lname(name);

	switch (ln[0]) {
	case 'c':
		if (!ln[1] && x->in_cell)
			cell_end(x);
		return;
	case 'v':
		if (!ln[1])
			x->in_v = false;
		return;
	case 'i':
		if (!strcmp(ln, "is"))
			x->in_is = false;
		return;
	case 't':
		if (!ln[1])
			x->in_t = false;
		return;
	case 'r':
		if (!strcmp(ln, "row")) {
			row_end(x->r, x->row_line);
			if (done(x->r))
				XML_StopParser(x->p, XML_FALSE);
		} else if (!strcmp(ln, "rPh") && x->rph_depth > 0) {
			x->rph_depth--;
		}
		return;
	}
}

static void XMLCALL sheet_text(void *ud, const XML_Char *s, int len)
{
	struct xlsx *x = ud;
	size_t n = (size_t)len, room;

	if (!x->in_v && !x->in_t)
		return;
	if (!want_col(x->r, x->col) && x->r->nonblank)
		return; /* neither the phone column nor needed to tell an empty row */
	room = x->r->lim.max_value - x->cell_len;
	if (n > room)
		n = room;
	memcpy(x->cell + x->cell_len, s, n);
	x->cell_len += n;
}

static int xlsx_open(struct xlsx *x, const char *path)
{
	struct reader *r = x->r;
	unsigned char magic[8] = {0};
	int fd, ze = 0;
	ssize_t n;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fail(r, "cannot open file: %s", strerror(errno));
		return -1;
	}
	n = read_full(fd, magic, sizeof(magic));
	close(fd);
	if (n >= 4 && is_ole(magic)) {
		fail(r, "not an xlsx file: an old .xls workbook or a password-protected one: save it as .xlsx or "
		        "CSV");
		return -1;
	}
	x->za = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
	if (!x->za) {
		zip_error_t e;
		zip_error_init_with_code(&e, ze);
		if (ze == ZIP_ER_NOZIP)
			fail(r, "not an xlsx file: not a zip archive, or a truncated one");
		else
			fail(r, "not a readable xlsx file: %s", zip_error_strerror(&e));
		zip_error_fini(&e);
		return -1;
	}
	if ((uint64_t)zip_get_num_entries(x->za, 0) > r->lim.max_entries) {
		fail(r, "not an xlsx file: more than %llu entries in the zip archive",
		     (unsigned long long)r->lim.max_entries);
		return -1;
	}
	return 0;
}

static int xlsx_read(struct reader *r, const char *path)
{
	struct xlsx x = {.r = r, .last_row = 0, .last_col = -1};
	char wb[PATH_MAX_PART] = "xl/workbook.xml", rels[PATH_MAX_PART + 16], sheet[PATH_MAX_PART] = "",
	     sst[PATH_MAX_PART] = "";
	zip_int64_t i, sheet_i, sst_i = -1;

	if (xlsx_open(&x, path) < 0)
		goto out;

	/* the office document from /_rels/.rels (nearly always xl/workbook.xml) */
	i = find_entry(x.za, "_rels/.rels");
	if (i >= 0 && xml_entry(&x, i, "_rels/.rels", rels_start, no_end, no_text, false) < 0)
		goto out;
	if (x.office[0] && resolve("", x.office, wb) < 0)
		snprintf(wb, sizeof(wb), "xl/workbook.xml");

	/* the active sheet's relationship id, then its part and the shared strings' */
	i = find_entry(x.za, wb);
	if (i >= 0) {
		if (xml_entry(&x, i, wb, workbook_start, no_end, no_text, false) < 0)
			goto out;
		x.want_rid = x.active_rid[0] ? x.active_rid : x.first_rid[0] ? x.first_rid : NULL;
		const char *slash = strrchr(wb, '/');
		int dir = slash ? (int)(slash - wb) + 1 : 0;
		snprintf(rels, sizeof(rels), "%.*s_rels/%s.rels", dir, wb, wb + dir);
		i = find_entry(x.za, rels);
		if (i >= 0 && xml_entry(&x, i, rels, rels_start, no_end, no_text, false) < 0)
			goto out;
		if (x.sheet_target[0] && resolve(wb, x.sheet_target, sheet) < 0)
			sheet[0] = '\0';
		if (x.sst_target[0] && resolve(wb, x.sst_target, sst) < 0)
			sst[0] = '\0';
	}
	sheet_i = sheet[0] ? find_entry(x.za, sheet) : -1;
	if (sheet_i < 0) {
		snprintf(sheet, sizeof(sheet), "xl/worksheets/sheet1.xml");
		sheet_i = find_entry(x.za, sheet);
	}
	if (sheet_i < 0) {
		fail(r, "not an xlsx file: no worksheet found");
		goto out;
	}
	if (sst[0])
		sst_i = find_entry(x.za, sst);
	if (sst_i < 0) {
		snprintf(sst, sizeof(sst), "xl/sharedStrings.xml");
		sst_i = find_entry(x.za, sst);
	}

	r->prog.total = entry_size(x.za, sst_i) + entry_size(x.za, sheet_i);
	if (sst_i >= 0 && xml_entry(&x, sst_i, sst, sst_start, sst_end, sst_text, true) < 0)
		goto out;

	x.cell = xmalloc(r->lim.max_value);
	x.num = xmalloc(r->lim.max_value);
	x.rph_depth = 0;
	x.in_t = false;
	if (xml_entry(&x, sheet_i, sheet, sheet_start, sheet_end, sheet_text, true) < 0)
		goto out;
	r->prog.total = r->prog.done;
	progress(r);
out:
	if (x.za)
		zip_discard(x.za);
	free(x.sst);
	free(x.off);
	free(x.cell);
	free(x.num);
	return r->failed ? -1 : r->stopped ? 1 : 0;
}

/* ---------------------------------------------------------------------------
 * Entry points
 */

enum sheet_format sheet_detect(const char *path, const char *filename)
{
	const char *name = filename ? filename : path;
	const char *dot = name ? strrchr(name, '.') : NULL;
	unsigned char magic[4];
	int fd;
	ssize_t n;

	if (dot && !strcasecmp(dot, ".csv"))
		return SHEET_CSV;
	if (dot && (!strcasecmp(dot, ".xlsx") || !strcasecmp(dot, ".xlsm") || !strcasecmp(dot, ".xls")))
		return SHEET_XLSX; /* .xls: for the xlsx reader's message on it */
	if (!path)
		return SHEET_CSV;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return SHEET_CSV;
	n = read_full(fd, magic, sizeof(magic));
	close(fd);
	return n == 4 && (is_zip(magic) || is_ole(magic)) ? SHEET_XLSX : SHEET_CSV;
}

int sheet_read_phones_opts(const char *path, enum sheet_format fmt, const struct sheet_opts *opts, sheet_row_fn fn,
                           void *ctx, char *err, size_t errlen)
{
	struct reader r = {.fn = fn, .ctx = ctx, .err = err, .errlen = errlen, .hdr_col = -1, .first_col = -1};
	const struct sheet_limits *d = &sheet_limits_default;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	r.lim = opts ? opts->limits : *d;
	r.progress = opts ? opts->progress : NULL;
#define DEFAULT(f)                      \
	do {                            \
		if (!r.lim.f)           \
			r.lim.f = d->f; \
	} while (0)
	DEFAULT(max_value);
	DEFAULT(max_rows);
	DEFAULT(max_entry_bytes);
	DEFAULT(max_total_bytes);
	DEFAULT(max_ratio);
	DEFAULT(max_entries);
	DEFAULT(max_strings);
	DEFAULT(max_strings_bytes);
	DEFAULT(max_xml_memory);
#undef DEFAULT
	if (r.lim.max_strings_bytes > UINT32_MAX)
		r.lim.max_strings_bytes = UINT32_MAX; /* offsets are 32-bit */
	if (r.lim.max_strings > UINT32_MAX / 2)
		r.lim.max_strings = UINT32_MAX / 2;

	r.first_val = xmalloc(r.lim.max_value);
	r.val = xmalloc(r.lim.max_value);
	rc = fmt == SHEET_XLSX ? xlsx_read(&r, path) : csv_read(&r, path);
	free(r.first_val);
	free(r.val);
	return rc;
}

int sheet_read_phones(const char *path, enum sheet_format fmt, sheet_row_fn fn, void *ctx, char *err, size_t errlen)
{
	return sheet_read_phones_opts(path, fmt, NULL, fn, ctx, err, errlen);
}
