/*
 * One line per event, key=value, level first; a per-thread context id
 * (request or job id) is added to every line when set.
 */
#ifndef DIALER_LOG_H
#define DIALER_LOG_H

#include <stdarg.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_level_current;

/* Sets the process name printed on each line (borrowed; must outlive logging). */
void log_init(const char *proc_name);
/* Parses "error|warn|info|debug"; returns -1 when unknown. */
int log_level_parse(const char *s, enum log_level *out);
/* Sets the id added as rid=... to every line from this thread; NULL clears. Borrowed. */
void log_set_ctx(const char *id);
const char *log_get_ctx(void);

void log_write(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_at(lvl, ...)                               \
	do {                                           \
		if ((lvl) <= log_level_current)        \
			log_write((lvl), __VA_ARGS__); \
	} while (0)
#define log_error(...) log_at(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_at(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_at(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_DEBUG, __VA_ARGS__)

#endif
