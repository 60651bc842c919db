/*
 * common/rds with Redis away (a port nobody listens on; no server needed): a command that cannot
 * be sent is failed (NULL reply) from the loop, never inside rds_command, exactly once; and when
 * the loop does not run again (shutdown in the same turn), rds_free fails it, and the commands its
 * callback sends, so that nothing leaks (LeakSanitizer under make test).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rds.h"

struct calls {
	int n;        /* callbacks run */
	int non_null; /* of them with a reply */
	bool inside;  /* one ran inside rds_command */
};

static bool in_command;
static struct event_base *base;
static struct rds *conn;
static struct calls a, b, c;

static void counted(redisReply *r, void *arg)
{
	struct calls *k = arg;
	k->n++;
	k->non_null += r != NULL;
	k->inside |= in_command;
}

static void send_counted(struct calls *k, rds_cb cb)
{
	const char *argv[] = {"PING"};
	in_command = true;
	rds_command(conn, cb, k, 1, argv, NULL);
	in_command = false;
}

/* The first failure: the loop stops there (the reconnect is 100 ms away). */
static void first_failed(redisReply *r, void *arg)
{
	counted(r, arg);
	event_base_loopbreak(base);
}

/* A callback that sends once more on NULL (c), as a caller's retry would. */
static void send_again(redisReply *r, void *arg)
{
	counted(r, arg);
	send_counted(&c, counted);
}

/* rds_new on a port that was free a moment ago, and one command failed through the loop, so
 * that the connection is known to be down. */
static int setup(void **state)
{
	(void)state;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || getsockname(s, (struct sockaddr *)&sa, &len))
		return -1;
	close(s);
	char url[64];
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", ntohs(sa.sin_port));
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	base = event_base_new();
	conn = rds_new(base, url);
	send_counted(&a, first_failed);
	struct timeval limit = {5, 0};
	event_base_loopexit(base, &limit);
	event_base_dispatch(base);
	return a.n == 1 && a.non_null == 0 && !a.inside ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	rds_free(conn);
	event_base_free(base);
	return 0;
}

/* Down: failed from the next loop turn, not inside the call. */
static void test_failed_from_loop(void **state)
{
	(void)state;
	send_counted(&b, counted);
	send_counted(&c, counted);
	assert_int_equal(b.n + c.n, 0);
	event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(b.n, 1);
	assert_int_equal(c.n, 1);
	assert_int_equal(b.non_null + c.non_null, 0);
	assert_false(b.inside || c.inside);
	event_base_loop(base, EVLOOP_NONBLOCK); /* once only */
	assert_int_equal(b.n + c.n, 2);
}

/* Down, and freed in the same turn: rds_free fails it (and what its callback sends) itself. */
static void test_failed_at_free(void **state)
{
	(void)state;
	send_counted(&b, send_again);
	assert_int_equal(b.n, 0);
	rds_free(conn);
	conn = NULL;
	assert_int_equal(b.n, 1);
	assert_int_equal(c.n, 1);
	assert_int_equal(b.non_null + c.non_null, 0);
	assert_false(b.inside || c.inside);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_failed_from_loop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failed_at_free, setup, teardown),
	};
	return cmocka_run_group_tests_name("rds", tests, NULL, NULL);
}
