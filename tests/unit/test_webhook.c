/*
 * Table-driven tests of common/webhook: the HMAC-SHA256 signature against RFC 4231's vectors,
 * the retry backoff (growth, cap, jitter bounds), the URL check, the address policy that
 * keeps deliveries off loopback, private and link-local networks (IPv4 carried in IPv6
 * included), and the util helpers the worker writes the log and the body with.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "util.h"
#include "webhook.h"

/* RFC 4231 test cases 2 and 6 (HMAC-SHA-256), and an empty body. */
static void test_signature(void **state)
{
	static const struct {
		const char *key, *data, *want;
	} cases[] = {
	    {"Jefe", "what do ya want for nothing?",
	     "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
	    {"\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa"
	     "\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa"
	     "\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa"
	     "\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa"
	     "\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa"
	     "\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa"
	     "\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa",
	     "Test Using Larger Than Block-Size Key - Hash Key First",
	     "sha256=60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
	    {"key", "", "sha256=5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0"},
	};
	char out[WEBHOOK_SIGNATURE_SIZE];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		webhook_sign(cases[i].key, cases[i].data, strlen(cases[i].data), out);
		assert_string_equal(out, cases[i].want);
	}
}

/* Doubling from the base, capped, spread within ±20%, always growing until the cap. */
static void test_backoff(void **state)
{
	(void)state;
	assert_int_equal(webhook_backoff_ms(1, 1000, 3600000, 0.5), 1000);
	assert_int_equal(webhook_backoff_ms(2, 1000, 3600000, 0.5), 2000);
	assert_int_equal(webhook_backoff_ms(5, 1000, 3600000, 0.5), 16000);
	assert_int_equal(webhook_backoff_ms(1, 1000, 3600000, 0.0), 800);
	assert_int_equal(webhook_backoff_ms(1, 1000, 3600000, 0.999999), 1199);
	assert_int_equal(webhook_backoff_ms(40, 10000, 3600000, 0.5), 3600000); /* capped, no overflow */
	assert_int_equal(webhook_backoff_ms(1000000, 10000, 3600000, 0.5), 3600000);
	assert_int_equal(webhook_backoff_ms(3, 10000, 15000, 0.5), 15000);
	assert_true(webhook_backoff_ms(1, 1, 1, 0.0) >= 1);
	for (int a = 1; a < 12; a++) /* the longest delay of one attempt is shorter than the next's shortest */
		assert_true(webhook_backoff_ms(a, 10000, 1L << 30, 0.999999) <
		            webhook_backoff_ms(a + 1, 10000, 1L << 30, 0.0));
	assert_true(webhook_backoff_ms(2, 10, 1000, -1.0) == 16); /* r clamped */
	assert_true(webhook_backoff_ms(2, 10, 1000, 7.0) <= 24);
}

static void test_url(void **state)
{
	static const struct {
		const char *url;
		bool ok;
	} cases[] = {
	    {"https://hooks.example.com/dialer", true},
	    {"http://hooks.example.com:8080/a?b=c&d=e", true},
	    {"HTTPS://Hooks.Example.com/x", true},
	    {"http://10.0.0.1/x", true}, /* the address policy applies when sending, after DNS */
	    {"https://user:pass@hooks.example.com/x", true},
	    {"http://[2001:db8::1]:8443/x", true},
	    {"ftp://hooks.example.com/x", false},
	    {"hooks.example.com/x", false},
	    {"http://", false},
	    {"http:///path-only", false},
	    {"http://a b.example.com/", false},
	    {"http://hooks.example.com/\x01", false},
	    {"javascript:alert(1)", false},
	    {"", false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *why = webhook_url_check(cases[i].url);
		if ((why == NULL) != cases[i].ok)
			fail_msg("%s: %s", cases[i].url, why ? why : "accepted");
	}
	char longer[WEBHOOK_URL_MAX + 2];
	memset(longer, 'a', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	memcpy(longer, "http://x.example/", 17);
	assert_non_null(webhook_url_check(longer));
	longer[WEBHOOK_URL_MAX] = '\0';
	assert_null(webhook_url_check(longer));
}

static bool addr_ok(const char *text)
{
	struct sockaddr_storage ss = {0};
	if (strchr(text, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, text, &s4->sin_addr), 1);
	}
	return webhook_addr_public((struct sockaddr *)&ss);
}

static void test_addresses(void **state)
{
	static const struct {
		const char *addr;
		bool ok;
	} cases[] = {
	    {"93.184.216.34", true},
	    {"8.8.8.8", true},
	    {"172.32.0.1", true},
	    {"100.128.0.1", true},
	    {"127.0.0.1", false},
	    {"127.255.255.254", false},
	    {"10.1.2.3", false},
	    {"172.16.0.1", false},
	    {"172.31.255.255", false},
	    {"192.168.1.1", false},
	    {"169.254.169.254", false},
	    {"100.64.0.1", false},
	    {"0.0.0.0", false},
	    {"224.0.0.1", false},
	    {"255.255.255.255", false},
	    {"198.18.0.1", false},
	    {"2606:2800:220:1::1", true},
	    {"::1", false},
	    {"::", false},
	    {"fd00::1", false},
	    {"fc12::1", false},
	    {"fe80::1", false},
	    {"ff02::1", false},
	    {"::ffff:127.0.0.1", false},
	    {"::ffff:8.8.8.8", true},
	    {"64:ff9b::a00:1", false},
	    {"64:ff9b::808:808", true},
	    /* 6to4: the embedded IPv4 address decides */
	    {"2002:808:808::1", true},
	    {"2002:7f00:1::1", false},
	    {"2002:a00:1::", false},
	    {"2002:c0a8:101:1::1", false},
	    {"2002:a9fe:a9fe::1", false},
	    /* local-use NAT64 (RFC 8215): refused whatever it embeds */
	    {"64:ff9b:1::808:808", false},
	    {"64:ff9b:1:ffff::a00:1", false},
	    /* ::/96, IPv4-compatible: refused even with a public address */
	    {"::8.8.8.8", false},
	    {"::127.0.0.1", false},
	    {"::2", false},
	    /* near those prefixes, ordinary addresses */
	    {"2003::1", true},
	    {"64:ff9b:2::1", true},
	    {"::1:0:0:1", true},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (addr_ok(cases[i].addr) != cases[i].ok)
			fail_msg("%s: expected %s", cases[i].addr, cases[i].ok ? "public" : "refused");
	struct sockaddr unix_sa = {.sa_family = AF_UNIX};
	assert_false(webhook_addr_public(&unix_sa));
}

/* util_utf8_cut, as the worker cuts curl's error text for the delivery log: never inside a
 * character, whatever its length (Persian letters are 2 bytes, an emoji 4). */
static void test_error_cut(void **state)
{
	static const struct {
		const char *s;
		size_t max, want;
	} cases[] = {
	    {"", 5, 0},
	    {"abc", 3, 3},
	    {"abc", 2, 2},
	    {"abc", 0, 0},
	    {"a\xd8\xb3", 3, 3}, /* fits */
	    {"a\xd8\xb3"
	     "b",
	     2, 1},                     /* would split the 2-byte letter */
	    {"\xd8\xb3\xd9\x84", 3, 2}, /* after the first letter */
	    {"ab\xe2\x82\xac", 4, 2},   /* 3-byte euro sign */
	    {"ab\xe2\x82\xac", 3, 2},
	    {"ab\xe2\x82\xac", 5, 5},
	    {"a\xf0\x9f\x98\x80z", 4, 1}, /* 4-byte emoji */
	    {"a\xf0\x9f\x98\x80z", 5, 5},
	    {"a\xf0\x9f\x98\x80z", 2, 1},
	};
	char buf[512];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (util_utf8_cut(cases[i].s, cases[i].max) != cases[i].want)
			fail_msg("case %zu: cut at %zu, want %zu", i, util_utf8_cut(cases[i].s, cases[i].max),
			         cases[i].want);
	/* a long Persian message cut at every length stays valid UTF-8 */
	size_t n = 0;
	while (n + 2 < sizeof(buf)) {
		memcpy(buf + n, "\xd8\xb3", 2);
		n += 2;
	}
	buf[n] = '\0';
	for (size_t max = 0; max < n + 2; max++) {
		size_t cut = util_utf8_cut(buf, max);
		assert_true(cut <= max && max - cut <= 1);
		assert_true(util_utf8_valid(buf, cut));
	}
}

/* util_iso_us: the format of the body's "at" and of every timestamp the API writes. */
static void test_iso_us(void **state)
{
	char out[32];

	(void)state;
	util_iso_us(0, out);
	assert_string_equal(out, "1970-01-01T00:00:00.000000Z");
	util_iso_us(1795409443038000LL, out);
	assert_string_equal(out, "2026-11-23T04:50:43.038000Z");
	util_iso_us(1795409443038123LL, out);
	assert_string_equal(out, "2026-11-23T04:50:43.038123Z");
	util_iso_us(-1, out);
	assert_string_equal(out, "1969-12-31T23:59:59.999999Z");
	util_iso_now(out);
	assert_int_equal(strlen(out), 27);
	assert_int_equal(out[26], 'Z');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_signature), cmocka_unit_test(test_backoff),   cmocka_unit_test(test_url),
	    cmocka_unit_test(test_addresses), cmocka_unit_test(test_error_cut), cmocka_unit_test(test_iso_us),
	};
	return cmocka_run_group_tests_name("webhook", tests, NULL, NULL);
}
