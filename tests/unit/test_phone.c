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

struct pcase {
	const char *in;
	const char *out; /* NULL: invalid */
};

static const struct pcase cases[] = {
    {"09123456789", "09123456789"},
    {"+989123456789", "09123456789"},
    {"00989123456789", "09123456789"},
    {"989123456789", "09123456789"},
    {"9123456789", "09123456789"},
    {"0912 345 6789", "09123456789"},
    {"0912-345-6789", "09123456789"},
    {"0912.345.6789", "09123456789"},
    {"(0912) 345-6789", "09123456789"},
    {"+98 (912) 345 67 89", "09123456789"},
    {"\xdb\xb0\xdb\xb9\xdb\xb1\xdb\xb2\xdb\xb3\xdb\xb4\xdb\xb5\xdb\xb6\xdb\xb7\xdb\xb8\xdb\xb9", "09123456789"},
    {"\xd9\xa0\xd9\xa9\xd9\xa1\xd9\xa2\xd9\xa3\xd9\xa4\xd9\xa5\xd9\xa6\xd9\xa7\xd9\xa8\xd9\xa9", "09123456789"},
    {"09\xdb\xb1\xdb\xb2\xdb\xb3\xdb\xb4\xdb\xb5\xdb\xb6\xdb\xb7\xdb\xb8\xdb\xb9", "09123456789"},
    {"09901234567", "09901234567"},
    {"12345", NULL},
    {"071234567890", NULL},
    {"02112345678", NULL},
    {"0912345678", NULL},
    {"091234567890", NULL},
    {"9812345678", NULL},
    {"0912345678a", NULL},
    {"abc09123456789", NULL},
    {"", NULL},
    {"   ", NULL},
    {"0912+3456789", NULL},
    {"0912345678900000000000000000000000000000000000000000000000000000000000", NULL},
};

static void test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[12];
		int rc = phone_normalize(cases[i].in, out);
		if (cases[i].out) {
			if (rc != 0 || strcmp(out, cases[i].out))
				fail_msg("case %zu (%s): got rc=%d out=%s", i, cases[i].in, rc, out);
		} else if (rc != -1 || out[0] != '\0') {
			fail_msg("case %zu (%s): expected invalid, got %s", i, cases[i].in, out);
		}
	}
}

static void test_null(void **state)
{
	char out[12];
	(void)state;
	assert_int_equal(phone_normalize(NULL, out), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cases),
	    cmocka_unit_test(test_null),
	};
	return cmocka_run_group_tests_name("phone", tests, NULL, NULL);
}
