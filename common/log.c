/*
 * Logging: one line per event on stderr, `ts=... level=... proc=... rid=... msg`
 * where the message itself is key=value pairs by convention.
 */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

enum log_level log_level_current = LOG_INFO;
static const char *proc = "dialer";
static __thread const char *ctx_id;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_init(const char *proc_name)
{
	proc = proc_name;
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < ARRAY_LEN(level_names); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

void log_set_ctx(const char *id)
{
	ctx_id = id;
}

const char *log_get_ctx(void)
{
	return ctx_id;
}

void log_write(enum log_level lvl, const char *fmt, ...)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	size_t n;
	va_list ap;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s proc=%s pid=%d ", (long)(tv.tv_usec / 1000),
	                      level_names[lvl], proc, (int)getpid());
	if (ctx_id && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, "rid=%s ", ctx_id);
	if (n < sizeof(line)) {
		va_start(ap, fmt);
		int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		va_end(ap);
		if (m > 0)
			n += (size_t)m;
	}
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	/* one line per event: never let a value break the line */
	for (size_t i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
}
