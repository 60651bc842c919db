/*
 * common/multipart: table-driven edge cases (boundaries, delimiters, CRLF rules, header limits,
 * Content-Disposition), and a deterministic mutation fuzz loop run under ASan+UBSan: 200,000
 * mutations of valid bodies, each parsed in one piece and again in random pieces; both must
 * agree exactly (same parts, same bytes, same verdict). tests/fuzz/fuzz_multipart.c is the
 * libFuzzer harness of the same oracle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"

/* ------------------------------------------------------------- recorder */

/* Every event as text: "[name|filename|ctype]" begin, the bytes, "<end>". */
struct rec {
	char *buf;
	size_t len, cap;
	int parts;
};

static void rec_add(struct rec *r, const char *d, size_t n)
{
	if (r->len + n + 1 > r->cap) {
		r->cap = (r->len + n + 1) * 2;
		r->buf = realloc(r->buf, r->cap);
		assert_non_null(r->buf);
	}
	memcpy(r->buf + r->len, d, n);
	r->len += n;
	r->buf[r->len] = '\0';
}

static int on_begin(void *ctx, const struct multipart_part *p)
{
	struct rec *r = ctx;
	char b[1024];
	int n =
	    snprintf(b, sizeof(b), "[%s|%s%s|%s]", p->name, p->has_filename ? "f:" : "", p->filename, p->content_type);
	r->parts++;
	rec_add(r, b, (size_t)n);
	return 0;
}

static int on_data(void *ctx, const char *d, size_t n)
{
	assert_true(n > 0);
	rec_add(ctx, d, n);
	return 0;
}

static int on_end(void *ctx)
{
	rec_add(ctx, "<end>", 5);
	return 0;
}

static const struct multipart_cbs cbs = {on_begin, on_data, on_end};

/* Parses body with boundary, fed in pieces of at most `piece` bytes (0: one piece). Returns
 * 0 or -1; r gets the events; err the message. */
static int parse(const char *boundary, const char *body, size_t len, size_t piece, struct rec *r, char *err,
                 size_t errlen)
{
	struct multipart *m = multipart_new(boundary, &cbs, r);
	int rc = 0;
	size_t off = 0;
	while (rc == 0 && off < len) {
		size_t n = piece && len - off > piece ? piece : len - off;
		rc = multipart_feed(m, body + off, n);
		off += n;
	}
	if (rc == 0)
		rc = multipart_finish(m);
	snprintf(err, errlen, "%s", multipart_error(m));
	multipart_free(m);
	return rc;
}

/* ---------------------------------------------------------- edge cases */

struct tcase {
	const char *body;
	const char *want; /* the recorded events when ok, else a substring of the error */
	bool ok;
};

#define B  "--XyZ\r\n"
#define CD "Content-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n"

static const struct tcase cases[] = {
    {B CD "\r\n0912\r\n0913\r\n--XyZ--\r\n", "[file|f:a.csv|]0912\r\n0913<end>", true},
    {B CD "Content-Type: text/csv\r\n\r\nx\r\n--XyZ--", "[file|f:a.csv|text/csv]x<end>", true},
    /* empty part body, two parts, a field without filename */
    {B "Content-Disposition: form-data; name=a\r\n\r\n\r\n--XyZ\r\n" CD "\r\nq\r\n--XyZ--",
     "[a||]<end>[file|f:a.csv|]q<end>", true},
    /* look-alike delimiters inside the data are data */
    {B CD "\r\n\r\n--XyA\r\n--Xy\r\r\n--XyZ--", "[file|f:a.csv|]\r\n--XyA\r\n--Xy\r<end>", true},
    /* a delimiter needs its preceding CRLF: "--XyZ" alone inside data is data */
    {B CD "\r\nab--XyZ\r\n--XyZ--", "[file|f:a.csv|]ab--XyZ<end>", true},
    /* quoted-string escapes, case-insensitive names, OWS */
    {B "content-disposition:  Form-Data ;name=\"f\\\"x\" ; filename=\"C:\\\\dir\\\\b.xlsx\"\r\n\r\n\r\n--XyZ--",
     "[f\"x|f:C:\\dir\\b.xlsx|]<end>", true},
    /* unknown headers and parameters are ignored; epilogue ignored */
    {B "X-Thing: 1\r\nContent-Disposition: form-data; name=\"n\"; size=3\r\n\r\nv\r\n--XyZ--garbage", "[n||]v<end>",
     true},
    /* zero parts */
    {"--XyZ--\r\n", "", true},
    /* failures */
    {"", "closing boundary", false},
    {"preamble\r\n" B CD "\r\nx\r\n--XyZ--", "does not start with the boundary", false},
    {B CD "\r\nx\r\n--XyZ", "closing boundary", false},
    {B CD "\r\nx", "closing boundary", false},
    {"--XyZ \r\n" CD "\r\nx\r\n--XyZ--", "CRLF or --", false},
    {B "Content-Disposition: form-data; name=\"file\"\n\r\nx\r\n--XyZ--", "CRLF", false},
    {B "Content-Disposition: form-data; name=\"file\"\r\r\nx\r\n--XyZ--", "CR without LF", false},
    {B " folded: x\r\n" CD "\r\nx\r\n--XyZ--", "folded", false},
    {B "Content-Type: text/csv\r\n\r\nx\r\n--XyZ--", "no content-disposition", false},
    {B "Content-Disposition: attachment; name=\"f\"\r\n\r\nx\r\n--XyZ--", "not form-data", false},
    {B "Content-Disposition: form-data; filename=\"a\"\r\n\r\nx\r\n--XyZ--", "no name", false},
    {B "Content-Disposition: form-data; name=\"\"\r\n\r\nx\r\n--XyZ--", "no name", false},
    {B "Content-Disposition: form-data; name=\"a\"; name=\"b\"\r\n\r\nx\r\n--XyZ--", "two names", false},
    {B "Content-Disposition: form-data; name=\"a\r\n\r\nx\r\n--XyZ--", "malformed name", false},
    {B "Content-Disposition: form-data; name\r\n\r\nx\r\n--XyZ--", "has no value", false},
    {B "Content-Disposition: form-data; name=a;\r\n\r\nx\r\n--XyZ--", "malformed", false},
    {B CD CD "\r\nx\r\n--XyZ--", "two content-disposition", false},
    {B CD "Content-Type: a\r\nContent-Type: b\r\n\r\nx\r\n--XyZ--", "two content-type", false},
    {B "Content-Disposition: form-data; name=\"a\"\r\nBad Header: x\r\n\r\nx\r\n--XyZ--", "header name", false},
    {B "Content-Disposition: form-data; name=\"a\"\r\nNoColon\r\n\r\nx\r\n--XyZ--", "malformed header", false},
    {B "Content-Disposition: form-data; name=\"a\x01\"\r\n\r\nx\r\n--XyZ--", "control character", false},
    {B "Content-Disposition: form-data; name=\"a\"; filename=\"\xff\"\r\n\r\nx\r\n--XyZ--", "not UTF-8", false},
};

static void test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (size_t piece = 0; piece <= 3; piece++) {
			struct rec r = {0};
			char err[200];
			int rc = parse("XyZ", cases[i].body, strlen(cases[i].body), piece, &r, err, sizeof(err));
			if ((rc == 0) != cases[i].ok || (cases[i].ok && strcmp(r.buf ? r.buf : "", cases[i].want)) ||
			    (!cases[i].ok && !strstr(err, cases[i].want))) {
				print_error("case %zu piece %zu: rc=%d err=\"%s\" got=\"%s\" want=\"%s\"\n", i, piece,
				            rc, err, r.buf ? r.buf : "", cases[i].want);
				fail();
			}
			free(r.buf);
		}
	}
}

static void test_limits(void **state)
{
	(void)state;
	char *body = malloc(64 * 1024);
	struct rec r = {0};
	char err[200];
	size_t n;

	/* a header line of exactly the limit passes, one byte more fails */
	for (int extra = 0; extra <= 1; extra++) {
		n = (size_t)sprintf(body, "--b\r\nContent-Disposition: form-data; name=a\r\nX-Pad: ");
		size_t line = strlen("X-Pad: ");
		memset(body + n, 'p', MULTIPART_HEADER_LINE_MAX - line + (size_t)extra);
		n += MULTIPART_HEADER_LINE_MAX - line + (size_t)extra;
		n += (size_t)sprintf(body + n, "\r\n\r\nv\r\n--b--");
		int rc = parse("b", body, n, 7, &r, err, sizeof(err));
		assert_int_equal(rc, extra ? -1 : 0);
		if (extra)
			assert_non_null(strstr(err, "longer than"));
		free(r.buf);
		memset(&r, 0, sizeof(r));
	}
	/* too many headers */
	n = (size_t)sprintf(body, "--b\r\nContent-Disposition: form-data; name=a\r\n");
	for (int i = 0; i < MULTIPART_HEADERS_MAX; i++)
		n += (size_t)sprintf(body + n, "X-%d: 1\r\n", i);
	n += (size_t)sprintf(body + n, "\r\nv\r\n--b--");
	assert_int_equal(parse("b", body, n, 0, &r, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "headers"));
	free(r.buf);
	memset(&r, 0, sizeof(r));
	/* too many parts */
	n = (size_t)sprintf(body, "--b");
	for (int i = 0; i <= MULTIPART_PARTS_MAX; i++)
		n += (size_t)sprintf(body + n, "\r\nContent-Disposition: form-data; name=p%d\r\n\r\nv\r\n--b", i);
	n += (size_t)sprintf(body + n, "--");
	assert_int_equal(parse("b", body, n, 0, &r, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "parts"));
	free(r.buf);
	memset(&r, 0, sizeof(r));
	/* a filename at the limit, and over it */
	for (int extra = 0; extra <= 1; extra++) {
		n = (size_t)sprintf(body, "--b\r\nContent-Disposition: form-data; name=a; filename=\"");
		memset(body + n, 'f', MULTIPART_FILENAME_MAX + (size_t)extra);
		n += MULTIPART_FILENAME_MAX + (size_t)extra;
		n += (size_t)sprintf(body + n, "\"\r\n\r\nv\r\n--b--");
		assert_int_equal(parse("b", body, n, 0, &r, err, sizeof(err)), extra ? -1 : 0);
		free(r.buf);
		memset(&r, 0, sizeof(r));
	}
	free(body);
}

static void test_boundary(void **state)
{
	(void)state;
	static const struct {
		const char *ct, *want; /* want NULL: refused */
	} bc[] = {
	    {"multipart/form-data; boundary=abc", "abc"},
	    {"Multipart/Form-Data;boundary=\"a b:c\"", "a b:c"},
	    {"multipart/form-data; charset=utf-8; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
	     "----WebKitFormBoundary7MA4YWxkTrZu0gW"},
	    {"multipart/form-data; charset=\"x;y\"; boundary=q", "q"},
	    {"multipart/form-data; boundary=abc; charset=utf-8", "abc"},
	    {"multipart/form-data", NULL},
	    {"multipart/form-data; boundary=", NULL},
	    {"multipart/form-data; boundary=\"\"", NULL},
	    {"multipart/form-data; boundary=\"ab \"", NULL},
	    {"multipart/form-data; boundary=\"abc", NULL},
	    {"multipart/form-data; boundary=a\x01", NULL},
	    {"multipart/mixed; boundary=abc", NULL},
	    {"multipart/form-dataX; boundary=abc", NULL},
	    {"text/csv", NULL},
	    {"multipart/form-data; boundary=12345678901234567890123456789012345678901234567890123456789012345678901",
	     NULL},
	    {"multipart/form-data; boundary=1234567890123456789012345678901234567890123456789012345678901234567890",
	     "1234567890123456789012345678901234567890123456789012345678901234567890"},
	};
	for (size_t i = 0; i < sizeof(bc) / sizeof(bc[0]); i++) {
		char out[MULTIPART_BOUNDARY_MAX + 1], err[100];
		int rc = multipart_boundary(bc[i].ct, out, err, sizeof(err));
		if (bc[i].want ? (rc != 0 || strcmp(out, bc[i].want)) : rc != -1) {
			print_error("boundary case %zu (%s): rc=%d out=%s\n", i, bc[i].ct, rc, rc ? err : out);
			fail();
		}
	}
}

/* A callback that stops the parse is reported, and the parser stays failed. */
static int stop_data(void *ctx, const char *d, size_t n)
{
	(void)ctx;
	(void)d;
	(void)n;
	return 1;
}

static void test_stop(void **state)
{
	(void)state;
	static const struct multipart_cbs stopper = {NULL, stop_data, NULL};
	const char *body = B CD "\r\nx\r\n--XyZ--";
	struct multipart *m = multipart_new("XyZ", &stopper, NULL);
	assert_int_equal(multipart_feed(m, body, strlen(body)), -1);
	assert_string_equal(multipart_error(m), "stopped");
	assert_int_equal(multipart_feed(m, "x", 1), -1);
	assert_int_equal(multipart_finish(m), -1);
	multipart_free(m);
}

/* ---------------------------------------------------------- fuzz loop */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

static const char *const seeds[] = {
    B CD
    "Content-Type: text/csv\r\n\r\n0912\r\n--XyZ\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nv\r\n--XyZ--\r\n",
    B "Content-Disposition: form-data; name=\"file\"; filename=\"\xd8\xa7.csv\"\r\n\r\n\r\n\r\n--X\r\n--XyZ--",
    "--XyZ--",
};

/* Splits body at random points: it must give exactly what one piece gives. */
static void check_split(const char *body, size_t len)
{
	struct rec one = {0}, many = {0};
	char err1[200], err2[200];
	struct multipart *m;
	int rc1 = parse("XyZ", body, len, 0, &one, err1, sizeof(err1)), rc2 = 0;
	size_t off = 0;

	m = multipart_new("XyZ", &cbs, &many);
	while (rc2 == 0 && off < len) {
		size_t n = 1 + rnd() % 9;
		if (n > len - off)
			n = len - off;
		rc2 = multipart_feed(m, body + off, n);
		off += n;
	}
	if (rc2 == 0)
		rc2 = multipart_finish(m);
	snprintf(err2, sizeof(err2), "%s", multipart_error(m));
	multipart_free(m);
	if (rc1 != rc2 || (rc1 == 0 && (one.len != many.len || (one.len && memcmp(one.buf, many.buf, one.len)))) ||
	    (rc1 != 0 && strcmp(err1, err2))) {
		print_error("split disagrees: rc %d/%d err \"%s\"/\"%s\"\n", rc1, rc2, err1, err2);
		fail();
	}
	free(one.buf);
	free(many.buf);
}

static void test_fuzz(void **state)
{
	(void)state;
	static const char *const tokens[] = {
	    "\r\n", "--XyZ", "\r\n--XyZ", "--",    "\r",        "\n",        "\"",
	    ";",    "=",     ":",         "name=", "filename=", "form-data", "Content-Disposition: ",
	    "\\"};
	char buf[1024];
	int ok = 0;
	for (int iter = 0; iter < 200000; iter++) {
		const char *seed = seeds[rnd() % (sizeof(seeds) / sizeof(seeds[0]))];
		size_t len = strlen(seed);
		memcpy(buf, seed, len);
		int muts = 1 + (int)(rnd() % 4);
		for (int k = 0; k < muts; k++) {
			size_t pos = len ? rnd() % len : 0;
			switch (rnd() % 5) {
			case 0: /* flip a byte */
				if (len)
					buf[pos] = (char)rnd();
				break;
			case 1: /* delete a span */
				if (len) {
					size_t n = 1 + rnd() % 8;
					if (n > len - pos)
						n = len - pos;
					memmove(buf + pos, buf + pos + n, len - pos - n);
					len -= n;
				}
				break;
			case 2: { /* insert a token */
				const char *t = tokens[rnd() % (sizeof(tokens) / sizeof(tokens[0]))];
				size_t n = strlen(t);
				if (len + n < sizeof(buf)) {
					memmove(buf + pos + n, buf + pos, len - pos);
					memcpy(buf + pos, t, n);
					len += n;
				}
				break;
			}
			case 3: /* duplicate a span */
				if (len && len * 2 < sizeof(buf)) {
					size_t n = 1 + rnd() % 32;
					if (n > len - pos)
						n = len - pos;
					memmove(buf + pos + n, buf + pos, len - pos);
					len += n;
				}
				break;
			default: /* truncate */
				len = pos;
				break;
			}
		}
		check_split(buf, len);
		struct rec r = {0};
		char err[200];
		ok += parse("XyZ", buf, len, 0, &r, err, sizeof(err)) == 0;
		free(r.buf);
	}
	print_message("fuzz: 200000 mutations, %d parsed ok\n", ok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cases), cmocka_unit_test(test_limits), cmocka_unit_test(test_boundary),
	    cmocka_unit_test(test_stop),  cmocka_unit_test(test_fuzz),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
