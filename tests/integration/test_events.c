/* Real-time events end to end (issue 7 items 3 and 5): the real dialer-api hands GET /api/events
 * and GET /ws/updates to the real dialer-events, which fans out the dialer:events stream.
 * Events come from the real emitters: a schedule PUT (API), a reported result applied by
 * dialer-results, an upload run by dialer-import, dialer.state published by dialer-scheduler.
 * Checked: auth and role answers; an SSE client (libcurl) gets events in stream order and only
 * its company's (an admin of acme never sees beta's, a superuser sees both); Last-Event-ID
 * resumes without loss or repeat; a client that does not read is dropped and told while a fast
 * one gets everything; a WebSocket client (libwebsockets' client API) subscribes (seed 004's
 * messages) and receives the same events, and is told only of the types its scope lets it have;
 * reals keep 15 digits (10.1, not 10.099999999999999) on both; at SIGTERM an SSE client is told
 * ("event: dropped", reason shutdown) before its connection closes, a WebSocket client gets close
 * 1001 "shutdown", and dialer-events exits 0 within its drain deadline; an SSE client that
 * dialer-events does not take (it is down, or at EVENTS_MAX_CLIENTS) gets 200 and "event:
 * dropped", which EventSource retries (a WebSocket one 503). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <libwebsockets.h>

#include "harness.h"

#define MAX_EVENTS    4096
#define SLOW_BUFFER   "262144" /* EVENTS_CLIENT_BUFFER_BYTES of this run */
#define BURST         400      /* events of the slow-client run */
#define BURST_PAYLOAD 3000     /* bytes of each one's data */

static struct th_api api;
static char *db_url, *root_token, *acme_token, *beta_token, *agent_token;
static struct th_proc *events_proc, *results_proc, *import_proc, *sched_proc;
static long long acme_id, beta_id;
static char sock_kv[256], data_kv[256], data_dir[200];

/* ---------------------------------------------------------------- SSE over libcurl */

struct sse_event {
	char id[48];
	char type[40];
	char *data;
	json_t *json; /* data parsed */
};

struct sse {
	CURL *h;
	CURLM *m;
	struct curl_slist *hdrs;
	char *buf;
	size_t len;
	struct sse_event ev[MAX_EVENTS];
	int n;
	long status;
	bool done;
};

static size_t sse_write(char *p, size_t sz, size_t nm, void *arg)
{
	struct sse *s = arg;
	size_t n = sz * nm;
	s->buf = realloc(s->buf, s->len + n + 1);
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	s->buf[s->len] = '\0';
	/* complete blocks ("...\n\n") become events; comments and retry: lines are skipped */
	char *end;
	while ((end = strstr(s->buf, "\n\n"))) {
		*end = '\0';
		struct sse_event e = {0};
		for (char *line = strtok(s->buf, "\n"); line; line = strtok(NULL, "\n")) {
			if (!strncmp(line, "id: ", 4))
				snprintf(e.id, sizeof(e.id), "%s", line + 4);
			else if (!strncmp(line, "event: ", 7))
				snprintf(e.type, sizeof(e.type), "%s", line + 7);
			else if (!strncmp(line, "data: ", 6))
				e.data = strdup(line + 6);
		}
		if (e.type[0] && s->n < MAX_EVENTS) {
			e.json = e.data ? json_loads(e.data, 0, NULL) : NULL;
			s->ev[s->n++] = e;
		} else {
			free(e.data);
		}
		size_t used = (size_t)(end + 2 - s->buf);
		memmove(s->buf, end + 2, s->len - used + 1);
		s->len -= used;
	}
	return n;
}

/* Opens GET /api/events?query as token (NULL: none), with Last-Event-ID last (may be NULL). */
static struct sse *sse_open(const char *token, const char *query, const char *last)
{
	struct sse *s = calloc(1, sizeof(*s));
	char url[1024], h[1024];
	snprintf(url, sizeof(url), "%s/api/events%s%s", api.base_url, query ? "?" : "", query ? query : "");
	s->h = curl_easy_init();
	s->m = curl_multi_init();
	curl_easy_setopt(s->h, CURLOPT_URL, url);
	curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, sse_write);
	curl_easy_setopt(s->h, CURLOPT_WRITEDATA, s);
	if (token) {
		snprintf(h, sizeof(h), "Authorization: Bearer %s", token);
		s->hdrs = curl_slist_append(s->hdrs, h);
	}
	if (last) {
		snprintf(h, sizeof(h), "Last-Event-ID: %s", last);
		s->hdrs = curl_slist_append(s->hdrs, h);
	}
	curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, s->hdrs);
	curl_multi_add_handle(s->m, s->h);
	return s;
}

/* Runs the transfer for up to ms. */
static void sse_pump(struct sse *s, int ms)
{
	long long end = th_now_ms() + ms;
	do {
		int running = 0, nfds;
		curl_multi_perform(s->m, &running);
		curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
		if (!running) {
			s->done = true;
			return;
		}
		curl_multi_poll(s->m, NULL, 0, 20, &nfds);
	} while (th_now_ms() < end);
}

/* Pumps until the stream has answered (headers read), 10 s at most; returns the status. */
static long sse_status(struct sse *s)
{
	for (long long end = th_now_ms() + 10000; !s->status && !s->done && th_now_ms() < end;)
		sse_pump(s, 50);
	return s->status;
}

/* Pumps until n events (of any type) have come, timeout_ms at most. */
static void sse_wait(struct sse *s, int n, int timeout_ms)
{
	for (long long end = th_now_ms() + timeout_ms; s->n < n && !s->done && th_now_ms() < end;)
		sse_pump(s, 50);
}

/* Index of the first event of type after from (-1: none yet), pumping up to timeout_ms. */
static int sse_find(struct sse *s, const char *type, int from, int timeout_ms)
{
	long long end = th_now_ms() + timeout_ms;
	for (;;) {
		for (int i = from; i < s->n; i++)
			if (!strcmp(s->ev[i].type, type))
				return i;
		if (s->done || th_now_ms() >= end)
			return -1;
		sse_pump(s, 50);
	}
}

/* Whether dialer-events took s: 200, still open a moment later, no "event: dropped". (A client
 * it does not take gets 200 too, for EventSource's sake, and a stream that ends at once.) */
static bool sse_streaming(struct sse *s)
{
	if (sse_status(s) != 200)
		return false;
	sse_pump(s, 200);
	return !s->done && sse_find(s, "dropped", 0, 0) < 0;
}

static void sse_close(struct sse *s)
{
	curl_multi_remove_handle(s->m, s->h);
	curl_easy_cleanup(s->h);
	curl_multi_cleanup(s->m);
	curl_slist_free_all(s->hdrs);
	for (int i = 0; i < s->n; i++) {
		free(s->ev[i].data);
		json_decref(s->ev[i].json);
	}
	free(s->buf);
	free(s);
}

/* ---------------------------------------------------------------- helpers */

static redisContext *redis(void)
{
	const char *url = th_env("REDIS_URL"); /* redis://HOST:PORT/DB */
	char host[64];
	int port = 0;
	assert_int_equal(sscanf(url, "redis://%63[^:]:%d", host, &port), 2);
	redisContext *c = redisConnect(host, port);
	assert_non_null(c);
	assert_int_equal(c->err, 0);
	return c;
}

/* XADDs an event straight to the stream, as any emitter does; returns its id (caller frees). */
static char *xadd(redisContext *c, const char *type, long long company, const char *data)
{
	char cid[24];
	snprintf(cid, sizeof(cid), "%lld", company);
	const char *argv[] = {"XADD", "dialer:events", "MAXLEN", "~",    "100000", "*",  "type",
	                      type,   "company_id",    cid,      "data", data,     "at", "0"};
	redisReply *r = redisCommandArgv(c, 14, argv, NULL);
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	char *id = strdup(r->str);
	freeReplyObject(r);
	return id;
}

static int events_up(void)
{
	char log_kv[64];
	snprintf(log_kv, sizeof(log_kv), "EVENTS_CLIENT_BUFFER_BYTES=%s", SLOW_BUFFER);
	events_proc = th_dialer_start("dialer-events", db_url, "events", sock_kv, log_kv, "EVENTS_HEARTBEAT_SECONDS=1",
	                              "METRICS_PUSH_SECONDS=1", NULL);
	if (!events_proc)
		return -1;
	/* ready once a handoff gets a stream: poll with a superuser SSE request */
	for (long long end = th_now_ms() + 20000; th_now_ms() < end; th_sleep_ms(100)) {
		struct sse *s = sse_open(root_token, NULL, NULL);
		bool up = sse_streaming(s);
		sse_close(s);
		if (up)
			return 0;
	}
	fprintf(stderr, "dialer-events did not take a client\n");
	return -1;
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(sock_kv, sizeof(sock_kv), "EVENTS_SOCKET=%s/%s-events.sock", th_tmp_dir(), th_test_name());
	snprintf(data_dir, sizeof(data_dir), "%s/%s-data", th_tmp_dir(), th_test_name());
	snprintf(data_kv, sizeof(data_kv), "DATA_DIR=%s", data_dir);
	if (th_setup_api(&api, &db_url, &root_token, data_kv, "JOB_WAIT_SECONDS=10", NULL) < 0)
		return -1;
	acme_id = th_create_company(&api, root_token, "acme", "Acme", true);
	beta_id = th_create_company(&api, root_token, "beta", "Beta", true);
	acme_token = th_create_user(&api, root_token, "acme", "acme-admin", "adminpass1", "ADMIN");
	beta_token = th_create_user(&api, root_token, "beta", "beta-admin", "adminpass1", "ADMIN");
	agent_token = th_create_user(&api, root_token, "acme", "acme-agent", "agentpass1", "AGENT");
	if (!acme_token || !beta_token || !agent_token)
		return -1;
	results_proc = th_dialer_start("dialer-results", db_url, "results", NULL);
	import_proc = th_dialer_start("dialer-import", db_url, "import", data_kv, NULL);
	if (!results_proc || !import_proc)
		return -1;
	return events_up();
}

static int group_teardown(void **state)
{
	(void)state;
	int e = th_proc_stop(events_proc), r = th_proc_stop(results_proc), i = th_proc_stop(import_proc),
	    s = th_proc_stop(sched_proc);
	free(acme_token);
	free(beta_token);
	free(agent_token);
	int st = th_teardown_api(&api, &db_url, &root_token);
	if (e || r || i || s)
		fprintf(stderr, "exit statuses: events %d results %d import %d scheduler %d\n", e, r, i, s);
	return st == 0 && e == 0 && r == 0 && i == 0 && s == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- tests */

/* Who may open the streams, and the API's answers before any handoff. */
static void test_auth(void **state)
{
	(void)state;
	struct th_resp *r = th_call(&api, "GET", "/api/events", NULL, NULL);
	TH_EXPECT_ERROR(r, 401, "Not authenticated");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/events", TH_BAD_TOKEN, NULL);
	TH_EXPECT_ERROR(r, 401, "Could not validate credentials");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/events", agent_token, NULL); /* agents: their own numbers only */
	TH_EXPECT_ERROR(r, 403, "Admins only");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/events?company=beta", acme_token, NULL);
	TH_EXPECT_ERROR(r, 403, "Access denied to this company");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/events?company=nope", root_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/events?types=result.ingested,bogus", acme_token, NULL);
	TH_EXPECT_INVALID(r, "types");
	th_resp_free(r);
	const char *bad_last[] = {"Last-Event-ID: yesterday", NULL};
	char url[256];
	snprintf(url, sizeof(url), "%s/api/events", api.base_url);
	r = th_http("GET", url, acme_token, NULL, NULL, bad_last);
	TH_EXPECT_INVALID(r, "Last-Event-ID");
	th_resp_free(r);
	r = th_call(&api, "GET", "/ws/updates", acme_token, NULL); /* no Upgrade header */
	TH_EXPECT_ERROR(r, 400, NULL);
	th_resp_free(r);

	/* ?token= (EventSource cannot set headers) opens the stream as the header does */
	char q[1024];
	snprintf(q, sizeof(q), "token=%s", acme_token);
	struct sse *s = sse_open(NULL, q, NULL);
	assert_int_equal(sse_status(s), 200);
	char *ct = NULL;
	curl_easy_getinfo(s->h, CURLINFO_CONTENT_TYPE, &ct);
	assert_non_null(ct);
	assert_non_null(strstr(ct, "text/event-stream"));
	sse_close(s);
}

/* Real emitters, scoped: acme's admin sees acme's events only, beta's admin beta's only, the
 * superuser both, each stream in stream order. */
static void test_scoping_real_emitters(void **state)
{
	(void)state;
	struct sse *acme = sse_open(acme_token, NULL, NULL), *beta = sse_open(beta_token, NULL, NULL),
	           *root = sse_open(root_token, NULL, NULL);
	assert_int_equal(sse_status(acme), 200);
	assert_int_equal(sse_status(beta), 200);
	assert_int_equal(sse_status(root), 200);

	/* schedule.changed (api/schedule.c), for each company */
	th_open_company(&api, root_token, "acme", 100000);
	th_call_expect(&api, "PUT", "/api/beta/schedule", root_token, "{\"skip_holidays\": true}", 200);
	int a = sse_find(acme, "schedule.changed", 0, 10000), b = sse_find(beta, "schedule.changed", 0, 10000);
	assert_true(a >= 0 && b >= 0);
	TH_EXPECT_INT(acme->ev[a].json, "company_id", acme_id);
	TH_EXPECT_STR(json_object_get(acme->ev[a].json, "data"), "company", "acme");
	assert_true(json_is_array(json_object_get(json_object_get(acme->ev[a].json, "data"), "intervals")));
	TH_EXPECT_INT(beta->ev[b].json, "company_id", beta_id);

	/* result.ingested (dialer-results, after its commit) */
	struct th_resp *r =
	    th_call(&api, "POST", "/api/dialer/report-result", TH_DIALER_TOKEN,
	            "{\"company\": \"acme\", \"phone_number\": \"09120000001\", \"status\": \"CONNECTED\","
	            " \"attempted_at\": \"2026-02-18T10:00:00.123456+00:00\", \"user_message\": \"hi\"}");
	TH_EXPECT_STATUS(r, 202);
	const char *sid = th_json_str(r->json, "stream_id");
	int k = sse_find(acme, "result.ingested", 0, 15000);
	assert_true(k >= 0);
	json_t *d = json_object_get(acme->ev[k].json, "data");
	TH_EXPECT_INT(d, "count", 1);
	json_t *res0 = json_array_get(json_object_get(d, "results"), 0);
	TH_EXPECT_STR(res0, "stream_id", sid);
	TH_EXPECT_STR(res0, "phone_number", "09120000001");
	TH_EXPECT_STR(res0, "status", "CONNECTED");
	TH_EXPECT_STR(res0, "user_message", "hi");
	th_resp_free(r);

	/* the superuser saw acme's and beta's; all three in stream order */
	assert_true(sse_find(root, "result.ingested", 0, 10000) >= 0);
	sse_pump(acme, 300);
	sse_pump(beta, 300);
	int root_acme = 0, root_beta = 0;
	for (int i = 0; i < root->n; i++) {
		long long cid = 0;
		th_json_int(root->ev[i].json, "company_id", &cid);
		root_acme += cid == acme_id;
		root_beta += cid == beta_id;
	}
	assert_true(root_acme >= 2 && root_beta >= 1);
	struct sse *all[] = {acme, beta, root};
	for (int c = 0; c < 3; c++)
		for (int i = 0; i < all[c]->n; i++) {
			struct sse_event *e = &all[c]->ev[i];
			long long cid = -1;
			assert_int_equal(th_json_int(e->json, "company_id", &cid), 0);
			TH_EXPECT_STR(e->json, "event", e->type);
			TH_EXPECT_STR(e->json, "id", e->id);
			if (c == 0)
				assert_int_equal(cid, acme_id); /* acme never sees beta's */
			if (c == 1)
				assert_int_equal(cid, beta_id);
			if (i > 0)
				assert_true(strcmp(e->id, all[c]->ev[i - 1].id) != 0);
		}
	/* ids increase (stream order) */
	for (int c = 0; c < 3; c++)
		for (int i = 1; i < all[c]->n; i++) {
			unsigned long long m1, s1, m2, s2;
			assert_int_equal(sscanf(all[c]->ev[i - 1].id, "%llu-%llu", &m1, &s1), 2);
			assert_int_equal(sscanf(all[c]->ev[i].id, "%llu-%llu", &m2, &s2), 2);
			assert_true(m1 < m2 || (m1 == m2 && s1 < s2));
		}
	sse_close(acme);
	sse_close(beta);
	sse_close(root);
}

/* An upload run by dialer-import: import.completed (and the job's shape) on acme's stream. */
static void test_import_events(void **state)
{
	(void)state;
	struct sse *s = sse_open(acme_token, "types=import.progress,import.completed", NULL);
	assert_int_equal(sse_status(s), 200);
	const char *body = "--b0\r\nContent-Disposition: form-data; name=\"file\"; filename=\"n.csv\"\r\n"
	                   "Content-Type: text/csv\r\n\r\nphone\n09121110001\n09121110002\nbad\n\r\n--b0--\r\n";
	char url[256];
	snprintf(url, sizeof(url), "%s/api/numbers/upload", api.base_url);
	struct th_resp *r = th_http("POST", url, acme_token, "multipart/form-data; boundary=b0", body, NULL);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	int k = sse_find(s, "import.completed", 0, 15000);
	assert_true(k >= 0);
	json_t *job = json_object_get(s->ev[k].json, "data");
	TH_EXPECT_STR(job, "kind", "import");
	TH_EXPECT_STR(job, "status", "completed");
	TH_EXPECT_INT(json_object_get(job, "result"), "inserted", 2);
	TH_EXPECT_INT(s->ev[k].json, "company_id", acme_id);
	for (int i = 0; i < s->n; i++) /* the filter: nothing but import events */
		assert_true(!strncmp(s->ev[i].type, "import.", 7));
	sse_close(s);
}

/* dialer.state from dialer-scheduler when acme's published decision changes. */
static void test_dialer_state(void **state)
{
	(void)state;
	struct sse *s = sse_open(acme_token, "types=dialer.state", NULL);
	assert_int_equal(sse_status(s), 200);
	sched_proc = th_dialer_start("dialer-scheduler", db_url, "scheduler", NULL);
	assert_non_null(sched_proc);
	int k = sse_find(s, "dialer.state", 0, 20000); /* a new leader announces every company */
	assert_true(k >= 0);
	json_t *d = json_object_get(s->ev[k].json, "data");
	assert_true(json_is_boolean(json_object_get(d, "allowed")));
	/* then a change: switched off */
	th_call_expect(&api, "PUT", "/api/acme/schedule", acme_token, "{\"enabled\": false}", 200);
	int j;
	for (j = k + 1;; j++) {
		j = sse_find(s, "dialer.state", j, 15000);
		assert_true(j >= 0);
		if (json_is_string(json_object_get(json_object_get(s->ev[j].json, "data"), "reason")) &&
		    !strcmp(json_string_value(json_object_get(json_object_get(s->ev[j].json, "data"), "reason")),
		            "disabled"))
			break;
	}
	sse_close(s);
}

/* Last-Event-ID: the events after it, each once, then live ones. */
static void test_resume(void **state)
{
	(void)state;
	redisContext *c = redis();
	struct sse *s = sse_open(acme_token, "types=number.updated", NULL);
	assert_int_equal(sse_status(s), 200);
	char *ids[9];
	char data[64];
	for (int i = 0; i < 3; i++) {
		snprintf(data, sizeof(data), "{\"seq\": %d}", i);
		ids[i] = xadd(c, "number.updated", acme_id, data);
	}
	sse_wait(s, 3, 10000);
	assert_int_equal(s->n, 3);
	char last[48];
	snprintf(last, sizeof(last), "%s", s->ev[2].id);
	assert_string_equal(last, ids[2]);
	sse_close(s);
	/* while it is away: three more of acme's, and beta's, which it must not get */
	for (int i = 3; i < 6; i++) {
		snprintf(data, sizeof(data), "{\"seq\": %d}", i);
		ids[i] = xadd(c, "number.updated", acme_id, data);
		free(xadd(c, "number.updated", beta_id, "{\"other\": true}"));
	}
	s = sse_open(acme_token, "types=number.updated", last);
	assert_int_equal(sse_status(s), 200);
	sse_wait(s, 3, 10000);
	/* then live ones */
	for (int i = 6; i < 9; i++) {
		snprintf(data, sizeof(data), "{\"seq\": %d}", i);
		ids[i] = xadd(c, "number.updated", acme_id, data);
	}
	sse_wait(s, 6, 10000);
	sse_pump(s, 500); /* nothing more may come */
	assert_int_equal(s->n, 6);
	for (int i = 0; i < 6; i++) {
		assert_string_equal(s->ev[i].id, ids[i + 3]);
		TH_EXPECT_INT(json_object_get(s->ev[i].json, "data"), "seq", i + 3);
	}
	sse_close(s);
	/* resuming from before the oldest entry left says so: "event: gap" */
	redisReply *t = redisCommand(c, "XTRIM dialer:events MINID %s", ids[4]);
	assert_non_null(t);
	freeReplyObject(t);
	s = sse_open(acme_token, "types=number.updated", ids[0]);
	assert_int_equal(sse_status(s), 200);
	assert_true(sse_find(s, "gap", 0, 5000) >= 0);
	sse_close(s);
	for (int i = 0; i < 9; i++)
		free(ids[i]);
	redisFree(c);
}

/* A raw client that sends the request and then does not read, with a tiny receive buffer. */
static int stalled_client(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), small = 4096;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)api.port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	char req[1024];
	int n = snprintf(req, sizeof(req),
	                 "GET /api/events?types=number.updated HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n",
	                 acme_token);
	assert_int_equal(write(fd, req, (size_t)n), n);
	return fd;
}

struct burst {
	char last_id[48];
	int slow_fd; /* the stalled client: read only once the burst is out */
	char *slow;  /* what it received, to its end */
	size_t slow_len;
};

/* Everything the stalled client has received, until the server closes it (15 s at most). */
static void read_stalled(struct burst *b)
{
	size_t cap = 8 << 20;
	b->slow = malloc(cap + 1);
	b->slow_len = 0;
	for (long long end = th_now_ms() + 15000; th_now_ms() < end && b->slow_len < cap;) {
		struct pollfd p = {.fd = b->slow_fd, .events = POLLIN};
		if (poll(&p, 1, 200) <= 0)
			continue;
		ssize_t n = read(b->slow_fd, b->slow + b->slow_len, cap - b->slow_len);
		if (n <= 0)
			break;
		b->slow_len += (size_t)n;
	}
	b->slow[b->slow_len] = '\0';
}

/* XADDs BURST large number.updated events for acme (b->last_id: the last one's id). */
static void add_burst(struct burst *b)
{
	redisContext *c = redis();
	char *data = malloc(BURST_PAYLOAD + 64);
	memset(data, 0, BURST_PAYLOAD + 64);
	for (int i = 0; i < BURST; i++) {
		int k = snprintf(data, 64, "{\"seq\": %d, \"pad\": \"", i);
		memset(data + k, 'x', BURST_PAYLOAD);
		strcpy(data + k + BURST_PAYLOAD, "\"}");
		char *id = xadd(c, "number.updated", acme_id, data);
		snprintf(b->last_id, sizeof(b->last_id), "%s", id);
		free(id);
	}
	free(data);
	redisFree(c);
}

static void *burst_only_thread(void *arg)
{
	add_burst(arg);
	return NULL;
}

static void *burst_thread(void *arg)
{
	struct burst *b = arg;
	add_burst(b);
	/* the stalled client starts reading a moment later, within the server's close grace */
	th_sleep_ms(1000);
	read_stalled(b);
	return NULL;
}

/* A stalled client (b->slow_fd) and one that reads (returned), both handed over; then BURST
 * events from thread run (b), which the one that reads has all received on return. */
static struct sse *burst_clients(struct burst *b, void *(*run)(void *))
{
	b->slow_fd = stalled_client();
	struct sse *fast = sse_open(acme_token, "types=number.updated", NULL);
	assert_int_equal(sse_status(fast), 200);
	th_sleep_ms(300); /* the stalled one is handed over too */
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, run, b), 0);
	long long t0 = th_now_ms();
	while (fast->n < BURST && th_now_ms() - t0 < 30000)
		sse_pump(fast, 50);
	pthread_join(t, NULL);
	assert_int_equal(fast->n, BURST); /* every event, in order, to the client that reads */
	assert_string_equal(fast->ev[BURST - 1].id, b->last_id);
	return fast;
}

/* A client that does not read is dropped (and told) once EVENTS_CLIENT_BUFFER_BYTES is
 * unsent; a fast one gets every event meanwhile. */
static void test_slow_client_dropped(void **state)
{
	(void)state;
	struct burst b = {0};
	struct sse *fast = burst_clients(&b, burst_thread);
	int slow = b.slow_fd;
	for (int i = 0; i < BURST; i++)
		TH_EXPECT_INT(json_object_get(fast->ev[i].json, "data"), "seq", i);
	assert_string_equal(fast->ev[BURST - 1].id, b.last_id);
	/* the stalled one: what was sent before the drop, then "event: dropped", then the end */
	char *all = b.slow;
	close(slow);
	assert_non_null(strstr(all, "event: dropped"));
	assert_non_null(strstr(all, "\"reason\":\"slow_client\""));
	/* it got fewer than all of them */
	int got = 0;
	for (char *p = all; (p = strstr(p, "event: number.updated")); p++)
		got++;
	assert_true(got < BURST);
	free(all);
	sse_close(fast);
}

/* ---------------------------------------------------------------- WebSocket (libwebsockets client) */

struct wsclient {
	char *msgs[256];
	int n;
	bool established, closed;
	char rx[65536];
	size_t rxlen;
	const char *to_send[4];
	int nsend, sent;
	char path[1024];
	int close_code; /* of the server's close frame (0: none came) */
	char close_reason[64];
};

static int ws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct wsclient *w = lws_get_opaque_user_data(wsi);
	(void)user;
	switch (reason) {
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		w->established = true;
		lws_callback_on_writable(wsi);
		break;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (w->rxlen + len < sizeof(w->rx)) {
			memcpy(w->rx + w->rxlen, in, len);
			w->rxlen += len;
		}
		if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
			if (w->n < 256)
				w->msgs[w->n++] = strndup(w->rx, w->rxlen);
			w->rxlen = 0;
		}
		break;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (w->sent < w->nsend) {
			unsigned char buf[LWS_PRE + 512];
			size_t n = strlen(w->to_send[w->sent]);
			memcpy(buf + LWS_PRE, w->to_send[w->sent], n);
			if (lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT) < (int)n)
				return -1;
			w->sent++;
			if (w->sent < w->nsend)
				lws_callback_on_writable(wsi);
		}
		break;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: /* in: the close frame's status (2 bytes), reason */
		if (len >= 2) {
			const unsigned char *p = in;
			w->close_code = p[0] << 8 | p[1];
			snprintf(w->close_reason, sizeof(w->close_reason), "%.*s", (int)(len - 2), (const char *)p + 2);
		}
		break;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
	case LWS_CALLBACK_CLIENT_CLOSED:
		w->closed = true;
		break;
	default:
		break;
	}
	return 0;
}

static const struct lws_protocols ws_protocols[] = {{"test", ws_cb, 0, 65536, 0, NULL, 0},
                                                    {NULL, NULL, 0, 0, 0, NULL, 0}};

static struct lws_context *ws_context(void)
{
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof(info));
	lws_set_log_level(LLL_ERR, NULL);
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = ws_protocols;
	info.gid = (gid_t)-1;
	info.uid = (uid_t)-1;
	struct lws_context *ctx = lws_create_context(&info);
	assert_non_null(ctx);
	return ctx;
}

/* Opens /ws/updates?token=token[&query] on PORT for w (its callbacks fill it in). */
static void ws_connect(struct lws_context *ctx, struct wsclient *w, const char *token, const char *query)
{
	snprintf(w->path, sizeof(w->path), "/ws/updates?token=%s%s%s", token, query ? "&" : "", query ? query : "");
	struct lws_client_connect_info cc;
	memset(&cc, 0, sizeof(cc));
	cc.context = ctx;
	cc.address = "127.0.0.1";
	cc.port = api.port;
	cc.path = w->path;
	cc.host = "127.0.0.1";
	cc.origin = "127.0.0.1";
	cc.protocol = NULL;
	cc.opaque_user_data = w;
	cc.local_protocol_name = "test";
	assert_non_null(lws_client_connect_via_info(&cc));
}

static void ws_free(struct wsclient *w)
{
	for (int i = 0; i < w->n; i++)
		free(w->msgs[i]);
}

/* Index of the first message whose "event" is event (from), servicing up to timeout_ms. */
static int ws_find(struct lws_context *ctx, struct wsclient *w, const char *event, int from, int timeout_ms)
{
	long long end = th_now_ms() + timeout_ms;
	for (;;) {
		for (int i = from; i < w->n; i++) {
			json_t *j = json_loads(w->msgs[i], 0, NULL);
			bool hit = j && json_is_string(json_object_get(j, "event")) &&
			           !strcmp(json_string_value(json_object_get(j, "event")), event);
			json_decref(j);
			if (hit)
				return i;
		}
		if (w->closed || th_now_ms() >= end)
			return -1;
		lws_service(ctx, 50);
	}
}

/* The "types" w's message k lists (in its data), as one comma-separated string. */
static void ws_types(const struct wsclient *w, int k, char *out, size_t n)
{
	json_t *j = json_loads(w->msgs[k], 0, NULL), *t;
	size_t i, len = 0;
	out[0] = '\0';
	json_array_foreach(json_object_get(json_object_get(j, "data"), "types"), i, t) len +=
	    (size_t)snprintf(out + len, n - len, "%s%s", i ? "," : "", json_string_value(t));
	json_decref(j);
}

/* Seed 004's subscribe; the same events as SSE, scoped; /ws/updates on PORT. */
static void test_websocket(void **state)
{
	(void)state;
	struct lws_context *ctx = ws_context();
	struct wsclient w = {0};
	w.to_send[w.nsend++] = "{\"event\":\"subscribe\",\"data\":{\"type\":\"all_calls\"}}";
	ws_connect(ctx, &w, acme_token, NULL);
	int k = ws_find(ctx, &w, "connected", 0, 10000);
	assert_true(k >= 0);
	assert_true(ws_find(ctx, &w, "subscribed", 0, 10000) >= 0);

	/* a real event (schedule PUT) and a beta one that must not come */
	th_call_expect(&api, "PUT", "/api/beta/schedule", root_token, "{\"skip_holidays\": false}", 200);
	th_call_expect(&api, "PUT", "/api/acme/schedule", acme_token, "{\"skip_holidays\": false}", 200);
	k = ws_find(ctx, &w, "schedule.changed", 0, 10000);
	assert_true(k >= 0);
	json_t *j = json_loads(w.msgs[k], 0, NULL);
	TH_EXPECT_INT(j, "company_id", acme_id);
	TH_EXPECT_STR(j, "type", "schedule.changed");
	TH_EXPECT_STR(json_object_get(j, "data"), "company", "acme");
	json_decref(j);
	for (int i = 0; i < w.n; i++) {
		json_t *m = json_loads(w.msgs[i], 0, NULL);
		long long cid;
		if (th_json_int(m, "company_id", &cid) == 0)
			assert_int_equal(cid, acme_id);
		json_decref(m);
	}
	/* a real number keeps 15 digits: 10.1, not 10.099999999999999 */
	redisContext *c = redis();
	free(xadd(c, "import.progress", acme_id,
	          "{\"job_id\": 1, \"kind\": \"import\", \"done\": 101, \"total\": 1000, \"percent\": 10.1}"));
	redisFree(c);
	k = ws_find(ctx, &w, "import.progress", 0, 10000);
	assert_true(k >= 0);
	assert_non_null(strstr(w.msgs[k], "\"percent\":10.1}"));
	/* unsubscribe from everything: a later event is not sent */
	w.to_send[w.nsend++] = "{\"event\":\"unsubscribe\",\"data\":{\"type\":\"all_calls\"}}";
	w.to_send[w.nsend++] = "{\"event\":\"subscribe\",\"data\":{\"type\":\"import.completed\"}}";
	lws_callback_on_writable_all_protocol(ctx, &ws_protocols[0]);
	int u = ws_find(ctx, &w, "unsubscribed", 0, 10000);
	assert_true(u >= 0);
	int s2 = ws_find(ctx, &w, "subscribed", u, 10000);
	assert_true(s2 >= 0);
	th_call_expect(&api, "PUT", "/api/acme/schedule", acme_token, "{\"skip_holidays\": true}", 200);
	assert_int_equal(ws_find(ctx, &w, "schedule.changed", s2, 1500), -1);
	ws_free(&w);
	lws_context_destroy(ctx);
}

/* ?types= bounds the subscriptions: a reply lists only the types the client can receive. */
static void test_websocket_scope_types(void **state)
{
	(void)state;
	struct lws_context *ctx = ws_context();
	struct wsclient w = {0};
	char types[256];
	w.to_send[w.nsend++] = "{\"event\":\"subscribe\",\"data\":{\"type\":\"all\"}}";
	w.to_send[w.nsend++] = "{\"event\":\"subscribe\",\"data\":{\"type\":\"import.completed\"}}";
	w.to_send[w.nsend++] = "{\"event\":\"unsubscribe\",\"data\":{\"type\":\"dialer.state\"}}";
	ws_connect(ctx, &w, acme_token, "types=schedule.changed,dialer.state");
	int k = ws_find(ctx, &w, "connected", 0, 10000);
	assert_true(k >= 0);
	ws_types(&w, k, types, sizeof(types));
	assert_string_equal(types, "schedule.changed,dialer.state");
	k = ws_find(ctx, &w, "subscribed", 0, 10000); /* all: what the scope has */
	assert_true(k >= 0);
	ws_types(&w, k, types, sizeof(types));
	assert_string_equal(types, "schedule.changed,dialer.state");
	k = ws_find(ctx, &w, "subscribed", k + 1, 10000); /* one out of scope: nothing more */
	assert_true(k >= 0);
	ws_types(&w, k, types, sizeof(types));
	assert_string_equal(types, "schedule.changed,dialer.state");
	k = ws_find(ctx, &w, "unsubscribed", k + 1, 10000);
	assert_true(k >= 0);
	ws_types(&w, k, types, sizeof(types));
	assert_string_equal(types, "schedule.changed");
	ws_free(&w);
	lws_context_destroy(ctx);
}

/* ---------------------------------------------------------------- clients not taken */

/* A GET /api/events (Last-Event-ID 1-0) that is not streamed: 200 text/event-stream whose whole
 * body is the retry delay and "event: dropped" with reason and the client's id, so that
 * EventSource reconnects (it never retries an answer other than 200). */
static void expect_sse_refused(const char *reason)
{
	const char *last[] = {"Last-Event-ID: 1-0", NULL};
	char url[256], want[256];
	snprintf(url, sizeof(url), "%s/api/events", api.base_url);
	snprintf(want, sizeof(want),
	         "retry: 2000\n\nevent: dropped\ndata: {\"reason\":\"%s\",\"last_event_id\":\"1-0\"}\n\n", reason);
	struct th_resp *r = th_http("GET", url, acme_token, NULL, NULL, last);
	TH_EXPECT_STATUS(r, 200);
	assert_non_null(strstr(th_resp_header(r, "Content-Type"), "text/event-stream"));
	assert_string_equal(r->body, want);
	th_resp_free(r);
}

/* A WebSocket handshake that is not taken: status with the JSON error code. */
static void expect_ws_refused(int status, const char *code)
{
	const char *h[] = {"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
	                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", NULL};
	char url[256];
	snprintf(url, sizeof(url), "%s/ws/updates", api.base_url);
	struct th_resp *r = th_http("GET", url, acme_token, NULL, NULL, h);
	TH_EXPECT_ERROR(r, status, NULL);
	TH_EXPECT_STR(json_object_get(r->json, "error"), "code", code);
	th_resp_free(r);
}

/* ---------------------------------------------------------------- more SSE */

/* A real number keeps 15 digits on SSE: 10.1, not 10.099999999999999. */
static void test_real_precision(void **state)
{
	(void)state;
	struct sse *s = sse_open(acme_token, "types=import.progress", NULL);
	assert_int_equal(sse_status(s), 200);
	redisContext *c = redis();
	free(xadd(c, "import.progress", acme_id,
	          "{\"job_id\": 1, \"kind\": \"import\", \"done\": 101, \"total\": 1000, \"percent\": 10.1}"));
	redisFree(c);
	int k = sse_find(s, "import.progress", 0, 10000);
	assert_true(k >= 0);
	assert_non_null(strstr(s->ev[k].data, "\"percent\":10.1}"));
	sse_close(s);
}

/* SIGTERM (it stops dialer-events). A client that reads gets the goodbye ("event: dropped",
 * reason shutdown, its last event's id) before its connection closes; a client that does not read
 * (its unsent output stuck) keeps the process no longer than the drain deadline; a WebSocket
 * client gets close 1001 "shutdown"; exit status 0. Then, dialer-events down: an SSE client gets
 * 200 and "event: dropped" (unavailable), a WebSocket one 503. */
static void test_shutdown_goodbye(void **state)
{
	(void)state;
	struct burst b = {0};
	struct sse *s = burst_clients(&b, burst_only_thread);
	/* after the burst (which it would not read): never too slow, never silent past the pings */
	struct lws_context *ctx = ws_context();
	struct wsclient w = {0};
	ws_connect(ctx, &w, acme_token, NULL);
	assert_true(ws_find(ctx, &w, "connected", 0, 10000) >= 0);

	/* neither client is read meanwhile: the goodbyes wait in their sockets */
	long long took = 0;
	int st = th_proc_stop_timed(events_proc, &took);
	events_proc = NULL;
	fprintf(stderr, "dialer-events exited %d %lld ms after SIGTERM\n", st, took);
	assert_int_equal(st, 0);
	assert_true(took < 4000); /* the drain deadline is 1 s */
	for (long long end = th_now_ms() + 5000; !s->done && th_now_ms() < end;)
		sse_pump(s, 50);
	assert_true(s->done); /* the connection closed … */
	assert_int_equal(s->n, BURST + 1);
	struct sse_event *bye = &s->ev[BURST]; /* … after the goodbye */
	assert_string_equal(bye->type, "dropped");
	assert_non_null(bye->json);
	TH_EXPECT_STR(bye->json, "reason", "shutdown");
	TH_EXPECT_STR(bye->json, "last_event_id", b.last_id);
	close(b.slow_fd);
	sse_close(s);
	for (long long end = th_now_ms() + 5000; !w.closed && th_now_ms() < end;)
		lws_service(ctx, 50);
	assert_true(w.closed);
	assert_int_equal(w.close_code, 1001);
	assert_string_equal(w.close_reason, "shutdown");
	ws_free(&w);
	lws_context_destroy(ctx);

	expect_sse_refused("unavailable");
	expect_ws_refused(503, "EVENTS_UNAVAILABLE");
}

/* Last (after the stop above): a copy with EVENTS_MAX_CLIENTS=1, one client held; dialer-events
 * itself refuses the next ones, an SSE client with 200 and "event: dropped" (too_many_clients),
 * a WebSocket one with 503 TOO_MANY_CLIENTS. */
static void test_too_many_clients(void **state)
{
	(void)state;
	events_proc = th_dialer_start("dialer-events", db_url, "events-max1", sock_kv, "EVENTS_MAX_CLIENTS=1",
	                              "EVENTS_HEARTBEAT_SECONDS=1", NULL);
	assert_non_null(events_proc);
	struct sse *held = NULL;
	for (long long end = th_now_ms() + 20000; !held && th_now_ms() < end; th_sleep_ms(100)) {
		held = sse_open(acme_token, NULL, NULL);
		if (!sse_streaming(held)) {
			sse_close(held);
			held = NULL;
		}
	}
	assert_non_null(held);
	expect_sse_refused("too_many_clients");
	expect_ws_refused(503, "TOO_MANY_CLIENTS");
	sse_pump(held, 100);
	assert_false(held->done); /* the one taken streams on */
	sse_close(held);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_auth),
	    cmocka_unit_test(test_scoping_real_emitters),
	    cmocka_unit_test(test_import_events),
	    cmocka_unit_test(test_dialer_state),
	    cmocka_unit_test(test_resume),
	    cmocka_unit_test(test_slow_client_dropped),
	    cmocka_unit_test(test_websocket),
	    cmocka_unit_test(test_websocket_scope_types),
	    cmocka_unit_test(test_real_precision),
	    cmocka_unit_test(test_shutdown_goodbye),
	    cmocka_unit_test(test_too_many_clients),
	};
	return cmocka_run_group_tests_name("events", tests, group_setup, group_teardown);
}
