/*
 * Operations endpoints: GET /health (COMPAT), GET /api/health (seed 002's
 * shape; 503 when PostgreSQL or Redis is unreachable), GET /metrics
 * (Prometheus text: this process plus every worker that pushed to Redis).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "metrics.h"
#include "util.h"

static void health(struct http_ctx *c)
{
	http_reply_json(c, 200, json_pack("{s:s}", "status", "ok"));
}

/* /api/health probes both servers at once and answers when both returned. */
struct probe {
	int pending;
	bool db_ok, redis_ok;
};

static void health_maybe_reply(struct http_ctx *c)
{
	struct probe *p = c->state;
	char ts[32];
	if (--p->pending > 0)
		return;
	bool ok = p->db_ok && p->redis_ok;
	util_iso_now(ts);
	json_t *body =
	    json_pack("{s:b, s:s, s:s, s:s, s:s, s:I}", "success", ok, "status", ok ? "healthy" : "unhealthy", "db",
	              p->db_ok ? "connected" : "disconnected", "redis", p->redis_ok ? "connected" : "disconnected",
	              "timestamp", ts, "uptime", (json_int_t)metrics_uptime());
	if (!ok)
		http_add_header(c, "Retry-After", "5");
	http_reply_json(c, ok ? 200 : 503, body);
}

static void health_db(struct http_ctx *c, PGresult *res)
{
	struct probe *p = c->state;
	p->db_ok = res && PQresultStatus(res) == PGRES_TUPLES_OK;
	health_maybe_reply(c);
}

static void health_redis(struct http_ctx *c, redisReply *r)
{
	struct probe *p = c->state;
	p->redis_ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
	health_maybe_reply(c);
}

static void api_health(struct http_ctx *c)
{
	struct probe *p = xcalloc(1, sizeof(*p));
	const char *argv[1] = {"PING"};
	p->pending = 2;
	c->state = p;
	c->state_free = free;
	/* the two probes are the one place with two steps in flight: the reply
	 * waits for both (pending), so neither callback outlives the request */
	http_db(c, "SELECT 1", 0, NULL, health_db);
	http_redis(c, health_redis, 1, argv, NULL);
}

/* One round trip: drop expired workers, return [key, [field, value, ...], ...]. */
static const char WORKER_METRICS[] = "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1]) "
                                     "local out = {} "
                                     "for _, k in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do "
                                     "  local h = redis.call('HGETALL', k) "
                                     "  if #h > 0 then table.insert(out, k) table.insert(out, h) end "
                                     "end return out";

static void render_workers(FILE *out, redisReply *r)
{
	if (!r || r->type != REDIS_REPLY_ARRAY)
		return;
	fputs("# HELP dialer_worker Counters pushed by worker processes (process, instance).\n", out);
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		redisReply *k = r->element[i], *h = r->element[i + 1];
		if (k->type != REDIS_REPLY_STRING || h->type != REDIS_REPLY_ARRAY)
			continue;
		/* metrics:proc:<type>:<instance> */
		const char *rest = k->str + strlen("metrics:proc:");
		const char *colon = strchr(rest, ':');
		if (strncmp(k->str, "metrics:proc:", 13) || !colon)
			continue;
		for (size_t j = 0; j + 1 < h->elements; j += 2) {
			const char *f = h->element[j]->str, *v = h->element[j + 1]->str;
			bool gauge = strstr(f, "seconds") != NULL;
			fprintf(out, "dialer_%s%s{process=\"%.*s\",instance=\"%s\"} %s\n", f, gauge ? "" : "_total",
			        (int)(colon - rest), rest, colon + 1, v);
		}
	}
}

static void metrics_done(struct http_ctx *c, redisReply *r)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	metrics_render_http(out);
	fprintf(out, "# TYPE dialer_db_up gauge\ndialer_db_up{process=\"api\",thread=\"%d\"} %d\n", c->thr->idx,
	        pgpool_healthy(c->thr->db));
	fprintf(out, "# TYPE dialer_redis_up gauge\ndialer_redis_up{process=\"api\",thread=\"%d\"} %d\n", c->thr->idx,
	        rds_connected(c->thr->redis));
	metrics_render_counters(out, "process=\"api\"");
	render_workers(out, r);
	fclose(out);
	http_reply_raw(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

static void metrics(struct http_ctx *c)
{
	char now[24];
	snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
	const char *argv[5] = {"EVAL", WORKER_METRICS, "1", METRICS_REDIS_INDEX, now};
	http_redis(c, metrics_done, 5, argv, NULL);
}

static const struct route routes[] = {
    {"GET", "/health", health, AUTH_NONE, 0},
    {"GET", "/api/health", api_health, AUTH_NONE, 0},
    {"GET", "/metrics", metrics, AUTH_NONE, 0},
};

void ops_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
