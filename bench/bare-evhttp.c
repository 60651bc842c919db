/* The reference for the API benchmarks: a bare libevent evhttp server on one
 * loop that answers every request with a small JSON body, nothing else. */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

static void reply(struct evhttp_request *req, void *arg)
{
	(void)arg;
	struct evbuffer *b = evbuffer_new();
	evbuffer_add(b, "{\"accepted\":true}", 17);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	evhttp_send_reply(req, 202, "Accepted", b);
	evbuffer_free(b);
}

int main(int argc, char **argv)
{
	struct event_base *base = event_base_new();
	struct evhttp *http = evhttp_new(base);
	evhttp_set_gencb(http, reply, NULL);
	if (argc < 2 || evhttp_bind_socket(http, "127.0.0.1", (unsigned short)atoi(argv[1])))
		return 1;
	event_base_dispatch(base);
	return 0;
}
