/* The API's HTTP layer (issue 3 item 5, COMPAT §1.2, §1.7): trailing slashes, JSON 404s,
 * request ids, body/header/URL limits, CORS, /metrics and a clean exit on SIGTERM. The API
 * under test runs with HTTP_MAX_BODY_BYTES=1024. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

/* Every request of this binary leaves from here, so failed logins made by the body-limit
 * test count against no address another test binary uses. */
#define IP_HTTP "127.0.4.1"

static struct th_api api;
static char *db_url;
static char *root_token;

static int group_setup(void **state)
{
	(void)state;
	th_set_source_ip(IP_HTTP);
	return th_setup_api(&api, &db_url, &root_token, "HTTP_MAX_BODY_BYTES=1024", NULL);
}

static int group_teardown(void **state)
{
	(void)state;
	return th_teardown_api(&api, &db_url, &root_token);
}

static char *url_of(const char *path)
{
	char *url = NULL;

	assert_true(asprintf(&url, "%s%s", api.base_url, path) > 0);
	return url;
}

/* The response's Content-Type is application/json (parameters allowed). */
static void expect_json_type(const struct th_resp *r)
{
	const char *ct = th_resp_header(r, "Content-Type");

	assert_non_null(ct);
	assert_int_equal(strncasecmp(ct, "application/json", 16), 0);
}

static void expect_alive(void)
{
	struct th_resp *r = th_call(&api, "GET", "/health", NULL, NULL);

	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "status", "ok");
	th_resp_free(r);
}

static void test_trailing_slash(void **state)
{
	static const char *const gets[] = {"/health",
	                                   "/api/auth/me",
	                                   "/api/companies",
	                                   "/api/companies/" TH_DEFAULT_COMPANY,
	                                   "/api/" TH_DEFAULT_COMPANY "/admins",
	                                   "/api/admins"};
	struct th_resp *r;

	(void)state;
	for (size_t i = 0; i < sizeof(gets) / sizeof(gets[0]); i++) {
		char slashed[128];

		snprintf(slashed, sizeof(slashed), "%s/", gets[i]);
		r = th_call(&api, "GET", gets[i], root_token, NULL);
		TH_EXPECT_STATUS(r, 200);
		th_resp_free(r);
		r = th_call(&api, "GET", slashed, root_token, NULL); /* 200 itself, no redirect */
		TH_EXPECT_STATUS(r, 200);
		assert_null(th_resp_header(r, "Location"));
		th_resp_free(r);
	}
	r = th_call(&api, "GET", "/api/auth/me/", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "username", TH_ROOT_USER);
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/auth/login/", NULL,
	            "{\"username\": \"" TH_ROOT_USER "\", \"password\": \"" TH_ROOT_PASS "\"}");
	TH_EXPECT_STATUS(r, 200);
	assert_non_null(th_json_str(r->json, "access_token"));
	th_resp_free(r);
}

static void test_unknown_route(void **state)
{
	static const char *const paths[] = {"/nope", "/api/no/such/route/here", "/api/auth/nope",
	                                    "/api/companies/a/b/c/d"};

	(void)state;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		struct th_resp *r = th_call(&api, "GET", paths[i], root_token, NULL);

		TH_EXPECT_ERROR(r, 404, "Not Found");
		expect_json_type(r);
		th_resp_free(r);
	}
}

static void test_request_id(void **state)
{
	static const char *const given[] = {"X-Request-Id: it-req-0123456789", NULL};
	struct th_resp *r, *r2;
	char *url = url_of("/health");
	const char *a, *b;

	(void)state;
	r = th_http("GET", url, NULL, NULL, NULL, given);
	TH_EXPECT_STATUS(r, 200);
	assert_non_null(th_resp_header(r, "X-Request-Id"));
	assert_string_equal(th_resp_header(r, "X-Request-Id"), "it-req-0123456789");
	th_resp_free(r);

	r = th_http("GET", url, NULL, NULL, NULL, NULL);
	r2 = th_http("GET", url, NULL, NULL, NULL, NULL);
	a = th_resp_header(r, "X-Request-Id");
	b = th_resp_header(r2, "X-Request-Id");
	assert_non_null(a);
	assert_non_null(b);
	assert_true(strlen(a) >= 8);
	assert_string_not_equal(a, b);
	th_resp_free(r);
	th_resp_free(r2);
	free(url);

	/* Errors carry it too. */
	url = url_of("/no-such-route");
	r = th_http("GET", url, NULL, NULL, NULL, given);
	TH_EXPECT_STATUS(r, 404);
	assert_non_null(th_resp_header(r, "X-Request-Id"));
	assert_string_equal(th_resp_header(r, "X-Request-Id"), "it-req-0123456789");
	th_resp_free(r);
	free(url);
}

/* A login body of exactly len bytes for an unknown user. Caller frees. */
static char *login_body_of_size(size_t len)
{
	static const char head[] = "{\"username\": \"http-nobody\", \"password\": \"";
	size_t fixed = sizeof(head) - 1 + 2;
	char *s;

	assert_true(len > fixed);
	s = malloc(len + 1);
	assert_non_null(s);
	memcpy(s, head, sizeof(head) - 1);
	memset(s + sizeof(head) - 1, 'a', len - fixed);
	memcpy(s + len - 2, "\"}", 2);
	s[len] = '\0';
	return s;
}

static void test_body_limit(void **state)
{
	static const char *const expect100[] = {"Expect: 100-continue", NULL};
	char *url = url_of("/api/auth/login");
	char *big = login_body_of_size(4096), *small = login_body_of_size(1000);
	struct th_resp *r;

	(void)state;
	r = th_http("POST", url, NULL, "application/json", big, NULL);
	TH_EXPECT_ERROR(r, 413, NULL);
	expect_json_type(r);
	th_resp_free(r);
	expect_alive();

	/* The same when the client waits for 100-continue (curl does for large bodies). */
	r = th_http("POST", url, NULL, "application/json", big, expect100);
	TH_EXPECT_ERROR(r, 413, NULL);
	th_resp_free(r);
	expect_alive();

	/* Under the limit the request is handled normally. */
	r = th_http("POST", url, NULL, "application/json", small, NULL);
	TH_EXPECT_ERROR(r, 401, "Invalid credentials");
	th_resp_free(r);
	free(big);
	free(small);
	free(url);
}

/* An oversized request line or header is refused with a well-formed HTTP/1.x answer, a
 * JSON 400, 413, 414 or 431, or the connection is closed without any answer; either way the
 * server lives on. A malformed answer (curl: "Unsupported HTTP version", "Weird server
 * reply") or a hang (timeout) fails. The outcome seen is printed so the log says which one
 * this build does. */
static void expect_refused_or_closed(const struct th_resp *r, const char *what)
{
	if (r->status == 0) {
		print_message("%s: no HTTP answer (%s)\n", what, r->error ? r->error : "");
		assert_true(th_resp_closed(r));
		return;
	}
	print_message("%s: HTTP %ld\n", what, r->status);
	assert_true(r->status == 400 || r->status == 413 || r->status == 414 || r->status == 431);
	TH_EXPECT_ERROR(r, r->status, NULL);
	expect_json_type(r);
}

static void test_huge_header(void **state)
{
	size_t n = 64 * 1024;
	char *hdr = malloc(n + 16);
	const char *extra[2] = {hdr, NULL};
	char *url = url_of("/health");
	struct th_resp *r;

	(void)state;
	assert_non_null(hdr);
	memcpy(hdr, "X-Big: ", 7);
	memset(hdr + 7, 'h', n);
	hdr[7 + n] = '\0';
	r = th_http("GET", url, NULL, NULL, NULL, extra);
	expect_refused_or_closed(r, "64 KiB header");
	th_resp_free(r);
	free(hdr);
	free(url);
	expect_alive();
}

static void test_long_url(void **state)
{
	size_t n = 64 * 1024;
	char *path = malloc(n + 32);
	struct th_resp *r;

	(void)state;
	assert_non_null(path);
	memcpy(path, "/api/companies/", 15);
	memset(path + 15, 'u', n);
	path[15 + n] = '\0';
	r = th_call(&api, "GET", path, root_token, NULL);
	expect_refused_or_closed(r, "64 KiB URL");
	th_resp_free(r);
	free(path);
	expect_alive();
}

/* true when the comma-separated list contains item (case-insensitive). */
static bool list_has(const char *list, const char *item)
{
	size_t n = strlen(item);

	for (const char *p = list; p != NULL && *p != '\0';) {
		while (*p == ' ' || *p == ',')
			p++;
		if (strncasecmp(p, item, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
			return true;
		p = strchr(p, ',');
	}
	return false;
}

static void test_cors(void **state)
{
	static const char *const origins[] = {"http://localhost:5173", "http://127.0.0.1:5173"};
	char *url = url_of("/api/auth/login");
	char *health = url_of("/health");
	struct th_resp *r;

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		char origin[96];
		const char *pre[] = {origin, "Access-Control-Request-Method: POST",
		                     "Access-Control-Request-Headers: authorization,content-type", NULL};
		const char *simple[] = {origin, NULL};
		const char *v;

		snprintf(origin, sizeof(origin), "Origin: %s", origins[i]);
		r = th_http("OPTIONS", url, NULL, NULL, NULL, pre);
		assert_true(r->status == 200 || r->status == 204);
		v = th_resp_header(r, "Access-Control-Allow-Origin");
		assert_non_null(v);
		assert_string_equal(v, origins[i]);
		v = th_resp_header(r, "Access-Control-Allow-Credentials");
		assert_non_null(v);
		assert_string_equal(v, "true");
		v = th_resp_header(r, "Access-Control-Allow-Methods");
		assert_non_null(v);
		assert_true(list_has(v, "POST"));
		assert_true(list_has(v, "DELETE"));
		v = th_resp_header(r, "Access-Control-Allow-Headers");
		assert_non_null(v);
		assert_true(list_has(v, "authorization"));
		assert_true(list_has(v, "content-type"));
		th_resp_free(r);

		/* A simple request from the panel gets the same grant, varying by Origin. */
		r = th_http("GET", health, NULL, NULL, NULL, simple);
		TH_EXPECT_STATUS(r, 200);
		v = th_resp_header(r, "Access-Control-Allow-Origin");
		assert_non_null(v);
		assert_string_equal(v, origins[i]);
		v = th_resp_header(r, "Access-Control-Allow-Credentials");
		assert_non_null(v);
		assert_string_equal(v, "true");
		v = th_resp_header(r, "Vary");
		assert_non_null(v);
		assert_true(list_has(v, "Origin"));
		th_resp_free(r);
	}

	/* Another origin gets no grant at all. */
	{
		const char *pre[] = {"Origin: http://evil.example", "Access-Control-Request-Method: POST",
		                     "Access-Control-Request-Headers: authorization", NULL};
		const char *simple[] = {"Origin: http://evil.example", NULL};

		r = th_http("OPTIONS", url, NULL, NULL, NULL, pre);
		assert_true(r->status != 0);
		assert_null(th_resp_header(r, "Access-Control-Allow-Origin"));
		assert_null(th_resp_header(r, "Access-Control-Allow-Credentials"));
		th_resp_free(r);
		r = th_http("GET", health, NULL, NULL, NULL, simple);
		TH_EXPECT_STATUS(r, 200);
		assert_null(th_resp_header(r, "Access-Control-Allow-Origin"));
		th_resp_free(r);
	}
	free(health);
	free(url);
}

/* Sum of every sample of the metric called name in a Prometheus text body. */
static double metric_sum(const char *body, const char *name)
{
	size_t n = strlen(name);
	double sum = 0;

	for (const char *line = body; line != NULL && *line != '\0';) {
		const char *eol = strchr(line, '\n');

		if (strncmp(line, name, n) == 0 && (line[n] == '{' || line[n] == ' ')) {
			const char *sp = line + n;
			const char *last = NULL;

			if (*sp == '{')
				sp = strchr(sp, '}');
			if (sp != NULL) {
				while (*sp == '}' || *sp == ' ')
					sp++;
				last = sp;
			}
			if (last != NULL)
				sum += strtod(last, NULL);
		}
		line = eol ? eol + 1 : NULL;
	}
	return sum;
}

static void test_metrics(void **state)
{
	struct th_resp *r;
	const char *ct;
	double before, after;

	(void)state;
	r = th_call(&api, "GET", "/metrics", NULL, NULL);
	TH_EXPECT_STATUS(r, 200);
	ct = th_resp_header(r, "Content-Type");
	assert_non_null(ct);
	assert_int_equal(strncasecmp(ct, "text/plain", 10), 0);
	assert_non_null(strstr(r->body, "http_requests_total"));
	assert_non_null(strstr(r->body, "# TYPE http_requests_total counter"));
	assert_non_null(strstr(r->body, "# TYPE http_request_duration_seconds histogram"));
	assert_non_null(strstr(r->body, "http_request_duration_seconds_bucket{"));
	assert_non_null(strstr(r->body, "le=\"+Inf\""));
	assert_non_null(strstr(r->body, "http_request_duration_seconds_count"));
	assert_non_null(strstr(r->body, "http_request_duration_seconds_sum"));
	before = metric_sum(r->body, "http_requests_total");
	th_resp_free(r);

	for (int i = 0; i < 3; i++)
		expect_alive();
	r = th_call(&api, "GET", "/metrics", NULL, NULL);
	TH_EXPECT_STATUS(r, 200);
	after = metric_sum(r->body, "http_requests_total");
	th_resp_free(r);
	/* Counted per request: at least the three /health calls and the first /metrics. With
	 * API_THREADS=2 each scrape must still add up all threads. */
	assert_true(after - before >= 4);
}

static void test_sigterm(void **state)
{
	struct th_api second;
	struct sockaddr_in sa = {0};
	long long elapsed = -1;
	int fd, st;

	(void)state;
	assert_int_equal(th_api_start(&second, db_url, th_env("REDIS_URL"), NULL), 0);
	{
		char *url = NULL;
		struct th_resp *r;

		assert_true(asprintf(&url, "%s/health", second.base_url) > 0);
		r = th_http("GET", url, NULL, NULL, NULL, NULL);
		TH_EXPECT_STATUS(r, 200);
		th_resp_free(r);
		free(url);
	}
	/* An idle keep-alive connection must not hold the shutdown up. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)second.port);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);

	st = th_proc_stop_timed(second.proc, &elapsed);
	second.proc = NULL;
	close(fd);
	print_message("dialer-api exited %d after SIGTERM in %lld ms\n", st, elapsed);
	assert_int_equal(st, 0);
	assert_true(elapsed < 5000);
	assert_int_equal(th_wait_port(second.port, 200), -1); /* nothing listens any more */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_trailing_slash), cmocka_unit_test(test_unknown_route),
	    cmocka_unit_test(test_request_id),     cmocka_unit_test(test_body_limit),
	    cmocka_unit_test(test_huge_header),    cmocka_unit_test(test_long_url),
	    cmocka_unit_test(test_cors),           cmocka_unit_test(test_metrics),
	    cmocka_unit_test(test_sigterm),
	};

	return cmocka_run_group_tests_name("http", tests, group_setup, group_teardown);
}
