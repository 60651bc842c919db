/*
 * Umbrella header for what every process shares: attributes, allocation
 * helpers that abort on OOM, and logging.
 */
#ifndef DIALER_COMMON_H
#define DIALER_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define MUSTCHECK         __attribute__((warn_unused_result))
#define UNUSED(x)         ((void)(x))
#define ARRAY_LEN(a)      (sizeof(a) / sizeof((a)[0]))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

/* Allocation: out of memory is fatal (logged, then abort). Caller frees. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);

#endif
