/*
 * Table-driven tests of phone_normalize: every accepted form, Persian and
 * Arabic-Indic digits, separators, and the invalid cases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "phone.h"

/* UTF-8 of the digits 0..9: Persian U+06F0..9 and Arabic-Indic U+0660..9 */
#define P0 "\xdb\xb0"
#define P1 "\xdb\xb1"
#define P2 "\xdb\xb2"
#define P3 "\xdb\xb3"
#define P4 "\xdb\xb4"
#define P5 "\xdb\xb5"
#define P6 "\xdb\xb6"
#define P7 "\xdb\xb7"
#define P8 "\xdb\xb8"
#define P9 "\xdb\xb9"
#define A0 "\xd9\xa0"
#define A1 "\xd9\xa1"
#define A2 "\xd9\xa2"
#define A3 "\xd9\xa3"
#define A4 "\xd9\xa4"
#define A5 "\xd9\xa5"
#define A6 "\xd9\xa6"
#define A7 "\xd9\xa7"
#define A8 "\xd9\xa8"
#define A9 "\xd9\xa9"

#define N    "09123456789"
#define SP53 "                                                     " /* 53 spaces */

struct pcase {
	const char *in;
	const char *out; /* NULL: invalid */
};

static const struct pcase cases[] = {
    /* every accepted form */
    {"09123456789", N},
    {"+989123456789", N},
    {"00989123456789", N},
    {"989123456789", N},
    {"9123456789", N},
    {"09901234567", "09901234567"},
    {"09011234567", "09011234567"},
    {"+989351234567", "09351234567"},
    {"9381234567", "09381234567"},
    {"00989990000000", "09990000000"},

    /* separators: spaces, tabs, dashes, dots, parentheses */
    {"0912 345 6789", N},
    {"0912-345-6789", N},
    {"0912.345.6789", N},
    {"(0912) 345-6789", N},
    {"+98 (912) 345 67 89", N},
    {"+98-912-345-6789", N},
    {"0098 912 345 6789", N},
    {"98 912 345 6789", N},
    {"912 345 6789", N},
    {"  09123456789  ", N},
    {"\t0912\t345\t6789", N},
    {"0.9.1.2.3.4.5.6.7.8.9", N},
    {"(+98)9123456789", N},
    {"+ 98 912 3456789", N},

    /* Persian and Arabic-Indic digits, whole or mixed */
    {P0 P9 P1 P2 P3 P4 P5 P6 P7 P8 P9, N},
    {A0 A9 A1 A2 A3 A4 A5 A6 A7 A8 A9, N},
    {"09" P1 P2 P3 P4 P5 P6 P7 P8 P9, N},
    {"+" P9 P8 P9 P1 P2 P3 P4 P5 P6 P7 P8 P9, N},
    {P0 P0 P9 P8 P9 P1 P2 P3 P4 P5 P6 P7 P8 P9, N},
    {P9 P8 P9 P1 P2 P3 P4 P5 P6 P7 P8 P9, N},
    {P9 P1 P2 P3 P4 P5 P6 P7 P8 P9, N},
    {P0 P9 P1 P2 " " P3 P4 P5 "-" P6 P7 P8 P9, N},
    {"(" A0 A9 A1 A2 ") " A3 A4 A5 "." A6 A7 A8 A9, N},
    {P0 "9" A1 P2 "3" A4 P5 "6" A7 P8 "9", N},
    {P0 P9 P0 P1 P2 P3 P4 P5 P6 P7 P8, "09012345678"},

    /* the length limit counts bytes: 64 is read, 65 is not */
    {"0912" SP53 "3456789", N},
    {"0912 " SP53 "3456789", NULL},

    /* too short, too long */
    {"12345", NULL},
    {"0912345678", NULL},
    {"912345678", NULL},
    {"091234567890", NULL},
    {"91234567890", NULL},
    {"98912345678", NULL},
    {"9891234567890", NULL},
    {"0098912345678", NULL},
    {"009891234567890", NULL},
    {P0 P9 P1 P2 P3 P4 P5 P6 P7 P8, NULL},
    {"0912345678900000000000000000000000000000000000000000000000000000000000", NULL},

    /* not a mobile: landlines, other countries, the 98-as-country-code quirk */
    {"02112345678", NULL},
    {"071234567890", NULL},
    {"+982112345678", NULL},
    {"00982112345678", NULL},
    {"07112345678", NULL},
    {"9812345678", NULL}, /* COMPAT §3.1: 98 is taken as the country code */
    {"+19123456789", NULL},
    {"00449123456789", NULL},
    {"+98 0912 345 6789", NULL},
    {"19123456789", NULL},
    {"89123456789", NULL},

    /* letters and other characters */
    {"0912345678a", NULL},
    {"abc09123456789", NULL},
    {"0912345678O", NULL},
    {"0912_345_6789", NULL},
    {"0912/345/6789", NULL},
    {"0912+3456789", NULL},
    {"09123456789+", NULL},
    {"tel:09123456789", NULL},
    {"0912#3456789", NULL},
    {"0912\xdb\xba"
     "3456789",
     NULL}, /* U+06FA, not a digit */
    {"0912\xef\xbc\x93"
     "456789",
     NULL},                    /* U+FF13, a full-width digit */
    {"09123456789\xdb", NULL}, /* a lead byte cut short */
    {"\xd9", NULL},

    /* empty */
    {"", NULL},
    {"   ", NULL},
    {"()", NULL},
    {"+", NULL},
    {"--..", NULL},
};

static void test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[12];
		memset(out, 'x', sizeof(out));
		int rc = phone_normalize(cases[i].in, out);
		if (cases[i].out) {
			if (rc != 0 || strcmp(out, cases[i].out))
				fail_msg("case %zu (%s): got rc=%d out=%.12s", i, cases[i].in, rc, out);
		} else if (rc != -1 || out[0] != '\0') {
			fail_msg("case %zu (%s): expected invalid, got rc=%d out=%.12s", i, cases[i].in, rc, out);
		}
	}
}

static void test_null(void **state)
{
	char out[12];
	(void)state;
	memset(out, 'x', sizeof(out));
	assert_int_equal(phone_normalize(NULL, out), -1);
	assert_int_equal(out[0], '\0');
}

/* A normalized number normalizes to itself. */
static void test_idempotent(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char once[12], twice[12];
		if (!cases[i].out)
			continue;
		assert_int_equal(phone_normalize(cases[i].in, once), 0);
		assert_int_equal(phone_normalize(once, twice), 0);
		assert_string_equal(once, twice);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cases),
	    cmocka_unit_test(test_null),
	    cmocka_unit_test(test_idempotent),
	};
	return cmocka_run_group_tests_name("phone", tests, NULL, NULL);
}
