/*
 * Credentials: HS256 JWTs (libjwt), bcrypt password hashes (libxcrypt), and
 * dialer tokens (random, stored as SHA-256). Pure functions; no I/O.
 */
#ifndef DIALER_AUTHN_H
#define DIALER_AUTHN_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

#define AUTHN_PASSWORD_MAX 72   /* bcrypt's limit; longer passwords are refused */
#define AUTHN_TOKEN_MAX    4096 /* longest bearer token we look at */

/*
 * Issues an HS256 JWT with claims sub, exp = now + ttl_s, iat and a random jti. Returns the
 * token (caller frees) or NULL. *exp_out gets exp when not NULL.
 */
char *authn_jwt_issue(const char *secret, const char *sub, long ttl_s, long *exp_out);

/*
 * Verifies token: header alg must be HS256 (none and every other algorithm are
 * refused), the signature must match secret, exp must be in the future and sub
 * a non-empty string. Returns 0 with *sub_out (caller frees) and *exp_out, or -1.
 */
int authn_jwt_verify(const char *secret, const char *token, char **sub_out, long *exp_out) MUSTCHECK;

/* bcrypt $2b$ hash of password at cost. Returns a new string or NULL. Slow (~250 ms at 12). */
char *authn_password_hash(const char *password, int cost);

/* True when password matches a $2a$/$2b$/$2y$ hash. Slow; constant-time compare. */
bool authn_password_verify(const char *password, const char *hash);

/* New dialer token "dlt_" + 48 hex chars into out[64]. Returns 0 or -1. */
int authn_token_new(char out[64]) MUSTCHECK;

/* SHA-256 hex of a token, for storage and lookup, into out[65]. */
void authn_token_hash(const char *token, char out[65]);

#endif
