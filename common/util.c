/*
 * Shared helpers: OOM-fatal allocation, randomness (getrandom), SHA-256 via
 * OpenSSL, constant-time compare, clocks and small parsers.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "util.h"

static void oom(size_t n)
{
	log_error("out of memory bytes=%zu", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom(n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		oom(strlen(s));
	return p;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (!p)
		oom(n);
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *out = NULL;
	va_start(ap, fmt);
	int n = vasprintf(&out, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom(0);
	return out;
}

int util_random_hex(char *out, size_t nbytes)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char buf[64];
	if (nbytes > sizeof(buf))
		return -1;
	size_t got = 0;
	while (got < nbytes) {
		ssize_t r = getrandom(buf + got, nbytes - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)r;
	}
	for (size_t i = 0; i < nbytes; i++) {
		out[2 * i] = hex[buf[i] >> 4];
		out[2 * i + 1] = hex[buf[i] & 15];
	}
	out[2 * nbytes] = '\0';
	return 0;
}

/* The digest of data with md, as lowercase hex plus NUL into out (2 × the digest's size + 1). */
static void digest_hex(const EVP_MD *md, const void *data, size_t len, char *out, unsigned want)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	if (!EVP_Digest(data, len, d, &dlen, md, NULL) || dlen != want) {
		log_error("event=digest_failed digest=%s", EVP_MD_get0_name(md));
		abort();
	}
	for (unsigned i = 0; i < dlen; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[2 * dlen] = '\0';
}

void util_sha256_hex(const void *data, size_t len, char out[65])
{
	digest_hex(EVP_sha256(), data, len, out, 32);
}

void util_sha1_hex(const void *data, size_t len, char out[41])
{
	digest_hex(EVP_sha1(), data, len, out, 20);
}

bool util_ct_streq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la != lb)
		return false;
	return CRYPTO_memcmp(a, b, la) == 0;
}

uint64_t util_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int64_t util_wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void util_iso_us(int64_t us, char out[32])
{
	/* floor division: an instant before 1970 keeps a fraction in 0..999999 */
	int64_t frac = us % 1000000;
	if (frac < 0)
		frac += 1000000;
	time_t s = (time_t)((us - frac) / 1000000);
	struct tm tm;
	size_t n = 0;
	if (gmtime_r(&s, &tm))
		n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	if (n == 0) { /* a year beyond what fits: no instant we write */
		snprintf(out, 32, "1970-01-01T00:00:00.000000Z");
		return;
	}
	snprintf(out + n, 32 - n, ".%06ldZ", (long)frac);
}

void util_iso_now(char out[32])
{
	util_iso_us(util_wall_us(), out);
}

int util_ascii_digits(const char *in, char *out, size_t cap)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t n = 0;
	while (*p) {
		char ch = (char)*p;
		size_t adv = 1;
		if (p[0] == 0xDB && p[1] >= 0xB0 && p[1] <= 0xB9) {
			ch = (char)('0' + (p[1] - 0xB0)); /* U+06F0..U+06F9 */
			adv = 2;
		} else if (p[0] == 0xD9 && p[1] >= 0xA0 && p[1] <= 0xA9) {
			ch = (char)('0' + (p[1] - 0xA0)); /* U+0660..U+0669 */
			adv = 2;
		}
		if (n + 1 >= cap)
			return -1;
		out[n++] = ch;
		p += adv;
	}
	if (cap == 0)
		return -1;
	out[n] = '\0';
	return 0;
}

size_t util_utf8_cut(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n <= max)
		return n;
	/* s[max] is the first byte left out: while it continues a sequence, that sequence started
	 * before the cut and goes too (at most 3 steps back in valid UTF-8) */
	n = max;
	for (int back = 0; n > 0 && back < 4 && ((unsigned char)s[n] & 0xc0) == 0x80; back++)
		n--;
	return n;
}

size_t util_utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

bool util_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < len) {
		unsigned c = p[i];
		size_t need;
		unsigned min;
		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			need = 1;
			min = 0x80;
			c &= 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			need = 2;
			min = 0x800;
			c &= 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			need = 3;
			min = 0x10000;
			c &= 0x07;
		} else {
			return false;
		}
		if (i + need >= len)
			return false;
		for (size_t k = 1; k <= need; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			c = (c << 6) | (p[i + k] & 0x3f);
		}
		if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}

int util_parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	if (!s || !*s)
		return -1;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

void buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* Appends s as an element of an array literal: NULL, or "…" with " and \ escaped. */
void buf_array_elem(struct buf *b, const char *s)
{
	if (b->len)
		buf_add(b, ",", 1);
	if (!s) {
		buf_add(b, "NULL", 4);
		return;
	}
	buf_add(b, "\"", 1);
	for (const char *p = s; *p;) {
		size_t n = strcspn(p, "\"\\");
		buf_add(b, p, n);
		p += n;
		if (*p) {
			buf_add(b, "\\", 1);
			buf_add(b, p, 1);
			p++;
		}
	}
	buf_add(b, "\"", 1);
}
