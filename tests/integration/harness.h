/* Integration test harness: free ports, one database per test binary, child processes
 * (the real dialer binaries, redis-server, supervisord) and HTTP through libcurl.
 * Every function here is for tests only; failures are reported, never hidden. */
#ifndef TH_HARNESS_H
#define TH_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

/* The values scripts/test.sh and th_api_start() agree on. */
#define TH_SECRET_KEY      "test-secret-key-0123456789abcdef"
#define TH_DIALER_TOKEN    "test-dialer-token"
#define TH_DEFAULT_COMPANY "default"
#define TH_ROOT_USER       "root"
#define TH_ROOT_PASS       "rootpass123"

/* Exit status convention of th_run() and th_proc_stop(): the exit code (0..255) when the child
 * exited, 128 + signal number when a signal ended it, TH_FAILED when it could not be started
 * or did not end in time (th_run). */
#define TH_FAILED (-1)

/* Call once before anything else (group setup) and once at the end (group teardown).
 * th_init ignores SIGPIPE and initialises libcurl; th_fini frees the shared curl handle. */
void th_init(void);
void th_fini(void);

/* Value of a required environment variable; prints which one is missing and returns NULL
 * when it is unset or empty. Borrowed from the environment. */
const char *th_env(const char *key);

/* $DIALER_TEST_TMP, or "/tmp" when unset. Borrowed. */
const char *th_tmp_dir(void);

/* Short name of this test binary ("test_auth"), for database and log names. Borrowed. */
const char *th_test_name(void);

/* Monotonic clock in milliseconds. */
long long th_now_ms(void);

/* Sleep for ms milliseconds. */
void th_sleep_ms(int ms);

/* A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read back, close), or -1. */
int th_free_port(void);

/* 0 once something accepts TCP connections on 127.0.0.1:port, -1 after timeout_ms. */
int th_wait_port(int port, int timeout_ms);

/* (Re)creates database `name` (dropped first, with FORCE, when it exists) through
 * TEST_PG_ADMIN_URL and returns a URL for it: the admin URL with its database replaced.
 * Caller frees. NULL on failure (the reason is printed). */
char *th_fresh_db(const char *name);

/* Runs one SQL statement with text parameters on db_url (a fresh connection each call).
 * When out_value is not NULL it receives a copy of the first column of the first row
 * (NULL when there is no row or the value is SQL NULL); caller frees. Returns 0, or -1
 * with the server's message printed. */
int th_sql(const char *db_url, const char *sql, int nparams, const char *const *params, char **out_value);

/* th_sql() that must succeed (a cmocka failure naming the statement otherwise), with the text
 * parameters that follow (at most 8, ending with NULL; so none of them is SQL NULL). Returns a
 * copy of the first column of the first row, NULL when there is no row or the value is SQL NULL.
 * Caller frees. */
char *th_sql_get(const char *db_url, const char *sql, ...) __attribute__((sentinel));

/* th_sql_get() whose value must not be NULL (a cmocka failure otherwise), as an integer. */
long long th_sql_int(const char *db_url, const char *sql, ...) __attribute__((sentinel));

/* th_sql_get() and th_sql_int() of a statement built from a printf format, without parameters. */
char *th_sqlf(const char *db_url, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
long long th_sqlf_int(const char *db_url, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checks (cmocka) that th_sql_get(db_url, sql, params..., NULL) is the string expected, or is
 * NULL (no row, or SQL NULL) when expected is NULL; prints the statement and both values when it
 * is not. Arguments after expected: the statement, its text parameters, NULL. */
#define TH_EXPECT_SQL(db_url, expected, ...) th_expect_sql_at(__FILE__, __LINE__, (db_url), (expected), __VA_ARGS__)

/* Checks (cmocka) that sql (no parameters) answers want within timeout_ms, asking again every
 * 50 ms (for what a worker writes asynchronously); prints the last answer when it does not. */
#define TH_WAIT_SQL(db_url, sql, want, timeout_ms) \
	th_wait_sql_at((db_url), (sql), (want), (timeout_ms), __FILE__, __LINE__)

void th_expect_sql_at(const char *file, int line, const char *db_url, const char *expected, const char *sql, ...)
    __attribute__((sentinel));
void th_wait_sql_at(const char *db_url, const char *sql, const char *want, int timeout_ms, const char *file, int line);

/* Runs argv (argv[0] looked up in PATH when it has no '/'), in $DIALER_ROOT when that is set
 * (as `make run` runs the binaries: schema/ and the Procfile are found there), with this
 * process's environment plus env_extra ("KEY=VALUE" strings, NULL-terminated, may be NULL;
 * an extra replaces a variable of the same name, and a later extra wins over an earlier
 * one). stdin is /dev/null, stderr is inherited. When out_stdout is not NULL, stdout is captured into a
 * NUL-terminated buffer the caller frees. Waits at most timeout_ms, then SIGKILLs the child
 * and returns TH_FAILED. Returns the exit status (see TH_FAILED). */
int th_run(const char *const *argv, const char *const *env_extra, int timeout_ms, char **out_stdout);

struct th_proc;

/* Starts path with argv (argv[0] is the name shown in ps) in the directory and with the
 * environment th_run() gives, in its own process group, with stdin from /dev/null and
 * stdout/stderr appended to log_path (inherited when log_path is NULL). The child gets SIGTERM if this process dies.
 * Returns a handle the caller releases with th_proc_stop(), or NULL. */
struct th_proc *th_proc_start(const char *path, const char *const *argv, const char *const *env_extra,
                              const char *log_path);

/* Starts $DIALER_BIN_DIR/<name> (a dialer process: "dialer-scheduler", "dialer-results", …) with
 * DATABASE_URL=db_url and REDIS_URL=$REDIS_URL, then the "KEY=VALUE" strings that follow (ending
 * with NULL; they win), output appended to $DIALER_TEST_TMP/<test>-<log_name>.log (log_name NULL:
 * name). Returns the process (stop it with th_proc_stop) or NULL. */
struct th_proc *th_dialer_start(const char *name, const char *db_url, const char *log_name, ...)
    __attribute__((sentinel));

/* pid of the child. */
pid_t th_proc_pid(const struct th_proc *p);

/* true while the child has not exited (reaps it when it has; th_proc_stop then returns the
 * status it had). */
bool th_proc_alive(struct th_proc *p);

/* Sends SIGTERM, waits up to 10 s, then SIGKILLs the process group and waits. Frees p
 * (NULL is allowed and returns 0). Returns the exit status; a clean shutdown is 0. When
 * out_elapsed_ms is not NULL it receives the time from SIGTERM to exit. */
int th_proc_stop_timed(struct th_proc *p, long long *out_elapsed_ms);
int th_proc_stop(struct th_proc *p);

/* Starts `redis-server --port PORT --bind 127.0.0.1 --dir DIR --save '' --appendonly no
 * --daemonize no` (output appended to $DIALER_TEST_TMP/<test>-redis.log) and waits until it
 * accepts connections (10 s at most). Returns the process, or NULL (nothing left running). */
struct th_proc *th_redis_start(const char *dir, int port);

/* Stops a redis-server from th_redis_start (SIGTERM, as th_proc_stop) and returns its exit
 * status. */
int th_redis_stop(struct th_proc *p);

/* Empties the Redis database of url ("redis://HOST:PORT[/DB]") with FLUSHDB, so that no
 * counter or revocation left by an earlier run (failed logins are counted for a minute)
 * reaches this one. Test binaries run one after another; call it from group setup. Returns 0
 * or -1. */
int th_redis_flush(const char *url);

/* Runs `redis-cli -u $REDIS_URL --no-raw` with the arguments that follow (at most 12, ending with
 * NULL), which must exit 0 within 20 s (a cmocka failure otherwise). Returns its stdout (caller
 * frees). */
char *th_redis_cli(const char *arg, ...) __attribute__((sentinel));

/* Runs `$DIALER_BIN_DIR/dialerctl migrate` and `dialerctl create-admin root rootpass123`
 * against db_url with the environment th_api_start gives the API. Returns 0 or -1. */
int th_bootstrap_db(const char *db_url);

/* A running dialer-api. */
struct th_api {
	struct th_proc *proc;
	int port;
	char base_url[64]; /* "http://127.0.0.1:PORT", no trailing slash */
};

/* Starts $DIALER_BIN_DIR/dialer-api on a free port with PORT, BIND_ADDRESS=127.0.0.1,
 * DATABASE_URL=db_url, REDIS_URL=redis_url, SECRET_KEY, DIALER_TOKEN, DEFAULT_COMPANY,
 * API_THREADS=2 and LOG_LEVEL=info, then the "KEY=VALUE" strings that follow (ending with
 * NULL; they win over the defaults). Output goes to $DIALER_TEST_TMP/<test>-api.log. Waits
 * until GET /health answers 200 (30 s at most). Returns 0 with *out filled, or -1 (the API
 * is stopped again). */
int th_api_start(struct th_api *out, const char *db_url, const char *redis_url, ...) __attribute__((sentinel));

/* Stops the API as th_proc_stop() does and returns its exit status (0 is a clean exit,
 * which also means LeakSanitizer found nothing). Safe to call twice. */
int th_api_stop(struct th_api *api);

/* The start of a group setup: th_init(), then a fresh database named "it_<test name>"
 * (th_fresh_db), the Redis of $REDIS_URL emptied (th_redis_flush) and the database bootstrapped
 * (th_bootstrap_db). Returns the database URL (caller frees), or NULL (the reason is printed). */
char *th_setup_db(void);

/* Group setup of a test against dialer-api: th_setup_db() into *db_url, then
 * th_api_start(api, *db_url, $REDIS_URL, ...) with the "KEY=VALUE" strings that follow (ending
 * with NULL), then, when root_token is not NULL, root logged in (th_login) into *root_token
 * (caller frees). Returns 0, or -1 (the reason is printed). */
int th_setup_api(struct th_api *api, char **db_url, char **root_token, ...) __attribute__((sentinel));

/* Group teardown that matches th_setup_api(): th_api_stop(api), frees *root_token (when
 * root_token is not NULL) and *db_url and sets them to NULL, then th_fini(). Returns 0 when the
 * API exited cleanly (see th_api_stop), else -1. */
int th_teardown_api(struct th_api *api, char **db_url, char **root_token);

/* One response header. */
struct th_header {
	char *name;
	char *value;
};

/* An HTTP response; everything in it is owned by it. */
struct th_resp {
	long status; /* 0 when no response arrived (connection refused, closed, timeout) */
	char *body;  /* NUL-terminated (may contain earlier NULs); "" when empty */
	size_t body_len;
	json_t *json;              /* the body parsed as a JSON object or array, else NULL */
	struct th_header *headers; /* the final response's headers, in order */
	size_t nheaders;
	char *error;   /* curl's message when status is 0, else NULL */
	int curl_code; /* curl's CURLcode: 0 when an HTTP response was read */
};

/* true when r failed because the server closed the connection without a response (nothing
 * received, or a reset), as opposed to a malformed response or a timeout. */
bool th_resp_closed(const struct th_resp *r);

/* In a child after fork(): forget the parent's HTTP handle, so that the child's requests open
 * their own connections instead of sharing the parent's cached keep-alive socket with every
 * other child (answers then reach the wrong process). The handle is not cleaned up: that would
 * touch the parent's connection; the child exits without freeing it. */
void th_http_after_fork(void);

/* Sends one request and waits for the answer (30 s at most). url is absolute. bearer, when
 * not NULL, becomes "Authorization: Bearer <bearer>". body (NUL-terminated, may be NULL) is
 * sent with content_type (no Content-Type header when content_type is NULL). extra_headers
 * is a NULL-terminated list of "Name: value" lines (may be NULL). Redirects are not followed
 * and "Expect: 100-continue" is not sent unless extra_headers asks for it. Never returns
 * NULL; caller frees with th_resp_free(). */
struct th_resp *th_http(const char *method, const char *url, const char *bearer, const char *content_type,
                        const char *body, const char *const *extra_headers);

/* th_http() against api->base_url + path, with a JSON body when json_body is not NULL. */
struct th_resp *th_call(const struct th_api *api, const char *method, const char *path, const char *bearer,
                        const char *json_body);

/* th_call() with the JSON body built from a printf format. */
struct th_resp *th_callf(const struct th_api *api, const char *method, const char *path, const char *bearer,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* GET of the path built from a printf format (up to 1 KiB). */
struct th_resp *th_getf(const struct th_api *api, const char *bearer, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Value of the last response header called name (case-insensitive), or NULL. Borrowed. */
const char *th_resp_header(const struct th_resp *r, const char *name);

void th_resp_free(struct th_resp *r);

/* Makes later requests leave from this loopback address ("127.0.0.2" …), so that per-IP
 * counters of one test do not reach another. NULL returns to 127.0.0.1. May be called before
 * th_init() (before th_setup_api(), so that the setup's requests leave from ip too). */
void th_set_source_ip(const char *ip);

/* POST /api/auth/login with the JSON body {"username": user, "password": pass}; returns the
 * response (caller frees with th_resp_free()). */
struct th_resp *th_login_call(const struct th_api *api, const char *user, const char *pass);

/* Logs in through th_login_call() and returns the access_token, or NULL (the response is
 * printed). Caller frees. */
char *th_login(const struct th_api *api, const char *user, const char *pass);

/* th_call() that must answer status (a cmocka failure printing the method, path and response
 * otherwise); the response is freed. */
void th_call_expect(const struct th_api *api, const char *method, const char *path, const char *bearer,
                    const char *json_body, long status);

/* POST /api/companies as token with name and display_name (and "is_active": false when active
 * is false), which must answer 200 with an integer "id" (a cmocka failure otherwise). Returns
 * the id. */
long long th_create_company(const struct th_api *api, const char *token, const char *name, const char *display_name,
                            bool active);

/* POST /api/{company}/admins as token with username, password and role, which must answer 200
 * (a cmocka failure otherwise); then logs the new user in. Returns th_login()'s token (caller
 * frees; NULL when the login failed, with the response printed). */
char *th_create_user(const struct th_api *api, const char *token, const char *company, const char *username,
                     const char *password, const char *role);

/* Every day of the week from 00:00 to 23:59:59: a schedule's "intervals". */
#define TH_ALL_DAY_INTERVALS                                                            \
	"[{\"day_of_week\": 0, \"start_time\": \"00:00\", \"end_time\": \"23:59:59\"}," \
	" {\"day_of_week\": 1, \"start_time\": \"00:00\", \"end_time\": \"23:59:59\"}," \
	" {\"day_of_week\": 2, \"start_time\": \"00:00\", \"end_time\": \"23:59:59\"}," \
	" {\"day_of_week\": 3, \"start_time\": \"00:00\", \"end_time\": \"23:59:59\"}," \
	" {\"day_of_week\": 4, \"start_time\": \"00:00\", \"end_time\": \"23:59:59\"}," \
	" {\"day_of_week\": 5, \"start_time\": \"00:00\", \"end_time\": \"23:59:59\"}," \
	" {\"day_of_week\": 6, \"start_time\": \"00:00\", \"end_time\": \"23:59:59\"}]"

/* A schedule body (PUT /api/{company}/schedule): enabled, holidays not skipped, open all week. */
#define TH_ALL_DAY_SCHEDULE "{\"enabled\": true, \"skip_holidays\": false, \"intervals\": " TH_ALL_DAY_INTERVALS "}"

/* Lets company dial at any time: PUT /api/{company}/billing {"wallet_balance": wallet} and PUT
 * /api/{company}/schedule TH_ALL_DAY_SCHEDULE as token, each of which must answer 200, the
 * schedule with an integer "version" (a cmocka failure otherwise). Returns that version. */
long long th_open_company(const struct th_api *api, const char *token, const char *company, long long wallet);

/* json[key] as a string, or NULL when absent or not a string. Borrowed. */
const char *th_json_str(const json_t *json, const char *key);

/* json[key] as an integer into *out; -1 when absent or not an integer. */
int th_json_int(const json_t *json, const char *key, long long *out);

/* true when s is an ISO-8601 datetime with an explicit offset, as COMPAT §6 requires:
 * YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM). */
bool th_is_datetime(const char *s);

/* Checks (cmocka) that r has the given status, printing the body when it has not. */
#define TH_EXPECT_STATUS(r, st) th_expect_status_at((r), (st), __FILE__, __LINE__)

/* Checks (cmocka) that r is an error: the status, a JSON object whose "detail" equals detail
 * (any string when detail is NULL), and "error": {"code": non-empty string, "message":
 * non-empty string}. */
#define TH_EXPECT_ERROR(r, st, detail) th_expect_error_at((r), (st), (detail), __FILE__, __LINE__)

/* Checks (cmocka) that r is an error as TH_EXPECT_ERROR(r, st, NULL) checks, and that its
 * "detail" starts with prefix (a field name, or the message) when prefix is not NULL. */
#define TH_EXPECT_DETAIL_PREFIX(r, st, prefix) th_expect_detail_prefix_at((r), (st), (prefix), __FILE__, __LINE__)

/* A 422 whose detail names field first ("field: ..."); any detail when field is NULL. */
#define TH_EXPECT_INVALID(r, field) th_expect_detail_prefix_at((r), 422, (field), __FILE__, __LINE__)

/* A bearer token with a signature the API did not make. */
#define TH_BAD_TOKEN "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyb290In0.bad-signature"

/* An expected answer of a role table (COMPAT §1.6): the status, and the detail when it is an
 * error. The answers COMPAT gives, as initializers: */
struct th_expect {
	long status;
	const char *detail;
};
#define TH_OK             \
	{                 \
		200, NULL \
	}
#define TH_NO_AUTH                       \
	{                                \
		401, "Not authenticated" \
	}
#define TH_BAD_AUTH                                   \
	{                                             \
		401, "Could not validate credentials" \
	}
#define TH_DENIED                                    \
	{                                            \
		403, "Access denied to this company" \
	}
#define TH_ADMINS                  \
	{                          \
		403, "Admins only" \
	}
#define TH_SUPERUSERS                 \
	{                             \
		403, "Superuser only" \
	}

/* Checks (cmocka) that r is the answer e: TH_EXPECT_STATUS(r, 200) when e->status is 200, else
 * TH_EXPECT_ERROR(r, e->status, e->detail). */
#define TH_EXPECT_ANSWER(r, e) th_expect_answer_at((r), (e), __FILE__, __LINE__)

/* Checks (cmocka) that json[key] is the string expected, printing json when it is not. */
#define TH_EXPECT_STR(json, key, expected) th_expect_str_at((json), (key), (expected), __FILE__, __LINE__)

/* Checks (cmocka) that json[key] is the integer expected, printing json when it is not. */
#define TH_EXPECT_INT(json, key, expected) th_expect_int_at((json), (key), (expected), __FILE__, __LINE__)

void th_expect_str_at(const json_t *json, const char *key, const char *expected, const char *file, int line);
void th_expect_int_at(const json_t *json, const char *key, long long expected, const char *file, int line);
void th_expect_status_at(const struct th_resp *r, long status, const char *file, int line);
void th_expect_error_at(const struct th_resp *r, long status, const char *detail, const char *file, int line);
void th_expect_detail_prefix_at(const struct th_resp *r, long status, const char *prefix, const char *file, int line);
void th_expect_answer_at(const struct th_resp *r, const struct th_expect *e, const char *file, int line);

/* Checks (cmocka) an admin endpoint's guards in COMPAT §6's order: no token 401 "Not authenticated",
 * a bad token 401, an agent's token 403 "Admins only", another company's admin 403 "Access denied
 * to this company". body may be NULL. */
#define TH_EXPECT_ADMIN_GUARDS(api, method, path, agent, other_admin, body) \
	th_expect_admin_guards_at((api), (method), (path), (agent), (other_admin), (body), __FILE__, __LINE__)
void th_expect_admin_guards_at(const struct th_api *api, const char *method, const char *path, const char *agent,
                               const char *other_admin, const char *body, const char *file, int line);

#endif
