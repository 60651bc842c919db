/*
 * Configuration: one table (config.c) of env keys, types, defaults and
 * validators; read from the environment, then `.env`; validated at start.
 */
#ifndef DIALER_CONFIG_H
#define DIALER_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "common.h"

struct config {
	int port;
	char *bind_address;
	char *database_url;
	char *redis_url;
	char *secret_key;
	char *dialer_token;
	char *default_company;
	char *admin_username;
	char *admin_password;
	int access_token_expire_minutes;
	char *algorithm;
	char *cors_origins_json;
	char **cors_origins; /* parsed from cors_origins_json, NULL-terminated */
	int api_threads;
	int db_pool_size;
	long http_max_body_bytes;
	int http_max_header_bytes;
	int http_max_url_bytes;
	int http_timeout_seconds;
	char *log_level;
	int login_max_failures;
	int login_window_seconds;
	char *timezone;
	int max_batch_size;
	int default_batch_size;
	bool skip_holidays;
	int assignment_timeout_minutes;
	int call_cooldown_days;
	int short_retry_seconds;
	int long_retry_seconds;
	int list_max;
	int metrics_push_seconds;
	int claim_idle_ms;      /* results worker: claim entries pending this long on a dead consumer */
	int max_deliveries;     /* results worker: dead-letter an entry delivered more often than this */
	int results_batch_size; /* results worker: entries read and applied per transaction */
	/* jobs (import, export, bulk) */
	char *data_dir;        /* uploads and export files live under here (shared by API and workers) */
	int job_wait_seconds;  /* how long a job-starting request waits for the result inline */
	long upload_max_bytes; /* largest accepted upload (413 beyond) */
	int export_ttl_hours;  /* export files (and their download) expire after this */
	int bulk_sync_limit;   /* bulk actions over more rows than this run as jobs */
	/* real-time events (common/events, dialer-events) */
	long events_stream_len;          /* XADD MAXLEN ~ of dialer:events: the Last-Event-ID resume window */
	char *events_socket;             /* Unix socket the API hands /api/events and /ws/updates clients to */
	int events_heartbeat_seconds;    /* SSE comment / WebSocket ping interval */
	long events_client_buffer_bytes; /* a client with more than this unsent is dropped (slow client) */
	int events_max_clients;          /* per dialer-events process; beyond it new clients get 503 */
	int events_results_max;          /* results listed in one result.ingested event (the count is exact) */
	/* stats */
	int stats_batch_size; /* stats worker: results-stream entries counted per transaction */
	/* webhooks (api/webhooks.c, workers/webhooks) */
	int webhooks_per_company;         /* most webhooks one company may have */
	int webhook_concurrency;          /* deliveries in flight per dialer-webhooks process */
	int webhook_concurrency_per_hook; /* deliveries in flight to one webhook, over all processes */
	int webhook_connect_timeout_ms;   /* TCP + TLS connect of one attempt */
	int webhook_timeout_ms;           /* one attempt in total (connect, send, response) */
	int webhook_retry_base_ms;        /* delay after the first failed attempt; doubles after each */
	int webhook_retry_max_ms;         /* longest delay between two attempts */
	int webhook_max_age_seconds;      /* a delivery still failing this long after its event gives up */
	int webhook_max_pending;          /* backlog of one webhook; events beyond it are dropped, counted */
	int webhook_log_retention_hours;  /* finished deliveries and their attempts are kept this long */
	bool webhook_allow_private;       /* deliveries may reach loopback/private addresses (tests, labs) */
};

extern struct config cfg;

/* Keys a process cannot run without (beyond those with defaults). */
enum {
	CONFIG_NEED_SECRET = 1 << 0,       /* SECRET_KEY */
	CONFIG_NEED_DIALER_TOKEN = 1 << 1, /* DIALER_TOKEN */
};

/*
 * Loads every key from the environment, falling back to the file named by
 * DIALER_ENV_FILE (default ./.env), then to the default. On a bad or missing
 * value prints "config: KEY: reason" to stderr and returns -1. Sets the log level.
 */
int config_load(unsigned need) MUSTCHECK;

/* Prints KEY=value for every key, secrets masked. */
void config_dump(FILE *out);

/* Frees what config_load allocated. */
void config_free(void);

#endif
