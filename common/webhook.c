/*
 * Webhook rules: URL check (libcurl's parser), HMAC-SHA256 signature (OpenSSL),
 * retry backoff with jitter, and the address policy against server-side request forgery.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "webhook.h"

const char *webhook_url_check(const char *url)
{
	size_t n = strlen(url);
	const char *why = NULL;
	char *scheme = NULL, *host = NULL;
	CURLU *u = NULL;

	if (n < WEBHOOK_URL_MIN || n > WEBHOOK_URL_MAX)
		return "must be 10..2048 characters";
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f)
			return "must not contain spaces or control characters";
	if (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8))
		return "must be an http:// or https:// URL";
	if (strstr(url, "://")[3] == '/') /* libcurl would take "http:///x" as host x */
		return "must name a host";
	u = curl_url();
	if (!u)
		return "cannot be parsed";
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
		why = "is not a valid URL";
		goto out;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") && strcmp(scheme, "https"))) {
		why = "must be an http:// or https:// URL";
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0])
		why = "must name a host";
out:
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return why;
}

void webhook_sign(const char *secret, const void *body, size_t len, char out[WEBHOOK_SIGNATURE_SIZE])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	/* HMAC() with a NULL md buffer is not thread-safe in older OpenSSL; ours is on the stack */
	if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), body, len, md, &mdlen) || mdlen != 32) {
		/* only an OpenSSL without SHA-256 gets here: no signature rather than a wrong one */
		log_error("event=hmac_failed");
		abort();
	}
	memcpy(out, "sha256=", 7);
	for (unsigned i = 0; i < mdlen; i++) {
		out[7 + 2 * i] = hex[md[i] >> 4];
		out[7 + 2 * i + 1] = hex[md[i] & 15];
	}
	out[7 + 64] = '\0';
}

long webhook_backoff_ms(int attempt, long base_ms, long max_ms, double r)
{
	long d = base_ms;
	for (int i = 1; i < attempt && d < max_ms; i++)
		d = d > max_ms / 2 ? max_ms : d * 2;
	if (d > max_ms)
		d = max_ms;
	if (r < 0)
		r = 0;
	if (r >= 1)
		r = 0.999999;
	long j = (long)((double)d * (0.8 + 0.4 * r));
	return j > 0 ? j : 1;
}

/* IPv4 address a (host order) may be reached. */
static bool v4_public(uint32_t a)
{
	static const struct {
		uint32_t net;
		int bits;
	} blocked[] = {
	    {0x00000000, 8},  /* 0.0.0.0/8 "this network" */
	    {0x0a000000, 8},  /* 10/8 */
	    {0x64400000, 10}, /* 100.64/10 carrier-grade NAT */
	    {0x7f000000, 8},  /* 127/8 loopback */
	    {0xa9fe0000, 16}, /* 169.254/16 link-local, cloud metadata */
	    {0xac100000, 12}, /* 172.16/12 */
	    {0xc0000000, 24}, /* 192.0.0/24 protocol assignments */
	    {0xc0a80000, 16}, /* 192.168/16 */
	    {0xc6120000, 15}, /* 198.18/15 benchmarking */
	    {0xe0000000, 4},  /* 224/4 multicast */
	    {0xf0000000, 4},  /* 240/4 reserved, 255.255.255.255 */
	};
	for (size_t i = 0; i < ARRAY_LEN(blocked); i++) {
		uint32_t mask = blocked[i].bits ? 0xffffffffu << (32 - blocked[i].bits) : 0;
		if ((a & mask) == blocked[i].net)
			return false;
	}
	return true;
}

/* The IPv4 address in b[0..4) (network order), host order. */
static uint32_t v4_at(const uint8_t *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

bool webhook_addr_public(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return v4_public(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
	if (sa->sa_family != AF_INET6)
		return false;
	const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
	static const uint8_t nat64_local[6] = {0, 0x64, 0xff, 0x9b, 0, 0x01};
	static const uint8_t zero[12] = {0};
	/* IPv4 carried in IPv6: judged by the IPv4 address the packets end up at */
	if (!memcmp(b, mapped, 12) || !memcmp(b, nat64, 12)) /* ::ffff:0:0/96, 64:ff9b::/96 */
		return v4_public(v4_at(b + 12));
	if (b[0] == 0x20 && b[1] == 0x02) /* 2002::/16 6to4: the relay's IPv4 in bits 16..47 */
		return v4_public(v4_at(b + 2));
	/* ::/96 (::, ::1 and the deprecated IPv4-compatible ::a.b.c.d) and 64:ff9b:1::/48 (local-use
	 * NAT64, RFC 8215: translated to whatever IPv4 the operator's prefix maps to) */
	if (!memcmp(b, zero, 12) || !memcmp(b, nat64_local, 6))
		return false;
	if ((b[0] & 0xfe) == 0xfc) /* fc00::/7 unique local */
		return false;
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) /* fe80::/10 link-local */
		return false;
	if (b[0] == 0xff) /* multicast */
		return false;
	return true;
}
