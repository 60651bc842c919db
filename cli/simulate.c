/*
 * dialerctl simulate: a call center played against the API on one thread with
 * libcurl's multi interface. It fetches batches from next-batch, dials their
 * numbers at --rate per second, lets each call last a random 0.1-1.5 s and
 * reports a random result for it the way the original's agents do (batch_id,
 * nulls, attempted_at with microseconds and an offset). It obeys call_allowed
 * and retry_after_seconds, prints a live line each second and a summary.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "config.h"
#include "simulate.h"
#include "util.h"
#include "tz.h"

#define HIST_BUCKETS 512  /* log buckets of HIST_BASE: 1 us .. ~500 s */
#define HIST_BASE    1.04 /* so a percentile is within 4% */
#define CALL_MIN_S   0.1  /* a call's length, uniform between these */
#define CALL_MAX_S   1.5
#define DRAIN_MAX_S  30.0      /* after --duration: at most this long to finish the fetched numbers */
#define RESP_MAX     (8 << 20) /* a larger answer is cut (and then fails to parse) */
#define REQ_TIMEOUT  30000L    /* ms */
#define BATCH_ID_MAX 64

enum { EP_BATCH, EP_REPORT, EP_N };
static const char *const ep_names[EP_N] = {"next-batch", "report-result"};

/* The 13 statuses (COMPAT §3.2) with a call center's rough mix, in percent. */
static const struct {
	const char *status;
	int weight;
	const char *reason;  /* sometimes sent, else null */
	const char *message; /* sometimes sent, else null */
} outcomes[] = {
    {"MISSED", 22, "no answer", NULL},
    {"CONNECTED", 20, NULL, "interested, call back next week"},
    {"NOT_INTERESTED", 12, "declined the offer", "not interested"},
    {"BUSY", 10, "line busy", NULL},
    {"HANGUP", 8, "customer hung up", NULL},
    {"POWER_OFF", 7, "handset off", NULL},
    {"FAILED", 6, "carrier: no route", NULL},
    {"DISCONNECTED", 5, "line dropped", "call dropped mid-sentence"},
    {"UNKNOWN", 3, NULL, NULL},
    {"BANNED", 2, "number barred by operator", NULL},
    {"COMPLAINED", 2, "asked not to be called again", "please remove my number"},
    {"INBOUND_CALL", 2, NULL, "called back on the inbound line"},
    {"IN_QUEUE", 1, "requeued by the agent", NULL},
};

struct hist {
	uint64_t n;
	uint64_t b[HIST_BUCKETS];
};

struct ep_stats {
	uint64_t requests, ok, c4xx, c5xx, errors; /* ok: 2xx; errors: no HTTP answer */
	struct hist total, window;
	double max_s;
	char first_error[240]; /* the first non-2xx answer, for the summary */
};

struct number {
	long long id;
	char phone[24];
	char batch[BATCH_ID_MAX];
};

struct call {
	struct number num;
	double due;    /* monotonic: when the result is reported */
	double dialed; /* wall clock: attempted_at */
};

struct agent {
	long long id;
	char phone[24]; /* "" when the agent has none */
};

struct req {
	CURL *easy;
	int ep;
	double started;
	char *body; /* request body (owned) */
	char *resp; /* answer (owned) */
	size_t len;
	struct req *next; /* free list */
	struct req *all;  /* every request ever made, for teardown */
};

struct sim {
	/* options */
	double rate, duration;
	int size, concurrency;
	const char *company;
	char *token;
	/* plumbing */
	CURLM *multi;
	struct curl_slist *hdr_get, *hdr_post;
	char *batch_url, *report_url;
	struct req *free_reqs, *all_reqs;
	int inflight[EP_N];
	int max_fetch;
	bool tty;
	uint64_t rng;
	/* fetched numbers not dialed yet (ring) */
	struct number *q;
	size_t qcap, qhead, qlen;
	/* calls in progress (min-heap on due) */
	struct call *calls;
	size_t ncalls, callcap;
	/* from the latest allowed next-batch */
	struct agent *agents;
	size_t nagents;
	long long *scenarios, *lines;
	size_t nscenarios, nlines;
	/* pacing */
	double next_dial, fetch_after, blocked_until;
	int size_guess;
	char block_reason[48];
	/* outcome */
	bool fatal;
	bool answered; /* next-batch answered 200 at least once */
	bool allowed;  /* the latest next-batch allowed dialing: fetch in parallel */
	uint64_t batches, empty_batches, numbers, blocked_times, results_by[ARRAY_LEN(outcomes)];
	uint64_t window_batches, window_results;
	struct ep_stats st[EP_N];
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	UNUSED(sig);
	interrupted++;
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* xorshift64*: reproducible with --seed */
static uint64_t rnd(struct sim *s)
{
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return s->rng * 0x2545F4914F6CDD1DULL;
}

static double rnd_unit(struct sim *s)
{
	return (double)(rnd(s) >> 11) * 0x1.0p-53;
}

static bool chance(struct sim *s, double p)
{
	return rnd_unit(s) < p;
}

/* ------------------------------------------------------------ latencies */

static void hist_add(struct hist *h, double seconds)
{
	double us = seconds * 1e6;
	int i = us <= 1 ? 0 : (int)(log(us) / log(HIST_BASE));
	if (i >= HIST_BUCKETS)
		i = HIST_BUCKETS - 1;
	h->b[i]++;
	h->n++;
}

/* The q-quantile in milliseconds (upper bound of its bucket), or -1 when empty. */
static double hist_ms(const struct hist *h, double q)
{
	uint64_t rank, seen = 0;
	if (h->n == 0)
		return -1;
	rank = (uint64_t)ceil(q * (double)h->n);
	if (rank < 1)
		rank = 1;
	for (int i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank)
			return pow(HIST_BASE, i + 1) / 1000.0;
	}
	return -1;
}

static void fmt_ms(char *out, size_t len, double ms)
{
	if (ms < 0)
		snprintf(out, len, "-");
	else if (ms < 10)
		snprintf(out, len, "%.2fms", ms);
	else if (ms < 1000)
		snprintf(out, len, "%.1fms", ms);
	else
		snprintf(out, len, "%.2fs", ms / 1000);
}

/* ------------------------------------------------------------- requests */

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct req *r = arg;
	size_t n = size * nmemb;
	if (r->len + n > RESP_MAX)
		return 0; /* fails the transfer */
	r->resp = xrealloc(r->resp, r->len + n + 1);
	memcpy(r->resp + r->len, ptr, n);
	r->len += n;
	r->resp[r->len] = '\0';
	return n;
}

/* Starts a request; body (owned by the request) makes it a POST. */
static void req_start(struct sim *s, int ep, const char *url, char *body)
{
	struct req *r = s->free_reqs;
	if (r) {
		s->free_reqs = r->next;
		curl_easy_reset(r->easy);
	} else {
		r = xcalloc(1, sizeof(*r));
		r->easy = curl_easy_init();
		if (!r->easy) {
			fprintf(stderr, "simulate: cannot create a curl handle\n");
			abort();
		}
		r->all = s->all_reqs;
		s->all_reqs = r;
	}
	r->ep = ep;
	r->body = body;
	r->len = 0;
	free(r->resp);
	r->resp = NULL;
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, body ? s->hdr_post : s->hdr_get);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, REQ_TIMEOUT);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_TCP_NODELAY, 1L);
	if (body) {
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	r->started = mono_s();
	s->inflight[ep]++;
	s->st[ep].requests++;
	curl_multi_add_handle(s->multi, r->easy);
}

static void req_release(struct sim *s, struct req *r)
{
	curl_multi_remove_handle(s->multi, r->easy);
	s->inflight[r->ep]--;
	free(r->body);
	r->body = NULL;
	r->next = s->free_reqs;
	s->free_reqs = r;
}

/* ------------------------------------------------------ queue and calls */

static void queue_push(struct sim *s, const struct number *n)
{
	if (s->qlen == s->qcap) {
		size_t cap = s->qcap ? s->qcap * 2 : 256;
		struct number *q = xcalloc(cap, sizeof(*q));
		for (size_t i = 0; i < s->qlen; i++)
			q[i] = s->q[(s->qhead + i) % s->qcap];
		free(s->q);
		s->q = q;
		s->qcap = cap;
		s->qhead = 0;
	}
	s->q[(s->qhead + s->qlen++) % s->qcap] = *n;
}

static struct number queue_pop(struct sim *s)
{
	struct number n = s->q[s->qhead];
	s->qhead = (s->qhead + 1) % s->qcap;
	s->qlen--;
	return n;
}

static void calls_push(struct sim *s, const struct call *c)
{
	size_t i;
	if (s->ncalls == s->callcap) {
		s->callcap = s->callcap ? s->callcap * 2 : 256;
		s->calls = xrealloc(s->calls, s->callcap * sizeof(*s->calls));
	}
	for (i = s->ncalls++; i > 0 && s->calls[(i - 1) / 2].due > c->due; i = (i - 1) / 2)
		s->calls[i] = s->calls[(i - 1) / 2];
	s->calls[i] = *c;
}

static struct call calls_pop(struct sim *s)
{
	struct call top = s->calls[0], last = s->calls[--s->ncalls];
	size_t i = 0;
	for (;;) {
		size_t k = 2 * i + 1;
		if (k >= s->ncalls)
			break;
		if (k + 1 < s->ncalls && s->calls[k + 1].due < s->calls[k].due)
			k++;
		if (last.due <= s->calls[k].due)
			break;
		s->calls[i] = s->calls[k];
		i = k;
	}
	if (s->ncalls > 0)
		s->calls[i] = last;
	return top;
}

/* ------------------------------------------------------------ next-batch */

static void fetch(struct sim *s, double now)
{
	int low;
	/* one request at a time until dialing is known to be allowed */
	if (now < s->blocked_until || now < s->fetch_after || s->inflight[EP_BATCH] >= (s->allowed ? s->max_fetch : 1))
		return;
	/* keep about half a second of dialing queued, a batch at least */
	low = (int)(s->rate / 2) > s->size_guess ? (int)(s->rate / 2) : s->size_guess;
	if ((long)s->qlen + (long)s->inflight[EP_BATCH] * s->size_guess >= low)
		return;
	req_start(s, EP_BATCH, s->batch_url, NULL);
}

static long long json_id(const json_t *o)
{
	json_t *id = json_object_get(o, "id");
	return json_is_integer(id) ? (long long)json_integer_value(id) : -1;
}

/* Replaces the agents, scenarios and lines with those of an allowed answer. */
static void take_lists(struct sim *s, const json_t *o)
{
	const json_t *agents = json_object_get(o, "outbound_agents");
	size_t i;
	json_t *it;

	if (!json_is_array(agents) || json_array_size(agents) == 0)
		agents = json_object_get(o, "active_agents");
	free(s->agents);
	s->agents = xcalloc(json_array_size(agents) + 1, sizeof(*s->agents));
	s->nagents = 0;
	json_array_foreach(agents, i, it)
	{
		const char *phone = json_string_value(json_object_get(it, "phone_number"));
		if (json_id(it) < 0)
			continue;
		s->agents[s->nagents].id = json_id(it);
		snprintf(s->agents[s->nagents].phone, sizeof(s->agents[0].phone), "%s", phone ? phone : "");
		s->nagents++;
	}
	const json_t *sc = json_object_get(o, "active_scenarios"), *ln = json_object_get(o, "outbound_lines");
	free(s->scenarios);
	free(s->lines);
	s->scenarios = xcalloc(json_array_size(sc) + 1, sizeof(*s->scenarios));
	s->lines = xcalloc(json_array_size(ln) + 1, sizeof(*s->lines));
	s->nscenarios = s->nlines = 0;
	json_array_foreach(sc, i, it) if (json_id(it) >= 0) s->scenarios[s->nscenarios++] = json_id(it);
	json_array_foreach(ln, i, it) if (json_id(it) >= 0) s->lines[s->nlines++] = json_id(it);
}

static void batch_done(struct sim *s, struct req *r, long status, double now)
{
	json_t *o = NULL, *batch, *numbers, *it;
	const char *batch_id;
	size_t i;

	if (status == 401 || status == 403 || status == 404 || status == 422) {
		fprintf(stderr, "%ssimulate: next-batch answered %ld: %s\n", s->tty ? "\n" : "", status,
		        r->resp ? r->resp : "");
		s->fatal = true;
		return;
	}
	if (status != 200 || !(o = json_loads(r->resp ? r->resp : "", 0, NULL)) ||
	    !json_is_boolean(json_object_get(o, "call_allowed"))) {
		s->fetch_after = now + 1; /* the API is struggling: back off */
		json_decref(o);
		return;
	}
	s->answered = true;
	if (!json_is_true(json_object_get(o, "call_allowed"))) {
		json_t *retry = json_object_get(o, "retry_after_seconds");
		const char *reason = json_string_value(json_object_get(o, "reason"));
		double wait = json_is_integer(retry) ? (double)json_integer_value(retry) : 60;
		if (wait < 1)
			wait = 1;
		if (now >= s->blocked_until)
			s->blocked_times++;
		s->allowed = false;
		s->blocked_until = now + wait;
		snprintf(s->block_reason, sizeof(s->block_reason), "%s", reason ? reason : "unknown");
		json_decref(o);
		return;
	}
	s->block_reason[0] = '\0';
	s->allowed = true;
	batch = json_object_get(o, "batch");
	numbers = json_object_get(batch, "numbers");
	batch_id = json_string_value(json_object_get(batch, "batch_id"));
	if (json_is_integer(json_object_get(batch, "size_requested")))
		s->size_guess = (int)json_integer_value(json_object_get(batch, "size_requested"));
	take_lists(s, o);
	s->batches++;
	s->window_batches++;
	json_array_foreach(numbers, i, it)
	{
		struct number n = {.id = json_id(it)};
		const char *phone = json_string_value(json_object_get(it, "phone_number"));
		if (n.id < 0 || !phone)
			continue;
		snprintf(n.phone, sizeof(n.phone), "%s", phone);
		snprintf(n.batch, sizeof(n.batch), "%s", batch_id ? batch_id : "");
		queue_push(s, &n);
		s->numbers++;
	}
	if (json_array_size(numbers) == 0) {
		s->empty_batches++;
		s->fetch_after = now + 1; /* nothing to dial: poll again in a second */
	}
	json_decref(o);
}

/* ---------------------------------------------------------------- calls */

static void dial(struct sim *s, double now)
{
	/* call_allowed false: the queued numbers wait too (a call centre stops dialing when told) */
	if (!s->allowed && now < s->blocked_until)
		return;
	if (s->next_dial < now - 0.2)
		s->next_dial = now - 0.2; /* a small burst at most after a stall */
	while (s->qlen > 0 && s->next_dial <= now) {
		struct call c = {.num = queue_pop(s), .dialed = ((double)util_wall_us() / 1e6)};
		c.due = now + CALL_MIN_S + (CALL_MAX_S - CALL_MIN_S) * rnd_unit(s);
		calls_push(s, &c);
		s->next_dial += 1.0 / s->rate;
	}
	if (s->qlen == 0 && s->next_dial < now)
		s->next_dial = now;
}

/* attempted_at as the agents send it: microseconds and an offset, UTC or local. */
static void fmt_attempted(double wall, bool utc, char *out, size_t len)
{
	time_t sec = (time_t)wall;
	long us = (long)((wall - (double)sec) * 1e6);
	struct tm tm;
	char base[32];
	long off;

	if (utc)
		gmtime_r(&sec, &tm);
	else
		localtime_r(&sec, &tm);
	off = utc ? 0 : tm.tm_gmtoff;
	if (off < -86399 || off > 86399)
		off = 0;
	if (us < 0 || us > 999999)
		us = 0;
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, len, "%.20s.%06d%c%02d:%02d", base, (int)us, off < 0 ? '-' : '+', (int)(labs(off) / 3600),
	         (int)(labs(off) % 3600 / 60));
}

static size_t pick_outcome(struct sim *s)
{
	int total = 0, x;
	for (size_t i = 0; i < ARRAY_LEN(outcomes); i++)
		total += outcomes[i].weight;
	x = (int)(rnd(s) % (uint64_t)total);
	for (size_t i = 0; i < ARRAY_LEN(outcomes); i++) {
		if (x < outcomes[i].weight)
			return i;
		x -= outcomes[i].weight;
	}
	return 0;
}

/* The report of one finished call, with the nulls and extras the agents send. */
static char *report_body(struct sim *s, const struct call *c)
{
	size_t k = pick_outcome(s);
	char at[48], phone[40];
	json_t *o = json_object();
	char *text;

	s->results_by[k]++;
	if (chance(s, 0.1) && strlen(c->num.phone) == 11 && c->num.phone[0] == '0')
		snprintf(phone, sizeof(phone), "+98 %.3s %.3s %.4s", c->num.phone + 1, c->num.phone + 4,
		         c->num.phone + 7);
	else
		snprintf(phone, sizeof(phone), "%s", c->num.phone);
	fmt_attempted(c->dialed, chance(s, 0.5), at, sizeof(at));
	json_object_set_new(o, "number_id", json_integer(c->num.id));
	json_object_set_new(o, "phone_number", json_string(phone));
	json_object_set_new(o, "status", json_string(outcomes[k].status));
	json_object_set_new(o, "reason",
	                    outcomes[k].reason && chance(s, 0.7) ? json_string(outcomes[k].reason) : json_null());
	json_object_set_new(o, "attempted_at", json_string(at));
	json_object_set_new(o, "call_allowed", json_null());
	json_object_set_new(o, "batch_id", c->num.batch[0] ? json_string(c->num.batch) : json_null());
	json_object_set_new(o, "user_message",
	                    outcomes[k].message && chance(s, 0.6) ? json_string(outcomes[k].message) : json_null());
	json_object_set_new(o, "agent_id", json_null());
	json_object_set_new(o, "agent_phone", json_null());
	if (s->nagents > 0 && chance(s, 0.8)) {
		const struct agent *a = &s->agents[rnd(s) % s->nagents];
		if (a->phone[0] && chance(s, 0.25))
			json_object_set_new(o, "agent_phone", json_string(a->phone));
		else
			json_object_set_new(o, "agent_id", json_integer(a->id));
	}
	json_object_set_new(o, "scenario_id",
	                    s->nscenarios && chance(s, 0.7) ? json_integer(s->scenarios[rnd(s) % s->nscenarios])
	                                                    : json_null());
	json_object_set_new(o, "outbound_line_id",
	                    s->nlines && chance(s, 0.7) ? json_integer(s->lines[rnd(s) % s->nlines]) : json_null());
	if (s->company)
		json_object_set_new(o, "company", json_string(s->company));
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!text)
		abort();
	return text;
}

static void report_due(struct sim *s, double now)
{
	while (s->ncalls > 0 && s->calls[0].due <= now && s->inflight[EP_REPORT] < s->concurrency) {
		struct call c = calls_pop(s);
		req_start(s, EP_REPORT, s->report_url, report_body(s, &c));
	}
}

/* ------------------------------------------------------------ completion */

static void on_done(struct sim *s, CURLMsg *m, double now)
{
	char *priv = NULL;
	long status = 0;

	curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
	struct req *r = (struct req *)priv;
	struct ep_stats *st = &s->st[r->ep];
	if (m->data.result == CURLE_OK)
		curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
	double took = now - r->started;
	hist_add(&st->total, took);
	hist_add(&st->window, took);
	if (took > st->max_s)
		st->max_s = took;
	if (status >= 200 && status < 300)
		st->ok++;
	else if (status >= 400 && status < 500)
		st->c4xx++;
	else if (status >= 500)
		st->c5xx++;
	else
		st->errors++;
	if ((status < 200 || status >= 300) && !st->first_error[0]) {
		if (status)
			snprintf(st->first_error, sizeof(st->first_error), "%ld %.200s", status,
			         r->resp ? r->resp : "");
		else
			snprintf(st->first_error, sizeof(st->first_error), "%s", curl_easy_strerror(m->data.result));
	}
	if (r->ep == EP_BATCH)
		batch_done(s, r, status, now);
	else if (status >= 200 && status < 300)
		s->window_results++;
	req_release(s, r);
}

/* ---------------------------------------------------------------- output */

static void status_line(struct sim *s, double elapsed, double window)
{
	char b50[16], b99[16], r50[16], r99[16], line[400];
	const struct ep_stats *b = &s->st[EP_BATCH], *r = &s->st[EP_REPORT];
	int n;

	fmt_ms(b50, sizeof(b50), hist_ms(&b->window, 0.50));
	fmt_ms(b99, sizeof(b99), hist_ms(&b->window, 0.99));
	fmt_ms(r50, sizeof(r50), hist_ms(&r->window, 0.50));
	fmt_ms(r99, sizeof(r99), hist_ms(&r->window, 0.99));
	n = snprintf(line, sizeof(line),
	             "%4.0fs  batches/s %.1f  results/s %.0f  next-batch p50 %s p99 %s  report p50 %s p99 %s"
	             "  202 %llu 4xx %llu 5xx %llu err %llu  calls %zu queued %zu",
	             elapsed, (double)s->window_batches / window, (double)s->window_results / window, b50, b99, r50,
	             r99, (unsigned long long)r->ok, (unsigned long long)(r->c4xx + b->c4xx),
	             (unsigned long long)(r->c5xx + b->c5xx), (unsigned long long)(r->errors + b->errors), s->ncalls,
	             s->qlen);
	/* calls whose result is more than a second late: report-result requests are capped by
	 * --concurrency (or the API is slow), so the figures above understate the rate asked for */
	size_t overdue = 0;
	double now = mono_s();
	for (size_t i = 0; i < s->ncalls; i++)
		overdue += s->calls[i].due < now - 1.0;
	if (overdue && n > 0 && (size_t)n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n, "  behind: %zu results overdue (--concurrency %d)",
		              overdue, s->concurrency);
	if (s->block_reason[0] && n > 0 && (size_t)n < sizeof(line))
		snprintf(line + n, sizeof(line) - (size_t)n, "  blocked: %s, retry in %.0fs", s->block_reason,
		         s->blocked_until - now > 0 ? s->blocked_until - now : 0);
	if (s->tty) {
		/* one screen line, or \r cannot take it back */
		struct winsize ws;
		if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 && ws.ws_col <= sizeof(line))
			line[ws.ws_col - 1] = '\0';
		printf("\r\033[K%s", line);
	} else
		printf("%s\n", line);
	fflush(stdout);
	memset(&s->st[EP_BATCH].window, 0, sizeof(struct hist));
	memset(&s->st[EP_REPORT].window, 0, sizeof(struct hist));
	s->window_batches = s->window_results = 0;
}

static void summary(const struct sim *s, double ran, double finishing)
{
	if (s->tty)
		printf("\n");
	printf("simulate: %.1f s (+%.1f s finishing calls), rate %.0f/s, size %s%d, concurrency %d\n", ran, finishing,
	       s->rate, s->size ? "" : "~", s->size ? s->size : s->size_guess, s->concurrency);
	printf("batches: %llu (%.1f/s), numbers: %llu, empty: %llu, blocked: %llu times%s%s\n",
	       (unsigned long long)s->batches, ran > 0 ? (double)s->batches / ran : 0, (unsigned long long)s->numbers,
	       (unsigned long long)s->empty_batches, (unsigned long long)s->blocked_times,
	       s->block_reason[0] ? ", last: " : "", s->block_reason);
	printf("results: %llu reported (%.1f/s), %llu accepted\n", (unsigned long long)s->st[EP_REPORT].requests,
	       ran + finishing > 0 ? (double)s->st[EP_REPORT].requests / (ran + finishing) : 0,
	       (unsigned long long)s->st[EP_REPORT].ok);
	for (int e = 0; e < EP_N; e++) {
		const struct ep_stats *st = &s->st[e];
		char p50[16], p90[16], p99[16], mx[16];
		fmt_ms(p50, sizeof(p50), hist_ms(&st->total, 0.50));
		fmt_ms(p90, sizeof(p90), hist_ms(&st->total, 0.90));
		fmt_ms(p99, sizeof(p99), hist_ms(&st->total, 0.99));
		fmt_ms(mx, sizeof(mx), st->total.n ? st->max_s * 1000 : -1);
		printf("%-14s %llu requests, %s %llu, 4xx %llu, 5xx %llu, errors %llu; p50 %s p90 %s p99 %s max %s\n",
		       ep_names[e], (unsigned long long)st->requests, e == EP_BATCH ? "200" : "202",
		       (unsigned long long)st->ok, (unsigned long long)st->c4xx, (unsigned long long)st->c5xx,
		       (unsigned long long)st->errors, p50, p90, p99, mx);
		if (st->first_error[0])
			printf("%-14s first failure: %s\n", "", st->first_error);
	}
	printf("statuses:");
	for (size_t i = 0; i < ARRAY_LEN(outcomes); i++)
		if (s->results_by[i])
			printf(" %s %llu", outcomes[i].status, (unsigned long long)s->results_by[i]);
	printf("\n");
	if (s->qlen + s->ncalls > 0)
		printf("left unreported: %zu numbers (locked until ASSIGNMENT_TIMEOUT_MINUTES)\n", s->qlen + s->ncalls);
	fflush(stdout);
}

/* ----------------------------------------------------------------- setup */

static int usage(void)
{
	fprintf(stderr, "usage:\n" SIMULATE_USAGE "  --rate N         results per second (default 50)\n"
	                "  --duration S     seconds of fetching (default 60); fetched numbers are then finished\n"
	                "  --size B         batch size (default: the server's DEFAULT_BATCH_SIZE)\n"
	                "  --url URL        the API (default http://127.0.0.1:$PORT)\n"
	                "  --token T        dialer token (default $DIALER_TOKEN, then .run/dialer_token)\n"
	                "  --company C      send company=C (default: none, as the original's agents)\n"
	                "  --concurrency K  report-result requests in flight at most (default 16)\n"
	                "  --seed X         random seed, for a reproducible run\n");
	return 2;
}

/* The dialer token: --token, DIALER_TOKEN (environment or .env), then the
 * one `make run` keeps in .run/dialer_token. Caller frees; NULL when none. */
static char *find_token(const char *given)
{
	char buf[512];
	FILE *f;

	if (given)
		return xstrdup(given);
	if (cfg.dialer_token && *cfg.dialer_token)
		return xstrdup(cfg.dialer_token);
	f = fopen(".run/dialer_token", "r");
	if (!f)
		return NULL;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf[0] ? xstrdup(buf) : NULL;
}

static bool parse_num(const char *v, double min, double max, double *out)
{
	char *end;
	double d;
	if (!v)
		return false;
	d = strtod(v, &end);
	if (end == v || *end || !(d >= min && d <= max))
		return false;
	*out = d;
	return true;
}

static int setup(struct sim *s, const char *url, const char *token)
{
	char *base, *auth, *q = NULL;
	CURL *esc;
	size_t n;

	s->token = find_token(token);
	if (!s->token) {
		fprintf(stderr,
		        "simulate: no dialer token: pass --token, set DIALER_TOKEN, or run where `make run` keeps"
		        " .run/dialer_token\n");
		return -1;
	}
	base = url ? xstrdup(url) : xasprintf("http://127.0.0.1:%d", cfg.port);
	for (n = strlen(base); n > 0 && base[n - 1] == '/'; n--)
		base[n - 1] = '\0';
	if (s->company) {
		esc = curl_easy_init();
		char *e = esc ? curl_easy_escape(esc, s->company, 0) : NULL;
		if (e)
			q = xasprintf("&company=%s", e);
		curl_free(e);
		curl_easy_cleanup(esc);
		if (!q) {
			fprintf(stderr, "simulate: cannot encode --company %s\n", s->company);
			free(base);
			return -1;
		}
	}
	if (s->size)
		s->batch_url = xasprintf("%s/api/dialer/next-batch?size=%d%s", base, s->size, q ? q : "");
	else
		s->batch_url = xasprintf("%s/api/dialer/next-batch%s%s", base, q ? "?" : "", q ? q + 1 : "");
	s->report_url = xasprintf("%s/api/dialer/report-result", base);
	free(q);
	free(base);

	auth = xasprintf("Authorization: Bearer %s", s->token);
	s->hdr_get = curl_slist_append(NULL, auth);
	s->hdr_post = curl_slist_append(NULL, auth);
	s->hdr_post = curl_slist_append(s->hdr_post, "Content-Type: application/json");
	s->hdr_post = curl_slist_append(s->hdr_post, "Expect:");
	free(auth);
	s->multi = curl_multi_init();
	if (!s->hdr_get || !s->hdr_post || !s->multi) {
		fprintf(stderr, "simulate: cannot set up libcurl (out of memory)\n");
		return -1;
	}
	s->max_fetch = 1 + s->concurrency / 8;
	curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)(s->concurrency + s->max_fetch));
	curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long)(s->concurrency + s->max_fetch));
	return 0;
}

static void teardown(struct sim *s)
{
	struct req *r;
	while ((r = s->all_reqs)) {
		s->all_reqs = r->all;
		if (s->multi)
			curl_multi_remove_handle(s->multi, r->easy); /* harmless when not added */
		curl_easy_cleanup(r->easy);
		free(r->body);
		free(r->resp);
		free(r);
	}
	if (s->multi)
		curl_multi_cleanup(s->multi);
	curl_slist_free_all(s->hdr_get);
	curl_slist_free_all(s->hdr_post);
	free(s->batch_url);
	free(s->report_url);
	free(s->token);
	free(s->q);
	free(s->calls);
	free(s->agents);
	free(s->scenarios);
	free(s->lines);
}

/* Completes whatever finished; every request ends here exactly once. */
static void drain_messages(struct sim *s)
{
	CURLMsg *m;
	int left, running;
	curl_multi_perform(s->multi, &running);
	while ((m = curl_multi_info_read(s->multi, &left)))
		if (m->msg == CURLMSG_DONE)
			on_done(s, m, mono_s());
}

static void run(struct sim *s)
{
	double start = mono_s(), end = start + s->duration, next_line = start + 1, last_line = start;
	double drain_deadline = 0, ended = 0;

	s->next_dial = start;
	for (;;) {
		double now = mono_s();
		bool fetching = now < end && !interrupted && !s->fatal;
		if (!fetching && ended == 0) {
			ended = now;
			drain_deadline = now + DRAIN_MAX_S;
		}
		/* stopped for good: a fatal answer, a second Ctrl-C, or too long finishing */
		bool stop = s->fatal || interrupted > 1 || (ended > 0 && now >= drain_deadline);
		if (stop && s->inflight[EP_BATCH] + s->inflight[EP_REPORT] == 0)
			break;
		if (!stop) {
			if (fetching)
				fetch(s, now);
			dial(s, now);
			report_due(s, now);
			if (!fetching && s->qlen == 0 && s->ncalls == 0 &&
			    s->inflight[EP_BATCH] + s->inflight[EP_REPORT] == 0)
				break;
		}
		if (now >= next_line) {
			status_line(s, now - start, now - last_line);
			last_line = now;
			next_line += 1;
			if (next_line < now)
				next_line = now + 1;
		}
		drain_messages(s);

		/* sleep in curl until a socket is ready or the next thing is due */
		double wake = next_line;
		if (s->qlen > 0 && s->next_dial < wake)
			wake = s->next_dial;
		if (s->ncalls > 0 && s->calls[0].due < wake && s->inflight[EP_REPORT] < s->concurrency)
			wake = s->calls[0].due;
		if (fetching && s->qlen < (size_t)s->size_guess) {
			double f = s->blocked_until > s->fetch_after ? s->blocked_until : s->fetch_after;
			if (f < wake)
				wake = f;
		}
		int ms = (int)ceil((wake - mono_s()) * 1000);
		if (ms > 50)
			ms = 50;
		if (ms > 0)
			curl_multi_poll(s->multi, NULL, 0, ms, NULL);
		drain_messages(s);
	}
	double stopped = mono_s();
	summary(s, (ended ? ended : stopped) - start, ended ? stopped - ended : 0);
}

int simulate_main(int argc, char **argv)
{
	struct sim s = {.rate = 50, .duration = 60, .concurrency = 16, .size_guess = 100};
	const char *url = NULL, *token = NULL;
	double v, seed = -1;
	int rc = 1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--rate") && parse_num(val, 0.1, 1e6, &s.rate))
			i++;
		else if (!strcmp(a, "--duration") && parse_num(val, 0.1, 1e7, &s.duration))
			i++;
		else if (!strcmp(a, "--size") && parse_num(val, 1, 500, &v) && v == floor(v)) { /* the API's bound */
			s.size = (int)v;
			s.size_guess = s.size;
			i++;
		} else if (!strcmp(a, "--concurrency") && parse_num(val, 1, 1000, &v) && v == floor(v)) {
			s.concurrency = (int)v;
			i++;
		} else if (!strcmp(a, "--seed") && parse_num(val, 0, 1e18, &seed))
			i++;
		else if (!strcmp(a, "--url") && val)
			url = argv[++i];
		else if (!strcmp(a, "--token") && val)
			token = argv[++i];
		else if (!strcmp(a, "--company") && val)
			s.company = argv[++i];
		else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage();
			return 0;
		} else {
			fprintf(stderr, "simulate: bad or incomplete option %s\n", a);
			return usage();
		}
	}
	if (tz_init(cfg.timezone)) {
		fprintf(stderr, "simulate: unknown TIMEZONE %s\n", cfg.timezone);
		return 2;
	}
	s.rng =
	    seed >= 0 ? (uint64_t)seed * 0x9E3779B97F4A7C15ULL + 1 : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	if (s.rng == 0)
		s.rng = 1;
	s.tty = isatty(STDOUT_FILENO);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "simulate: cannot initialise libcurl\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_sigint);
	if (setup(&s, url, token) == 0) {
		run(&s);
		rc = s.fatal || !s.answered ? 1 : 0;
		if (!s.answered && !s.fatal)
			fprintf(stderr, "simulate: next-batch never answered 200 (%s)\n",
			        s.st[EP_BATCH].first_error[0] ? s.st[EP_BATCH].first_error : "no request completed");
	}
	teardown(&s);
	curl_global_cleanup();
	return rc;
}
