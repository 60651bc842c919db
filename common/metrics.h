/*
 * Prometheus metrics: per-route request counters and latency histograms (API),
 * and named process counters that workers push to Redis so that one scrape of
 * the API's /metrics also shows every live worker.
 */
#ifndef DIALER_METRICS_H
#define DIALER_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include <hiredis/hiredis.h>

#include "common.h"

#define METRICS_ROUTES_MAX  160
#define METRICS_REDIS_INDEX "metrics:procs" /* zset: key → expiry (unix s) */

/* Names route idx for the route="" label (borrowed, static). */
void metrics_route_name(int idx, const char *name);
/* Counts one request; thread-safe. */
void metrics_observe(int route_idx, int status, double seconds);
/* Writes http_requests_total, http_request_duration_seconds and uptime. */
void metrics_render_http(FILE *out);

/* Adds n to a named process counter (created on first use; at most 64). Thread-safe. */
void metrics_count(const char *name, uint64_t n);
/* Writes the named counters as `dialer_<name>_total{labels} value`. labels may be "". */
void metrics_render_counters(FILE *out, const char *labels);

/*
 * Publishes this process's counters to Redis (hash metrics:proc:<type>:<id>,
 * indexed in METRICS_REDIS_INDEX with an expiry of 3 * period_s).
 * Returns 0 or -1.
 */
int metrics_push(redisContext *rc, const char *proc_type, int period_s) MUSTCHECK;

/* Seconds since the process started (metrics_init sets the start). */
void metrics_init(void);
double metrics_uptime(void);

#endif
