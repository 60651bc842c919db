/*
 * The one configuration table (STYLE 10): env name, type, target, default,
 * limits, validator, secret flag. Everything is validated at start; a bad value
 * names its key.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "tz.h"
#include "util.h"

struct config cfg;

enum ctype { CT_INT, CT_LONG, CT_STR, CT_BOOL };

struct centry {
	const char *name;
	enum ctype type;
	size_t off;
	const char *def; /* NULL: no default (required or optional, see need) */
	long min, max;
	bool secret;
	unsigned need;                       /* CONFIG_NEED_* flag making it required */
	const char *(*check)(const char *v); /* returns an error text, or NULL */
};

static const char *check_pg_url(const char *v)
{
	if (strncmp(v, "postgresql://", 13) && strncmp(v, "postgres://", 11) && !strchr(v, '='))
		return "must be a postgresql:// URL or a libpq key=value string";
	return NULL;
}

static const char *check_redis_url(const char *v)
{
	if (strncmp(v, "redis://", 8))
		return "must be a redis://[:password@]host:port[/db] URL";
	return NULL;
}

static const char *check_secret(const char *v)
{
	return strlen(v) < 16 ? "must be at least 16 characters" : NULL;
}

static const char *check_token(const char *v)
{
	return strlen(v) < 8 ? "must be at least 8 characters" : NULL;
}

static const char *check_alg(const char *v)
{
	return strcmp(v, "HS256") ? "only HS256 is supported" : NULL;
}

static const char *check_level(const char *v)
{
	enum log_level l;
	return log_level_parse(v, &l) ? "must be one of error, warn, info, debug" : NULL;
}

static const char *check_slug(const char *v)
{
	size_t n = strlen(v);
	if (n < 1 || n > 64)
		return "must be 1..64 characters";
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)v[i]) && v[i] != '-' && v[i] != '_')
			return "must contain only letters, digits, '-' and '_'";
	return NULL;
}

static const char *check_zone(const char *v)
{
	char path[160];
	if (strcmp(v, "UTC") == 0)
		return NULL;
	if (strlen(v) > 64 || strstr(v, "..") || v[0] == '/')
		return "must be a zone name such as Asia/Tehran";
	snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", v);
	return access(path, R_OK) ? "unknown time zone (no tzdata file; install tzdata)" : NULL;
}

static const char *check_cors(const char *v)
{
	json_error_t e;
	json_t *a = json_loads(v, 0, &e);
	const char *err = NULL;
	size_t i;
	json_t *it;
	if (!json_is_array(a))
		err = "must be a JSON array of origin strings";
	else
		json_array_foreach(a, i, it) if (!json_is_string(it)) err = "must be a JSON array of origin strings";
	json_decref(a);
	return err;
}

static const char *check_socket_path(const char *v)
{
	/* sockaddr_un.sun_path holds 108 bytes with the NUL */
	return !*v || strlen(v) > 107 ? "must be a path of 1..107 bytes" : NULL;
}

#define S(f) offsetof(struct config, f)
static const struct centry table[] = {
    {"PORT", CT_INT, S(port), "8000", 1, 65535, false, 0, NULL},
    {"BIND_ADDRESS", CT_STR, S(bind_address), "0.0.0.0", 0, 0, false, 0, NULL},
    {"DATABASE_URL", CT_STR, S(database_url), "postgresql://postgres@127.0.0.1:55432/dialer", 0, 0, true, 0,
     check_pg_url},
    {"REDIS_URL", CT_STR, S(redis_url), "redis://127.0.0.1:56379/0", 0, 0, true, 0, check_redis_url},
    {"SECRET_KEY", CT_STR, S(secret_key), NULL, 0, 0, true, CONFIG_NEED_SECRET, check_secret},
    {"DIALER_TOKEN", CT_STR, S(dialer_token), NULL, 0, 0, true, CONFIG_NEED_DIALER_TOKEN, check_token},
    {"DEFAULT_COMPANY", CT_STR, S(default_company), "default", 0, 0, false, 0, check_slug},
    {"ADMIN_USERNAME", CT_STR, S(admin_username), "admin", 0, 0, false, 0, NULL},
    {"ADMIN_PASSWORD", CT_STR, S(admin_password), NULL, 0, 0, true, 0, NULL},
    {"ACCESS_TOKEN_EXPIRE_MINUTES", CT_INT, S(access_token_expire_minutes), "1440", 1, 525600, false, 0, NULL},
    {"ALGORITHM", CT_STR, S(algorithm), "HS256", 0, 0, false, 0, check_alg},
    {"CORS_ORIGINS", CT_STR, S(cors_origins_json),
     "[\"http://localhost:5173\",\"http://127.0.0.1:5173\",\"http://localhost\",\"http://127.0.0.1\"]", 0, 0, false, 0,
     check_cors},
    {"API_THREADS", CT_INT, S(api_threads), "0", 0, 256, false, 0, NULL},
    {"DB_POOL_SIZE", CT_INT, S(db_pool_size), "4", 1, 64, false, 0, NULL},
    {"HTTP_MAX_BODY_BYTES", CT_LONG, S(http_max_body_bytes), "1048576", 256, 1L << 34, false, 0, NULL},
    {"HTTP_MAX_HEADER_BYTES", CT_INT, S(http_max_header_bytes), "16384", 1024, 1 << 20, false, 0, NULL},
    {"HTTP_MAX_URL_BYTES", CT_INT, S(http_max_url_bytes), "8192", 256, 1 << 20, false, 0, NULL},
    {"HTTP_TIMEOUT_SECONDS", CT_INT, S(http_timeout_seconds), "30", 1, 3600, false, 0, NULL},
    {"LOG_LEVEL", CT_STR, S(log_level), "info", 0, 0, false, 0, check_level},
    {"LOGIN_MAX_FAILURES", CT_INT, S(login_max_failures), "5", 1, 1000, false, 0, NULL},
    {"LOGIN_WINDOW_SECONDS", CT_INT, S(login_window_seconds), "60", 1, 86400, false, 0, NULL},
    {"TIMEZONE", CT_STR, S(timezone), "Asia/Tehran", 0, 0, false, 0, check_zone},
    {"MAX_BATCH_SIZE", CT_INT, S(max_batch_size), "500", 1, 100000, false, 0, NULL},
    {"DEFAULT_BATCH_SIZE", CT_INT, S(default_batch_size), "100", 1, 100000, false, 0, NULL},
    {"SKIP_HOLIDAYS", CT_BOOL, S(skip_holidays), "true", 0, 0, false, 0, NULL},
    {"ASSIGNMENT_TIMEOUT_MINUTES", CT_INT, S(assignment_timeout_minutes), "60", 1, 100000, false, 0, NULL},
    {"CALL_COOLDOWN_DAYS", CT_INT, S(call_cooldown_days), "3", 0, 3650, false, 0, NULL},
    {"SHORT_RETRY_SECONDS", CT_INT, S(short_retry_seconds), "300", 1, 86400, false, 0, NULL},
    {"LONG_RETRY_SECONDS", CT_INT, S(long_retry_seconds), "900", 1, 86400, false, 0, NULL},
    {"LIST_MAX", CT_INT, S(list_max), "1000", 1, 1000000, false, 0, NULL},
    {"METRICS_PUSH_SECONDS", CT_INT, S(metrics_push_seconds), "5", 1, 3600, false, 0, NULL},
    {"CLAIM_IDLE_MS", CT_INT, S(claim_idle_ms), "30000", 100, 86400000, false, 0, NULL},
    {"MAX_DELIVERIES", CT_INT, S(max_deliveries), "5", 1, 1000, false, 0, NULL},
    {"RESULTS_BATCH_SIZE", CT_INT, S(results_batch_size), "1000", 1, 10000, false, 0, NULL},
    {"DATA_DIR", CT_STR, S(data_dir), ".run/data", 0, 0, false, 0, NULL},
    {"JOB_WAIT_SECONDS", CT_INT, S(job_wait_seconds), "10", 0, 3600, false, 0, NULL},
    {"UPLOAD_MAX_BYTES", CT_LONG, S(upload_max_bytes), "104857600", 1024, 1L << 36, false, 0, NULL},
    {"EXPORT_TTL_HOURS", CT_INT, S(export_ttl_hours), "24", 1, 8760, false, 0, NULL},
    {"BULK_SYNC_LIMIT", CT_INT, S(bulk_sync_limit), "10000", 1, 100000000, false, 0, NULL},
    {"EVENTS_STREAM_LEN", CT_LONG, S(events_stream_len), "100000", 100, 100000000, false, 0, NULL},
    {"EVENTS_SOCKET", CT_STR, S(events_socket), ".run/events.sock", 0, 0, false, 0, check_socket_path},
    {"EVENTS_HEARTBEAT_SECONDS", CT_INT, S(events_heartbeat_seconds), "15", 1, 3600, false, 0, NULL},
    {"EVENTS_CLIENT_BUFFER_BYTES", CT_LONG, S(events_client_buffer_bytes), "1048576", 4096, 1L << 30, false, 0, NULL},
    {"EVENTS_MAX_CLIENTS", CT_INT, S(events_max_clients), "10000", 1, 1000000, false, 0, NULL},
    {"EVENTS_RESULTS_MAX", CT_INT, S(events_results_max), "100", 1, 1000, false, 0, NULL},
    {"STATS_BATCH_SIZE", CT_INT, S(stats_batch_size), "2000", 1, 10000, false, 0, NULL},
    {"WEBHOOKS_PER_COMPANY", CT_INT, S(webhooks_per_company), "20", 1, 1000, false, 0, NULL},
    {"WEBHOOK_CONCURRENCY", CT_INT, S(webhook_concurrency), "256", 1, 10000, false, 0, NULL},
    {"WEBHOOK_CONCURRENCY_PER_WEBHOOK", CT_INT, S(webhook_concurrency_per_hook), "8", 1, 1000, false, 0, NULL},
    {"WEBHOOK_CONNECT_TIMEOUT_MS", CT_INT, S(webhook_connect_timeout_ms), "5000", 10, 120000, false, 0, NULL},
    {"WEBHOOK_TIMEOUT_MS", CT_INT, S(webhook_timeout_ms), "10000", 10, 300000, false, 0, NULL},
    {"WEBHOOK_RETRY_BASE_MS", CT_INT, S(webhook_retry_base_ms), "10000", 1, 86400000, false, 0, NULL},
    {"WEBHOOK_RETRY_MAX_MS", CT_INT, S(webhook_retry_max_ms), "3600000", 1, 86400000, false, 0, NULL},
    {"WEBHOOK_MAX_AGE_SECONDS", CT_INT, S(webhook_max_age_seconds), "86400", 1, 2592000, false, 0, NULL},
    {"WEBHOOK_MAX_PENDING", CT_INT, S(webhook_max_pending), "100000", 1, 100000000, false, 0, NULL},
    {"WEBHOOK_LOG_RETENTION_HOURS", CT_INT, S(webhook_log_retention_hours), "72", 1, 87600, false, 0, NULL},
    {"WEBHOOK_ALLOW_PRIVATE", CT_BOOL, S(webhook_allow_private), "false", 0, 0, false, 0, NULL},
};
#undef S

/* .env: KEY=VALUE lines, '#' comments, optional matching quotes. Returns a
 * json object of key → value (caller decrefs), empty when there is no file. */
static json_t *read_env_file(void)
{
	const char *path = getenv("DIALER_ENV_FILE");
	json_t *o = json_object();
	char line[8192];
	FILE *f = fopen(path ? path : ".env", "r");
	if (!f)
		return o;
	while (fgets(line, sizeof(line), f)) {
		char *p = line, *eq, *v, *end;
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '#' || !*p)
			continue;
		if (!strncmp(p, "export ", 7))
			p += 7;
		eq = strchr(p, '=');
		if (!eq)
			continue;
		*eq = '\0';
		for (end = eq; end > p && isspace((unsigned char)end[-1]); end--)
			end[-1] = '\0';
		v = eq + 1;
		end = v + strlen(v);
		while (end > v && isspace((unsigned char)end[-1]))
			*--end = '\0';
		while (isspace((unsigned char)*v))
			v++;
		end = v + strlen(v);
		if (end - v >= 2 && (*v == '"' || *v == '\'') && end[-1] == *v) {
			end[-1] = '\0';
			v++;
		}
		json_object_set_new(o, p, json_string(v));
	}
	fclose(f);
	return o;
}

static int parse_bool(const char *v, bool *out)
{
	static const char *const t[] = {"1", "true", "yes", "on", "True", "TRUE"};
	static const char *const f[] = {"0", "false", "no", "off", "False", "FALSE"};
	for (size_t i = 0; i < ARRAY_LEN(t); i++) {
		if (!strcmp(v, t[i])) {
			*out = true;
			return 0;
		}
		if (!strcmp(v, f[i])) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static int load_cors(void)
{
	json_t *a = json_loads(cfg.cors_origins_json, 0, NULL);
	size_t n = json_array_size(a);
	cfg.cors_origins = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		cfg.cors_origins[i] = xstrdup(json_string_value(json_array_get(a, i)));
	json_decref(a);
	return 0;
}

int config_load(unsigned need)
{
	json_t *file = read_env_file();
	int rc = 0;
	config_free();
	for (size_t i = 0; i < ARRAY_LEN(table); i++) {
		const struct centry *e = &table[i];
		const char *v = getenv(e->name);
		const char *err = NULL;
		char *base = (char *)&cfg + e->off;
		long l;
		if (!v || !*v)
			v = json_string_value(json_object_get(file, e->name));
		if (!v || !*v)
			v = e->def;
		if (!v) {
			if (e->need & need) {
				fprintf(stderr, "config: %s: is required (set it in the environment or .env)\n",
				        e->name);
				rc = -1;
			}
			continue;
		}
		switch (e->type) {
		case CT_INT:
			if (util_parse_long(v, e->min, e->max, &l))
				err = "must be an integer in range";
			else
				*(int *)base = (int)l;
			break;
		case CT_LONG:
			if (util_parse_long(v, e->min, e->max, &l))
				err = "must be an integer in range";
			else
				*(long *)base = l;
			break;
		case CT_BOOL:
			if (parse_bool(v, (bool *)base))
				err = "must be true or false";
			break;
		case CT_STR:
			if (e->check)
				err = e->check(v);
			if (!err)
				*(char **)base = xstrdup(v);
			break;
		}
		if (err) {
			if (e->type == CT_INT || e->type == CT_LONG)
				fprintf(stderr, "config: %s: %s [%ld, %ld]\n", e->name, err, e->min, e->max);
			else
				fprintf(stderr, "config: %s: %s\n", e->name, err);
			rc = -1;
		}
	}
	json_decref(file);
	if (rc == 0) {
		if (tz_init(cfg.timezone)) {
			fprintf(stderr, "config: TIMEZONE: cannot load %s\n", cfg.timezone);
			return -1;
		}
		if (cfg.default_batch_size > cfg.max_batch_size) {
			fprintf(stderr, "config: DEFAULT_BATCH_SIZE: must not exceed MAX_BATCH_SIZE\n");
			return -1;
		}
		if (cfg.webhook_retry_base_ms > cfg.webhook_retry_max_ms) {
			fprintf(stderr, "config: WEBHOOK_RETRY_BASE_MS: must not exceed WEBHOOK_RETRY_MAX_MS\n");
			return -1;
		}
		if (cfg.webhook_connect_timeout_ms > cfg.webhook_timeout_ms) {
			fprintf(stderr, "config: WEBHOOK_CONNECT_TIMEOUT_MS: must not exceed WEBHOOK_TIMEOUT_MS\n");
			return -1;
		}
		load_cors();
		log_level_parse(cfg.log_level, &log_level_current);
	}
	return rc;
}

void config_dump(FILE *out)
{
	for (size_t i = 0; i < ARRAY_LEN(table); i++) {
		const struct centry *e = &table[i];
		const char *base = (const char *)&cfg + e->off;
		switch (e->type) {
		case CT_INT:
			fprintf(out, "%s=%d\n", e->name, *(const int *)base);
			break;
		case CT_LONG:
			fprintf(out, "%s=%ld\n", e->name, *(const long *)base);
			break;
		case CT_BOOL:
			fprintf(out, "%s=%s\n", e->name, *(const bool *)base ? "true" : "false");
			break;
		case CT_STR: {
			const char *s = *(char *const *)base;
			if (!s)
				fprintf(out, "%s=\n", e->name);
			else if (e->secret)
				fprintf(out, "%s=%s\n", e->name, "********");
			else
				fprintf(out, "%s=%s\n", e->name, s);
			break;
		}
		}
	}
}

void config_free(void)
{
	for (size_t i = 0; i < ARRAY_LEN(table); i++) {
		if (table[i].type == CT_STR) {
			char **p = (char **)((char *)&cfg + table[i].off);
			free(*p);
			*p = NULL;
		}
	}
	if (cfg.cors_origins) {
		for (char **p = cfg.cors_origins; *p; p++)
			free(*p);
		free(cfg.cors_origins);
		cfg.cors_origins = NULL;
	}
}
