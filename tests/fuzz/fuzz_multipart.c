/*
 * libFuzzer harness for common/multipart (make fuzz; build/fuzz/fuzz_multipart CORPUS_DIR).
 * The first input byte picks a split size: the body parsed in one piece and in pieces of that
 * size must agree exactly (same parts, same bytes, same verdict), and nothing may crash or leak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"

struct rec {
	char *buf;
	size_t len;
};

static void add(struct rec *r, const char *d, size_t n)
{
	r->buf = realloc(r->buf, r->len + n + 1);
	if (!r->buf)
		abort();
	memcpy(r->buf + r->len, d, n);
	r->len += n;
}

static int on_begin(void *ctx, const struct multipart_part *p)
{
	char b[1024];
	int n = snprintf(b, sizeof(b), "[%s|%d%s|%s]", p->name, p->has_filename, p->filename, p->content_type);
	add(ctx, b, (size_t)n);
	return 0;
}

static int on_data(void *ctx, const char *d, size_t n)
{
	if (!n)
		abort(); /* never an empty data call */
	add(ctx, d, n);
	return 0;
}

static int on_end(void *ctx)
{
	add(ctx, "<end>", 5);
	return 0;
}

static const struct multipart_cbs cbs = {on_begin, on_data, on_end};

static int run(const uint8_t *d, size_t n, size_t piece, struct rec *r, char *err)
{
	struct multipart *m = multipart_new("XyZ", &cbs, r);
	int rc = 0;
	for (size_t off = 0; rc == 0 && off < n;) {
		size_t k = piece && n - off > piece ? piece : n - off;
		rc = multipart_feed(m, (const char *)d + off, k);
		off += k;
	}
	if (rc == 0)
		rc = multipart_finish(m);
	snprintf(err, 200, "%s", multipart_error(m));
	multipart_free(m);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rec a = {0}, b = {0};
	char ea[200], eb[200];
	if (size < 1)
		return 0;
	size_t piece = 1 + data[0] % 16;
	int ra = run(data + 1, size - 1, 0, &a, ea), rb = run(data + 1, size - 1, piece, &b, eb);
	if (ra != rb || (ra == 0 && (a.len != b.len || (a.len && memcmp(a.buf, b.buf, a.len)))) ||
	    (ra && strcmp(ea, eb)))
		abort();
	/* the content-type parser too, on the same bytes as a NUL-terminated string */
	char *ct = malloc(size);
	char out[MULTIPART_BOUNDARY_MAX + 1], err[100];
	memcpy(ct, data + 1, size - 1);
	ct[size - 1] = '\0';
	if (multipart_boundary(ct, out, err, sizeof(err)) == 0 && (!out[0] || strlen(out) > MULTIPART_BOUNDARY_MAX))
		abort();
	free(ct);
	free(a.buf);
	free(b.buf);
	return 0;
}
