/*
 * A small, strict, streaming multipart/form-data parser (RFC 7578 over RFC 2046): the boundary
 * from the Content-Type, then the body fed in chunks of any size; callbacks get each part's
 * headers and its bytes. Fuzzed (tests/fuzz/fuzz_multipart.c, tests/unit/test_multipart.c).
 *
 * Strict: the body starts with the first delimiter (no preamble); delimiters end with CRLF (no
 * transport padding); header lines end with CRLF (no bare LF, no folding), at most
 * MULTIPART_HEADER_LINE_MAX bytes each and MULTIPART_HEADERS_MAX per part; every part has
 * Content-Disposition: form-data with a non-empty name; at most MULTIPART_PARTS_MAX parts; the
 * body ends with the close delimiter (what follows it is ignored).
 */
#ifndef DIALER_MULTIPART_H
#define DIALER_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

#define MULTIPART_BOUNDARY_MAX    70 /* RFC 2046 */
#define MULTIPART_HEADER_LINE_MAX 1024
#define MULTIPART_HEADERS_MAX     16
#define MULTIPART_PARTS_MAX       16
#define MULTIPART_NAME_MAX        200
#define MULTIPART_FILENAME_MAX    255
#define MULTIPART_CTYPE_MAX       255

/* One part's headers; strings NUL-terminated, filename UTF-8 as sent (a path is not stripped). */
struct multipart_part {
	char name[MULTIPART_NAME_MAX + 1];
	char filename[MULTIPART_FILENAME_MAX + 1];
	bool has_filename;
	char content_type[MULTIPART_CTYPE_MAX + 1]; /* "" when absent */
};

/* Callbacks: return 0 to go on, non-zero to stop (the feed then fails with the message "stopped"). */
struct multipart_cbs {
	int (*part_begin)(void *ctx, const struct multipart_part *part); /* after its headers */
	int (*part_data)(void *ctx, const char *data, size_t len);       /* some of its bytes, in order */
	int (*part_end)(void *ctx);                                      /* its last byte was given */
};

struct multipart;

/*
 * Reads the boundary parameter of a multipart/form-data Content-Type value (token or quoted,
 * 1..70 characters of RFC 2046's bchars, not ending in a space) into out (at least
 * MULTIPART_BOUNDARY_MAX + 1 bytes). Returns 0, or -1 with a reason in err (NUL-terminated).
 */
int multipart_boundary(const char *content_type, char *out, char *err, size_t errlen) MUSTCHECK;

/* A parser for boundary (copied). cbs and ctx are borrowed for its life. Caller frees. */
struct multipart *multipart_new(const char *boundary, const struct multipart_cbs *cbs, void *ctx);
void multipart_free(struct multipart *m);

/* Feeds the next len bytes. Returns 0, or -1 on malformed input or a stopping callback (then
 * every later call fails too; multipart_error says why). */
int multipart_feed(struct multipart *m, const char *data, size_t len) MUSTCHECK;

/* The body has ended: 0 when the close delimiter was seen, else -1. */
int multipart_finish(struct multipart *m) MUSTCHECK;

/* Why the last call failed (lower case, no full stop), or "". Borrowed. */
const char *multipart_error(const struct multipart *m);

#endif
