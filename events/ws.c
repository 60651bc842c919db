/*
 * WebSocket clients (/ws/updates) through libwebsockets, on a thread of their own: Debian's
 * libwebsockets 4.1 has no libevent event-library plugin and no external-poll hooks, so it runs
 * its own poll loop here. The main thread talks to it through an inbox (mutex + lws_cancel_service,
 * the one lws call that is safe from another thread): adoptions of handed-over sockets, events,
 * a once-a-second tick and the shutdown. Everything else (the clients, their queues) belongs to
 * this thread.
 *
 * Messages (seed 004): the client sends {"event": "subscribe"|"unsubscribe", "data": {"type":
 * "all_calls" | "all" | <event type>}} (and {"event": "ping"}); the server sends {"event",
 * "data"} objects: the events themselves ({"event": <type>, "type", "id", "company_id", "at",
 * "data"}), and "connected", "subscribed", "unsubscribed", "pong", "error".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "config.h"
#include "hub.h"
#include "metrics.h"

_Static_assert(LWS_PRE <= HUB_WS_PRE, "HUB_WS_PRE must hold libwebsockets' LWS_PRE");

#define RX_MAX   4096 /* a client message; longer ones close the connection (1009) */
#define ALL_BITS ((1u << EVENTS_NTYPES) - 1)

enum cmd_kind { CMD_EVENT, CMD_ADOPT, CMD_TICK, CMD_SHUTDOWN };

struct cmd {
	enum cmd_kind kind;
	struct emsg *m;        /* CMD_EVENT: a reference */
	int fd;                /* CMD_ADOPT: the socket (owned) … */
	struct scope s;        /* … its client … */
	char *request;         /* … and the handshake to replay (owned) */
	void (*drained)(void); /* CMD_SHUTDOWN: runs once no client is left */
	struct cmd *next;
};

/* A socket being adopted, until its handshake completes (found again by descriptor). */
struct adopting {
	int fd;
	struct scope s;
	time_t at;
	struct adopting *next;
};

/* Per-connection state (libwebsockets' per-session data, zeroed by it). */
struct wsc {
	struct wsc *prev, *next;
	struct lws *wsi;
	struct scope s;
	bool listed, closing;
	int close_status;
	char close_reason[64];
	unsigned subs; /* event types subscribed to */
	bool explicit_subs;
	struct refq q; /* to send */
	char rx[RX_MAX];
	size_t rxlen;
	bool rx_overflow;
};

static struct {
	pthread_mutex_t mu;
	struct cmd *head, *tail;
} inbox = {.mu = PTHREAD_MUTEX_INITIALIZER};

static struct lws_context *ctx;
static struct lws_vhost *vhost;
static pthread_t thread;
static atomic_bool stopping;
static bool started;
/* this thread's */
static struct wsc *clients;
static struct adopting *adopting;
static bool shutting_down;
static void (*on_drained)(void); /* shutdown: runs once the last client has closed */

static void post(struct cmd *c)
{
	pthread_mutex_lock(&inbox.mu);
	if (inbox.tail)
		inbox.tail->next = c;
	else
		inbox.head = c;
	inbox.tail = c;
	pthread_mutex_unlock(&inbox.mu);
	lws_cancel_service(ctx);
}

/* ---- messages of this connection ---- */

/* A message made here (not from the stream): one reference. */
static struct emsg *text_msg(json_t *body)
{
	char *s = json_dumps(body, EVENTS_JSON_FLAGS);
	json_decref(body);
	if (!s)
		return NULL;
	size_t n = strlen(s);
	struct emsg *m = xcalloc(1, sizeof(*m));
	atomic_init(&m->refs, 1);
	m->type_idx = -1;
	m->ws = xmalloc(HUB_WS_PRE + n + 1);
	memcpy(m->ws + HUB_WS_PRE, s, n + 1);
	m->ws_len = n;
	free(s);
	return m;
}

/* Closes with a status and a reason the client sees (in the writeable callback). Logged now,
 * but at shutdown, where its close is the one line (events_draining says why). */
static void close_with(struct wsc *w, int status, const char *reason)
{
	if (w->closing)
		return;
	w->closing = true;
	w->close_status = status;
	snprintf(w->close_reason, sizeof(w->close_reason), "%s", reason);
	refq_clear(&w->q);
	if (status == LWS_CLOSE_STATUS_POLICY_VIOLATION)
		metrics_count("events_clients_dropped", 1);
	if (status != LWS_CLOSE_STATUS_GOINGAWAY) {
		log_set_ctx(w->s.rid);
		log_info("event=client_dropped transport=ws user=%s reason=\"%s\"", w->s.username, reason);
		log_set_ctx(NULL);
	}
	lws_callback_on_writable(w->wsi);
	/* a client that does not read gets no close frame out either: cut it after 5 s */
	lws_set_timeout(w->wsi, PENDING_TIMEOUT_CLOSE_SEND, 5);
}

static void send_msg(struct wsc *w, struct emsg *m)
{
	if (!m || w->closing) {
		emsg_unref(m);
		return;
	}
	if (!refq_offer(&w->q, m, w->q.bytes)) {
		close_with(w, LWS_CLOSE_STATUS_POLICY_VIOLATION, "slow client: dropped");
		return;
	}
	lws_callback_on_writable(w->wsi);
}

static json_t *subs_json(const struct wsc *w)
{
	json_t *a = json_array();
	for (int i = 0; events_types[i]; i++)
		if (w->subs & (1u << i))
			json_array_append_new(a, json_string(events_types[i]));
	return a;
}

static void reply(struct wsc *w, const char *event, json_t *data)
{
	send_msg(w, text_msg(json_pack("{s:s, s:o}", "event", event, "data", data ? data : json_object())));
}

/* A client message: subscribe / unsubscribe / ping. */
static void on_message(struct wsc *w, const char *s, size_t n)
{
	json_error_t err;
	json_t *msg = json_loadb(s, n, 0, &err);
	const char *event = json_string_value(json_object_get(msg, "event"));
	json_t *data = json_object_get(msg, "data");
	const char *type = json_string_value(json_object_get(data, "type"));
	if (!json_is_object(msg) || !event) {
		reply(w, "error", json_pack("{s:s}", "message", "expected {\"event\": ..., \"data\": {...}}"));
		goto out;
	}
	if (!strcmp(event, "ping")) {
		reply(w, "pong", NULL);
		goto out;
	}
	bool sub = !strcmp(event, "subscribe");
	if (!sub && strcmp(event, "unsubscribe")) {
		reply(
		    w, "error",
		    json_pack("{s:s, s:s}", "message", "unknown event (subscribe, unsubscribe, ping)", "event", event));
		goto out;
	}
	unsigned bits;
	if (type && (!strcmp(type, "all_calls") || !strcmp(type, "all"))) {
		bits = ALL_BITS;
	} else if (type && events_type_index(type) >= 0) {
		bits = 1u << events_type_index(type);
	} else {
		reply(w, "error",
		      json_pack("{s:s, s:s?}", "message",
		                "unknown subscription type (all_calls, all, or an event type)", "type", type));
		goto out;
	}
	/* a connection starts with every type (seed 003's clients never subscribe); the first
	 * subscribe or unsubscribe makes the set explicit */
	if (!w->explicit_subs) {
		w->explicit_subs = true;
		w->subs = sub ? 0 : ALL_BITS;
	}
	/* what the scope (?types=) leaves out is never sent, nor listed */
	w->subs = (sub ? w->subs | bits : w->subs & ~bits) & w->s.types;
	reply(w, sub ? "subscribed" : "unsubscribed", json_pack("{s:s, s:o}", "type", type, "types", subs_json(w)));
out:
	json_decref(msg);
}

/* ---- inbox (this thread) ---- */

static void list_add(struct wsc *w)
{
	w->next = clients;
	if (clients)
		clients->prev = w;
	clients = w;
	w->listed = true;
}

static void list_del(struct wsc *w)
{
	if (!w->listed)
		return;
	if (w->prev)
		w->prev->next = w->next;
	else
		clients = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->listed = false;
}

static void do_adopt(struct cmd *c)
{
	if (atomic_load(&hub_clients) >= cfg.events_max_clients) {
		log_warn("event=client_refused transport=ws reason=too_many_clients");
		hub_reject(c->fd, 503, "TOO_MANY_CLIENTS", "Too many event clients, retry shortly");
		return;
	}
	/* a descriptor number is reused only after its last user closed it: an entry with the same
	 * number is a handshake that never completed */
	for (struct adopting **p = &adopting; *p; p = &(*p)->next)
		if ((*p)->fd == c->fd) {
			struct adopting *dead = *p;
			*p = dead->next;
			free(dead);
			break;
		}
	struct adopting *a = xcalloc(1, sizeof(*a));
	a->fd = c->fd;
	a->s = c->s;
	a->at = time(NULL);
	a->next = adopting;
	adopting = a;
	/* libwebsockets reads the handshake from this buffer first, as if from the socket (it may
	 * run the whole handshake inside this call: the entry above is already there) */
	if (!lws_adopt_socket_vhost_readbuf(vhost, c->fd, c->request, strlen(c->request)))
		log_warn("event=ws_adopt_failed fd=%d", c->fd); /* lws closed it */
}

static void do_tick(void)
{
	time_t now = time(NULL);
	for (struct wsc *w = clients; w; w = w->next)
		if (!w->closing && w->s.token_exp > 0 && now >= w->s.token_exp)
			close_with(w, LWS_CLOSE_STATUS_NORMAL, "token expired");
	for (struct adopting **p = &adopting; *p;) {
		if (now - (*p)->at > 60) { /* its handshake never completed: lws closed it long ago */
			struct adopting *dead = *p;
			*p = dead->next;
			free(dead);
		} else {
			p = &(*p)->next;
		}
	}
}

/* Shutdown: runs on_drained once no client is left. */
static void check_drained(void)
{
	if (on_drained && !clients) {
		void (*done)(void) = on_drained;
		on_drained = NULL;
		done();
	}
}

static void do_shutdown(struct cmd *c)
{
	shutting_down = true;
	on_drained = c->drained;
	for (struct wsc *w = clients; w; w = w->next)
		close_with(w, LWS_CLOSE_STATUS_GOINGAWAY, "shutdown"); /* one already closing keeps its reason */
	check_drained();
}

static void drain_inbox(void)
{
	pthread_mutex_lock(&inbox.mu);
	struct cmd *c = inbox.head;
	inbox.head = inbox.tail = NULL;
	pthread_mutex_unlock(&inbox.mu);
	while (c) {
		struct cmd *next = c->next;
		switch (c->kind) {
		case CMD_EVENT:
			for (struct wsc *w = clients; w; w = w->next)
				if (!w->closing && scope_sees(&w->s, c->m->type_idx, c->m->company_id) &&
				    (w->subs & (1u << c->m->type_idx)))
					send_msg(w, emsg_ref(c->m));
			emsg_unref(c->m);
			break;
		case CMD_ADOPT:
			do_adopt(c);
			free(c->request);
			break;
		case CMD_TICK:
			do_tick();
			break;
		case CMD_SHUTDOWN:
			do_shutdown(c);
			break;
		}
		free(c);
		c = next;
	}
}

/* ---- the protocol ---- */

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct wsc *w = user;
	switch (reason) {
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		drain_inbox();
		return 0;
	case LWS_CALLBACK_ESTABLISHED: {
		int fd = (int)lws_get_socket_fd(wsi);
		struct adopting **p = &adopting, *a = NULL;
		for (; *p; p = &(*p)->next)
			if ((*p)->fd == fd) {
				a = *p;
				*p = a->next;
				break;
			}
		w->wsi = wsi;
		if (!a) { /* not handed over by the API: never happens, refused all the same */
			log_warn("event=ws_unknown_connection fd=%d", fd);
			return -1;
		}
		w->s = a->s;
		free(a);
		w->q.kind = REFQ_WS;
		w->subs = ALL_BITS & w->s.types;
		list_add(w);
		atomic_fetch_add(&hub_clients, 1);
		metrics_count("events_clients_opened", 1);
		log_set_ctx(w->s.rid);
		log_info("event=client_opened transport=ws user=%s superuser=%d company_id=%ld peer=%s", w->s.username,
		         w->s.superuser, w->s.company_id, w->s.peer);
		log_set_ctx(NULL);
		reply(w, "connected",
		      json_pack("{s:s, s:b, s:I, s:o}", "user", w->s.username, "is_superuser", w->s.superuser,
		                "company_id", (json_int_t)w->s.company_id, "types", subs_json(w)));
		if (shutting_down) /* its handshake completed during the drain */
			close_with(w, LWS_CLOSE_STATUS_GOINGAWAY, "shutdown");
		return 0;
	}
	case LWS_CALLBACK_RECEIVE:
		if (!w || !w->listed)
			return 0;
		if (w->rxlen + len > RX_MAX) {
			w->rx_overflow = true;
		} else {
			memcpy(w->rx + w->rxlen, in, len);
			w->rxlen += len;
		}
		if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
			if (w->rx_overflow) {
				lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
				                 (unsigned char *)"message too large", 17);
				return -1;
			}
			on_message(w, w->rx, w->rxlen);
			w->rxlen = 0;
		}
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE: {
		if (!w || !w->listed)
			return 0;
		if (w->closing) {
			lws_close_reason(wsi, (enum lws_close_status)w->close_status, (unsigned char *)w->close_reason,
			                 strlen(w->close_reason));
			return -1;
		}
		struct emsg *m = refq_pop(&w->q);
		if (!m)
			return 0;
		int n = lws_write(wsi, m->ws + HUB_WS_PRE, m->ws_len, LWS_WRITE_TEXT);
		if (m->type_idx >= 0)
			metrics_count("events_delivered", 1);
		emsg_unref(m);
		if (n < 0)
			return -1;
		if (w->q.len)
			lws_callback_on_writable(wsi);
		return 0;
	}
	case LWS_CALLBACK_CLOSED:
		if (w && w->listed) {
			list_del(w);
			refq_clear(&w->q);
			atomic_fetch_sub(&hub_clients, 1);
			metrics_count("events_clients_closed", 1);
			log_set_ctx(w->s.rid);
			log_info("event=client_closed transport=ws user=%s reason=\"%s\"", w->s.username,
			         w->closing ? w->close_reason : "client_closed");
			log_set_ctx(NULL);
			check_drained();
		}
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    {"dialer-events", callback, sizeof(struct wsc), RX_MAX, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static lws_retry_bo_t retry;

static void lws_log(int level, const char *line)
{
	size_t n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == ' '))
		n--;
	/* lws 4.1 traces every adoption with a read buffer at error level: not an error */
	if (strstr(line, "calling service")) {
		log_debug("event=lws msg=\"%.*s\"", (int)n, line);
		return;
	}
	if (level & LLL_ERR)
		log_error("event=lws msg=\"%.*s\"", (int)n, line);
	else
		log_warn("event=lws msg=\"%.*s\"", (int)n, line);
}

static void *run(void *arg)
{
	UNUSED(arg);
	while (!atomic_load(&stopping))
		if (lws_service(ctx, 0) < 0)
			break;
	return NULL;
}

int ws_start(void)
{
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof(info));
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
	retry.secs_since_valid_ping = (uint16_t)cfg.events_heartbeat_seconds;
	retry.secs_since_valid_hangup = (uint16_t)(cfg.events_heartbeat_seconds * 3 + 5);
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* every client is handed over by the API */
	info.protocols = protocols;
	info.retry_and_idle_policy = &retry;
	info.gid = (gid_t)-1;
	info.uid = (uid_t)-1;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
	info.fd_limit_per_thread = (unsigned)cfg.events_max_clients + 64;
	ctx = lws_create_context(&info);
	if (!ctx) {
		log_error("event=ws_start_failed error=\"lws_create_context\"");
		return -1;
	}
	vhost = lws_get_vhost_by_name(ctx, "default");
	if (!vhost) {
		log_error("event=ws_start_failed error=\"no default vhost\"");
		lws_context_destroy(ctx);
		ctx = NULL;
		return -1;
	}
	if (pthread_create(&thread, NULL, run, NULL)) {
		lws_context_destroy(ctx);
		ctx = NULL;
		return -1;
	}
	started = true;
	return 0;
}

void ws_stop(void)
{
	if (!started)
		return;
	atomic_store(&stopping, true);
	lws_cancel_service(ctx);
	pthread_join(thread, NULL);
	/* closes every connection (LWS_CALLBACK_CLOSED frees their queues) */
	lws_context_destroy(ctx);
	ctx = NULL;
	started = false;
	struct cmd *c = inbox.head;
	while (c) {
		struct cmd *next = c->next;
		if (c->kind == CMD_EVENT)
			emsg_unref(c->m);
		if (c->kind == CMD_ADOPT) {
			close(c->fd);
			free(c->request);
		}
		free(c);
		c = next;
	}
	inbox.head = inbox.tail = NULL;
	while (adopting) {
		struct adopting *next = adopting->next;
		free(adopting);
		adopting = next;
	}
}

void ws_adopt(int fd, const struct scope *s, const char *request)
{
	struct cmd *c = xcalloc(1, sizeof(*c));
	c->kind = CMD_ADOPT;
	c->fd = fd;
	c->s = *s;
	c->request = xstrdup(request);
	post(c);
}

void ws_broadcast(struct emsg *m)
{
	struct cmd *c = xcalloc(1, sizeof(*c));
	c->kind = CMD_EVENT;
	c->m = emsg_ref(m);
	post(c);
}

void ws_tick(void)
{
	struct cmd *c = xcalloc(1, sizeof(*c));
	c->kind = CMD_TICK;
	post(c);
}

void ws_shutdown(void (*drained)(void))
{
	if (!started) {
		drained();
		return;
	}
	struct cmd *c = xcalloc(1, sizeof(*c));
	c->kind = CMD_SHUTDOWN;
	c->drained = drained;
	post(c);
}
