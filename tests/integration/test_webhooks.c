/* Webhooks end to end (issue 7 items 4 and 5): CRUD and validation through the real dialer-api
 * (roles, COMPAT's 404/403 company rules, the per-company limit, the secret never echoed), and
 * the real dialer-webhooks delivering entries XADDed to dialer:events in the events contract's
 * format (type, company_id, data, at), and a schedule.changed the API itself emits, to a
 * receiver inside this test (libevent evhttp on port 0, on its own thread): the X-Signature
 * checked with OpenSSL; 500, 500, 200 retried with growing delays and every attempt in the
 * delivery log; a receiver that never answers times out without holding up another webhook
 * (per-webhook cap); giving up after WEBHOOK_MAX_AGE_SECONDS; a SIGKILL while a request is in
 * flight, and one between reading an entry and recording it, lose nothing; two copies send
 * every event once; company B's events never reach company A's webhooks; only subscribed events
 * are parsed; a paused webhook's backlog expires instead of being sent late; outcomes PostgreSQL
 * refuses are dropped without stalling the worker; attempted_at survives a database outage;
 * private addresses are refused unless WEBHOOK_ALLOW_PRIVATE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/socket.h>

#include "harness.h"
#include "rds.h"

#define HITS_MAX   1024
#define HELD_MAX   64
#define RETRY_BASE 1000 /* WEBHOOK_RETRY_BASE_MS of the worker */
#define TIMEOUT_MS 2000 /* WEBHOOK_TIMEOUT_MS */
#define MAX_AGE_S  6    /* WEBHOOK_MAX_AGE_SECONDS */
#define LEASE_MS   (2 * TIMEOUT_MS + 5000)
#define SECRET     "test-webhook-secret-0123"

static struct th_api api;
static char *db_url;
static char *root_token, *acme_admin, *acme_agent, *beta_admin;
static long long acme_id, beta_id;
static struct th_proc *worker;
static redisContext *rc;

#define q(...)  th_sqlf(db_url, __VA_ARGS__)
#define qi(...) th_sqlf_int(db_url, __VA_ARGS__)

/* ---- the receiver: evhttp on 127.0.0.1:<port 0> on its own thread ---- */

/* One request the receiver got. */
struct hit {
	char path[64];
	char event_id[48], event_type[40], signature[80], ctype[64], attempt[8], webhook[16];
	char *body; /* owned */
	long long at_ms;
};

static struct {
	pthread_t tid;
	struct event_base *base;
	struct evhttp *http;
	int port;
	pthread_mutex_t mu;
	struct hit hits[HITS_MAX];
	int n;
	int flaky_served;
	bool hold;                             /* /hold requests are held (not answered) while true */
	struct evhttp_request *held[HELD_MAX]; /* /hang and /hold requests not answered */
	int nheld;
} rx = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void hdr(struct evhttp_request *req, const char *name, char *out, size_t cap)
{
	const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), name);
	snprintf(out, cap, "%s", v ? v : "");
}

/* Behaviour by path: /flaky 500 twice then 200; /fail 503; /hang never answers; /hold never
 * answers while rx.hold; anything else 200. */
static void rx_request(struct evhttp_request *req, void *arg)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	const char *uri = evhttp_request_get_uri(req);
	struct hit h = {0};
	int code = 200;
	bool keep = false;
	size_t len = evbuffer_get_length(in);

	(void)arg;
	snprintf(h.path, sizeof(h.path), "%.*s", (int)strcspn(uri, "?"), uri);
	hdr(req, "X-Event-Id", h.event_id, sizeof(h.event_id));
	hdr(req, "X-Event-Type", h.event_type, sizeof(h.event_type));
	hdr(req, "X-Signature", h.signature, sizeof(h.signature));
	hdr(req, "Content-Type", h.ctype, sizeof(h.ctype));
	hdr(req, "X-Delivery-Attempt", h.attempt, sizeof(h.attempt));
	hdr(req, "X-Webhook-Id", h.webhook, sizeof(h.webhook));
	h.body = calloc(1, len + 1);
	evbuffer_copyout(in, h.body, len);
	h.at_ms = th_now_ms();
	pthread_mutex_lock(&rx.mu);
	if (rx.n < HITS_MAX)
		rx.hits[rx.n++] = h;
	else
		free(h.body);
	if (!strcmp(h.path, "/flaky"))
		code = ++rx.flaky_served <= 2 ? 500 : 200;
	else if (!strcmp(h.path, "/fail"))
		code = 503;
	else if (!strcmp(h.path, "/hang") || (!strcmp(h.path, "/hold") && rx.hold))
		keep = rx.nheld < HELD_MAX;
	if (keep)
		rx.held[rx.nheld++] = req;
	pthread_mutex_unlock(&rx.mu);
	if (!keep)
		evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", NULL);
}

/* On the receiver's loop: answers every held request (freeing those whose client is gone). */
static void rx_release_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	pthread_mutex_lock(&rx.mu);
	for (int i = 0; i < rx.nheld; i++)
		evhttp_send_reply(rx.held[i], 503, "Released", NULL);
	rx.nheld = 0;
	pthread_mutex_unlock(&rx.mu);
}

static void rx_release(void)
{
	struct timeval now = {0, 0};
	assert_int_equal(event_base_once(rx.base, -1, EV_TIMEOUT, rx_release_cb, NULL, &now), 0);
	th_sleep_ms(100);
}

static void *rx_loop(void *arg)
{
	(void)arg;
	event_base_loop(rx.base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static int rx_start(void)
{
	struct sockaddr_in sa;
	socklen_t salen = sizeof(sa);

	if (evthread_use_pthreads())
		return -1;
	rx.base = event_base_new();
	rx.http = evhttp_new(rx.base);
	struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(rx.http, "127.0.0.1", 0);
	if (!bs || getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &salen))
		return -1;
	rx.port = ntohs(sa.sin_port);
	evhttp_set_gencb(rx.http, rx_request, NULL);
	return pthread_create(&rx.tid, NULL, rx_loop, NULL) ? -1 : 0;
}

static void rx_stop(void)
{
	struct timeval now = {0, 0}, later = {0, 300000};
	if (!rx.base)
		return;
	event_base_once(rx.base, -1, EV_TIMEOUT, rx_release_cb, NULL, &now);
	event_base_loopexit(rx.base, &later);
	pthread_join(rx.tid, NULL);
	evhttp_free(rx.http);
	event_base_free(rx.base);
	for (int i = 0; i < rx.n; i++)
		free(rx.hits[i].body);
}

/* Requests to path so far. */
static int rx_count(const char *path)
{
	int n = 0;
	pthread_mutex_lock(&rx.mu);
	for (int i = 0; i < rx.n; i++)
		n += !strcmp(rx.hits[i].path, path);
	pthread_mutex_unlock(&rx.mu);
	return n;
}

/* Waits until path has had at least n requests (a cmocka failure after timeout_ms). */
static void rx_wait(const char *path, int n, int timeout_ms)
{
	long long until = th_now_ms() + timeout_ms;
	while (rx_count(path) < n) {
		if (th_now_ms() > until)
			fail_msg("receiver: %d of %d requests to %s after %d ms", rx_count(path), n, path, timeout_ms);
		th_sleep_ms(20);
	}
}

/* Copies of the requests to path, in arrival order, into out (at most max); returns how many.
 * Bodies are copied too: free them with hits_free. */
static int rx_hits(const char *path, struct hit *out, int max)
{
	int n = 0;
	pthread_mutex_lock(&rx.mu);
	for (int i = 0; i < rx.n && n < max; i++)
		if (!strcmp(rx.hits[i].path, path)) {
			out[n] = rx.hits[i];
			out[n].body = strdup(rx.hits[i].body);
			n++;
		}
	pthread_mutex_unlock(&rx.mu);
	return n;
}

static void hits_free(struct hit *h, int n)
{
	for (int i = 0; i < n; i++)
		free(h[i].body);
}

/* ---- helpers ---- */

/* "sha256=" + hex HMAC-SHA256 of body with SECRET, computed here with OpenSSL. */
static void expected_signature(const char *secret, const char *body, char out[72])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	assert_non_null(
	    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, strlen(body), md, &n));
	assert_int_equal(n, 32);
	strcpy(out, "sha256=");
	for (unsigned i = 0; i < n; i++)
		sprintf(out + 7 + 2 * i, "%02x", md[i]);
}

/* XADD dialer:events in the events contract's format; returns the stream id (caller frees). */
static char *xadd(const char *type, long long company, const char *data)
{
	char cid[24], at[24];
	snprintf(cid, sizeof(cid), "%lld", company);
	snprintf(at, sizeof(at), "%lld", (long long)time(NULL) * 1000);
	redisReply *r =
	    redisCommand(rc, "XADD dialer:events * type %s company_id %s data %s at %s", type, cid, data, at);
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	char *id = strdup(r->str);
	freeReplyObject(r);
	return id;
}

/* dialer-webhooks with the settings above; extra and extra2 (may be NULL) override them. */
static struct th_proc *worker_start_with(const char *log_name, const char *extra, const char *extra2)
{
	struct th_proc *p =
	    th_dialer_start("dialer-webhooks", db_url, log_name, "LOG_LEVEL=debug", "WEBHOOK_ALLOW_PRIVATE=true",
	                    "WEBHOOK_RETRY_BASE_MS=1000", "WEBHOOK_TIMEOUT_MS=2000", "WEBHOOK_CONNECT_TIMEOUT_MS=1000",
	                    "WEBHOOK_CONCURRENCY=4", "WEBHOOK_CONCURRENCY_PER_WEBHOOK=2", "WEBHOOK_MAX_AGE_SECONDS=6",
	                    "CLAIM_IDLE_MS=1000", "METRICS_PUSH_SECONDS=1", extra ? extra : "LOG_LEVEL=debug",
	                    extra2 ? extra2 : "LOG_LEVEL=debug", NULL);
	assert_non_null(p);
	return p;
}

static struct th_proc *worker_start(const char *log_name, const char *extra)
{
	return worker_start_with(log_name, extra, NULL);
}

/* Wall clock in µs (the worker's util_wall_us; PostgreSQL's timestamps). */
static long long wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Whether the log of the worker started as log_name has a line containing needle. */
static bool log_has(const char *log_name, const char *needle)
{
	char path[600], line[4096];
	bool seen = false;
	snprintf(path, sizeof(path), "%s/%s-%s.log", th_tmp_dir(), th_test_name(), log_name);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	while (!seen && fgets(line, sizeof(line), f))
		seen = strstr(line, needle) != NULL;
	fclose(f);
	return seen;
}

/* Waits until that log has such a line. */
static void log_wait(const char *log_name, const char *needle, int timeout_ms)
{
	long long until = th_now_ms() + timeout_ms;
	while (!log_has(log_name, needle)) {
		if (th_now_ms() > until)
			fail_msg("no \"%s\" in the %s log after %d ms", needle, log_name, timeout_ms);
		th_sleep_ms(50);
	}
}

/* PUT is_active on acme's webhook id. */
static void webhook_set_active(long long id, bool active)
{
	char p[96];
	snprintf(p, sizeof(p), "/api/acme/webhooks/%lld", id);
	th_call_expect(&api, "PUT", p, acme_admin, active ? "{\"is_active\": true}" : "{\"is_active\": false}", 200);
}

/* Waits until the group "webhooks" exists on dialer:events (the worker joined). */
static void wait_group(void)
{
	long long until = th_now_ms() + 20000;
	for (;;) {
		redisReply *r = redisCommand(rc, "XINFO GROUPS dialer:events");
		bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0;
		freeReplyObject(r);
		if (ok)
			return;
		if (th_now_ms() > until)
			fail_msg("dialer-webhooks did not join its group");
		th_sleep_ms(50);
	}
}

/* POST /api/{company}/webhooks as token with url http://127.0.0.1:<rx>/<path>; returns the id. */
static long long webhook_new(const char *token, const char *company, const char *path, const char *events,
                             const char *secret)
{
	char p[128];
	long long id = 0;
	snprintf(p, sizeof(p), "/api/%s/webhooks", company);
	struct th_resp *r =
	    th_callf(&api, "POST", p, token, "{\"url\": \"http://127.0.0.1:%d%s\", \"events\": %s%s%s%s}", rx.port,
	             path, events, secret ? ", \"secret\": \"" : "", secret ? secret : "", secret ? "\"" : "");
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(th_json_int(r->json, "id", &id), 0);
	th_resp_free(r);
	return id;
}

static void webhook_delete(const char *token, const char *company, long long id)
{
	char p[128];
	snprintf(p, sizeof(p), "/api/%s/webhooks/%lld", company, id);
	th_call_expect(&api, "DELETE", p, token, NULL, 200);
}

/* Waits until webhook id has n deliveries in state. */
static void wait_state(long long id, const char *state, int n, int timeout_ms)
{
	char sql[200], want[16];
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = %lld AND state = '%s'",
	         id, state);
	snprintf(want, sizeof(want), "%d", n);
	TH_WAIT_SQL(db_url, sql, want, timeout_ms);
}

/* ---- setup ---- */

static int group_setup(void **state)
{
	(void)state;
	if (th_setup_api(&api, &db_url, &root_token, "WEBHOOKS_PER_COMPANY=5", NULL) < 0)
		return -1;
	acme_id = th_create_company(&api, root_token, "acme", "Acme", true);
	beta_id = th_create_company(&api, root_token, "beta", "Beta", true);
	th_create_company(&api, root_token, "gone", "Gone", false);
	acme_admin = th_create_user(&api, root_token, "acme", "acme-admin", "adminpass1", "ADMIN");
	acme_agent = th_create_user(&api, root_token, "acme", "acme-agent", "agentpass1", "AGENT");
	beta_admin = th_create_user(&api, root_token, "beta", "beta-admin", "adminpass1", "ADMIN");
	if (!acme_admin || !acme_agent || !beta_admin || rx_start())
		return -1;
	rc = rds_connect_sync(th_env("REDIS_URL"), NULL);
	if (!rc)
		return -1;
	worker = worker_start("webhooks", NULL);
	wait_group();
	return 0;
}

static int group_teardown(void **state)
{
	int st, wst;

	(void)state;
	wst = th_proc_stop(worker); /* 0: SIGTERM drained and exited, and LeakSanitizer found nothing */
	if (wst != 0)
		fprintf(stderr, "dialer-webhooks exited with %d\n", wst);
	rx_stop();
	if (rc)
		redisFree(rc);
	free(acme_admin);
	free(acme_agent);
	free(beta_admin);
	st = th_teardown_api(&api, &db_url, &root_token);
	return st == 0 && wst == 0 ? 0 : -1;
}

/* ---- the API ---- */

/* acme's webhook id is not there for this token: read, delete and its log all 404. */
static void expect_no_webhook(const char *token, long long id)
{
	static const char *const call[][2] = {{"GET", ""}, {"DELETE", ""}, {"GET", "/deliveries"}};
	char path[96];
	for (size_t i = 0; i < sizeof(call) / sizeof(call[0]); i++) {
		snprintf(path, sizeof(path), "/api/acme/webhooks/%lld%s", id, call[i][1]);
		struct th_resp *r = th_call(&api, call[i][0], path, token, NULL);
		TH_EXPECT_ERROR(r, 404, "Webhook not found");
		th_resp_free(r);
	}
}

/* Create, read, list, update, delete; every validation error names its field; the secret never
 * comes back (only a generated one, once). */
static void test_crud_and_validation(void **state)
{
	struct th_resp *r;
	long long id = 0, gen = 0;
	char path[128], *big;

	(void)state;
	r = th_callf(&api, "POST", "/api/acme/webhooks", acme_admin,
	             "{\"url\": \"https://hooks.example.com/dialer?x=1\", \"events\": [\"result.ingested\","
	             " \"number.updated\", \"result.ingested\"], \"secret\": \"%s\", \"description\": \"crm\"}",
	             SECRET);
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(th_json_int(r->json, "id", &id), 0);
	TH_EXPECT_STR(r->json, "url", "https://hooks.example.com/dialer?x=1");
	TH_EXPECT_STR(r->json, "secret_hint", "test…");
	TH_EXPECT_STR(r->json, "description", "crm");
	TH_EXPECT_INT(r->json, "company_id", acme_id);
	TH_EXPECT_INT(r->json, "pending", 0);
	assert_true(json_is_true(json_object_get(r->json, "is_active")));
	assert_true(th_is_datetime(th_json_str(r->json, "created_at")));
	json_t *ev = json_object_get(r->json, "events"); /* duplicates dropped, order kept */
	assert_int_equal(json_array_size(ev), 2);
	assert_string_equal(json_string_value(json_array_get(ev, 0)), "result.ingested");
	assert_string_equal(json_string_value(json_array_get(ev, 1)), "number.updated");
	assert_null(json_object_get(r->json, "secret"));
	assert_null(strstr(r->body, SECRET));
	th_resp_free(r);

	r = th_call(&api, "GET", "/api/acme/webhooks", acme_admin, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(json_array_size(r->json), 1);
	assert_null(strstr(r->body, SECRET));
	th_resp_free(r);

	snprintf(path, sizeof(path), "/api/acme/webhooks/%lld", id);
	r = th_call(&api, "GET", path, acme_admin, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "id", id);
	assert_null(strstr(r->body, SECRET));
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/acme/webhooks/999999", acme_admin, NULL);
	TH_EXPECT_ERROR(r, 404, "Webhook not found");
	th_resp_free(r);

	/* update: pause, every event, a new secret (not echoed either), description cleared */
	r = th_call(
	    &api, "PUT", path, acme_admin,
	    "{\"is_active\": false, \"events\": [\"number.updated\", \"*\"], \"secret\": \"another-secret-0123456\","
	    " \"description\": null}");
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_false(json_object_get(r->json, "is_active")));
	assert_int_equal(json_array_size(json_object_get(r->json, "events")), 1);
	assert_string_equal(json_string_value(json_array_get(json_object_get(r->json, "events"), 0)), "*");
	assert_true(json_is_null(json_object_get(r->json, "description")));
	TH_EXPECT_STR(r->json, "secret_hint", "anot…");
	assert_null(strstr(r->body, "another-secret-0123456"));
	th_resp_free(r);
	char *stored = q("SELECT secret FROM webhooks WHERE id = %lld", id);
	assert_string_equal(stored, "another-secret-0123456");
	free(stored);
	r = th_call(&api, "PUT", "/api/acme/webhooks/999999", acme_admin, "{\"is_active\": true}");
	TH_EXPECT_ERROR(r, 404, "Webhook not found");
	th_resp_free(r);

	/* no secret given: one is generated and shown this once */
	r = th_call(&api, "POST", "/api/acme/webhooks", acme_admin,
	            "{\"url\": \"http://hooks.example.com/b\", \"events\": [\"*\"]}");
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(th_json_int(r->json, "id", &gen), 0);
	const char *made = th_json_str(r->json, "secret");
	assert_non_null(made);
	assert_int_equal(strlen(made), 64);
	stored = q("SELECT secret FROM webhooks WHERE id = %lld", gen);
	assert_string_equal(stored, made);
	free(stored);
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/acme/webhooks/%lld", gen);
	r = th_call(&api, "GET", path, acme_admin, NULL);
	assert_null(json_object_get(r->json, "secret"));
	th_resp_free(r);

	/* the same URL twice in a company */
	r = th_call(&api, "POST", "/api/acme/webhooks", acme_admin,
	            "{\"url\": \"http://hooks.example.com/b\", \"events\": [\"*\"]}");
	TH_EXPECT_ERROR(r, 400, "A webhook with this URL already exists for this company");
	th_resp_free(r);

	/* validation: each names its field, and creates nothing */
	static const struct {
		const char *body, *field;
	} bad[] = {
	    {"{\"events\": [\"*\"]}", "url"},
	    {"{\"url\": 5, \"events\": [\"*\"]}", "url"},
	    {"{\"url\": \"ftp://hooks.example.com/x\", \"events\": [\"*\"]}", "url"},
	    {"{\"url\": \"http://\", \"events\": [\"*\"]}", "url"},
	    {"{\"url\": \"hooks.example.com/x\", \"events\": [\"*\"]}", "url"},
	    {"{\"url\": \"http://hooks.example.com/a b\", \"events\": [\"*\"]}", "url"},
	    {"{\"url\": \"http://hooks.example.com/x\"}", "events"},
	    {"{\"url\": \"http://hooks.example.com/x\", \"events\": []}", "events"},
	    {"{\"url\": \"http://hooks.example.com/x\", \"events\": \"*\"}", "events"},
	    {"{\"url\": \"http://hooks.example.com/x\", \"events\": [\"result.ingested\", \"call.started\"]}",
	     "events[1]"},
	    {"{\"url\": \"http://hooks.example.com/x\", \"events\": [7]}", "events[0]"},
	    {"{\"url\": \"http://hooks.example.com/x\", \"events\": [\"*\"], \"secret\": \"short\"}", "secret"},
	    {"{\"url\": \"http://hooks.example.com/x\", \"events\": [\"*\"], \"secret\": 12345678901234567}", "secret"},
	    {"{\"url\": \"http://hooks.example.com/x\", \"events\": [\"*\"], \"is_active\": \"yes\"}", "is_active"},
	    {"[1]", "body"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = th_call(&api, "POST", "/api/acme/webhooks", acme_admin, bad[i].body);
		if (r->status != 422)
			print_error("body %s\n", bad[i].body);
		TH_EXPECT_INVALID(r, bad[i].field);
		th_resp_free(r);
	}
	big = malloc(2100);
	memset(big, 'a', 2099);
	big[2099] = '\0';
	memcpy(big, "http://x.example/", 17);
	r = th_callf(&api, "POST", "/api/acme/webhooks", acme_admin, "{\"url\": \"%s\", \"events\": [\"*\"]}", big);
	TH_EXPECT_INVALID(r, "url");
	th_resp_free(r);
	memset(big, 's', 300);
	big[300] = '\0';
	r = th_callf(&api, "POST", "/api/acme/webhooks", acme_admin,
	             "{\"url\": \"http://x.example/y\", \"events\": [\"*\"], \"secret\": \"%s\"}", big);
	TH_EXPECT_INVALID(r, "secret");
	th_resp_free(r);
	r = th_callf(&api, "POST", "/api/acme/webhooks", acme_admin,
	             "{\"url\": \"http://x.example/y\", \"events\": [\"*\"], \"description\": \"%s\"}", big);
	TH_EXPECT_INVALID(r, "description");
	th_resp_free(r);
	free(big);
	assert_int_equal(qi("SELECT count(*) FROM webhooks WHERE company_id = %lld", acme_id), 2);

	/* delete: gone, then 404, its log too */
	snprintf(path, sizeof(path), "/api/acme/webhooks/%lld", id);
	r = th_call(&api, "DELETE", path, acme_admin, NULL);
	TH_EXPECT_STATUS(r, 200);
	assert_true(json_is_true(json_object_get(r->json, "deleted")));
	TH_EXPECT_INT(r->json, "id", id);
	th_resp_free(r);
	expect_no_webhook(acme_admin, id);
	webhook_delete(acme_admin, "acme", gen);
}

/* COMPAT's order: token (401) → role (403 Admins only) → company (404) → access (403). */
static void test_roles(void **state)
{
	static const char *const paths[] = {"/api/acme/webhooks", "/api/acme/webhooks/1",
	                                    "/api/acme/webhooks/1/deliveries"};
	struct th_resp *r;
	long long id;

	(void)state;
	for (size_t i = 0; i < 3; i++)
		TH_EXPECT_ADMIN_GUARDS(&api, "GET", paths[i], acme_agent, beta_admin, NULL);
	r = th_call(&api, "POST", "/api/acme/webhooks", acme_agent,
	            "{\"url\": \"http://x.example/a\", \"events\": [\"*\"]}");
	TH_EXPECT_ERROR(r, 403, "Admins only");
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/acme/webhooks", beta_admin,
	            "{\"url\": \"http://x.example/a\", \"events\": [\"*\"]}");
	TH_EXPECT_ERROR(r, 403, "Access denied to this company");
	th_resp_free(r);
	r = th_call(&api, "DELETE", "/api/acme/webhooks/1", acme_agent, NULL);
	TH_EXPECT_ERROR(r, 403, "Admins only");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/nosuch/webhooks", acme_admin, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/gone/webhooks", root_token, NULL); /* inactive */
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	/* a superuser may act on any company; a company's webhook is not another's */
	id = webhook_new(root_token, "beta", "/roles", "[\"*\"]", NULL);
	expect_no_webhook(acme_admin, id);
	webhook_delete(beta_admin, "beta", id);
}

/* WEBHOOKS_PER_COMPANY (5 here), per company. */
static void test_limit_per_company(void **state)
{
	long long ids[5];
	char path[32];
	struct th_resp *r;

	(void)state;
	for (int i = 0; i < 5; i++) {
		snprintf(path, sizeof(path), "/limit%d", i);
		ids[i] = webhook_new(beta_admin, "beta", path, "[\"*\"]", NULL);
	}
	r = th_call(&api, "POST", "/api/beta/webhooks", beta_admin,
	            "{\"url\": \"http://x.example/6\", \"events\": [\"*\"]}");
	TH_EXPECT_ERROR(r, 400, "This company already has 5 webhooks (WEBHOOKS_PER_COMPANY)");
	th_resp_free(r);
	/* another company is not counted against it */
	long long other = webhook_new(acme_admin, "acme", "/limit-acme", "[\"*\"]", NULL);
	webhook_delete(acme_admin, "acme", other);
	webhook_delete(beta_admin, "beta", ids[4]);
	ids[4] = webhook_new(beta_admin, "beta", "/limit-again", "[\"*\"]", NULL);
	for (int i = 0; i < 5; i++)
		webhook_delete(beta_admin, "beta", ids[i]);
}

/* ---- delivery ---- */

/* A signed POST per event: the body, its headers, the signature checked here with OpenSSL;
 * events of other types, of other companies, not company-scoped or malformed queue nothing. */
static void test_signed_delivery(void **state)
{
	struct hit h[4];
	char sig[72];
	long long id;

	(void)state;
	id = webhook_new(acme_admin, "acme", "/signed", "[\"result.ingested\"]", SECRET);
	char *other_type = xadd("number.updated", acme_id, "{\"number_id\": 1}");
	char *not_scoped = xadd("result.ingested", 0, "{\"x\": 1}");
	char *beta_ev = xadd("result.ingested", beta_id, "{\"x\": 2}");
	redisReply *bad = redisCommand(rc, "XADD dialer:events * type result.ingested company_id %lld data %s at 1",
	                               acme_id, "not json");
	freeReplyObject(bad);
	char *ev =
	    xadd("result.ingested", acme_id,
	         "{\"number_id\": 42, \"status\": \"CONNECTED\", \"note\": \"\xd8\xb3\xd9\x84\xd8\xa7\xd9\x85\"}");
	rx_wait("/signed", 1, 15000);
	wait_state(id, "delivered", 1, 10000);
	assert_int_equal(rx_hits("/signed", h, 4), 1);
	assert_string_equal(h[0].ctype, "application/json");
	assert_string_equal(h[0].event_id, ev);
	assert_string_equal(h[0].event_type, "result.ingested");
	assert_string_equal(h[0].attempt, "1");
	assert_int_equal(strtoll(h[0].webhook, NULL, 10), id);
	expected_signature(SECRET, h[0].body, sig);
	assert_string_equal(h[0].signature, sig);
	expected_signature("wrong-secret-wrong-secret", h[0].body, sig);
	assert_string_not_equal(h[0].signature, sig);
	json_t *b = json_loads(h[0].body, 0, NULL);
	assert_non_null(b);
	TH_EXPECT_STR(b, "id", ev);
	TH_EXPECT_STR(b, "type", "result.ingested");
	TH_EXPECT_INT(b, "company_id", acme_id);
	TH_EXPECT_STR(b, "company", "acme");
	assert_true(th_is_datetime(th_json_str(b, "at")));
	TH_EXPECT_INT(json_object_get(b, "data"), "number_id", 42);
	TH_EXPECT_STR(json_object_get(b, "data"), "note", "\xd8\xb3\xd9\x84\xd8\xa7\xd9\x85");
	json_decref(b);
	hits_free(h, 1);
	/* the entries before it were read (and acknowledged) first, and queued nothing */
	assert_int_equal(qi("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = %lld", id), 1);
	assert_int_equal(qi("SELECT count(*) FROM webhook_events WHERE event_id IN ('%s', '%s', '%s')", other_type,
	                    not_scoped, beta_ev),
	                 0);
	TH_WAIT_SQL(db_url, "SELECT count(*) FROM webhook_deliveries WHERE claimed_by IS NOT NULL", "0", 5000);
	free(other_type);
	free(not_scoped);
	free(beta_ev);
	free(ev);
	webhook_delete(acme_admin, "acme", id);
}

/* The real emitter: a schedule change through the API (api/schedule.c emits schedule.changed
 * after its commit) reaches the company's webhook. */
static void test_emitted_by_the_api(void **state)
{
	struct hit h[4];
	long long id;

	(void)state;
	id = webhook_new(acme_admin, "acme", "/emitted", "[\"schedule.changed\"]", SECRET);
	th_call_expect(&api, "PUT", "/api/acme/schedule", acme_admin,
	               "{\"enabled\": false, \"skip_holidays\": false, \"intervals\": " TH_ALL_DAY_INTERVALS "}", 200);
	rx_wait("/emitted", 1, 15000);
	assert_int_equal(rx_hits("/emitted", h, 4), 1);
	assert_string_equal(h[0].event_type, "schedule.changed");
	json_t *b = json_loads(h[0].body, 0, NULL);
	TH_EXPECT_STR(b, "type", "schedule.changed");
	TH_EXPECT_INT(b, "company_id", acme_id);
	assert_true(json_is_object(json_object_get(b, "data")));
	json_decref(b);
	char sig[72];
	expected_signature(SECRET, h[0].body, sig);
	assert_string_equal(h[0].signature, sig);
	hits_free(h, 1);
	webhook_delete(acme_admin, "acme", id);
}

static long long ms_between(const struct hit *a, const struct hit *b)
{
	return b->at_ms - a->at_ms;
}

/* 500, 500, 200: three attempts with growing delays (base 1 s, ±20%), the same signed body
 * each time, and every attempt in the delivery log, newest first. */
static void test_retry_backoff_and_log(void **state)
{
	struct hit h[4];
	char path[128], sig[72];
	struct th_resp *r;
	long long id;

	(void)state;
	id = webhook_new(acme_admin, "acme", "/flaky", "[\"*\"]", SECRET);
	char *ev = xadd("schedule.changed", acme_id, "{\"version\": 7}");
	rx_wait("/flaky", 3, 20000);
	wait_state(id, "delivered", 1, 10000);
	assert_int_equal(rx_hits("/flaky", h, 4), 3);
	long long gap1 = ms_between(&h[0], &h[1]), gap2 = ms_between(&h[1], &h[2]);
	print_message("retry gaps: %lld ms, %lld ms (base %d ms)\n", gap1, gap2, RETRY_BASE);
	assert_true(gap1 >= RETRY_BASE * 8 / 10);
	assert_true(gap2 >= 2 * RETRY_BASE * 8 / 10);
	assert_true(gap2 > gap1);
	expected_signature(SECRET, h[0].body, sig);
	for (int i = 0; i < 3; i++) {
		char n[12];
		snprintf(n, sizeof(n), "%d", i + 1);
		assert_string_equal(h[i].attempt, n);
		assert_string_equal(h[i].event_id, ev);
		assert_string_equal(h[i].body, h[0].body);
		assert_string_equal(h[i].signature, sig);
	}
	hits_free(h, 3);

	snprintf(path, sizeof(path), "/api/acme/webhooks/%lld/deliveries", id);
	r = th_call(&api, "GET", path, acme_admin, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "total", 3);
	json_t *items = json_object_get(r->json, "items");
	assert_int_equal(json_array_size(items), 3);
	for (int i = 0; i < 3; i++) {
		json_t *a = json_array_get(items, (size_t)i);
		long long dur = -1;
		TH_EXPECT_INT(a, "attempt", 3 - i);
		TH_EXPECT_STR(a, "event_id", ev);
		TH_EXPECT_STR(a, "event_type", "schedule.changed");
		TH_EXPECT_STR(a, "delivery_state", "delivered");
		TH_EXPECT_INT(a, "status_code", i == 0 ? 200 : 500);
		TH_EXPECT_STR(a, "outcome", i == 0 ? "delivered" : "retry");
		assert_true(json_is_null(json_object_get(a, "error")));
		assert_int_equal(th_json_int(a, "duration_ms", &dur), 0);
		assert_true(dur >= 0 && dur < 10000);
		assert_true(th_is_datetime(th_json_str(a, "attempted_at")));
		if (i == 0)
			assert_true(json_is_null(json_object_get(a, "next_retry_at")));
		else
			assert_true(th_is_datetime(th_json_str(a, "next_retry_at")));
	}
	th_resp_free(r);
	/* the second retry was scheduled about twice as far out as the first */
	long long d1 = qi("SELECT (extract(epoch FROM next_retry_at - created_at) * 1000)::bigint FROM webhook_attempts"
	                  " WHERE webhook_id = %lld AND attempt = 1",
	                  id),
	          d2 = qi("SELECT (extract(epoch FROM next_retry_at - created_at) * 1000)::bigint FROM webhook_attempts"
	                  " WHERE webhook_id = %lld AND attempt = 2",
	                  id);
	assert_true(d1 >= RETRY_BASE * 8 / 10 && d1 <= RETRY_BASE * 12 / 10);
	assert_true(d2 >= 2 * RETRY_BASE * 8 / 10 && d2 <= 2 * RETRY_BASE * 12 / 10);

	/* filters and paging */
	snprintf(path, sizeof(path), "/api/acme/webhooks/%lld/deliveries?outcome=retry&limit=1", id);
	r = th_call(&api, "GET", path, acme_admin, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "total", 2);
	TH_EXPECT_INT(r->json, "limit", 1);
	assert_int_equal(json_array_size(json_object_get(r->json, "items")), 1);
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/acme/webhooks/%lld/deliveries?event_id=%s&skip=2", id, ev);
	r = th_call(&api, "GET", path, acme_admin, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "total", 3);
	assert_int_equal(json_array_size(json_object_get(r->json, "items")), 1);
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/acme/webhooks/%lld/deliveries?event_id=1-0", id);
	r = th_call(&api, "GET", path, acme_admin, NULL);
	TH_EXPECT_INT(r->json, "total", 0);
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/acme/webhooks/%lld/deliveries?event_id=x'", id);
	r = th_call(&api, "GET", path, acme_admin, NULL);
	TH_EXPECT_INVALID(r, "event_id");
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/acme/webhooks/%lld/deliveries?outcome=maybe", id);
	r = th_call(&api, "GET", path, acme_admin, NULL);
	TH_EXPECT_INVALID(r, "outcome");
	th_resp_free(r);
	snprintf(path, sizeof(path), "/api/acme/webhooks/%lld/deliveries?limit=0", id);
	r = th_call(&api, "GET", path, acme_admin, NULL);
	TH_EXPECT_INVALID(r, "limit");
	th_resp_free(r);
	free(ev);
	webhook_delete(acme_admin, "acme", id);
}

/* A receiver that never answers: its attempts time out (WEBHOOK_TIMEOUT_MS), at most 2 at a time
 * (WEBHOOK_CONCURRENCY_PER_WEBHOOK), and the other webhook of the company gets all ten events
 * before the first of those timeouts (WEBHOOK_CONCURRENCY is only 4: without the per-webhook
 * cap, the hung one would hold every slot). */
static void test_timeout_does_not_block_others(void **state)
{
	long long hang, fast;
	char *ids[10];

	(void)state;
	hang = webhook_new(acme_admin, "acme", "/hang", "[\"*\"]", NULL);
	fast = webhook_new(acme_admin, "acme", "/fast", "[\"*\"]", NULL);
	long long t0 = th_now_ms();
	for (int i = 0; i < 10; i++)
		ids[i] = xadd("dialer.state", acme_id, "{\"enabled\": true}");
	wait_state(fast, "delivered", 10, 15000);
	long long took = th_now_ms() - t0;
	/* nothing of the hung webhook has finished yet: the fast one did not wait behind it */
	long long hang_done = qi("SELECT count(*) FROM webhook_attempts WHERE webhook_id = %lld", hang);
	rx_wait("/hang", 2, TIMEOUT_MS / 2); /* started with the first two of the live one */
	int hang_open = rx_count("/hang");
	print_message("10 deliveries to the live receiver in %lld ms; hung receiver: %d requests open, %lld done\n",
	              took, hang_open, hang_done);
	assert_int_equal(hang_done, 0);
	assert_int_equal(hang_open, 2);
	assert_int_equal(rx_count("/fast"), 10);
	/* the hung ones time out and are scheduled again */
	TH_WAIT_SQL(db_url,
	            "SELECT count(*) >= 2 FROM webhook_attempts a JOIN webhooks w ON w.id = a.webhook_id"
	            " WHERE w.url LIKE '%/hang' AND a.outcome = 'retry'",
	            "t", 15000);
	/* marked failing: from now on it gets one slot while it is probed */
	char *failing = q("SELECT string_agg((failing_since IS NOT NULL)::text, ',' ORDER BY id) FROM webhooks"
	                  " WHERE id IN (%lld, %lld)",
	                  hang, fast);
	assert_string_equal(failing, "true,false");
	free(failing);
	char *err = q("SELECT error FROM webhook_attempts WHERE webhook_id = %lld ORDER BY id LIMIT 1", hang);
	assert_non_null(strstr(err, "timed out"));
	free(err);
	assert_true(qi("SELECT min(duration_ms) FROM webhook_attempts WHERE webhook_id = %lld", hang) >=
	            TIMEOUT_MS - 100);
	assert_int_equal(
	    qi("SELECT count(*) FROM webhook_attempts WHERE webhook_id = %lld AND status_code IS NOT NULL", hang), 0);
	for (int i = 0; i < 10; i++)
		free(ids[i]);
	webhook_delete(acme_admin, "acme", hang);
	webhook_delete(acme_admin, "acme", fast);
	rx_release();
}

/* Events of company B never reach company A's webhooks, and the other way round. */
static void test_company_isolation(void **state)
{
	struct hit h[8];
	long long a, b;
	char *ev[10];

	(void)state;
	a = webhook_new(acme_admin, "acme", "/acme", "[\"*\"]", NULL);
	b = webhook_new(beta_admin, "beta", "/beta", "[\"*\"]", NULL);
	for (int i = 0; i < 10; i++)
		ev[i] = xadd("number.updated", i % 2 ? beta_id : acme_id, "{\"n\": 1}");
	char *stray = xadd("number.updated", 999999, "{\"n\": 2}");
	wait_state(a, "delivered", 5, 15000);
	wait_state(b, "delivered", 5, 15000);
	const char *paths[2] = {"/acme", "/beta"};
	for (int k = 0; k < 2; k++) {
		int n = rx_hits(paths[k], h, 8);
		assert_int_equal(n, 5);
		for (int i = 0; i < n; i++) {
			json_t *body = json_loads(h[i].body, 0, NULL);
			TH_EXPECT_INT(body, "company_id", k ? beta_id : acme_id);
			TH_EXPECT_STR(body, "company", k ? "beta" : "acme");
			bool mine = false;
			for (int e = k; e < 10; e += 2)
				mine = mine || !strcmp(ev[e], h[i].event_id);
			assert_true(mine);
			json_decref(body);
		}
		hits_free(h, n);
	}
	assert_int_equal(qi("SELECT count(*) FROM webhook_events WHERE event_id = '%s'", stray), 0);
	for (int i = 0; i < 10; i++)
		free(ev[i]);
	free(stray);
	webhook_delete(acme_admin, "acme", a);
	webhook_delete(beta_admin, "beta", b);
}

/* A receiver that always fails: retried until WEBHOOK_MAX_AGE_SECONDS (6 here), then failed. */
static void test_give_up(void **state)
{
	long long id;

	(void)state;
	id = webhook_new(acme_admin, "acme", "/fail", "[\"*\"]", NULL);
	char *ev = xadd("export.completed", acme_id, "{\"job_id\": 3}");
	wait_state(id, "failed", 1, (MAX_AGE_S + 10) * 1000);
	long long n = qi("SELECT count(*) FROM webhook_attempts WHERE webhook_id = %lld", id);
	assert_true(n >= 3);
	assert_int_equal(rx_count("/fail"), n);
	assert_int_equal(qi("SELECT count(*) FROM webhook_attempts WHERE webhook_id = %lld AND status_code = 503", id),
	                 n);
	char *last = q("SELECT outcome || ' ' || COALESCE(next_retry_at::text, 'none') FROM webhook_attempts"
	               " WHERE webhook_id = %lld ORDER BY id DESC LIMIT 1",
	               id);
	assert_string_equal(last, "failed none");
	free(last);
	assert_int_equal(qi("SELECT count(*) FROM webhook_attempts WHERE webhook_id = %lld AND outcome = 'retry'", id),
	                 n - 1);
	char *d = q("SELECT last_status || ' ' || attempts || ' ' || (next_attempt_at IS NULL)::text"
	            " FROM webhook_deliveries WHERE webhook_id = %lld",
	            id);
	char want[48];
	snprintf(want, sizeof(want), "503 %lld true", n);
	assert_string_equal(d, want);
	free(d);
	free(ev);
	webhook_delete(acme_admin, "acme", id);
}

/* SIGKILL while a request is in flight: the row stays leased to the dead worker until the lease
 * lapses (2 * WEBHOOK_TIMEOUT_MS + 5 s), then a new worker sends it again (within
 * WEBHOOK_MAX_AGE_SECONDS). */
static void test_sigkill_in_flight(void **state)
{
	struct hit h[4];
	long long id;

	(void)state;
	rx.hold = true;
	id = webhook_new(acme_admin, "acme", "/hold", "[\"*\"]", NULL);
	char *ev = xadd("import.completed", acme_id, "{\"job_id\": 9}");
	rx_wait("/hold", 1, 15000);
	assert_int_equal(kill(th_proc_pid(worker), SIGKILL), 0);
	assert_int_equal(th_proc_stop(worker), 128 + SIGKILL);
	worker = NULL;
	pthread_mutex_lock(&rx.mu);
	rx.hold = false;
	pthread_mutex_unlock(&rx.mu);
	rx_release();
	long long t0 = th_now_ms();
	/* the lease (9 s here) outlasts WEBHOOK_MAX_AGE_SECONDS (6 s): with it, the delivery would
	 * rightly expire instead of being sent again (test_paused_backlog_expires) */
	worker = worker_start("webhooks", "WEBHOOK_MAX_AGE_SECONDS=60");
	wait_state(id, "delivered", 1, LEASE_MS + 15000);
	print_message("re-sent %lld ms after the restart (lease %d ms)\n", th_now_ms() - t0, LEASE_MS);
	assert_int_equal(rx_hits("/hold", h, 4), 2);
	assert_string_equal(h[0].event_id, ev);
	assert_string_equal(h[1].event_id, ev);
	assert_string_equal(h[0].body, h[1].body);
	assert_string_equal(h[1].attempt, "2");
	hits_free(h, 2);
	/* the first attempt's outcome died with the worker: the log has the one that succeeded */
	char *log =
	    q("SELECT string_agg(attempt || ':' || outcome, ',') FROM webhook_attempts WHERE webhook_id = %lld", id);
	assert_string_equal(log, "2:delivered");
	free(log);
	free(ev);
	webhook_delete(acme_admin, "acme", id);
}

/* SIGKILL between reading an entry and recording it (the insert held by a table lock, then its
 * session terminated): the entry stays pending on the dead consumer, another one claims it after
 * CLAIM_IDLE_MS and queues it; it is sent once. */
static void test_sigkill_before_record(void **state)
{
	long long id;
	PGconn *lock = PQconnectdb(db_url);
	PGresult *r;

	(void)state;
	assert_int_equal(PQstatus(lock), CONNECTION_OK);
	id = webhook_new(acme_admin, "acme", "/rec", "[\"*\"]", NULL);
	r = PQexec(lock, "BEGIN; LOCK TABLE webhook_events IN EXCLUSIVE MODE");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	char *ev = xadd("result.ingested", acme_id, "{\"n\": 5}");
	/* read by the worker (pending in its group), its insert waiting for the lock */
	long long until = th_now_ms() + 15000;
	for (;;) {
		redisReply *p = redisCommand(rc, "XPENDING dialer:events webhooks");
		long long n = p && p->type == REDIS_REPLY_ARRAY && p->elements ? p->element[0]->integer : -1;
		freeReplyObject(p);
		if (n == 1)
			break;
		if (th_now_ms() > until)
			fail_msg("the entry was not read");
		th_sleep_ms(20);
	}
	TH_WAIT_SQL(db_url,
	            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
	            " AND query LIKE '%INSERT INTO webhook_events%'",
	            "1", 10000);
	assert_int_equal(kill(th_proc_pid(worker), SIGKILL), 0);
	assert_int_equal(th_proc_stop(worker), 128 + SIGKILL);
	worker = NULL;
	/* the dead worker's statement must not commit when the lock goes: end its session */
	char *killed = q("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
	                 " AND query LIKE '%%INSERT INTO webhook_events%%'");
	assert_string_equal(killed, "1");
	free(killed);
	r = PQexec(lock, "ROLLBACK");
	PQclear(r);
	PQfinish(lock);
	assert_int_equal(qi("SELECT count(*) FROM webhook_events WHERE event_id = '%s'", ev), 0);
	worker = worker_start("webhooks", NULL);
	wait_state(id, "delivered", 1, 20000);
	assert_int_equal(rx_count("/rec"), 1);
	until = th_now_ms() + 5000;
	for (;;) { /* acknowledged once recorded */
		redisReply *p = redisCommand(rc, "XPENDING dialer:events webhooks");
		long long n = p && p->type == REDIS_REPLY_ARRAY && p->elements ? p->element[0]->integer : -1;
		freeReplyObject(p);
		if (n == 0)
			break;
		if (th_now_ms() > until)
			fail_msg("the entry is still pending");
		th_sleep_ms(20);
	}
	free(ev);
	webhook_delete(acme_admin, "acme", id);
}

/* Two copies at once: every event sent exactly once (SKIP LOCKED claims). */
static void test_two_copies_send_once(void **state)
{
	enum { N = 60 };
	static struct hit h[N + 8];
	char *ids[N];
	long long id;

	(void)state;
	struct th_proc *second = worker_start("webhooks-2", NULL);
	id = webhook_new(acme_admin, "acme", "/multi", "[\"*\"]", NULL);
	for (int i = 0; i < N; i++)
		ids[i] = xadd("number.updated", acme_id, "{\"n\": 3}");
	wait_state(id, "delivered", N, 60000);
	int n = rx_hits("/multi", h, N + 8);
	assert_int_equal(n, N);
	for (int i = 0; i < n; i++)
		for (int k = i + 1; k < n; k++)
			assert_string_not_equal(h[i].event_id, h[k].event_id);
	hits_free(h, n);
	assert_int_equal(qi("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = %lld AND attempts = 1", id), N);
	assert_int_equal(qi("SELECT count(*) FROM webhook_attempts WHERE webhook_id = %lld", id), N);
	print_message("copies that sent: %lld\n",
	              qi("SELECT count(DISTINCT worker) FROM webhook_attempts WHERE webhook_id = %lld", id));
	for (int i = 0; i < N; i++)
		free(ids[i]);
	assert_int_equal(th_proc_stop(second), 0);
	webhook_delete(acme_admin, "acme", id);
}

/* Only the events some webhook subscribed to have their data parsed: data that is not JSON is
 * malformed (logged) for a subscribed type, and never looked at for another type. */
static void test_unsubscribed_types_not_parsed(void **state)
{
	long long id;
	char needle[96];

	(void)state;
	id = webhook_new(acme_admin, "acme", "/typed", "[\"result.ingested\"]", NULL);
	char *other = xadd("number.updated", acme_id, "{not json");
	char *bad = xadd("result.ingested", acme_id, "{not json either");
	char *good = xadd("result.ingested", acme_id, "{\"n\": 1}");
	wait_state(id, "delivered", 1, 15000);
	assert_int_equal(rx_count("/typed"), 1);
	snprintf(needle, sizeof(needle), "event=event_malformed stream_id=%s ", bad);
	assert_true(log_has("webhooks", needle));
	snprintf(needle, sizeof(needle), "stream_id=%s ", other);
	assert_false(log_has("webhooks", needle));
	assert_int_equal(qi("SELECT count(*) FROM webhook_events WHERE event_id IN ('%s', '%s')", other, bad), 0);
	webhook_delete(acme_admin, "acme", id);
	free(other);
	free(bad);
	free(good);
}

/* A webhook paused with deliveries queued, resumed after WEBHOOK_MAX_AGE_SECONDS: nothing old is
 * sent; retention marks them failed (expired). A worker of its own with one slot, held by a
 * receiver that does not answer (WEBHOOK_TIMEOUT_MS 30 s), so that the deliveries are queued
 * but not claimed before the pause. */
static void test_paused_backlog_expires(void **state)
{
	long long hang, paused;
	char *ev[3];

	(void)state;
	assert_int_equal(th_proc_stop(worker), 0);
	worker = worker_start_with("webhooks-expiry", "WEBHOOK_CONCURRENCY=1", "WEBHOOK_TIMEOUT_MS=30000");
	hang = webhook_new(acme_admin, "acme", "/hang", "[\"dialer.state\"]", NULL);
	paused = webhook_new(acme_admin, "acme", "/expired", "[\"number.updated\"]", NULL);
	int hung = rx_count("/hang");
	char *busy = xadd("dialer.state", acme_id, "{\"enabled\": true}");
	rx_wait("/hang", hung + 1, 15000); /* the one slot is taken */
	for (int i = 0; i < 3; i++)
		ev[i] = xadd("number.updated", acme_id, "{\"n\": 6}");
	wait_state(paused, "pending", 3, 15000);
	webhook_set_active(paused, false);
	/* a week passes */
	free(q("UPDATE webhook_deliveries SET created_at = created_at - interval '7 days' WHERE webhook_id = %lld",
	       paused));
	webhook_delete(acme_admin, "acme", hang);
	rx_release(); /* the slot is free again */
	webhook_set_active(paused, true);
	wait_state(paused, "failed", 3, 20000); /* retention runs every 10 s */
	assert_int_equal(rx_count("/expired"), 0);
	char *rows = q("SELECT string_agg(DISTINCT attempts || ' ' || last_error || ' ' || (finished_at IS NOT NULL)"
	               "::text, ',') FROM webhook_deliveries WHERE webhook_id = %lld",
	               paused);
	assert_string_equal(rows, "0 expired: not delivered within WEBHOOK_MAX_AGE_SECONDS true");
	free(rows);
	assert_int_equal(qi("SELECT count(*) FROM webhook_attempts WHERE webhook_id = %lld", paused), 0);
	char path[96];
	snprintf(path, sizeof(path), "/api/acme/webhooks/%lld", paused);
	struct th_resp *r = th_call(&api, "GET", path, acme_admin, NULL);
	TH_EXPECT_INT(r->json, "pending", 0);
	th_resp_free(r);
	assert_true(log_has("webhooks-expiry", "event=deliveries_expired count=3"));
	for (int i = 0; i < 3; i++)
		free(ev[i]);
	free(busy);
	webhook_delete(acme_admin, "acme", paused);
	assert_int_equal(th_proc_stop(worker), 0);
	worker = NULL; /* the next test starts the one it needs */
}

/* An outcome statement PostgreSQL refuses (here a trigger rejects the attempt's log row) while
 * the connection stays up: the turn's outcomes are dropped instead of retried forever, the
 * stream is still read (another webhook's event arrives), and the dropped delivery is sent
 * again once its claim lapses (9 s here: the worker gets a WEBHOOK_MAX_AGE_SECONDS longer than
 * that, or the delivery would rightly expire instead). */
static void test_refused_outcomes_dropped(void **state)
{
	long long refused, other;

	(void)state;
	assert_int_equal(th_proc_stop(worker), 0); /* none: test_paused_backlog_expires stopped its own */
	worker = worker_start("webhooks", "WEBHOOK_MAX_AGE_SECONDS=60");
	refused = webhook_new(acme_admin, "acme", "/refused", "[\"import.progress\"]", NULL);
	other = webhook_new(acme_admin, "acme", "/other", "[\"export.completed\"]", NULL);
	free(q("CREATE FUNCTION test_refuse_attempt() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
	       " IF NEW.webhook_id = %lld THEN RAISE EXCEPTION 'test: attempt refused'; END IF; RETURN NEW; END $$",
	       refused));
	free(q("CREATE TRIGGER test_refuse BEFORE INSERT ON webhook_attempts FOR EACH ROW"
	       " EXECUTE FUNCTION test_refuse_attempt()"));
	long long t0 = th_now_ms();
	char *ev1 = xadd("import.progress", acme_id, "{\"done\": 1}");
	rx_wait("/refused", 1, 15000);
	log_wait("webhooks", "event=outcomes_dropped count=1 error=\"test: attempt refused\"", 10000);
	char *ev2 = xadd("export.completed", acme_id, "{\"job_id\": 4}");
	wait_state(other, "delivered", 1, 10000);
	assert_int_equal(rx_count("/other"), 1);
	/* the refused one: unrecorded, its claim still held */
	char *d = q("SELECT state || ' ' || attempts || ' ' || (claimed_by IS NOT NULL)::text FROM webhook_deliveries"
	            " WHERE webhook_id = %lld",
	            refused);
	if (th_now_ms() - t0 < LEASE_MS - 1000)
		assert_string_equal(d, "pending 1 true");
	free(d);
	assert_int_equal(qi("SELECT count(*) FROM webhook_attempts WHERE webhook_id = %lld", refused), 0);
	free(q("DROP TRIGGER test_refuse ON webhook_attempts"));
	free(q("DROP FUNCTION test_refuse_attempt()"));
	wait_state(refused, "delivered", 1, LEASE_MS + 15000);
	assert_int_equal(rx_count("/refused"), 2);
	char *log = q("SELECT string_agg(attempt || ':' || outcome, ',') FROM webhook_attempts WHERE webhook_id = %lld",
	              refused);
	assert_string_equal(log, "2:delivered");
	free(log);
	free(ev1);
	free(ev2);
	webhook_delete(acme_admin, "acme", refused);
	webhook_delete(acme_admin, "acme", other);
	assert_int_equal(th_proc_stop(worker), 0);
	worker = NULL; /* the next test starts the one it needs */
}

/* attempted_at is when the attempt started, also when the outcome is recorded late: the
 * database refuses new sessions and the worker's is ended while its request is held; the
 * response comes during that outage, the outcome is kept, and recorded once the worker is back.
 * A worker of its own with one slot: with the request in flight it sends PostgreSQL nothing
 * (no claim), so the outcome's statement is the first to find the session gone. */
static void test_attempted_at_through_outage(void **state)
{
	const char *admin = th_env("TEST_PG_ADMIN_URL"); /* the postgres database: open throughout */
	const char *const wlog = "webhooks-outage";
	char *db = q("SELECT current_database()");
	long long id;

	(void)state;
	assert_int_equal(th_proc_stop(worker), 0); /* none: test_refused_outcomes_dropped stopped its own */
	worker = worker_start_with(wlog, "WEBHOOK_CONCURRENCY=1", "WEBHOOK_TIMEOUT_MS=10000");
	int held = rx_count("/hold");
	pthread_mutex_lock(&rx.mu);
	rx.hold = true;
	pthread_mutex_unlock(&rx.mu);
	id = webhook_new(acme_admin, "acme", "/hold", "[\"*\"]", NULL);
	long long before = wall_us();
	char *ev = xadd("import.completed", acme_id, "{\"job_id\": 11}");
	rx_wait("/hold", held + 1, 15000);
	long long hit = wall_us();
	/* the outage: no new session, and the worker's ended (its last statement was the claim) */
	free(th_sqlf(admin, "ALTER DATABASE \"%s\" ALLOW_CONNECTIONS false", db));
	long long until = th_now_ms() + 10000;
	while (th_sqlf_int(admin,
	                   "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '%s'"
	                   " AND backend_type = 'client backend'"
	                   " AND query LIKE '%%webhook_deliveries%%FOR UPDATE SKIP LOCKED%%'",
	                   db) < 1) {
		if (th_now_ms() > until) {
			free(th_sqlf(admin, "ALTER DATABASE \"%s\" ALLOW_CONNECTIONS true", db));
			fail_msg("the worker's session was not found");
		}
		th_sleep_ms(20);
	}
	long long released = wall_us();
	pthread_mutex_lock(&rx.mu);
	rx.hold = false;
	pthread_mutex_unlock(&rx.mu);
	rx_release(); /* 503: recorded after the outage, retried, then 200 */
	bool kept = false;
	until = th_now_ms() + 10000;
	while (!(kept = log_has(wlog, "event=outcomes_not_recorded count=1")) && th_now_ms() < until)
		th_sleep_ms(50);
	th_sleep_ms(1000);
	long long reopened = wall_us();
	free(th_sqlf(admin, "ALTER DATABASE \"%s\" ALLOW_CONNECTIONS true", db));
	free(db);
	assert_true(kept);
	wait_state(id, "delivered", 1, 20000);
	assert_int_equal(rx_count("/hold"), held + 2); /* the outcome was kept, not the request sent again */
	char *first = q("SELECT outcome || ' ' || COALESCE(status_code, 0) || ' ' || duration_ms || ' '"
	                " || (extract(epoch FROM attempted_at) * 1000000)::bigint || ' '"
	                " || (extract(epoch FROM created_at) * 1000000)::bigint"
	                " FROM webhook_attempts WHERE webhook_id = %lld AND attempt = 1",
	                id);
	char outcome[16];
	long long status = 0, dur = -1, attempted = 0, recorded = 0;
	assert_non_null(first);
	assert_int_equal(sscanf(first, "%15s %lld %lld %lld %lld", outcome, &status, &dur, &attempted, &recorded), 5);
	print_message("attempt 1: started %lld us after the XADD, %lld ms, recorded %lld ms after its start\n",
	              attempted - before, dur, (recorded - attempted) / 1000);
	assert_string_equal(outcome, "retry");
	assert_int_equal(status, 503);
	assert_true(recorded >= reopened);                    /* recorded late */
	assert_true(attempted >= before && attempted <= hit); /* yet its start is the request's */
	assert_true(dur >= (released - hit) / 1000 && dur * 1000 < reopened - hit);
	free(first);
	/* the API shows the same instant */
	char path[128];
	snprintf(path, sizeof(path), "/api/acme/webhooks/%lld/deliveries?outcome=retry", id);
	struct th_resp *r = th_call(&api, "GET", path, acme_admin, NULL);
	TH_EXPECT_STATUS(r, 200);
	char *want = q("SELECT api_ts(attempted_at) FROM webhook_attempts WHERE webhook_id = %lld AND attempt = 1", id);
	TH_EXPECT_STR(json_array_get(json_object_get(r->json, "items"), 0), "attempted_at", want);
	free(want);
	th_resp_free(r);
	free(ev);
	webhook_delete(acme_admin, "acme", id);
	assert_int_equal(th_proc_stop(worker), 0);
	worker = NULL;
}

/* The consumer group deleted under the worker (an operator, or Redis lost its data): it is created
 * again after the newest entry the worker recorded, so an event added meanwhile is delivered and
 * the stream's older events are not read again (the new webhook would get them all). */
static void test_group_lost(void **state)
{
	struct hit h[4];
	(void)state;
	assert_int_equal(th_proc_stop(worker), 0);
	worker = worker_start("webhooks-lost", NULL);
	long long a = webhook_new(acme_admin, "acme", "/lost", "[\"*\"]", NULL);
	char *e1 = xadd("number.updated", acme_id, "{\"n\": 1}");
	wait_state(a, "delivered", 1, 15000);
	freeReplyObject(redisCommand(rc, "XGROUP DESTROY dialer:events webhooks"));
	char *e2 = xadd("number.updated", acme_id, "{\"n\": 2}");
	wait_state(a, "delivered", 2, 15000);
	th_sleep_ms(1500); /* anything replayed would be recorded by now */
	assert_int_equal(qi("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = %lld", a), 2);
	int n = rx_hits("/lost", h, 4);
	assert_int_equal(n, 2);
	assert_true(!strcmp(h[0].event_id, e1) || !strcmp(h[1].event_id, e1));
	assert_true(!strcmp(h[0].event_id, e2) || !strcmp(h[1].event_id, e2));
	hits_free(h, n);
	free(e1);
	free(e2);
	webhook_delete(acme_admin, "acme", a);
}

/* By default a delivery may not reach loopback or private addresses (checked after DNS). */
static void test_private_addresses_refused(void **state)
{
	long long id;

	(void)state;
	assert_int_equal(th_proc_stop(worker), 0);
	worker = worker_start("webhooks-private", "WEBHOOK_ALLOW_PRIVATE=false");
	id = webhook_new(acme_admin, "acme", "/private", "[\"*\"]", NULL);
	char *ev = xadd("number.updated", acme_id, "{\"n\": 4}");
	TH_WAIT_SQL(db_url,
	            "SELECT count(*) > 0 FROM webhook_attempts a JOIN webhooks w ON w.id = a.webhook_id"
	            " WHERE w.url LIKE '%/private'",
	            "t", 15000);
	char *err = q("SELECT error FROM webhook_attempts WHERE webhook_id = %lld ORDER BY id LIMIT 1", id);
	assert_string_equal(err, "address not allowed (loopback, private or reserved network)");
	free(err);
	assert_int_equal(rx_count("/private"), 0);
	free(ev);
	webhook_delete(acme_admin, "acme", id);
	assert_int_equal(th_proc_stop(worker), 0); /* the last test: the teardown has nothing to stop */
	worker = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crud_and_validation),
	    cmocka_unit_test(test_roles),
	    cmocka_unit_test(test_limit_per_company),
	    cmocka_unit_test(test_signed_delivery),
	    cmocka_unit_test(test_emitted_by_the_api),
	    cmocka_unit_test(test_retry_backoff_and_log),
	    cmocka_unit_test(test_timeout_does_not_block_others),
	    cmocka_unit_test(test_company_isolation),
	    cmocka_unit_test(test_give_up),
	    cmocka_unit_test(test_sigkill_in_flight),
	    cmocka_unit_test(test_sigkill_before_record),
	    cmocka_unit_test(test_two_copies_send_once),
	    cmocka_unit_test(test_unsubscribed_types_not_parsed),
	    cmocka_unit_test(test_paused_backlog_expires),
	    cmocka_unit_test(test_refused_outcomes_dropped),
	    cmocka_unit_test(test_attempted_at_through_outage),
	    cmocka_unit_test(test_group_lost),
	    cmocka_unit_test(test_private_addresses_refused),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
