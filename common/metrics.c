/*
 * Lock-free counters (relaxed atomics) rendered in Prometheus text format.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "util.h"

static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
#define NB ((int)ARRAY_LEN(buckets))

struct route_m {
	const char *name;
	_Atomic uint64_t by_status[500]; /* status 100..599 */
	_Atomic uint64_t hist[NB + 1];
	_Atomic uint64_t sum_us;
	_Atomic uint64_t count;
};

static struct route_m routes[METRICS_ROUTES_MAX];
static uint64_t start_ns;
static time_t start_wall;

struct named {
	char name[64];
	_Atomic uint64_t v;
};
static struct named counters[64];
static _Atomic int ncounters;
static pthread_mutex_t cmu = PTHREAD_MUTEX_INITIALIZER;

void metrics_init(void)
{
	start_ns = util_now_ns();
	start_wall = time(NULL);
}

double metrics_uptime(void)
{
	return (double)(util_now_ns() - start_ns) / 1e9;
}

void metrics_route_name(int idx, const char *name)
{
	if (idx >= 0 && idx < METRICS_ROUTES_MAX)
		routes[idx].name = name;
}

void metrics_observe(int idx, int status, double seconds)
{
	if (idx < 0 || idx >= METRICS_ROUTES_MAX)
		idx = METRICS_ROUTES_MAX - 1;
	struct route_m *r = &routes[idx];
	if (status >= 100 && status < 600)
		atomic_fetch_add_explicit(&r->by_status[status - 100], 1, memory_order_relaxed);
	int b = 0;
	while (b < NB && seconds > buckets[b])
		b++;
	atomic_fetch_add_explicit(&r->hist[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->sum_us, (uint64_t)(seconds * 1e6), memory_order_relaxed);
	atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
}

void metrics_render_http(FILE *out)
{
	fputs("# HELP http_requests_total HTTP requests by route and status.\n"
	      "# TYPE http_requests_total counter\n",
	      out);
	for (int i = 0; i < METRICS_ROUTES_MAX; i++) {
		struct route_m *r = &routes[i];
		const char *name = r->name ? r->name : (i == METRICS_ROUTES_MAX - 1 ? "unmatched" : NULL);
		if (!name)
			continue;
		for (int s = 0; s < 500; s++) {
			uint64_t v = atomic_load_explicit(&r->by_status[s], memory_order_relaxed);
			if (v)
				fprintf(out, "http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", name, s + 100,
				        (unsigned long long)v);
		}
	}
	fputs("# HELP http_request_duration_seconds Request latency by route.\n"
	      "# TYPE http_request_duration_seconds histogram\n",
	      out);
	for (int i = 0; i < METRICS_ROUTES_MAX; i++) {
		struct route_m *r = &routes[i];
		const char *name = r->name ? r->name : (i == METRICS_ROUTES_MAX - 1 ? "unmatched" : NULL);
		uint64_t count = atomic_load_explicit(&r->count, memory_order_relaxed);
		if (!name || !count)
			continue;
		uint64_t cum = 0;
		for (int b = 0; b <= NB; b++) {
			cum += atomic_load_explicit(&r->hist[b], memory_order_relaxed);
			if (b < NB)
				fprintf(out, "http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
				        name, buckets[b], (unsigned long long)cum);
			else
				fprintf(out, "http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
				        name, (unsigned long long)cum);
		}
		fprintf(out, "http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", name,
		        (double)atomic_load_explicit(&r->sum_us, memory_order_relaxed) / 1e6);
		fprintf(out, "http_request_duration_seconds_count{route=\"%s\"} %llu\n", name,
		        (unsigned long long)count);
	}
	fprintf(out,
	        "# HELP process_uptime_seconds Seconds since the process started.\n"
	        "# TYPE process_uptime_seconds gauge\nprocess_uptime_seconds %.3f\n"
	        "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %lld\n",
	        metrics_uptime(), (long long)start_wall);
}

void metrics_count(const char *name, uint64_t n)
{
	int k = atomic_load(&ncounters);
	for (int i = 0; i < k; i++)
		if (!strcmp(counters[i].name, name)) {
			atomic_fetch_add_explicit(&counters[i].v, n, memory_order_relaxed);
			return;
		}
	pthread_mutex_lock(&cmu);
	k = atomic_load(&ncounters);
	int i;
	for (i = 0; i < k; i++)
		if (!strcmp(counters[i].name, name))
			break;
	if (i == k && k < (int)ARRAY_LEN(counters)) {
		snprintf(counters[k].name, sizeof(counters[k].name), "%s", name);
		atomic_store(&ncounters, k + 1);
	}
	pthread_mutex_unlock(&cmu);
	if (i < (int)ARRAY_LEN(counters))
		atomic_fetch_add_explicit(&counters[i].v, n, memory_order_relaxed);
}

void metrics_render_counters(FILE *out, const char *labels)
{
	int k = atomic_load(&ncounters);
	for (int i = 0; i < k; i++)
		fprintf(out, "dialer_%s_total{%s} %llu\n", counters[i].name, labels,
		        (unsigned long long)atomic_load_explicit(&counters[i].v, memory_order_relaxed));
}

int metrics_push(redisContext *rc, const char *proc_type, int period_s)
{
	char host[128], key[256];
	if (gethostname(host, sizeof(host)))
		snprintf(host, sizeof(host), "unknown");
	host[sizeof(host) - 1] = '\0';
	snprintf(key, sizeof(key), "metrics:proc:%s:%d@%s", proc_type, (int)getpid(), host);
	long long expires = (long long)time(NULL) + 3LL * period_s;
	int k = atomic_load(&ncounters);
	int sent = 0;
	redisAppendCommand(rc, "MULTI");
	sent++;
	redisAppendCommand(rc, "HSET %s uptime_seconds %.3f", key, metrics_uptime());
	sent++;
	for (int i = 0; i < k; i++) {
		redisAppendCommand(rc, "HSET %s %s %llu", key, counters[i].name,
		                   (unsigned long long)atomic_load(&counters[i].v));
		sent++;
	}
	redisAppendCommand(rc, "EXPIRE %s %d", key, 3 * period_s);
	redisAppendCommand(rc, "ZADD " METRICS_REDIS_INDEX " %lld %s", expires, key);
	redisAppendCommand(rc, "EXEC");
	sent += 3;
	int rc_out = 0;
	for (int i = 0; i < sent; i++) {
		redisReply *rep = NULL;
		if (redisGetReply(rc, (void **)&rep) != REDIS_OK) {
			rc_out = -1;
			break;
		}
		if (rep && rep->type == REDIS_REPLY_ERROR)
			rc_out = -1;
		freeReplyObject(rep);
	}
	return rc_out;
}
