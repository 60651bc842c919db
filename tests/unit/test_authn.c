/*
 * JWT issue/verify and every forged-token case; bcrypt hashing and a hash in
 * passlib's format (OpenBSD bcrypt test vectors); dialer token helpers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "authn.h"

static const char *secret = "unit-test-secret-0123456789";

static char *b64url(const char *s, size_t n)
{
	char *out = calloc(1, n * 2 + 8);
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
	char *w = out;
	for (char *r = out; *r; r++) {
		if (*r == '=')
			continue;
		*w++ = *r == '+' ? '-' : *r == '/' ? '_' : *r;
	}
	*w = '\0';
	return out;
}

/* Builds header.payload.signature by hand; HMAC-SHA256 or SHA512 with key, or no signature. */
static char *forge(const char *header, const char *payload, const char *key, const EVP_MD *md)
{
	char *h = b64url(header, strlen(header)), *p = b64url(payload, strlen(payload));
	char *signing = malloc(strlen(h) + strlen(p) + 2);
	sprintf(signing, "%s.%s", h, p);
	char *sig = strdup("");
	if (key) {
		unsigned char mac[64];
		unsigned int maclen = 0;
		HMAC(md, key, (int)strlen(key), (unsigned char *)signing, strlen(signing), mac, &maclen);
		free(sig);
		sig = b64url((const char *)mac, maclen);
	}
	char *tok = malloc(strlen(signing) + strlen(sig) + 2);
	sprintf(tok, "%s.%s", signing, sig);
	free(h);
	free(p);
	free(signing);
	free(sig);
	return tok;
}

static void expect_refused(const char *tok)
{
	char *sub = NULL;
	long exp = 0;
	assert_int_equal(authn_jwt_verify(secret, tok, &sub, &exp), -1);
	assert_null(sub);
}

static void test_roundtrip(void **state)
{
	(void)state;
	long exp = 0, exp2 = 0;
	char *sub = NULL;
	char *tok = authn_jwt_issue(secret, "alice", 600, &exp);
	assert_non_null(tok);
	assert_int_equal(authn_jwt_verify(secret, tok, &sub, &exp2), 0);
	assert_string_equal(sub, "alice");
	assert_int_equal(exp, exp2);
	assert_true(exp > time(NULL));
	free(sub);
	/* two tokens for one user in the same second still differ (jti) */
	char *tok2 = authn_jwt_issue(secret, "alice", 600, NULL);
	assert_non_null(tok2);
	assert_string_not_equal(tok, tok2);
	free(tok2);
	free(tok);
}

static void test_forged(void **state)
{
	(void)state;
	char payload[128];
	long future = (long)time(NULL) + 600, past = (long)time(NULL) - 10;
	snprintf(payload, sizeof(payload), "{\"sub\":\"alice\",\"exp\":%ld}", future);
	char *t;

	/* the hand-built HS256 token is accepted, so the forgeries below differ in one way only */
	t = forge("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, secret, EVP_sha256());
	char *sub = NULL;
	assert_int_equal(authn_jwt_verify(secret, t, &sub, NULL), 0);
	free(sub);
	free(t);

	t = forge("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, "another-key-entirely-000", EVP_sha256());
	expect_refused(t);
	free(t);
	t = forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, NULL, NULL);
	expect_refused(t);
	free(t);
	t = forge("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", payload, secret, EVP_sha512());
	expect_refused(t);
	free(t);
	snprintf(payload, sizeof(payload), "{\"sub\":\"alice\",\"exp\":%ld}", past);
	t = forge("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, secret, EVP_sha256());
	expect_refused(t);
	free(t);
	snprintf(payload, sizeof(payload), "{\"exp\":%ld}", future);
	t = forge("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, secret, EVP_sha256());
	expect_refused(t);
	free(t);
	snprintf(payload, sizeof(payload), "{\"sub\":\"alice\"}");
	t = forge("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, secret, EVP_sha256());
	expect_refused(t);
	free(t);
	expect_refused("garbage");
	expect_refused("a.b.c");
	expect_refused("");
}

static void test_bcrypt(void **state)
{
	(void)state;
	char *h = authn_password_hash("s3cret-pass", 4);
	assert_non_null(h);
	assert_memory_equal(h, "$2b$04$", 7);
	assert_true(authn_password_verify("s3cret-pass", h));
	assert_false(authn_password_verify("s3cret-pasS", h));
	free(h);
	/* over bcrypt's 72-byte limit: refused, not truncated */
	char long_pw[80];
	memset(long_pw, 'x', 73);
	long_pw[73] = '\0';
	assert_null(authn_password_hash(long_pw, 4));
}

/* passlib writes standard OpenBSD bcrypt strings; these are the reference
 * vectors ("U*U" at cost 5) in the $2a$ and $2b$ spellings passlib emits,
 * plus a cost-12 hash as passlib.hash.bcrypt.hash("password") produces. */
static void test_passlib_hashes(void **state)
{
	(void)state;
	assert_true(authn_password_verify("U*U", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"));
	assert_true(authn_password_verify("U*U", "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"));
	assert_false(authn_password_verify("U*V", "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"));
	assert_true(authn_password_verify("", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.7uG0VCzI2bS7j6ymqJi9CdcdxiRTWNy"));
	assert_false(authn_password_verify("x", "not-a-hash"));
	assert_false(authn_password_verify("x", "$1$abc$def"));
}

static void test_tokens(void **state)
{
	(void)state;
	char a[64], b[64], ha[65], hb[65];
	assert_int_equal(authn_token_new(a), 0);
	assert_int_equal(authn_token_new(b), 0);
	assert_int_equal(strlen(a), 52);
	assert_memory_equal(a, "dlt_", 4);
	assert_string_not_equal(a, b);
	authn_token_hash(a, ha);
	authn_token_hash(b, hb);
	assert_int_equal(strlen(ha), 64);
	assert_string_not_equal(ha, hb);
	authn_token_hash("abc", ha);
	assert_string_equal(ha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),      cmocka_unit_test(test_forged), cmocka_unit_test(test_bcrypt),
	    cmocka_unit_test(test_passlib_hashes), cmocka_unit_test(test_tokens),
	};
	return cmocka_run_group_tests_name("authn", tests, NULL, NULL);
}
