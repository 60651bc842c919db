/*
 * JWT (libjwt 1.10), bcrypt (libxcrypt crypt_rn / crypt_gensalt_rn) and
 * dialer-token helpers. libjwt verifies with whatever algorithm the header
 * names, so the algorithm is checked here before trusting the result.
 */
#include <crypt.h>
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jwt.h>

#include "authn.h"
#include "util.h"

char *authn_jwt_issue(const char *secret, const char *sub, long ttl_s, long *exp_out)
{
	jwt_t *jwt = NULL;
	char *tok = NULL, *out = NULL;
	long now = (long)time(NULL);
	char jti[33];
	/* jti makes every token unique: two logins in one second must not share a
	 * token, or logging one out would revoke the other */
	if (util_random_hex(jti, 16) || jwt_new(&jwt))
		return NULL;
	if (jwt_add_grant(jwt, "sub", sub) || jwt_add_grant(jwt, "jti", jti) ||
	    jwt_add_grant_int(jwt, "exp", now + ttl_s) || jwt_add_grant_int(jwt, "iat", now) ||
	    jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret)))
		goto out;
	tok = jwt_encode_str(jwt);
	if (tok) {
		out = xstrdup(tok);
		free(tok);
	}
	if (exp_out)
		*exp_out = now + ttl_s;
out:
	jwt_free(jwt);
	return out;
}

/* The header is the part before the first dot; refuse anything but HS256 up front. */
static bool header_is_hs256(const char *token)
{
	const char *dot = strchr(token, '.');
	if (!dot || dot == token)
		return false;
	/* the two encodings of {"alg":"HS256","typ":"JWT"} and {"typ":"JWT","alg":"HS256"}
	 * are not the only valid ones, so decode properly through libjwt below; this
	 * check only rejects tokens without a signature part */
	const char *dot2 = strchr(dot + 1, '.');
	return dot2 && dot2[1] != '\0';
}

int authn_jwt_verify(const char *secret, const char *token, char **sub_out, long *exp_out)
{
	jwt_t *jwt = NULL;
	int rc = -1;
	if (!token || strlen(token) > AUTHN_TOKEN_MAX || !header_is_hs256(token))
		return -1;
	if (jwt_decode(&jwt, token, (const unsigned char *)secret, (int)strlen(secret)) || !jwt)
		goto out;
	if (jwt_get_alg(jwt) != JWT_ALG_HS256)
		goto out;
	errno = 0;
	long exp = jwt_get_grant_int(jwt, "exp");
	if (errno || exp <= (long)time(NULL))
		goto out;
	const char *sub = jwt_get_grant(jwt, "sub");
	if (!sub || !*sub)
		goto out;
	*sub_out = xstrdup(sub);
	if (exp_out)
		*exp_out = exp;
	rc = 0;
out:
	jwt_free(jwt);
	return rc;
}

char *authn_password_hash(const char *password, int cost)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	char *out = NULL;
	if (strlen(password) > AUTHN_PASSWORD_MAX)
		return NULL;
	if (!crypt_gensalt_rn("$2b$", (unsigned long)cost, NULL, 0, salt, sizeof(salt)))
		return NULL;
	cd = xcalloc(1, sizeof(*cd));
	const char *h = crypt_rn(password, salt, cd, sizeof(*cd));
	if (h && h[0] == '$')
		out = xstrdup(h);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return out;
}

bool authn_password_verify(const char *password, const char *hash)
{
	struct crypt_data *cd;
	bool ok = false;
	if (!hash || strlen(password) > AUTHN_PASSWORD_MAX)
		return false;
	if (strncmp(hash, "$2a$", 4) && strncmp(hash, "$2b$", 4) && strncmp(hash, "$2y$", 4))
		return false;
	cd = xcalloc(1, sizeof(*cd));
	const char *h = crypt_rn(password, hash, cd, sizeof(*cd));
	if (h && h[0] == '$')
		ok = util_ct_streq(h, hash);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

int authn_token_new(char out[64])
{
	char hex[49];
	if (util_random_hex(hex, 24))
		return -1;
	snprintf(out, 64, "dlt_%s", hex);
	return 0;
}

void authn_token_hash(const char *token, char out[65])
{
	util_sha256_hex(token, strlen(token), out);
}
