/* The receiver of bench/webhooks.sh: a bare libevent evhttp server on one loop that answers
 * every request 200 (after DELAY_MS when given: a receiver with that much latency).
 * Usage: webhook-receiver PORT [DELAY_MS] */
#include <stdlib.h>

#include <event2/event.h>
#include <event2/http.h>

static struct event_base *base;
static struct timeval delay;

static void answer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	evhttp_send_reply(arg, 200, "OK", NULL);
}

static void request(struct evhttp_request *req, void *arg)
{
	(void)arg;
	if (delay.tv_sec == 0 && delay.tv_usec == 0)
		evhttp_send_reply(req, 200, "OK", NULL);
	else
		event_base_once(base, -1, EV_TIMEOUT, answer, req, &delay);
}

int main(int argc, char **argv)
{
	base = event_base_new();
	struct evhttp *http = evhttp_new(base);
	long ms = argc > 2 ? atol(argv[2]) : 0;
	delay.tv_sec = ms / 1000;
	delay.tv_usec = (ms % 1000) * 1000;
	evhttp_set_gencb(http, request, NULL);
	if (argc < 2 || evhttp_bind_socket(http, "127.0.0.1", (unsigned short)atoi(argv[1])))
		return 1;
	event_base_dispatch(base);
	return 0;
}
