/*
 * Webhook rules shared by the API (what a subscription may say) and dialer-webhooks (how a
 * delivery is signed, when it is retried, which addresses it may reach). The event types are
 * the events contract's (common/events.h: events_types, events_type_index).
 */
#ifndef DIALER_WEBHOOK_H
#define DIALER_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

#include <sys/socket.h>

#include "common.h"
#include "events.h"

#define WEBHOOK_URL_MIN    10 /* "http://a.b" */
#define WEBHOOK_URL_MAX    2048
#define WEBHOOK_SECRET_MIN 16
#define WEBHOOK_SECRET_MAX 256
#define WEBHOOK_DESC_MAX   255
/* "sha256=" and 64 hex digits, plus NUL */
#define WEBHOOK_SIGNATURE_SIZE (7 + 64 + 1)
/* Largest body a delivery sends: the event's data (at most EVENTS_DATA_MAX) and its envelope. */
#define WEBHOOK_BODY_MAX (EVENTS_DATA_MAX + 1024)

/*
 * Checks a webhook URL: WEBHOOK_URL_MIN..WEBHOOK_URL_MAX bytes, no spaces or control
 * characters, an absolute http:// or https:// URL with a host (parsed by libcurl, as the
 * worker will send it). Returns NULL when it is fine, else the reason (static text).
 */
const char *webhook_url_check(const char *url);

/* "sha256=" + the lowercase hex HMAC-SHA256 of body[0..len) keyed with secret, into out. */
void webhook_sign(const char *secret, const void *body, size_t len, char out[WEBHOOK_SIGNATURE_SIZE]);

/*
 * Delay before retrying after failed attempt number attempt (1 = the first): base_ms doubled
 * per earlier attempt, at most max_ms, then spread by ±20% with r in [0, 1) (jitter). So
 * successive delays grow (each at least 1.6/1.2 times the one before) until they reach max_ms.
 */
long webhook_backoff_ms(int attempt, long base_ms, long max_ms, double r);

/*
 * True when a delivery may connect to sa: false for loopback, private (RFC 1918, fc00::/7),
 * link-local (169.254/16: cloud metadata; fe80::/10), carrier-grade NAT, unspecified,
 * multicast, broadcast and reserved addresses, IPv4 ones also when carried in IPv6
 * (::ffff:a.b.c.d, 64:ff9b::/96 NAT64, 2002::/16 6to4: the embedded address decides), and
 * all of ::/96 (IPv4-compatible) and 64:ff9b:1::/48 (local-use NAT64). Other families: false.
 */
bool webhook_addr_public(const struct sockaddr *sa);

#endif
