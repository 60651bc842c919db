/* Health endpoints (COMPAT GET /health, seed 002's GET /api/health; issue 3 item 8) and the
 * API's behaviour while its Redis is stopped and after it returns on the same port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

static struct th_api api;
static char *db_url;

static int group_setup(void **state)
{
	(void)state;
	th_set_source_ip("127.0.5.1");
	return th_setup_api(&api, &db_url, NULL, NULL);
}

static int group_teardown(void **state)
{
	(void)state;
	return th_teardown_api(&api, &db_url, NULL);
}

/* GET base_url + path. */
static struct th_resp *get(const struct th_api *a, const char *path, const char *token)
{
	return th_call(a, "GET", path, token, NULL);
}

/* The fields seed 002 gives /api/health in both states. */
static void expect_health_shape(const struct th_resp *r, const char *status, const char *db, const char *redis)
{
	const json_t *up;

	assert_true(json_is_object(r->json));
	TH_EXPECT_STR(r->json, "status", status);
	TH_EXPECT_STR(r->json, "db", db);
	TH_EXPECT_STR(r->json, "redis", redis);
	assert_true(th_is_datetime(th_json_str(r->json, "timestamp")));
	up = json_object_get(r->json, "uptime");
	if (up != NULL) {
		assert_true(json_is_number(up));
		assert_true(json_number_value(up) >= 0);
	}
}

static void test_health(void **state)
{
	struct th_resp *r;

	(void)state;
	r = get(&api, "/health", NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "status", "ok");
	th_resp_free(r);
}

static void test_api_health(void **state)
{
	struct th_resp *r;
	double up1, up2;

	(void)state;
	r = get(&api, "/api/health", NULL);
	TH_EXPECT_STATUS(r, 200);
	expect_health_shape(r, "healthy", "connected", "connected");
	assert_true(json_is_number(json_object_get(r->json, "uptime")));
	up1 = json_number_value(json_object_get(r->json, "uptime"));
	th_resp_free(r);

	th_sleep_ms(1100);
	r = get(&api, "/api/health", NULL);
	TH_EXPECT_STATUS(r, 200);
	up2 = json_number_value(json_object_get(r->json, "uptime"));
	th_resp_free(r);
	assert_true(up2 >= up1 + 1);
}

/* Polls /api/health on a until it answers want_status, for at most timeout_ms. Returns the
 * last response (caller frees). */
static struct th_resp *poll_health(const struct th_api *a, long want_status, int timeout_ms)
{
	long long deadline = th_now_ms() + timeout_ms;
	struct th_resp *r;

	for (;;) {
		r = get(a, "/api/health", NULL);
		if (r->status == want_status || th_now_ms() >= deadline)
			return r;
		th_resp_free(r);
		th_sleep_ms(100);
	}
}

static void test_redis_outage(void **state)
{
	struct th_api a2;
	struct th_proc *redis;
	struct th_resp *r;
	char dir[512], redis_url[64], *token, *token2 = NULL;
	long long t0, deadline;
	int port;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/test_ops-redis", th_tmp_dir());
	assert_true(mkdir(dir, 0755) == 0 || errno == EEXIST);
	port = th_free_port();
	assert_true(port > 0);
	redis = th_redis_start(dir, port);
	assert_non_null(redis);
	snprintf(redis_url, sizeof(redis_url), "redis://127.0.0.1:%d/0", port);
	assert_int_equal(th_api_start(&a2, db_url, redis_url, NULL), 0);

	r = get(&a2, "/api/health", NULL);
	TH_EXPECT_STATUS(r, 200);
	expect_health_shape(r, "healthy", "connected", "connected");
	th_resp_free(r);
	token = th_login(&a2, TH_ROOT_USER, TH_ROOT_PASS);
	assert_non_null(token);

	/* Redis goes away: unhealthy within 5 s, and the API itself stays up. */
	assert_int_equal(th_redis_stop(redis), 0);
	t0 = th_now_ms();
	r = poll_health(&a2, 503, 5000);
	print_message("503 after %lld ms\n", th_now_ms() - t0);
	TH_EXPECT_STATUS(r, 503);
	expect_health_shape(r, "unhealthy", "connected", "disconnected");
	th_resp_free(r);
	r = get(&a2, "/health", NULL);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	assert_true(th_proc_alive(a2.proc));

	/* Redis returns on the same port: healthy again within 10 s, without a restart. */
	redis = th_redis_start(dir, port);
	assert_non_null(redis);
	t0 = th_now_ms();
	r = poll_health(&a2, 200, 10000);
	print_message("200 again after %lld ms\n", th_now_ms() - t0);
	TH_EXPECT_STATUS(r, 200);
	expect_health_shape(r, "healthy", "connected", "connected");
	th_resp_free(r);

	/* And the request path uses the new connection: the old token and a new login work. */
	deadline = th_now_ms() + 5000;
	for (;;) {
		r = get(&a2, "/api/auth/me", token);
		if (r->status == 200 || th_now_ms() >= deadline)
			break;
		th_resp_free(r);
		th_sleep_ms(100);
	}
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_STR(r->json, "username", TH_ROOT_USER);
	th_resp_free(r);
	token2 = th_login(&a2, TH_ROOT_USER, TH_ROOT_PASS);
	assert_non_null(token2);

	/* A clean exit after all that (LeakSanitizer included). */
	assert_int_equal(th_api_stop(&a2), 0);
	assert_int_equal(th_redis_stop(redis), 0);
	free(token);
	free(token2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_health),
	    cmocka_unit_test(test_api_health),
	    cmocka_unit_test(test_redis_outage),
	};

	return cmocka_run_group_tests_name("ops", tests, group_setup, group_teardown);
}
