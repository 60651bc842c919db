/*
 * Tests of the CSV and XLSX number-file readers (common/sheet.c): every CSV
 * dialect, XLSX from libxlsxwriter and hand-built parts, hostile archives and
 * XML, limits, progress, and a time-boxed mutation fuzz run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xlsxwriter.h>
#include <zip.h>

#include "sheet.h"

static char tmpdir[256];

/* ---------------------------------------------------------------------------
 * Helpers
 */

/* What a read reported: "line:value;" per row (values cut at 80 bytes), and counts. */
struct got {
	char *out;
	size_t len, cap;
	long rows;
	size_t max_len;  /* the longest value reported */
	long stop_after; /* stop when this many rows were seen (0: never) */
	int progress_calls;
	struct sheet_progress last;
	uint64_t last_done;
	bool progress_backwards;
};

static int on_row(void *ctx, long line, const char *v, size_t n)
{
	struct got *g = ctx;
	char tmp[128];
	int k = snprintf(tmp, sizeof(tmp), "%ld:%.*s;", line, (int)(n > 80 ? 80 : n), v);

	g->rows++;
	if (n > g->max_len)
		g->max_len = n;
	if (g->len + (size_t)k + 1 > g->cap) {
		g->cap = (g->cap ? 2 * g->cap : 256) + (size_t)k;
		g->out = realloc(g->out, g->cap);
	}
	memcpy(g->out + g->len, tmp, (size_t)k + 1);
	g->len += (size_t)k;
	return g->stop_after && g->rows >= g->stop_after;
}

static int on_progress(void *ctx, const struct sheet_progress *p)
{
	struct got *g = ctx;

	g->progress_calls++;
	if (p->done < g->last_done || p->done > p->total)
		g->progress_backwards = true;
	g->last_done = p->done;
	g->last = *p;
	return 0;
}

static void got_free(struct got *g)
{
	free(g->out);
	memset(g, 0, sizeof(*g));
}

static const char *got_str(struct got *g)
{
	return g->out ? g->out : "";
}

static char *path_of(const char *name)
{
	static char buf[4][512];
	static int k;
	char *p = buf[k++ % 4];
	snprintf(p, 512, "%s/%s", tmpdir, name);
	return p;
}

static const char *write_file(const char *name, const void *data, size_t len)
{
	const char *p = path_of(name);
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return p;
}

static char *read_whole(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Reads path; returns rc, the rows in g, the message in err. */
static int run(const char *path, enum sheet_format fmt, const struct sheet_opts *o, struct got *g, char *err,
               size_t errlen)
{
	struct sheet_opts opts = {0};

	if (o)
		opts = *o;
	if (!opts.progress)
		opts.progress = on_progress;
	return sheet_read_phones_opts(path, fmt, &opts, on_row, g, err, errlen);
}

/* ---------------------------------------------------------------------------
 * CSV
 */

struct csv_case {
	const char *name;
	const char *in;
	const char *want; /* rows as "line:value;", or for an error a substring of the message */
	int rc;
};

#define BOM "\xef\xbb\xbf"

static const struct csv_case csv_cases[] = {
    {"comma, header", "name,phone\nali,09123456789\nreza,+98 912 345 6789\n", "2:09123456789;3:+98 912 345 6789;", 0},
    {"semicolon, CRLF", "phone;name\r\n09123456789;a\r\n9123456789;b\r\n", "2:09123456789;3:9123456789;", 0},
    {"tab", "id\tname\tmobile\n1\ta\t0912 345 6789\n2\tb\t0935-123-4567\n", "2:0912 345 6789;3:0935-123-4567;", 0},
    {"quotes", "\"name\",\"phone\"\n\"a,b\",\"0912 \"\"x\"\"\"\n\"c\",\"09351234567\"\n", "2:0912 \"x\";3:09351234567;",
     0},
    {"newline inside quotes", "name,phone\n\"two\nlines\",09123456789\nz,09351234567\n", "2:09123456789;4:09351234567;",
     0},
    {"CRLF inside quotes", "name,phone\r\n\"two\r\nlines\",09123456789\r\nz,09351234567\r\n",
     "2:09123456789;4:09351234567;", 0},
    {"BOM and header", BOM "phone\n09123456789\n", "2:09123456789;", 0},
    {"BOM, no header", BOM "09123456789\n09351234567\n", "1:09123456789;2:09351234567;", 0},
    {"no header", "09123456789\n9123456789\n+989123456789\n", "1:09123456789;2:9123456789;3:+989123456789;", 0},
    {"no header, two columns", "09123456789,ali\n09351234567,reza\n", "1:09123456789;2:09351234567;", 0},
    {"persian header", "نام,شماره موبایل\nعلی,۰۹۱۲۳۴۵۶۷۸۹\n", "2:۰۹۱۲۳۴۵۶۷۸۹;", 0},
    {"persian header with ZWNJ and arabic yeh", "نام;شماره\xe2\x80\x8cموبايل\nعلی;09123456789\n", "2:09123456789;", 0},
    {"persian header alone", "تلفن\n09123456789\n", "2:09123456789;", 0},
    {"header case and blanks", "Name, Phone_Number ,City\nali, 09123456789 ,x\n", "2:09123456789;", 0},
    {"header PhoneNumber", "x,PhoneNumber\n1,09123456789\n", "2:09123456789;", 0},
    {"header MSISDN", "MSISDN\n989123456789\n", "2:989123456789;", 0},
    {"phone column not first", "id,name,city,tel\n1,a,b,09123456789\n2,c,d,09351234567\n",
     "2:09123456789;3:09351234567;", 0},
    {"first header match wins", "mobile,phone\n09123456789,09351234567\n", "2:09123456789;", 0},
    {"empty lines skipped", "phone\n\n09123456789\n,\n   \n\r\n09351234567\n", "3:09123456789;7:09351234567;", 0},
    {"blank lines before the header", "\n\nphone\n09123456789\n", "4:09123456789;", 0},
    {"row without the phone cell", "name,phone\nali\nreza,\nx,09123456789\n", "2:;3:;4:09123456789;", 0},
    {"CR line ends", "phone\r09123456789\r09351234567", "2:09123456789;3:09351234567;", 0},
    {"no final line end", "phone\n09123456789", "2:09123456789;", 0},
    {"no final line end, quoted", "phone\n\"09123456789\"", "2:09123456789;", 0},
    {"stray quote is literal", "09\"12\n", "1:09\"12;", 0},
    {"text after a closing quote", "\"0912\"345\n", "1:0912345;", 0},
    {"first column empty, no header", ",09123456789\n,09351234567\n", "1:09123456789;2:09351234567;", 0},
    {"sniff ignores quoted delimiters", "\"a,b\";phone\n\"c,d\";09123456789\n", "2:09123456789;", 0},
    {"semicolon beats a comma in a value", "name;phone\nali, reza;09123456789\nx;09351234567\n",
     "2:09123456789;3:09351234567;", 0},
    {"excel sep= line", "sep=;\r\nname;phone\r\na,b;09123456789\r\n", "3:09123456789;", 0},
    {"excel sep= line, tab, BOM", BOM "sep=\t\nphone\n09123456789\n", "3:09123456789;", 0},
    {"single column, spaces", "0912 345 6789\n", "1:0912 345 6789;", 0},
    {"empty file", "", "", 0},
    {"only a header", "phone\n", "", 0},
    {"only blanks", "\n\r\n , \n", "", 0},
    {"unterminated quote", "phone\n\"09123456789\n09351234567\n", "not closed", -1},
    {"NUL byte", "phone\n0912\0003456789\n", "NUL byte", -1},
    {"UTF-16 LE", "\xff\xfep\0h\0", "UTF-16", -1},
};

static void test_csv_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(csv_cases) / sizeof(csv_cases[0]); i++) {
		const struct csv_case *c = &csv_cases[i];
		size_t len = strlen(c->in);
		struct got g = {0};
		char err[256];
		const char *p;
		int rc;

		if (!strcmp(c->name, "NUL byte"))
			len = sizeof("phone\n0912\0003456789\n") - 1;
		if (!strcmp(c->name, "UTF-16 LE"))
			len = 6;
		p = write_file("case.csv", c->in, len);
		rc = run(p, SHEET_CSV, NULL, &g, err, sizeof(err));
		if (rc != c->rc)
			fail_msg("%s: rc %d, want %d (%s)", c->name, rc, c->rc, err);
		if (c->rc == 0 && strcmp(got_str(&g), c->want))
			fail_msg("%s: got \"%s\", want \"%s\"", c->name, got_str(&g), c->want);
		if (c->rc < 0 && !strstr(err, c->want))
			fail_msg("%s: error \"%s\" lacks \"%s\"", c->name, err, c->want);
		if (c->rc == 0 && err[0])
			fail_msg("%s: err set on success: %s", c->name, err);
		got_free(&g);
	}
}

/* A value longer than max_value is reported cut; the read goes on. */
static void test_csv_long_value(void **state)
{
	size_t n = 200000;
	char *buf = malloc(n + 64);
	struct got g = {0};
	char err[256];
	int rc;

	(void)state;
	strcpy(buf, "phone\n");
	memset(buf + 6, '7', n);
	strcpy(buf + 6 + n, "\n09123456789\n");
	rc = run(write_file("long.csv", buf, strlen(buf)), SHEET_CSV, NULL, &g, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_int_equal(g.rows, 2);
	assert_int_equal(g.max_len, 1024);
	assert_non_null(strstr(got_str(&g), ";3:09123456789;"));
	got_free(&g);

	/* the cut length itself, with a small limit */
	struct sheet_opts o = {.limits = {.max_value = 5}};
	rc = run(write_file("long.csv", "12345678,x\n09,y\n", 16), SHEET_CSV, &o, &g, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_string_equal(got_str(&g), "1:12345;2:09;");
	got_free(&g);
	free(buf);
}

/* Lines and values stay right across 64 KiB buffer boundaries, for every delimiter. */
static void test_csv_big(void **state)
{
	const char delims[] = {',', ';', '\t'};

	(void)state;
	for (size_t d = 0; d < sizeof(delims); d++) {
		FILE *f = fopen(path_of("big.csv"), "wb");
		struct got g = {0};
		char err[256];
		long bad = 0;

		assert_non_null(f);
		fprintf(f, "name%cphone\r\n", delims[d]);
		for (long i = 0; i < 50000; i++)
			fprintf(f, "\"n%ld%c\"%c0912%07ld\r\n", i, delims[d], delims[d], i);
		fclose(f);
		assert_int_equal(run(path_of("big.csv"), SHEET_CSV, NULL, &g, err, sizeof(err)), 0);
		assert_int_equal(g.rows, 50000);
		/* spot-check: row i is on line i + 2 with 0912 + i */
		char *p = g.out;
		for (long i = 0; i < 50000; i++) {
			char want[64];
			int k = snprintf(want, sizeof(want), "%ld:0912%07ld;", i + 2, i);
			if (strncmp(p, want, (size_t)k))
				bad++;
			p += k;
		}
		assert_int_equal(bad, 0);
		assert_true(g.progress_calls >= 2);
		assert_false(g.progress_backwards);
		assert_true(g.last.done == g.last.total && g.last.rows == 50000);
		got_free(&g);
	}
}

static void test_csv_limits_and_stop(void **state)
{
	struct sheet_opts o = {.limits = {.max_rows = 3}};
	struct got g = {0};
	char err[256];
	const char *p = write_file("rows.csv", "1\n2\n3\n4\n5\n", 10);

	(void)state;
	assert_int_equal(run(p, SHEET_CSV, &o, &g, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "more than 3 rows"));
	got_free(&g);

	assert_int_equal(run(p, SHEET_CSV, NULL, &g, err, sizeof(err)), 0);
	assert_int_equal(g.rows, 5);
	got_free(&g);

	g.stop_after = 2;
	assert_int_equal(run(p, SHEET_CSV, NULL, &g, err, sizeof(err)), 1);
	assert_int_equal(g.rows, 2);
	assert_non_null(strstr(err, "stopped"));
	got_free(&g);

	assert_int_equal(sheet_read_phones(path_of("missing.csv"), SHEET_CSV, on_row, &g, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot open"));
	got_free(&g);
}

static int stop_progress(void *ctx, const struct sheet_progress *p)
{
	(void)ctx, (void)p;
	return 1;
}

static void test_progress_stop(void **state)
{
	struct sheet_opts o = {.progress = stop_progress};
	struct got g = {0};
	char err[256];

	(void)state;
	assert_int_equal(run(write_file("p.csv", "1\n2\n", 4), SHEET_CSV, &o, &g, err, sizeof(err)), 1);
	got_free(&g);
}

static void test_detect(void **state)
{
	const char *zipish = write_file("noext", "PK\3\4rest", 8);
	const char *text = write_file("noext2", "phone\n", 6);

	(void)state;
	assert_int_equal(sheet_detect(text, "Numbers.CSV"), SHEET_CSV);
	assert_int_equal(sheet_detect(text, "numbers.XLSX"), SHEET_XLSX);
	assert_int_equal(sheet_detect(zipish, "numbers.csv"), SHEET_CSV); /* the name wins */
	assert_int_equal(sheet_detect(zipish, NULL), SHEET_XLSX);
	assert_int_equal(sheet_detect(zipish, "upload"), SHEET_XLSX);
	assert_int_equal(sheet_detect(text, "upload.bin"), SHEET_CSV);
	assert_int_equal(sheet_detect(path_of("absent"), NULL), SHEET_CSV);
	assert_int_equal(sheet_detect(text, "old.xls"), SHEET_XLSX);
	assert_int_equal(sheet_detect(write_file("ole", "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 8), NULL), SHEET_XLSX);
}

/* ---------------------------------------------------------------------------
 * XLSX from libxlsxwriter: shared strings (normal mode) and inline strings
 * (constant_memory mode) must read the same.
 */

static void write_lxw(const char *path, bool constant_memory)
{
	lxw_workbook_options opt = {.constant_memory = constant_memory, .tmpdir = tmpdir};
	lxw_workbook *wb = workbook_new_opt(path, &opt);
	lxw_worksheet *ws;

	assert_non_null(wb);
	ws = workbook_add_worksheet(wb, "numbers");
	/* row 1: header with the phone column in C and B empty */
	worksheet_write_string(ws, 0, 0, "Name", NULL);
	worksheet_write_string(ws, 0, 2, "Mobile", NULL);
	worksheet_write_string(ws, 1, 0, "ali", NULL);
	worksheet_write_string(ws, 1, 2, "09123456789", NULL);
	worksheet_write_string(ws, 2, 0, "reza", NULL);
	worksheet_write_number(ws, 2, 2, 9123456789.0, NULL);
	/* row 4 missing: rows are sparse */
	worksheet_write_number(ws, 4, 2, 9351234567.0, NULL);
	worksheet_write_string(ws, 5, 0, "no phone", NULL);
	worksheet_write_string(ws, 7, 2, "+98 912 345 6789", NULL);
	worksheet_write_string(ws, 8, 4, "far column only", NULL);
	worksheet_write_string(ws, 9, 2, "شماره ۰۹۱۲۳۴۵۶۷۸۹", NULL);
	worksheet_write_number(ws, 10, 2, 12.5, NULL);
	worksheet_write_boolean(ws, 11, 2, 1, NULL);
	/* a second sheet must be ignored */
	ws = workbook_add_worksheet(wb, "other");
	worksheet_write_string(ws, 0, 0, "phone", NULL);
	worksheet_write_string(ws, 1, 0, "09000000000", NULL);
	assert_int_equal(workbook_close(wb), LXW_NO_ERROR);
}

static const char lxw_want[] = "2:09123456789;3:9123456789;5:9351234567;6:;8:+98 912 345 6789;9:;"
                               "10:شماره ۰۹۱۲۳۴۵۶۷۸۹;11:12.5;12:TRUE;";

static void test_xlsx_libxlsxwriter(void **state)
{
	(void)state;
	for (int cm = 0; cm < 2; cm++) {
		const char *p = path_of(cm ? "lxw-cm.xlsx" : "lxw.xlsx");
		struct got g = {0};
		char err[256];

		write_lxw(p, cm);
		assert_int_equal(sheet_detect(p, NULL), SHEET_XLSX);
		if (run(p, SHEET_XLSX, NULL, &g, err, sizeof(err)) != 0)
			fail_msg("constant_memory=%d: %s", cm, err);
		assert_string_equal(got_str(&g), lxw_want);
		assert_int_equal(g.last.rows, 9);
		assert_true(g.last.done == g.last.total && g.last.total > 0);
		got_free(&g);
		/* the same bytes under a .csv name: the content wins */
		assert_int_equal(run(p, SHEET_CSV, NULL, &g, err, sizeof(err)), 0);
		assert_string_equal(got_str(&g), lxw_want);
		got_free(&g);
	}
}

static void test_xlsx_no_header_numbers(void **state)
{
	const char *p = path_of("nohdr.xlsx");
	lxw_workbook *wb = workbook_new(p);
	lxw_worksheet *ws = workbook_add_worksheet(wb, NULL);
	struct got g = {0};
	char err[256];

	(void)state;
	for (int i = 0; i < 3; i++)
		worksheet_write_number(ws, (lxw_row_t)i, 1, 9123456780.0 + i, NULL);
	assert_int_equal(workbook_close(wb), LXW_NO_ERROR);
	assert_int_equal(run(p, SHEET_XLSX, NULL, &g, err, sizeof(err)), 0);
	assert_string_equal(got_str(&g), "1:9123456780;2:9123456781;3:9123456782;");
	got_free(&g);
}

/* ---------------------------------------------------------------------------
 * XLSX built part by part with libzip
 */

struct part {
	const char *name;
	const char *data; /* NULL: end of list */
	size_t len;       /* 0: strlen(data) */
};

#define CT                                                              \
	"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>" \
	"<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"></Types>"
#define ROOT_RELS                                                                                      \
	"<?xml version=\"1.0\"?><Relationships "                                                       \
	"xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">"                      \
	"<Relationship Id=\"rId1\" "                                                                   \
	"Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" " \
	"Target=\"xl/workbook.xml\"/></Relationships>"
#define WORKBOOK                                                                                                \
	"<?xml version=\"1.0\"?><workbook xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" " \
	"xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\">"                      \
	"<sheets><sheet name=\"s\" sheetId=\"1\" r:id=\"rId1\"/></sheets></workbook>"
#define WB_RELS                                                                                       \
	"<?xml version=\"1.0\"?><Relationships "                                                      \
	"xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">"                     \
	"<Relationship Id=\"rId1\" "                                                                  \
	"Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet\" "     \
	"Target=\"worksheets/sheet1.xml\"/>"                                                          \
	"<Relationship Id=\"rId2\" "                                                                  \
	"Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings\" " \
	"Target=\"sharedStrings.xml\"/></Relationships>"
#define SHEET_HEAD                                                                                               \
	"<?xml version=\"1.0\"?><worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">" \
	"<sheetData>"
#define SHEET_TAIL "</sheetData></worksheet>"
#define SST_HEAD   "<?xml version=\"1.0\"?><sst xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">"

/* Writes a zip at path from parts (deflated unless store). */
static void write_zip(const char *path, const struct part *parts, bool store)
{
	int ze = 0;
	zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &ze);

	assert_non_null(za);
	for (const struct part *p = parts; p->data; p++) {
		size_t len = p->len ? p->len : strlen(p->data);
		zip_source_t *src = zip_source_buffer(za, p->data, len, 0);
		zip_int64_t i;
		assert_non_null(src);
		i = zip_file_add(za, p->name, src, ZIP_FL_OVERWRITE);
		assert_true(i >= 0);
		assert_int_equal(
		    zip_set_file_compression(za, (zip_uint64_t)i, store ? ZIP_CM_STORE : ZIP_CM_DEFLATE, 0), 0);
	}
	assert_int_equal(zip_close(za), 0);
}

/* A standard workbook with the given sheet XML and shared strings (NULL: none). */
static const char *write_xlsx(const char *name, const char *sheet, const char *sst)
{
	const char *p = path_of(name);
	struct part parts[] = {
	    {"[Content_Types].xml", CT, 0},
	    {"_rels/.rels", ROOT_RELS, 0},
	    {"xl/workbook.xml", WORKBOOK, 0},
	    {"xl/_rels/workbook.xml.rels", WB_RELS, 0},
	    {"xl/worksheets/sheet1.xml", sheet, 0},
	    {"xl/sharedStrings.xml", sst, 0},
	    {NULL, NULL, 0},
	};
	write_zip(p, parts, false);
	return p;
}

struct xlsx_case {
	const char *name;
	const char *sheet; /* between SHEET_HEAD and SHEET_TAIL */
	const char *sst;   /* between SST_HEAD and </sst>, or NULL */
	const char *want;
	int rc;
};

static const struct xlsx_case xlsx_cases[] = {
    {"numbers as integers",
     "<row r=\"1\"><c r=\"A1\"><v>9123456789</v></c></row>"
     "<row r=\"2\"><c r=\"A2\"><v>9.123456789E9</v></c></row>"
     "<row r=\"3\"><c r=\"A3\" t=\"n\"><v>9123456789.0</v></c></row>"
     "<row r=\"4\"><c r=\"A4\"><v>9.123456789e+009</v></c></row>"
     "<row r=\"5\"><c r=\"A5\"><v>91234567890E-1</v></c></row>"
     "<row r=\"6\"><c r=\"A6\"><v>989123456789</v></c></row>"
     "<row r=\"7\"><c r=\"A7\"><v>12.5</v></c></row>"
     "<row r=\"8\"><c r=\"A8\"><v>1E3</v></c></row>"
     "<row r=\"9\"><c r=\"A9\"><v>-0.0</v></c></row>"
     "<row r=\"10\"><c r=\"A10\"><v>0.000</v></c></row>"
     "<row r=\"11\"><c r=\"A11\"><v>1e400</v></c></row>"
     "<row r=\"12\"><c r=\"A12\"><v>abc</v></c></row>",
     NULL,
     "1:9123456789;2:9123456789;3:9123456789;4:9123456789;5:9123456789;6:989123456789;7:12.5;8:1000;9:0;10:0;"
     "11:1e400;12:abc;",
     0},
    {"shared strings, header, sparse",
     "<row r=\"1\"><c r=\"B1\" t=\"s\"><v>0</v></c><c r=\"D1\" t=\"s\"><v>1</v></c></row>"
     "<row r=\"3\"><c r=\"B3\" t=\"s\"><v>2</v></c><c r=\"D3\" t=\"s\"><v>3</v></c></row>"
     "<row r=\"4\"><c r=\"D4\" t=\"s\"><v>4</v></c></row>"
     "<row r=\"7\"><c r=\"B7\" t=\"s\"><v>2</v></c></row>"
     "<row r=\"8\"><c r=\"B8\" s=\"1\"/><c r=\"D8\" s=\"1\"/></row>"
     "<row r=\"9\" spans=\"1:4\"></row>",
     "<si><t>name</t></si><si><t xml:space=\"preserve\"> Phone </t></si><si><t>ali</t></si>"
     "<si><t>09123456789</t></si><si><r><t>0935</t></r><r><rPr><b/></rPr><t>1234567</t></r>"
     "<rPh sb=\"0\" eb=\"1\"><t>phonetic</t></rPh></si>",
     "3:09123456789;4:09351234567;7:;", 0},
    {"inline strings and rich text",
     "<row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>شماره تلفن</t></is></c></row>"
     "<row r=\"2\"><c r=\"A2\" t=\"inlineStr\"><is><r><t>0912</t></r><r><t>3456789</t></r></is></c></row>"
     "<row r=\"3\"><c r=\"A3\" t=\"inlineStr\"><is><t>09351234567</t><rPh><t>x</t></rPh></is></c></row>",
     NULL, "2:09123456789;3:09351234567;", 0},
    {"str, bool, error, date cells",
     "<row r=\"1\"><c r=\"A1\" t=\"str\"><f>A2</f><v>09123456789</v></c></row>"
     "<row r=\"2\"><c r=\"A2\" t=\"b\"><v>0</v></c></row>"
     "<row r=\"3\"><c r=\"A3\" t=\"e\"><v>#N/A</v></c></row>"
     "<row r=\"4\"><c r=\"A4\" t=\"d\"><v>2024-01-01</v></c></row>"
     "<row r=\"5\"><c r=\"A5\"><f>1+1</f></c></row>",
     NULL, "1:09123456789;2:FALSE;3:#N/A;4:2024-01-01;", 0},
    {"cells and rows without r",
     "<row><c><v>1</v></c><c t=\"inlineStr\"><is><t>tel</t></is></c></row>"
     "<row><c><v>5</v></c><c><v>9123456789</v></c></row>"
     "<row r=\"10\"><c r=\"A10\"><v>6</v></c><c><v>9351234567</v></c></row>"
     "<row><c r=\"B11\"><v>9121111111</v></c></row>",
     NULL, "2:9123456789;10:9351234567;11:9121111111;", 0},
    {"prefixed namespace", NULL, NULL, "2:09123456789;", 0},
    {"lower-case and far columns",
     "<row r=\"1\"><c r=\"aa1\" t=\"inlineStr\"><is><t>MOBILE</t></is></c></row>"
     "<row r=\"2\"><c r=\"XFD2\"><v>1</v></c><c r=\"AA2\"><v>9123456789</v></c></row>",
     NULL, "2:9123456789;", 0},
    {"shared string index out of range", "<row r=\"1\"><c r=\"A1\" t=\"s\"><v>5</v></c></row>", "<si><t>a</t></si>",
     "out of range", -1},
    {"shared string without table", "<row r=\"1\"><c r=\"A1\" t=\"s\"><v>0</v></c></row>", NULL, "out of range", -1},
    {"bad cell reference", "<row r=\"1\"><c r=\"12\"><v>1</v></c></row>", NULL, "bad cell reference", -1},
    {"bad row number", "<row r=\"x\"><c r=\"A1\"><v>1</v></c></row>", NULL, "bad row number", -1},
    {"malformed XML", "<row r=\"1\"><c r=\"A1\"><v>1</c></row>", NULL, "malformed XML", -1},
    {"billion laughs in the sheet", "<!DOCTYPE x [<!ENTITY a \"aaaa\">]>", NULL, "DOCTYPE", -1},
};

static void test_xlsx_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(xlsx_cases) / sizeof(xlsx_cases[0]); i++) {
		const struct xlsx_case *c = &xlsx_cases[i];
		char sheet[8192], sst[8192];
		struct got g = {0};
		char err[512];
		const char *p;
		int rc;

		if (!strcmp(c->name, "prefixed namespace")) {
			snprintf(
			    sheet, sizeof(sheet),
			    "<?xml version=\"1.0\"?><x:worksheet "
			    "xmlns:x=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"><x:sheetData>"
			    "<x:row r=\"1\"><x:c r=\"A1\" t=\"inlineStr\"><x:is><x:t>phone</x:t></x:is></x:c></x:row>"
			    "<x:row r=\"2\"><x:c r=\"A2\" t=\"inlineStr\"><x:is><x:t>09123456789</x:t></x:is></x:c>"
			    "</x:row></x:sheetData></x:worksheet>");
		} else if (!strncmp(c->sheet, "<!DOCTYPE", 9)) {
			snprintf(sheet, sizeof(sheet), "<?xml version=\"1.0\"?>%s<worksheet><sheetData/></worksheet>",
			         c->sheet);
		} else {
			snprintf(sheet, sizeof(sheet), SHEET_HEAD "%s" SHEET_TAIL, c->sheet);
		}
		if (c->sst)
			snprintf(sst, sizeof(sst), SST_HEAD "%s</sst>", c->sst);
		p = write_xlsx("case.xlsx", sheet, c->sst ? sst : NULL);
		rc = run(p, SHEET_XLSX, NULL, &g, err, sizeof(err));
		if (rc != c->rc)
			fail_msg("%s: rc %d, want %d (%s)", c->name, rc, c->rc, err);
		if (c->rc == 0 && strcmp(got_str(&g), c->want))
			fail_msg("%s: got \"%s\", want \"%s\"", c->name, got_str(&g), c->want);
		if (c->rc < 0 && !strstr(err, c->want))
			fail_msg("%s: error \"%s\" lacks \"%s\"", c->name, err, c->want);
		got_free(&g);
	}
}

/* The sheet is found through the relationships, and the active tab wins. */
static void test_xlsx_sheet_choice(void **state)
{
	static const char wb[] =
	    "<?xml version=\"1.0\"?><workbook xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/"
	    "relationships\"><bookViews><workbookView activeTab=\"%d\"/></bookViews>"
	    "<sheets><sheet name=\"a\" sheetId=\"1\" r:id=\"rId7\"/><sheet name=\"b\" sheetId=\"2\" "
	    "r:id=\"rId3\"/></sheets></workbook>";
	static const char rels[] =
	    "<Relationships><Relationship Id=\"rId3\" Type=\"x/worksheet\" Target=\"/xl/data/b.xml\"/>"
	    "<Relationship Id=\"rId7\" Type=\"x/worksheet\" Target=\"./data/../data/a.xml\"/></Relationships>";
	static const char root[] = "<Relationships><Relationship Id=\"r\" Type=\"a/officeDocument\" "
	                           "Target=\"/xl/book.xml\"/></Relationships>";
	char wbx[1024];

	(void)state;
	for (int tab = 0; tab < 3; tab++) {
		struct got g = {0};
		char err[256];
		snprintf(wbx, sizeof(wbx), wb, tab);
		struct part parts[] = {
		    {"_rels/.rels", root, 0},
		    {"xl/book.xml", wbx, 0},
		    {"xl/_rels/book.xml.rels", rels, 0},
		    {"xl/data/a.xml",
		     "<worksheet><sheetData><row r=\"1\"><c><v>1</v></c></row></sheetData></worksheet>", 0},
		    {"xl/data/b.xml",
		     "<worksheet><sheetData><row r=\"1\"><c><v>2</v></c></row></sheetData></worksheet>", 0},
		    {NULL, NULL, 0},
		};
		write_zip(path_of("choice.xlsx"), parts, tab == 1);
		assert_int_equal(run(path_of("choice.xlsx"), SHEET_XLSX, NULL, &g, err, sizeof(err)), 0);
		/* activeTab 2 is past the last sheet: the first one */
		assert_string_equal(got_str(&g), tab == 1 ? "1:2;" : "1:1;");
		got_free(&g);
	}

	/* no workbook at all: xl/worksheets/sheet1.xml */
	struct got g = {0};
	char err[256];
	struct part bare[] = {
	    {"xl/worksheets/sheet1.xml",
	     "<worksheet><sheetData><row r=\"3\"><c><v>7</v></c></row></sheetData></worksheet>", 0},
	    {NULL, NULL, 0},
	};
	write_zip(path_of("bare.xlsx"), bare, false);
	assert_int_equal(run(path_of("bare.xlsx"), SHEET_XLSX, NULL, &g, err, sizeof(err)), 0);
	assert_string_equal(got_str(&g), "3:7;");
	got_free(&g);
}

/* ---------------------------------------------------------------------------
 * Hostile XLSX
 */

static void expect_fail(const char *path, const struct sheet_opts *o, const char *msg)
{
	struct got g = {0};
	char err[512];
	int rc = run(path, sheet_detect(path, NULL), o, &g, err, sizeof(err));

	if (rc != -1)
		fail_msg("%s: rc %d, want -1 (rows \"%.200s\")", path, rc, got_str(&g));
	if (!strstr(err, msg))
		fail_msg("%s: error \"%s\" lacks \"%s\"", path, err, msg);
	if (getenv("SHEET_TEST_VERBOSE"))
		print_message("%s: %s\n", strrchr(path, '/') + 1, err);
	got_free(&g);
}

static void test_hostile_truncated(void **state)
{
	size_t len;
	char *data;

	(void)state;
	write_lxw(path_of("good.xlsx"), false);
	data = read_whole(path_of("good.xlsx"), &len);
	expect_fail(write_file("half.xlsx", data, len / 2), NULL, "not a zip archive");
	expect_fail(write_file("short.xlsx", data, len - 10), NULL, "not a zip archive");
	/* the middle of the file overwritten: the directory survives, the data does not */
	for (size_t i = 100; i < len / 2; i++)
		data[i] = (char)(data[i] ^ 0x5a);
	struct got g = {0};
	char err[512];
	assert_int_equal(run(write_file("garbled.xlsx", data, len), SHEET_XLSX, NULL, &g, err, sizeof(err)), -1);
	got_free(&g);
	free(data);

	expect_fail(write_file("text.xlsx", "phone\n09123456789\n", 18), NULL, "not a zip archive");
	expect_fail(write_file("old.xlsx", "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1 rest of an OLE2 file", 30), NULL, ".xls");
	expect_fail(write_file("empty.xlsx", "", 0), NULL, "not a zip archive");
}

/* 200 MB of blanks inside the sheet, generated as libzip asks for it. */
struct blanks {
	uint64_t size, pos;
	const char *head, *tail;
};

static zip_int64_t blanks_cb(void *ud, void *data, zip_uint64_t len, zip_source_cmd_t cmd)
{
	struct blanks *b = ud;
	size_t hl = strlen(b->head), tl = strlen(b->tail);
	uint64_t total = hl + b->size + tl;

	switch (cmd) {
	case ZIP_SOURCE_OPEN:
		b->pos = 0;
		return 0;
	case ZIP_SOURCE_READ: {
		char *out = data;
		zip_uint64_t n = 0;
		while (n < len && b->pos < total) {
			uint64_t p = b->pos, k;
			if (p < hl) {
				out[n++] = b->head[p];
				k = 1;
			} else if (p < hl + b->size) {
				k = hl + b->size - p;
				if (k > len - n)
					k = len - n;
				memset(out + n, ' ', k);
				n += k;
			} else {
				out[n++] = b->tail[p - hl - b->size];
				k = 1;
			}
			b->pos += k;
		}
		return (zip_int64_t)n;
	}
	case ZIP_SOURCE_CLOSE:
		return 0;
	case ZIP_SOURCE_STAT: {
		zip_stat_t *st = data;
		zip_stat_init(st);
		st->size = total;
		st->valid |= ZIP_STAT_SIZE;
		return sizeof(*st);
	}
	case ZIP_SOURCE_ERROR:
		return 2 * sizeof(int);
	case ZIP_SOURCE_FREE:
		return 0;
	case ZIP_SOURCE_SUPPORTS:
		return zip_source_make_command_bitmap(ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE,
		                                      ZIP_SOURCE_STAT, ZIP_SOURCE_ERROR, ZIP_SOURCE_FREE, -1);
	default:
		return -1;
	}
}

static void write_bomb(const char *path, const char *entry, uint64_t size, const char *head, const char *tail)
{
	static struct blanks b;
	int ze = 0;
	zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &ze);
	zip_source_t *src;
	zip_int64_t i;

	assert_non_null(za);
	b = (struct blanks){.size = size, .head = head, .tail = tail};
	src = zip_source_function(za, blanks_cb, &b);
	assert_non_null(src);
	i = zip_file_add(za, entry, src, 0);
	assert_true(i >= 0);
	assert_int_equal(zip_set_file_compression(za, (zip_uint64_t)i, ZIP_CM_DEFLATE, 1), 0);
	src = zip_source_buffer(za, WORKBOOK, strlen(WORKBOOK), 0);
	zip_file_add(za, "xl/workbook.xml", src, 0);
	src = zip_source_buffer(za, WB_RELS, strlen(WB_RELS), 0);
	zip_file_add(za, "xl/_rels/workbook.xml.rels", src, 0);
	if (strcmp(entry, "xl/worksheets/sheet1.xml")) {
		static const char sheet[] = "<worksheet><sheetData/></worksheet>";
		src = zip_source_buffer(za, sheet, strlen(sheet), 0);
		zip_file_add(za, "xl/worksheets/sheet1.xml", src, 0);
	}
	assert_int_equal(zip_close(za), 0);
}

/* Overwrites the uncompressed size of entry name in its local and central headers. */
static void patch_size(char *data, size_t len, const char *name, uint32_t size)
{
	size_t nl = strlen(name);
	int patched = 0;

	for (size_t i = 0; i + 46 + nl <= len; i++) {
		size_t at;
		if (!memcmp(data + i, "PK\3\4", 4) && !memcmp(data + i + 30, name, nl))
			at = i + 22;
		else if (!memcmp(data + i, "PK\1\2", 4) && !memcmp(data + i + 46, name, nl))
			at = i + 24;
		else
			continue;
		for (int k = 0; k < 4; k++)
			data[at + (size_t)k] = (char)(size >> (8 * k));
		patched++;
	}
	assert_int_equal(patched, 2);
}

static void test_hostile_bombs(void **state)
{
	struct timespec t0, t1;
	size_t len;
	char *data;

	(void)state;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* the sheet inflates to 200 MB of valid XML from ~200 KB: refused on the claimed sizes, and
	 * with a header that lies, on the bytes inflated */
	write_bomb(path_of("bomb.xlsx"), "xl/worksheets/sheet1.xml", 200u << 20, SHEET_HEAD, SHEET_TAIL);
	expect_fail(path_of("bomb.xlsx"), NULL, "claims a compression ratio above 200 (zip bomb?)");
	data = read_whole(path_of("bomb.xlsx"), &len);
	patch_size(data, len, "xl/worksheets/sheet1.xml", 100000);
	expect_fail(write_file("bomb-lies.xlsx", data, len), NULL, "inflates more than 200 times");
	free(data);
	/* the same in the shared strings */
	write_bomb(path_of("bomb2.xlsx"), "xl/sharedStrings.xml", 200u << 20, SST_HEAD, "</sst>");
	expect_fail(path_of("bomb2.xlsx"), NULL, "zip bomb");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("bombs built and refused in %.2f s\n",
	              (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);

	/* counted, not claimed: with the ratio out of the way the size limit stops it */
	write_bomb(path_of("bomb3.xlsx"), "xl/worksheets/sheet1.xml", 8u << 20, SHEET_HEAD, SHEET_TAIL);
	struct sheet_opts o = {.limits = {.max_ratio = 100000, .max_entry_bytes = 4u << 20}};
	expect_fail(path_of("bomb3.xlsx"), &o, "claims"); /* honest header: refused before inflating */
	data = read_whole(path_of("bomb3.xlsx"), &len);
	patch_size(data, len, "xl/worksheets/sheet1.xml", 1000); /* a lying header */
	expect_fail(write_file("bomb4.xlsx", data, len), &o, "xl/worksheets/sheet1.xml");
	struct sheet_opts t = {.limits = {.max_ratio = 100000, .max_total_bytes = 2u << 20}};
	expect_fail(path_of("bomb3.xlsx"), &t, "inflates beyond the limit");
	free(data);

	/* a claimed size of ~4 GiB (the largest without zip64) */
	write_lxw(path_of("claim.xlsx"), false);
	data = read_whole(path_of("claim.xlsx"), &len);
	patch_size(data, len, "xl/worksheets/sheet1.xml", 0xfffffff0u);
	expect_fail(write_file("claim.xlsx", data, len), NULL, "claims 4294967280 bytes");
	free(data);
}

static uint32_t rnd(void);

static void test_hostile_xml(void **state)
{
	static const char laughs[] = "<?xml version=\"1.0\"?><!DOCTYPE sst [<!ENTITY lol \"lol\">"
	                             "<!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
	                             "<!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">"
	                             "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">"
	                             "<!ENTITY lol9 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">]>"
	                             "<sst><si><t>&lol9;</t></si></sst>";
	static const char external[] = "<?xml version=\"1.0\"?><!DOCTYPE sst SYSTEM \"file:///etc/passwd\">"
	                               "<sst><si><t>x</t></si></sst>";
	static const char sheet[] = SHEET_HEAD "<row r=\"1\"><c r=\"A1\" t=\"s\"><v>0</v></c></row>" SHEET_TAIL;
	char *buf;
	size_t n;

	(void)state;
	expect_fail(write_xlsx("laughs.xlsx", sheet, laughs), NULL, "DOCTYPE");
	expect_fail(write_xlsx("external.xlsx", sheet, external), NULL, "DOCTYPE");
	expect_fail(write_xlsx("count.xlsx", sheet,
	                       "<sst count=\"100000000\" uniqueCount=\"100000000\"><si><t>x</t></si></sst>"),
	            NULL, "declares 100000000 strings");
	expect_fail(write_xlsx("count2.xlsx", sheet, "<sst uniqueCount=\"99999999999999999999999\"/>"), NULL,
	            "declares");

	/* more tiny strings than a (lowered) limit */
	n = 50000;
	buf = malloc(n * 20 + 256);
	strcpy(buf, SST_HEAD);
	char *w = buf + strlen(buf);
	for (size_t i = 0; i < n; i++)
		w += sprintf(w, "<si><t>1</t></si>");
	strcpy(w, "</sst>");
	struct sheet_opts o = {.limits = {.max_strings = 40000}};
	expect_fail(write_xlsx("many.xlsx", sheet, buf), &o, "more than 40000 shared strings");
	struct sheet_opts b = {.limits = {.max_strings_bytes = 1000}};
	expect_fail(path_of("many.xlsx"), &b, "shared strings exceed the limit of 1000 bytes");
	struct got g = {0};
	char err[256];
	assert_int_equal(run(path_of("many.xlsx"), SHEET_XLSX, NULL, &g, err, sizeof(err)), 0);
	assert_string_equal(got_str(&g), "1:1;");
	got_free(&g);
	free(buf);

	/* a 3 MB attribute: more than the parser may buffer under a 1 MiB budget */
	n = 3u << 20;
	buf = malloc(n + 512);
	strcpy(buf, SHEET_HEAD "<row r=\"1\" x=\"");
	size_t at = strlen(buf);
	for (size_t i = 0; i < n; i++)
		buf[at + i] = (char)('a' + rnd() % 26); /* incompressible enough to pass the ratio check */
	strcpy(buf + at + n, "\"/>" SHEET_TAIL);
	struct sheet_opts m = {.limits = {.max_xml_memory = 1u << 20}};
	expect_fail(write_xlsx("tag.xlsx", buf, NULL), &m, "XML too complex");
	assert_int_equal(run(path_of("tag.xlsx"), SHEET_XLSX, NULL, &g, err, sizeof(err)), 0);
	got_free(&g);
	free(buf);

	/* a 3 MB cell value: read, reported cut */
	n = 3u << 20;
	buf = malloc(n + 512);
	strcpy(buf, SHEET_HEAD "<row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>");
	at = strlen(buf);
	for (size_t i = 0; i < n; i++)
		buf[at + i] = (char)('0' + rnd() % 10);
	strcpy(buf + at + n, "</t></is></c></row><row r=\"2\"><c r=\"A2\"><v>1</v></c></row>" SHEET_TAIL);
	assert_int_equal(run(write_xlsx("cell.xlsx", buf, NULL), SHEET_XLSX, NULL, &g, err, sizeof(err)), 0);
	assert_int_equal(g.rows, 2);
	assert_int_equal(strlen(got_str(&g)), strlen("1:") + 80 + strlen(";2:1;"));
	assert_memory_equal(got_str(&g) + 2, buf + at, 80);
	assert_int_equal(g.max_len, 1024);
	got_free(&g);
	free(buf);

	/* more rows than a (lowered) limit */
	struct sheet_opts r = {.limits = {.max_rows = 2}};
	expect_fail(
	    write_xlsx("rows.xlsx",
	               SHEET_HEAD
	               "<row><c><v>1</v></c></row><row><c><v>2</v></c></row><row><c><v>3</v></c></row>" SHEET_TAIL,
	               NULL),
	    &r, "more than 2 rows");
}

static void test_hostile_structure(void **state)
{
	static const char sheet[] = SHEET_HEAD "<row r=\"1\"><c r=\"A1\"><v>1</v></c></row>" SHEET_TAIL;

	(void)state;
	/* the workbook names a part that is not there, and there is no sheet1.xml */
	struct part missing[] = {
	    {"_rels/.rels", ROOT_RELS, 0},
	    {"xl/workbook.xml", WORKBOOK, 0},
	    {"xl/_rels/workbook.xml.rels", WB_RELS, 0},
	    {"xl/worksheets/sheet2.xml", sheet, 0},
	    {NULL, NULL, 0},
	};
	write_zip(path_of("missing.xlsx"), missing, false);
	expect_fail(path_of("missing.xlsx"), NULL, "no worksheet");

	/* a relationship that climbs out of the archive is ignored: sheet1.xml */
	struct part climb[] = {
	    {"xl/workbook.xml", WORKBOOK, 0},
	    {"xl/_rels/workbook.xml.rels",
	     "<Relationships><Relationship Id=\"rId1\" Type=\"x/worksheet\" Target=\"../../../etc/passwd\"/>"
	     "</Relationships>",
	     0},
	    {"xl/worksheets/sheet1.xml", sheet, 0},
	    {NULL, NULL, 0},
	};
	write_zip(path_of("climb.xlsx"), climb, false);
	struct got g = {0};
	char err[256];
	assert_int_equal(run(path_of("climb.xlsx"), SHEET_XLSX, NULL, &g, err, sizeof(err)), 0);
	assert_string_equal(got_str(&g), "1:1;");
	got_free(&g);

	/* an empty zip */
	struct part none[] = {{"readme.txt", "x", 0}, {NULL, NULL, 0}};
	write_zip(path_of("none.xlsx"), none, false);
	expect_fail(path_of("none.xlsx"), NULL, "no worksheet");

	/* too many entries */
	struct part many[] = {{"a", "x", 0}, {"b", "x", 0}, {"c", "x", 0}, {NULL, NULL, 0}};
	write_zip(path_of("entries.xlsx"), many, false);
	struct sheet_opts o = {.limits = {.max_entries = 2}};
	expect_fail(path_of("entries.xlsx"), &o, "more than 2 entries");

	/* stop from the row callback */
	g.stop_after = 1;
	write_xlsx("stop.xlsx", SHEET_HEAD "<row><c><v>1</v></c></row><row><c><v>2</v></c></row>" SHEET_TAIL, NULL);
	assert_int_equal(run(path_of("stop.xlsx"), SHEET_XLSX, NULL, &g, err, sizeof(err)), 1);
	assert_int_equal(g.rows, 1);
	got_free(&g);
}

/* ---------------------------------------------------------------------------
 * Fuzz: random mutations must never crash, leak or hang (ASan/LSan watch).
 */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)rng_state;
}

static void mutate(char *buf, size_t *len, size_t cap)
{
	static const char tokens[][8] = {"\"", ",",   ";",    "\t",    "\n",   "\r",           "<",
	                                 ">",  "/",   "=",    "&",     "\0",   "\xef\xbb\xbf", "\xd9",
	                                 "PK", "<v>", "</c>", "<row>", "r=\"", "t=\"s\""};
	int k = 1 + (int)(rnd() % 4);

	for (int j = 0; j<k && * len> 0; j++) {
		size_t at = rnd() % *len;
		switch (rnd() % 5) {
		case 0:
			buf[at] = (char)rnd();
			break;
		case 1:
			buf[at] ^= (char)(1u << (rnd() % 8));
			break;
		case 2: /* delete a run */
		{
			size_t n = 1 + rnd() % 16;
			if (at + n > *len)
				n = *len - at;
			memmove(buf + at, buf + at + n, *len - at - n);
			*len -= n;
			break;
		}
		default: /* insert a token */
		{
			const char *t = tokens[rnd() % (sizeof(tokens) / sizeof(tokens[0]))];
			size_t n = t[0] ? strlen(t) : 1;
			if (*len + n > cap)
				break;
			memmove(buf + at + n, buf + at, *len - at);
			memcpy(buf + at, t, n);
			*len += n;
			break;
		}
		}
	}
}

/* Mutations that keep XML well-formed, to reach past the parser: values, types, references, whole elements. */
static void mutate_xml(char *buf, size_t *len, size_t cap)
{
	static const char chars[] = "0123456789-+.eEaZ ";
	static const char *const types[] = {"s", "n", "b", "str", "inlineStr", "e", "d", "x", ""};
	int k = 1 + (int)(rnd() % 4);

	for (int j = 0; j < k; j++) {
		size_t at = rnd() % *len;
		switch (rnd() % 3) {
		case 0: /* a digit or letter inside a value or reference */
			for (; at < *len; at++) {
				if ((buf[at] >= '0' && buf[at] <= '9') || (buf[at] >= 'A' && buf[at] <= 'Z')) {
					buf[at] = chars[rnd() % (sizeof(chars) - 1)];
					break;
				}
			}
			break;
		case 1: { /* a cell type */
			char *t = strstr(buf + at, "t=\"");
			const char *nt = types[rnd() % (sizeof(types) / sizeof(types[0]))];
			char *q;
			if (!t || !(q = strchr(t + 3, '"')))
				break;
			size_t old = (size_t)(q - (t + 3)), nl = strlen(nt);
			if (*len - old + nl > cap)
				break;
			memmove(t + 3 + nl, q, (size_t)(buf + *len - q));
			memcpy(t + 3, nt, nl);
			*len = *len - old + nl;
			break;
		}
		default: { /* duplicate or drop a whole <row>…</row> */
			char *r0 = strstr(buf + at, "<row"), *r1 = r0 ? strstr(r0, "</row>") : NULL;
			if (!r1)
				break;
			size_t n = (size_t)(r1 + 6 - r0);
			if (rnd() % 2) {
				memmove(r0, r0 + n, (size_t)(buf + *len - (r0 + n)));
				*len -= n;
			} else if (*len + n <= cap) {
				memmove(r0 + n, r0, (size_t)(buf + *len - r0));
				*len += n;
			}
			break;
		}
		}
		buf[*len] = '\0';
	}
}

static double fuzz_seconds(void)
{
	const char *s = getenv("SHEET_FUZZ_SECONDS");
	return s ? atof(s) : 2.0;
}

static double since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void test_fuzz(void **state)
{
	static const char csv[] =
	    BOM "name;\"phone\"\r\n\"a;b\";0912 345 6789\r\n\"x\"\"y\";\"+98\n912\"\r\n;\r\nz;9123456789";
	static const char sheet[] = SHEET_HEAD
	    "<row r=\"1\"><c r=\"A1\" t=\"s\"><v>0</v></c><c r=\"C1\" t=\"inlineStr\"><is><t>tel</t></is></c></row>"
	    "<row r=\"3\"><c r=\"C3\"><v>9.123456789E9</v></c><c r=\"D3\" t=\"b\"><v>1</v></c></row>"
	    "<row><c t=\"s\"><v>1</v></c><c r=\"C4\" t=\"str\"><v>09123456789</v></c></row>" SHEET_TAIL;
	static const char sst[] =
	    "<?xml version=\"1.0\"?><sst count=\"2\" uniqueCount=\"2\"><si><t>name</t></si><si><r><t>09</t></r>"
	    "<rPh><t>p</t></rPh></si></sst>";
	const size_t cap = 16384;
	char *buf = malloc(cap), *sbuf = malloc(cap), *zipbuf;
	size_t zlen;
	struct timespec t0;
	double budget = fuzz_seconds() / 3;
	long runs[3] = {0}, ok[3] = {0};
	const char *s;

	(void)state;
	s = getenv("SHEET_FUZZ_SEED");
	rng_state = s ? strtoull(s, NULL, 10) : 0x9e3779b97f4a7c15ull;
	if (!rng_state)
		rng_state = 1;
	struct sheet_opts o = {
	    .limits = {.max_value = 32, .max_rows = 100, .max_strings = 100, .max_xml_memory = 1u << 20}};

	/* CSV bytes */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (since(&t0) < budget) {
		size_t len = sizeof(csv) - 1;
		struct got g = {0};
		char err[256];
		memcpy(buf, csv, len);
		mutate(buf, &len, cap);
		ok[0] += run(write_file("fuzz.csv", buf, len), SHEET_CSV, &o, &g, err, sizeof(err)) == 0;
		got_free(&g);
		runs[0]++;
	}

	/* XLSX bytes: the zip itself */
	write_xlsx("fuzz-base.xlsx", sheet, sst);
	zipbuf = read_whole(path_of("fuzz-base.xlsx"), &zlen);
	char *zb = malloc(zlen + 64);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (since(&t0) < budget) {
		size_t len = zlen;
		struct got g = {0};
		char err[256];
		memcpy(zb, zipbuf, zlen);
		mutate(zb, &len, zlen + 64);
		ok[1] += run(write_file("fuzz.xlsx", zb, len), SHEET_XLSX, &o, &g, err, sizeof(err)) == 0;
		got_free(&g);
		runs[1]++;
	}

	/* XLSX XML: mutated sheet and shared strings in a sound zip */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (since(&t0) < budget) {
		size_t len = sizeof(sheet) - 1, slen = sizeof(sst) - 1;
		struct got g = {0};
		char err[256];
		memcpy(buf, sheet, len + 1);
		memcpy(sbuf, sst, slen + 1);
		switch (rnd() % 3) {
		case 0:
			mutate(buf, &len, cap - 1);
			break;
		case 1:
			mutate(sbuf, &slen, cap - 1);
			break;
		default:
			mutate_xml(buf, &len, cap - 1);
			break;
		}
		struct part parts[] = {
		    {"xl/workbook.xml", WORKBOOK, 0},
		    {"xl/_rels/workbook.xml.rels", WB_RELS, 0},
		    {"xl/worksheets/sheet1.xml", buf, len ? len : 1},
		    {"xl/sharedStrings.xml", sbuf, slen ? slen : 1},
		    {NULL, NULL, 0},
		};
		write_zip(path_of("fuzz2.xlsx"), parts, true);
		ok[2] += run(path_of("fuzz2.xlsx"), SHEET_XLSX, &o, &g, err, sizeof(err)) == 0;
		got_free(&g);
		runs[2]++;
	}
	print_message("fuzz runs (read fine): csv %ld (%ld), zip bytes %ld (%ld), xml %ld (%ld)\n", runs[0], ok[0],
	              runs[1], ok[1], runs[2], ok[2]);
	assert_true(runs[0] > 10 && runs[1] > 10 && runs[2] > 10);
	free(buf);
	free(sbuf);
	free(zipbuf);
	free(zb);
}

/* ---------------------------------------------------------------------------
 */

static int setup(void **state)
{
	const char *base = getenv("TMPDIR");
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/test-sheet.XXXXXX", base && *base ? base : "/tmp");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[512];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_csv_cases),
	    cmocka_unit_test(test_csv_long_value),
	    cmocka_unit_test(test_csv_big),
	    cmocka_unit_test(test_csv_limits_and_stop),
	    cmocka_unit_test(test_progress_stop),
	    cmocka_unit_test(test_detect),
	    cmocka_unit_test(test_xlsx_libxlsxwriter),
	    cmocka_unit_test(test_xlsx_no_header_numbers),
	    cmocka_unit_test(test_xlsx_cases),
	    cmocka_unit_test(test_xlsx_sheet_choice),
	    cmocka_unit_test(test_hostile_truncated),
	    cmocka_unit_test(test_hostile_bombs),
	    cmocka_unit_test(test_hostile_xml),
	    cmocka_unit_test(test_hostile_structure),
	    cmocka_unit_test(test_fuzz),
	};
	return cmocka_run_group_tests_name("sheet", tests, setup, teardown);
}
