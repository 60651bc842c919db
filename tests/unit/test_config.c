/*
 * The config table: defaults, env over .env, a bad value fails naming its key,
 * secrets masked in the dump; and the Redis URL parser.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "rds.h"

static char envfile[64];

static int setup(void **state)
{
	(void)state;
	snprintf(envfile, sizeof(envfile), "/tmp/dialer-cfg-test-%d.env", (int)getpid());
	FILE *f = fopen(envfile, "w");
	fputs("# comment\nPORT=9100\nexport LOG_LEVEL=\"warn\"\nSECRET_KEY='from-file-secret-1234567'\n", f);
	fclose(f);
	setenv("DIALER_ENV_FILE", envfile, 1);
	unsetenv("PORT");
	unsetenv("SECRET_KEY");
	unsetenv("DATABASE_URL");
	unsetenv("REDIS_URL");
	unsetenv("LOG_LEVEL");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(envfile);
	config_free();
	return 0;
}

static void test_file_and_env(void **state)
{
	(void)state;
	assert_int_equal(config_load(CONFIG_NEED_SECRET), 0);
	assert_int_equal(cfg.port, 9100);
	assert_string_equal(cfg.secret_key, "from-file-secret-1234567");
	assert_string_equal(cfg.log_level, "warn");
	assert_int_equal(cfg.access_token_expire_minutes, 1440);
	assert_string_equal(cfg.cors_origins[0], "http://localhost:5173");
	setenv("PORT", "9200", 1);
	assert_int_equal(config_load(0), 0);
	assert_int_equal(cfg.port, 9200); /* the environment wins over .env */
	unsetenv("PORT");
}

static void test_bad_values(void **state)
{
	(void)state;
	static const char *bad[][2] = {
	    {"PORT", "70000"},         {"PORT", "abc"},          {"ALGORITHM", "HS512"},
	    {"CORS_ORIGINS", "[1]"},   {"CORS_ORIGINS", "nope"}, {"SKIP_HOLIDAYS", "maybe"},
	    {"REDIS_URL", "http://x"}, {"SECRET_KEY", "short"},  {"LOG_LEVEL", "loud"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv(bad[i][0], bad[i][1], 1);
		if (config_load(CONFIG_NEED_SECRET) != -1)
			fail_msg("%s=%s was accepted", bad[i][0], bad[i][1]);
		unsetenv(bad[i][0]);
	}
	setenv("DIALER_ENV_FILE", "/nonexistent", 1);
	assert_int_equal(config_load(CONFIG_NEED_SECRET), -1); /* SECRET_KEY required */
	assert_int_equal(config_load(0), 0);
	setenv("DIALER_ENV_FILE", envfile, 1);
}

static void test_dump_masks(void **state)
{
	(void)state;
	char *buf = NULL;
	size_t len = 0;
	assert_int_equal(config_load(CONFIG_NEED_SECRET), 0);
	FILE *f = open_memstream(&buf, &len);
	config_dump(f);
	fclose(f);
	assert_null(strstr(buf, "from-file-secret"));
	assert_non_null(strstr(buf, "SECRET_KEY=********"));
	assert_non_null(strstr(buf, "PORT=9100"));
	free(buf);
}

static void test_redis_url(void **state)
{
	(void)state;
	struct rds_url u;
	assert_int_equal(rds_url_parse("redis://127.0.0.1:6380/2", &u), 0);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 6380);
	assert_int_equal(u.db, 2);
	assert_string_equal(u.password, "");
	assert_int_equal(rds_url_parse("redis://:pw@host", &u), 0);
	assert_string_equal(u.password, "pw");
	assert_int_equal(u.port, 6379);
	assert_int_equal(rds_url_parse("redis://user:pw2@h:1/0", &u), 0);
	assert_string_equal(u.password, "pw2");
	assert_int_equal(rds_url_parse("redis://h:0", &u), -1);
	assert_int_equal(rds_url_parse("redis://h:99999", &u), -1);
	assert_int_equal(rds_url_parse("http://h", &u), -1);
	assert_int_equal(rds_url_parse("redis://", &u), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_file_and_env),
	    cmocka_unit_test(test_bad_values),
	    cmocka_unit_test(test_dump_masks),
	    cmocka_unit_test(test_redis_url),
	};
	return cmocka_run_group_tests_name("config", tests, setup, teardown);
}
