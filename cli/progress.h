/*
 * A progress display for long CLI commands (export, import): a bar redrawn in
 * place with percent, rows/s and ETA on a terminal, plain lines otherwise.
 */
#ifndef DIALER_PROGRESS_H
#define DIALER_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct progress {
	FILE *out;
	const char *label; /* borrowed */
	bool tty;
	uint64_t t0, last_ns; /* monotonic; last_ns = last time something was shown */
	bool drawn;           /* a bar is on the current line (tty) */
};

/* Starts the clock. out is usually stderr; tty decides the style (isatty). label borrowed. */
void progress_init(struct progress *p, FILE *out, const char *label);

/* done of total rows (total <= 0 = unknown). Redraws at most 10 times a second on a
 * terminal, prints a line at most once a second otherwise. */
void progress_update(struct progress *p, long done, long total);

/* The final state, always shown, ending the line. */
void progress_finish(struct progress *p, long done, long total);

/* "12.3 s" style helpers for summaries: seconds since progress_init. */
double progress_elapsed(const struct progress *p);

#endif
