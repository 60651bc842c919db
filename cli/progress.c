/*
 * Progress display: one line of state computed from (done, total, elapsed);
 * a terminal gets it redrawn with '\r', a pipe or file gets whole lines.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "progress.h"
#include "util.h"

#define BAR_WIDTH 30

void progress_init(struct progress *p, FILE *out, const char *label)
{
	memset(p, 0, sizeof(*p));
	p->out = out;
	p->label = label;
	p->tty = isatty(fileno(out)) == 1;
	p->t0 = util_now_ns();
}

double progress_elapsed(const struct progress *p)
{
	return (double)(util_now_ns() - p->t0) / 1e9;
}

/* "1:05" or "1:02:03" */
static void fmt_duration(double s, char *buf, size_t len)
{
	long t = s < 0 ? 0 : (long)(s + 0.5);
	if (t >= 3600)
		snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

static void show(struct progress *p, long done, long total, bool final)
{
	double el = progress_elapsed(p);
	double rate = el > 0 ? (double)done / el : 0;
	char eta[32] = "-", took[32], rows[48];
	int pct = total > 0 ? (int)((double)done * 100.0 / (double)total) : 0;
	if (pct > 100)
		pct = 100;
	if (total > 0 && rate > 0 && done < total)
		fmt_duration((double)(total - done) / rate, eta, sizeof(eta));
	fmt_duration(el, took, sizeof(took));
	if (total > 0)
		snprintf(rows, sizeof(rows), "%ld/%ld", done, total);
	else
		snprintf(rows, sizeof(rows), "%ld", done);
	if (p->tty) {
		char bar[BAR_WIDTH + 1];
		int fill = total > 0 ? pct * BAR_WIDTH / 100 : 0;
		memset(bar, '#', (size_t)fill);
		memset(bar + fill, '.', (size_t)(BAR_WIDTH - fill));
		bar[BAR_WIDTH] = '\0';
		fprintf(p->out, "\r%s [%s] %3d%%  %s rows  %.0f rows/s  %s %s\033[K", p->label, bar, pct, rows, rate,
		        final ? "took" : "ETA", final ? took : eta);
		if (final)
			fputc('\n', p->out);
		p->drawn = !final;
	} else {
		fprintf(p->out, "%s: %d%% %s rows %.0f rows/s %s %s\n", p->label, pct, rows, rate,
		        final ? "took" : "eta", final ? took : eta);
	}
	fflush(p->out);
}

void progress_update(struct progress *p, long done, long total)
{
	uint64_t now = util_now_ns();
	uint64_t gap = p->tty ? 100000000ULL : 1000000000ULL;
	if (p->last_ns && now - p->last_ns < gap)
		return;
	p->last_ns = now;
	show(p, done, total, false);
}

void progress_finish(struct progress *p, long done, long total)
{
	show(p, done, total, true);
}
