/*
 * Small shared helpers: randomness, hashing, constant-time compare, clocks,
 * bounded string checks.
 */
#ifndef DIALER_UTIL_H
#define DIALER_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* Fills out with 2*nbytes lowercase hex chars of kernel randomness plus NUL.
 * out must hold 2*nbytes+1 bytes. Returns 0, or -1 if the kernel refuses. */
int util_random_hex(char *out, size_t nbytes) MUSTCHECK;

/* SHA-256 of data as 64 lowercase hex chars plus NUL into out[65]. */
void util_sha256_hex(const void *data, size_t len, char out[65]);

/* SHA-1 of data as 40 lowercase hex chars plus NUL into out[41] (Redis's script names). */
void util_sha1_hex(const void *data, size_t len, char out[41]);

/* Compares a and b in time independent of where they differ (lengths may leak). */
bool util_ct_streq(const char *a, const char *b);

/* Monotonic clock in nanoseconds. */
uint64_t util_now_ns(void);

/* Wall clock in microseconds since the epoch (for instants shared between processes). */
int64_t util_wall_us(void);

/* us (microseconds since the epoch, UTC) as "YYYY-MM-DDTHH:MM:SS.ffffffZ" into out[32]. */
void util_iso_us(int64_t us, char out[32]);

/* The wall clock (util_wall_us) as util_iso_us writes it, into out[32]. */
void util_iso_now(char out[32]);

/* True when s is valid UTF-8 with no NUL inside its first len bytes. */
bool util_utf8_valid(const char *s, size_t len);

/*
 * Copies in to out (cap bytes, NUL included) with Persian (U+06F0..9) and
 * Arabic-Indic (U+0660..9) digits mapped to ASCII, as the panel sends dates,
 * times and searches (COMPAT §6). Returns 0, or -1 when out is too small.
 */
int util_ascii_digits(const char *in, char *out, size_t cap) MUSTCHECK;

/*
 * Where to cut the NUL-terminated UTF-8 string s to keep at most max bytes without splitting a
 * character (PostgreSQL and jansson refuse a torn sequence): strlen(s) when it fits, else the
 * largest length <= max that does not end inside a multi-byte sequence. Only the bytes around
 * the cut are looked at; s itself is not validated.
 */
size_t util_utf8_cut(const char *s, size_t max);

/* Characters (code points) of a NUL-terminated UTF-8 string. */
size_t util_utf8_chars(const char *s);

/* Parses a base-10 integer in [min,max] from the whole of s. Returns 0 or -1. */
int util_parse_long(const char *s, long min, long max, long *out) MUSTCHECK;

/* A growing NUL-terminated byte buffer; OOM is fatal. Free p. */
struct buf {
	char *p;
	size_t len, cap;
};

/* Appends n bytes of s. */
void buf_add(struct buf *b, const char *s, size_t n);

/* Appends s as an element of a PostgreSQL array literal (without the braces):
 * NULL, or "…" with " and \ escaped, comma-separated from the previous one. */
void buf_array_elem(struct buf *b, const char *s);

#endif
