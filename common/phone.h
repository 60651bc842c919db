/*
 * Iranian mobile number normalization, shared by numbers, users, dialer
 * reports and agent phones: every accepted form becomes "09" + 9 digits.
 */
#ifndef DIALER_PHONE_H
#define DIALER_PHONE_H

#include "common.h"

#define PHONE_INPUT_MAX 64 /* longer inputs are invalid without looking further */

/*
 * Normalizes in (UTF-8) into out[12] ("09XXXXXXXXX"). Accepts 09…, +989…,
 * 00989…, 989… (12 digits), 9… (10 digits), with spaces, dashes, dots,
 * parentheses and Persian (U+06F0..9) or Arabic-Indic (U+0660..9) digits.
 * Returns 0, or -1 when in is not a valid mobile number (out is then "").
 */
int phone_normalize(const char *in, char out[12]) MUSTCHECK;

#endif
