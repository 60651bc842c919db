/* Integration test harness (see harness.h): processes, ports, databases and HTTP for the
 * test binaries in tests/integration/. Children are started with fork+exec in their own
 * process group and get SIGTERM if the test binary dies, so a crashed test leaves nothing. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <regex.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>

extern char **environ;

struct th_proc {
	pid_t pid;
	bool exited;
	int status; /* exit status once exited, see TH_FAILED */
};

static CURL *th_curl;
static char th_source_ip[64] = "127.0.0.1";

static void *th_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL) {
		fprintf(stderr, "harness: out of memory\n");
		abort();
	}
	return p;
}

static void *th_xrealloc(void *old, size_t n)
{
	void *p = realloc(old, n ? n : 1);

	if (p == NULL) {
		fprintf(stderr, "harness: out of memory\n");
		abort();
	}
	return p;
}

static char *th_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = th_xmalloc(n);

	memcpy(p, s, n);
	return p;
}

static char *th_xstrndup(const char *s, size_t n)
{
	char *p = th_xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

__attribute__((format(printf, 1, 2))) static char *th_xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		fprintf(stderr, "harness: out of memory\n");
		abort();
	}
	return s;
}

void th_init(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "harness: curl_global_init failed\n");
		abort();
	}
}

void th_fini(void)
{
	if (th_curl != NULL) {
		curl_easy_cleanup(th_curl);
		th_curl = NULL;
	}
	curl_global_cleanup();
}

const char *th_env(const char *key)
{
	const char *v = getenv(key);

	if (v == NULL || *v == '\0') {
		print_error("harness: environment variable %s is not set (run through scripts/test.sh)\n", key);
		return NULL;
	}
	return v;
}

const char *th_tmp_dir(void)
{
	const char *v = getenv("DIALER_TEST_TMP");

	return (v != NULL && *v != '\0') ? v : "/tmp";
}

const char *th_test_name(void)
{
	return program_invocation_short_name;
}

long long th_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void th_sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

int th_free_port(void)
{
	struct sockaddr_in sa = {0};
	socklen_t len = sizeof(sa);
	int fd, port = -1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto out;
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		goto out;
	port = ntohs(sa.sin_port);
out:
	close(fd);
	return port;
}

int th_wait_port(int port, int timeout_ms)
{
	long long deadline = th_now_ms() + timeout_ms;
	struct sockaddr_in sa = {0};

	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int rc;

		if (fd < 0)
			return -1;
		rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		close(fd);
		if (rc == 0)
			return 0;
		if (th_now_ms() >= deadline)
			return -1;
		th_sleep_ms(50);
	}
}

/* The admin URL with its database (the path) replaced by name. Caller frees. */
static char *th_url_with_db(const char *url, const char *name)
{
	const char *auth = strstr(url, "://");
	const char *slash, *query;

	if (auth == NULL)
		return NULL;
	auth += 3;
	slash = strchr(auth, '/');
	query = strchr(auth, '?');
	if (slash == NULL || (query != NULL && query < slash)) {
		size_t hostlen = query ? (size_t)(query - url) : strlen(url);

		return th_xasprintf("%.*s/%s%s", (int)hostlen, url, name, query ? query : "");
	}
	return th_xasprintf("%.*s/%s%s", (int)(slash - url), url, name, query ? query : "");
}

static void th_pg_quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static int th_pg_command(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	int rc = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		print_error("harness: %s: %s", sql, PQerrorMessage(conn));
		rc = -1;
	}
	PQclear(res);
	return rc;
}

char *th_fresh_db(const char *name)
{
	const char *admin = th_env("TEST_PG_ADMIN_URL");
	PGconn *conn = NULL;
	char *ident = NULL, *sql = NULL, *url = NULL;

	if (admin == NULL)
		return NULL;
	conn = PQconnectdb(admin);
	if (PQstatus(conn) != CONNECTION_OK) {
		print_error("harness: cannot connect to %s: %s", admin, PQerrorMessage(conn));
		goto out;
	}
	PQsetNoticeProcessor(conn, th_pg_quiet, NULL); /* "does not exist, skipping" */
	ident = PQescapeIdentifier(conn, name, strlen(name));
	if (ident == NULL)
		goto out;
	sql = th_xasprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", ident);
	if (th_pg_command(conn, sql) < 0)
		goto out;
	free(sql);
	sql = th_xasprintf("CREATE DATABASE %s", ident);
	if (th_pg_command(conn, sql) < 0)
		goto out;
	url = th_url_with_db(admin, name);
	if (url == NULL)
		print_error("harness: cannot derive a database URL from %s\n", admin);
out:
	free(sql);
	PQfreemem(ident);
	PQfinish(conn);
	return url;
}

int th_sql(const char *db_url, const char *sql, int nparams, const char *const *params, char **out_value)
{
	PGconn *conn = PQconnectdb(db_url);
	PGresult *res = NULL;
	ExecStatusType st;
	int rc = -1;

	if (out_value != NULL)
		*out_value = NULL;
	if (PQstatus(conn) != CONNECTION_OK) {
		print_error("harness: cannot connect to %s: %s", db_url, PQerrorMessage(conn));
		goto out;
	}
	res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	st = PQresultStatus(res);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		print_error("harness: %s: %s", sql, PQerrorMessage(conn));
		goto out;
	}
	if (out_value != NULL && st == PGRES_TUPLES_OK && PQntuples(res) > 0 && PQnfields(res) > 0 &&
	    !PQgetisnull(res, 0, 0))
		*out_value = th_xstrdup(PQgetvalue(res, 0, 0));
	rc = 0;
out:
	PQclear(res);
	PQfinish(conn);
	return rc;
}

enum { TH_SQL_PARAMS_MAX = 8 };

/* th_sql() with the parameters in ap (ending with NULL) that must succeed; the value or NULL. */
static char *th_sql_vget(const char *db_url, const char *sql, va_list ap)
{
	const char *params[TH_SQL_PARAMS_MAX];
	const char *p;
	int n = 0;
	char *v = NULL;

	while ((p = va_arg(ap, const char *)) != NULL) {
		if (n == TH_SQL_PARAMS_MAX)
			fail_msg("harness: more than %d parameters for %s", TH_SQL_PARAMS_MAX, sql);
		params[n++] = p;
	}
	if (th_sql(db_url, sql, n, params, &v) != 0)
		fail_msg("query failed: %s", sql);
	return v;
}

/* The value of sql as an integer; it must not be NULL. Frees nothing of sql. */
static long long th_sql_value_int(const char *sql, char *v)
{
	long long n;

	if (v == NULL)
		fail_msg("query answered NULL or no row: %s", sql);
	n = strtoll(v, NULL, 10);
	free(v);
	return n;
}

char *th_sql_get(const char *db_url, const char *sql, ...)
{
	va_list ap;
	char *v;

	va_start(ap, sql);
	v = th_sql_vget(db_url, sql, ap);
	va_end(ap);
	return v;
}

long long th_sql_int(const char *db_url, const char *sql, ...)
{
	va_list ap;
	char *v;

	va_start(ap, sql);
	v = th_sql_vget(db_url, sql, ap);
	va_end(ap);
	return th_sql_value_int(sql, v);
}

char *th_sqlf(const char *db_url, const char *fmt, ...)
{
	va_list ap;
	char *sql = NULL, *v;

	va_start(ap, fmt);
	if (vasprintf(&sql, fmt, ap) < 0) {
		fprintf(stderr, "harness: out of memory\n");
		abort();
	}
	va_end(ap);
	v = th_sql_get(db_url, sql, NULL);
	free(sql);
	return v;
}

long long th_sqlf_int(const char *db_url, const char *fmt, ...)
{
	va_list ap;
	char *sql = NULL;
	long long n;

	va_start(ap, fmt);
	if (vasprintf(&sql, fmt, ap) < 0) {
		fprintf(stderr, "harness: out of memory\n");
		abort();
	}
	va_end(ap);
	n = th_sql_value_int(sql, th_sql_get(db_url, sql, NULL));
	free(sql);
	return n;
}

void th_expect_sql_at(const char *file, int line, const char *db_url, const char *expected, const char *sql, ...)
{
	va_list ap;
	char *v;
	bool same;

	va_start(ap, sql);
	v = th_sql_vget(db_url, sql, ap);
	va_end(ap);
	same = (v == NULL || expected == NULL) ? v == expected : strcmp(v, expected) == 0;
	if (!same) {
		print_error("%s: expected %s%s%s, got %s%s%s\n", sql, expected ? "\"" : "",
		            expected ? expected : "NULL", expected ? "\"" : "", v ? "\"" : "", v ? v : "NULL",
		            v ? "\"" : "");
		free(v);
		_fail(file, line);
	}
	free(v);
}

void th_wait_sql_at(const char *db_url, const char *sql, const char *want, int timeout_ms, const char *file, int line)
{
	long long deadline = th_now_ms() + timeout_ms;
	char *v = NULL;

	for (;;) {
		free(v);
		v = NULL;
		if (th_sql(db_url, sql, 0, NULL, &v) != 0) {
			print_error("query failed: %s\n", sql);
			_fail(file, line);
		}
		if (v != NULL && strcmp(v, want) == 0)
			break;
		if (th_now_ms() > deadline) {
			print_error("%s: %s after %d ms, wanted %s\n", sql, v ? v : "NULL", timeout_ms, want);
			free(v);
			_fail(file, line);
		}
		th_sleep_ms(50);
	}
	free(v);
}

/* Length of the name part of "KEY=VALUE" (the whole string when there is no '='). */
static size_t th_env_keylen(const char *kv)
{
	const char *eq = strchr(kv, '=');

	return eq ? (size_t)(eq - kv) : strlen(kv);
}

/* true when some entry of list (NULL-terminated, from index `from`) sets the key of kv. */
static bool th_env_overridden(const char *kv, const char *const *list, size_t from)
{
	size_t klen = th_env_keylen(kv);

	if (list == NULL)
		return false;
	for (size_t i = from; list[i] != NULL; i++)
		if (th_env_keylen(list[i]) == klen && strncmp(list[i], kv, klen) == 0)
			return true;
	return false;
}

/* environ with extra applied (see th_run). The array is owned by the caller (free it);
 * its strings are borrowed from environ and extra. */
static char **th_build_env(const char *const *extra)
{
	size_t n = 0, m = 0, k = 0;
	char **env;

	while (environ[n] != NULL)
		n++;
	if (extra != NULL)
		while (extra[m] != NULL)
			m++;
	env = th_xmalloc((n + m + 1) * sizeof(*env));
	for (size_t i = 0; i < n; i++)
		if (!th_env_overridden(environ[i], extra, 0))
			env[k++] = environ[i];
	for (size_t i = 0; i < m; i++)
		if (!th_env_overridden(extra[i], extra, i + 1))
			env[k++] = (char *)extra[i];
	env[k] = NULL;
	return env;
}

/* Exit status of a waitpid() status word (see TH_FAILED). */
static int th_decode_status(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return TH_FAILED;
}

/* Directory children start in: $DIALER_ROOT (the dialer binaries find schema/ and the
 * Procfile there, as under `make run`), else the current one (NULL). Borrowed. */
static const char *th_child_dir(void)
{
	const char *root = getenv("DIALER_ROOT");

	return (root != NULL && *root != '\0') ? root : NULL;
}

/* Child side of a fork: stdin from /dev/null, stdout to out_fd and stderr to err_fd when
 * they are >= 0, cwd dir (when not NULL), own process group, SIGTERM when the parent dies,
 * then exec. Only async-signal-safe calls (plus execvpe) since the parent may have threads. */
__attribute__((noreturn)) static void th_child_exec(const char *path, char *const *argv, char *const *envp, int out_fd,
                                                    int err_fd, const char *dir, pid_t parent)
{
	static const char msg[] = "harness: exec failed\n";
	int devnull = open("/dev/null", O_RDONLY);
	sigset_t none;

	if (devnull >= 0 && devnull != STDIN_FILENO) {
		dup2(devnull, STDIN_FILENO);
		close(devnull);
	}
	if (out_fd >= 0 && out_fd != STDOUT_FILENO)
		dup2(out_fd, STDOUT_FILENO);
	if (err_fd >= 0 && err_fd != STDERR_FILENO)
		dup2(err_fd, STDERR_FILENO);
	if (dir != NULL && chdir(dir) < 0)
		_exit(126);
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(127);
	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execvpe(path, argv, envp);
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* nothing more to say */
	}
	_exit(127);
}

int th_run(const char *const *argv, const char *const *env_extra, int timeout_ms, char **out_stdout)
{
	char **envp = th_build_env(env_extra);
	const char *dir = th_child_dir();
	int pipefd[2] = {-1, -1};
	char *buf = NULL;
	size_t len = 0, cap = 0;
	long long deadline = th_now_ms() + timeout_ms;
	pid_t pid, parent = getpid();
	int wstatus = 0, rc = TH_FAILED;
	bool reaped = false;

	if (out_stdout != NULL) {
		*out_stdout = NULL;
		if (pipe2(pipefd, O_CLOEXEC) < 0) {
			print_error("harness: pipe: %s\n", strerror(errno));
			goto out;
		}
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		print_error("harness: fork: %s\n", strerror(errno));
		goto out;
	}
	if (pid == 0)
		th_child_exec(argv[0], (char *const *)argv, envp, pipefd[1], -1, dir, parent);
	if (pipefd[1] >= 0) {
		close(pipefd[1]);
		pipefd[1] = -1;
		for (;;) {
			struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
			long long left = deadline - th_now_ms();
			ssize_t n;

			if (left <= 0)
				break;
			if (poll(&pfd, 1, (int)left) <= 0)
				continue;
			if (cap - len < 4096) {
				cap = cap ? cap * 2 : 8192;
				buf = th_xrealloc(buf, cap);
			}
			n = read(pipefd[0], buf + len, cap - len - 1);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			len += (size_t)n;
		}
	}
	while (th_now_ms() < deadline) {
		pid_t w = waitpid(pid, &wstatus, WNOHANG);

		if (w == pid) {
			reaped = true;
			break;
		}
		if (w < 0 && errno != EINTR)
			break;
		th_sleep_ms(10);
	}
	if (!reaped) {
		print_error("harness: %s did not finish within %d ms; killed\n", argv[0], timeout_ms);
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		waitpid(pid, &wstatus, 0);
		goto out;
	}
	rc = th_decode_status(wstatus);
	if (out_stdout != NULL) {
		if (buf == NULL)
			buf = th_xmalloc(1);
		buf[len] = '\0';
		*out_stdout = buf;
		buf = NULL;
	}
out:
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	free(buf);
	free(envp);
	return rc;
}

struct th_proc *th_dialer_start(const char *name, const char *db_url, const char *log_name, ...)
{
	enum { EXTRA_MAX = 16 };
	const char *env[EXTRA_MAX + 3], *argv[2] = {name, NULL};
	char path[600], log_path[600], dbkv[700], rkv[300];
	int n = 0;
	va_list ap;

	snprintf(path, sizeof(path), "%s/%s", th_env("DIALER_BIN_DIR"), name);
	snprintf(log_path, sizeof(log_path), "%s/%s-%s.log", th_tmp_dir(), th_test_name(), log_name ? log_name : name);
	snprintf(dbkv, sizeof(dbkv), "DATABASE_URL=%s", db_url);
	snprintf(rkv, sizeof(rkv), "REDIS_URL=%s", th_env("REDIS_URL"));
	env[n++] = dbkv;
	env[n++] = rkv;
	va_start(ap, log_name);
	for (const char *kv = va_arg(ap, const char *); kv; kv = va_arg(ap, const char *)) {
		if (n >= EXTRA_MAX + 2) {
			fprintf(stderr, "harness: th_dialer_start(%s): more than %d variables\n", name, EXTRA_MAX);
			va_end(ap);
			return NULL;
		}
		env[n++] = kv;
	}
	va_end(ap);
	env[n] = NULL;
	return th_proc_start(path, argv, env, log_path);
}

struct th_proc *th_proc_start(const char *path, const char *const *argv, const char *const *env_extra,
                              const char *log_path)
{
	char **envp = th_build_env(env_extra);
	const char *dir = th_child_dir();
	struct th_proc *p = NULL;
	int logfd = -1;
	pid_t pid, parent = getpid();

	if (log_path != NULL) {
		logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (logfd < 0) {
			print_error("harness: cannot open %s: %s\n", log_path, strerror(errno));
			goto out;
		}
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		print_error("harness: fork: %s\n", strerror(errno));
		goto out;
	}
	if (pid == 0)
		th_child_exec(path, (char *const *)argv, envp, logfd, logfd, dir, parent);
	setpgid(pid, pid); /* also in the child: whichever runs first */
	p = th_xmalloc(sizeof(*p));
	p->pid = pid;
	p->exited = false;
	p->status = TH_FAILED;
out:
	if (logfd >= 0)
		close(logfd);
	free(envp);
	return p;
}

pid_t th_proc_pid(const struct th_proc *p)
{
	return p->pid;
}

bool th_proc_alive(struct th_proc *p)
{
	int wstatus;
	pid_t w;

	if (p->exited)
		return false;
	do {
		w = waitpid(p->pid, &wstatus, WNOHANG);
	} while (w < 0 && errno == EINTR);
	if (w == p->pid) {
		p->exited = true;
		p->status = th_decode_status(wstatus);
		return false;
	}
	if (w < 0) { /* not our child any more: nothing to wait for */
		p->exited = true;
		return false;
	}
	return true;
}

int th_proc_stop_timed(struct th_proc *p, long long *out_elapsed_ms)
{
	long long start = th_now_ms(), deadline = start + 10000;
	int status;

	if (out_elapsed_ms != NULL)
		*out_elapsed_ms = 0;
	if (p == NULL)
		return 0;
	if (th_proc_alive(p)) {
		kill(p->pid, SIGTERM);
		while (th_proc_alive(p) && th_now_ms() < deadline)
			th_sleep_ms(10);
		if (!p->exited) {
			int wstatus;

			print_error("harness: pid %d ignored SIGTERM for 10 s; sending SIGKILL\n", (int)p->pid);
			kill(-p->pid, SIGKILL);
			kill(p->pid, SIGKILL);
			if (waitpid(p->pid, &wstatus, 0) == p->pid)
				p->status = th_decode_status(wstatus);
			p->exited = true;
		}
		if (out_elapsed_ms != NULL)
			*out_elapsed_ms = th_now_ms() - start;
	}
	status = p->status;
	free(p);
	return status;
}

int th_proc_stop(struct th_proc *p)
{
	return th_proc_stop_timed(p, NULL);
}

struct th_proc *th_redis_start(const char *dir, int port)
{
	char portstr[16];
	char *log_path = th_xasprintf("%s/%s-redis.log", th_tmp_dir(), th_test_name());
	const char *argv[] = {"redis-server", "--port", portstr,        "--bind", "127.0.0.1",   "--dir", dir,
	                      "--save",       "",       "--appendonly", "no",     "--daemonize", "no",    NULL};
	struct th_proc *p;

	snprintf(portstr, sizeof(portstr), "%d", port);
	p = th_proc_start("redis-server", argv, NULL, log_path);
	if (p != NULL && th_wait_port(port, 10000) < 0) {
		print_error("harness: redis-server did not listen on %d within 10 s (see %s)\n", port, log_path);
		th_proc_stop(p);
		p = NULL;
	}
	free(log_path);
	return p;
}

int th_redis_stop(struct th_proc *p)
{
	return th_proc_stop(p);
}

int th_redis_flush(const char *url)
{
	char host[256] = "127.0.0.1";
	int port = 6379, db = 0, rc = -1;
	const char *p, *colon, *slash;
	redisContext *c = NULL;
	redisReply *rep = NULL;

	if (url == NULL || strncmp(url, "redis://", 8) != 0) {
		print_error("harness: not a redis:// URL: %s\n", url ? url : "(null)");
		return -1;
	}
	p = url + 8;
	if (strchr(p, '@') != NULL)
		p = strchr(p, '@') + 1;
	colon = strchr(p, ':');
	slash = strchr(p, '/');
	if (colon != NULL && (slash == NULL || colon < slash)) {
		snprintf(host, sizeof(host), "%.*s", (int)(colon - p), p);
		port = atoi(colon + 1);
	} else if (slash != p) {
		snprintf(host, sizeof(host), "%.*s", slash ? (int)(slash - p) : (int)strlen(p), p);
	}
	if (slash != NULL && slash[1] != '\0')
		db = atoi(slash + 1);
	c = redisConnect(host, port);
	if (c == NULL || c->err) {
		print_error("harness: cannot connect to redis %s:%d: %s\n", host, port,
		            c ? c->errstr : "out of memory");
		goto out;
	}
	rep = redisCommand(c, "SELECT %d", db);
	if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
		goto out;
	freeReplyObject(rep);
	rep = redisCommand(c, "FLUSHDB");
	if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
		goto out;
	rc = 0;
out:
	if (rc != 0 && c != NULL && !c->err)
		print_error("harness: FLUSHDB on %s failed\n", url);
	freeReplyObject(rep);
	redisFree(c);
	return rc;
}

char *th_redis_cli(const char *arg, ...)
{
	enum { ARGS_MAX = 12 };
	const char *argv[ARGS_MAX + 5] = {"redis-cli", "-u", th_env("REDIS_URL"), "--no-raw"};
	size_t n = 4;
	va_list ap;
	char *out = NULL;
	int st;

	if (argv[2] == NULL)
		fail_msg("harness: REDIS_URL is not set");
	va_start(ap, arg);
	for (const char *a = arg; a != NULL; a = va_arg(ap, const char *)) {
		if (n == ARGS_MAX + 4) {
			va_end(ap);
			fail_msg("harness: more than %d arguments for redis-cli %s", ARGS_MAX, arg);
		}
		argv[n++] = a;
	}
	va_end(ap);
	argv[n] = NULL;
	st = th_run(argv, NULL, 20000, &out);
	if (st != 0) {
		print_error("harness: redis-cli %s exited with %d: %s\n", arg, st, out ? out : "");
		free(out);
		fail();
	}
	return out;
}

/* The variables every dialer process of a test gets (see th_api_start), plus port_kv (may
 * be NULL). Returned strings are owned by the caller: free each, then the array. */
static char **th_std_env(const char *db_url, const char *redis_url, const char *port_kv)
{
	char **env = th_xmalloc(11 * sizeof(*env));
	size_t n = 0;

	env[n++] = th_xasprintf("DATABASE_URL=%s", db_url);
	env[n++] = th_xasprintf("REDIS_URL=%s", redis_url);
	env[n++] = th_xstrdup("SECRET_KEY=" TH_SECRET_KEY);
	env[n++] = th_xstrdup("DIALER_TOKEN=" TH_DIALER_TOKEN);
	env[n++] = th_xstrdup("DEFAULT_COMPANY=" TH_DEFAULT_COMPANY);
	env[n++] = th_xstrdup("BIND_ADDRESS=127.0.0.1");
	env[n++] = th_xstrdup("API_THREADS=2");
	env[n++] = th_xstrdup("LOG_LEVEL=info");
	/* the API's handoff target (dialer-events): in the run's temp dir, not the checkout's .run/ */
	env[n++] = th_xasprintf("EVENTS_SOCKET=%s/%s-events.sock", th_tmp_dir(), th_test_name());
	if (port_kv != NULL)
		env[n++] = th_xstrdup(port_kv);
	env[n] = NULL;
	return env;
}

static void th_strv_free(char **v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

int th_bootstrap_db(const char *db_url)
{
	const char *bindir = th_env("DIALER_BIN_DIR");
	const char *redis = th_env("REDIS_URL");
	char *ctl = NULL;
	char **env = NULL;
	int rc = -1, st;

	if (bindir == NULL || redis == NULL)
		return -1;
	ctl = th_xasprintf("%s/dialerctl", bindir);
	env = th_std_env(db_url, redis, NULL);
	{
		const char *argv[] = {ctl, "migrate", NULL};

		st = th_run(argv, (const char *const *)env, 60000, NULL);
		if (st != 0) {
			print_error("harness: dialerctl migrate exited with %d\n", st);
			goto out;
		}
	}
	{
		const char *argv[] = {ctl, "create-admin", TH_ROOT_USER, TH_ROOT_PASS, NULL};

		st = th_run(argv, (const char *const *)env, 60000, NULL);
		if (st != 0) {
			print_error("harness: dialerctl create-admin exited with %d\n", st);
			goto out;
		}
	}
	rc = 0;
out:
	th_strv_free(env);
	free(ctl);
	return rc;
}

/* One start of dialer-api on a fresh free port with env (its PORT entry, env[port_idx], is
 * replaced here). 0 once GET /health answers 200; 1 when the process exited during start
 * (a port taken in between is the likely cause: worth another try); -1 otherwise. */
static int th_api_try(struct th_api *out, const char *path, const char *log_path, char **env, size_t port_idx)
{
	const char *argv[] = {path, NULL};
	long long deadline;

	memset(out, 0, sizeof(*out));
	out->port = th_free_port();
	if (out->port < 0) {
		print_error("harness: no free port\n");
		return -1;
	}
	snprintf(out->base_url, sizeof(out->base_url), "http://127.0.0.1:%d", out->port);
	free(env[port_idx]);
	env[port_idx] = th_xasprintf("PORT=%d", out->port);
	out->proc = th_proc_start(path, argv, (const char *const *)env, log_path);
	if (out->proc == NULL)
		return -1;
	deadline = th_now_ms() + 30000;
	for (;;) {
		char *url = th_xasprintf("%s/health", out->base_url);
		struct th_resp *r = th_http("GET", url, NULL, NULL, NULL, NULL);
		long st = r->status;

		th_resp_free(r);
		free(url);
		if (st == 200)
			return 0;
		if (!th_proc_alive(out->proc)) {
			print_error("harness: dialer-api exited during start on port %d (see %s)\n", out->port,
			            log_path);
			th_proc_stop(out->proc);
			out->proc = NULL;
			return 1;
		}
		if (th_now_ms() >= deadline) {
			print_error("harness: dialer-api did not answer GET /health within 30 s "
			            "(last status %ld; see %s)\n",
			            st, log_path);
			th_proc_stop(out->proc);
			out->proc = NULL;
			return -1;
		}
		th_sleep_ms(50);
	}
}

/* th_api_start() with the extra "KEY=VALUE" strings in ap (ending with NULL). */
static int th_api_vstart(struct th_api *out, const char *db_url, const char *redis_url, va_list ap)
{
	const char *bindir = th_env("DIALER_BIN_DIR");
	char *path = NULL, *log_path = NULL;
	char **env = NULL;
	size_t n = 0, port_idx;
	const char *kv;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (bindir == NULL)
		return -1;
	path = th_xasprintf("%s/dialer-api", bindir);
	log_path = th_xasprintf("%s/%s-api.log", th_tmp_dir(), th_test_name());
	env = th_std_env(db_url, redis_url, "PORT=0");
	while (env[n] != NULL)
		n++;
	port_idx = n - 1; /* th_std_env puts port_kv last */
	while ((kv = va_arg(ap, const char *)) != NULL) {
		env = th_xrealloc(env, (n + 2) * sizeof(*env));
		env[n++] = th_xstrdup(kv);
		env[n] = NULL;
	}
	for (int attempt = 0; attempt < 3; attempt++) {
		rc = th_api_try(out, path, log_path, env, port_idx);
		if (rc <= 0)
			break;
	}
	th_strv_free(env);
	free(log_path);
	free(path);
	return rc == 0 ? 0 : -1;
}

int th_api_start(struct th_api *out, const char *db_url, const char *redis_url, ...)
{
	va_list ap;
	int rc;

	va_start(ap, redis_url);
	rc = th_api_vstart(out, db_url, redis_url, ap);
	va_end(ap);
	return rc;
}

int th_api_stop(struct th_api *api)
{
	int st = th_proc_stop(api->proc);

	api->proc = NULL;
	if (st != 0)
		print_error("harness: dialer-api on port %d exited with status %d (see %s/%s-api.log)\n", api->port, st,
		            th_tmp_dir(), th_test_name());
	return st;
}

char *th_setup_db(void)
{
	char *name, *db_url;

	th_init();
	name = th_xasprintf("it_%s", th_test_name());
	db_url = th_fresh_db(name);
	free(name);
	if (db_url == NULL)
		return NULL;
	if (th_redis_flush(th_env("REDIS_URL")) < 0 || th_bootstrap_db(db_url) < 0) {
		free(db_url);
		return NULL;
	}
	return db_url;
}

int th_setup_api(struct th_api *api, char **db_url, char **root_token, ...)
{
	va_list ap;
	int rc;

	if (root_token != NULL)
		*root_token = NULL;
	*db_url = th_setup_db();
	if (*db_url == NULL)
		return -1;
	va_start(ap, root_token);
	rc = th_api_vstart(api, *db_url, th_env("REDIS_URL"), ap);
	va_end(ap);
	if (rc < 0)
		return -1;
	if (root_token != NULL) {
		*root_token = th_login(api, TH_ROOT_USER, TH_ROOT_PASS);
		if (*root_token == NULL)
			return -1;
	}
	return 0;
}

int th_teardown_api(struct th_api *api, char **db_url, char **root_token)
{
	int st = th_api_stop(api);

	if (root_token != NULL) {
		free(*root_token);
		*root_token = NULL;
	}
	free(*db_url);
	*db_url = NULL;
	th_fini();
	return st == 0 ? 0 : -1;
}

/* Growing buffer for curl's write callback. */
struct th_buf {
	char *data;
	size_t len, cap;
};

static size_t th_on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct th_buf *b = userdata;
	size_t n = size * nmemb;

	if (b->cap - b->len < n + 1) {
		while (b->cap - b->len < n + 1)
			b->cap = b->cap ? b->cap * 2 : 4096;
		b->data = th_xrealloc(b->data, b->cap);
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

static void th_clear_headers(struct th_resp *r)
{
	for (size_t i = 0; i < r->nheaders; i++) {
		free(r->headers[i].name);
		free(r->headers[i].value);
	}
	free(r->headers);
	r->headers = NULL;
	r->nheaders = 0;
}

/* One header line; a status line starts the list again (interim 1xx answers). */
static size_t th_on_header(char *ptr, size_t size, size_t nitems, void *userdata)
{
	struct th_resp *r = userdata;
	size_t n = size * nitems, end = n;
	const char *colon;
	size_t vstart;

	if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
		th_clear_headers(r);
		return n;
	}
	while (end > 0 && (ptr[end - 1] == '\r' || ptr[end - 1] == '\n'))
		end--;
	colon = memchr(ptr, ':', end);
	if (colon == NULL)
		return n;
	vstart = (size_t)(colon - ptr) + 1;
	while (vstart < end && (ptr[vstart] == ' ' || ptr[vstart] == '\t'))
		vstart++;
	r->headers = th_xrealloc(r->headers, (r->nheaders + 1) * sizeof(*r->headers));
	r->headers[r->nheaders].name = th_xstrndup(ptr, (size_t)(colon - ptr));
	r->headers[r->nheaders].value = th_xstrndup(ptr + vstart, end - vstart);
	r->nheaders++;
	return n;
}

void th_set_source_ip(const char *ip)
{
	snprintf(th_source_ip, sizeof(th_source_ip), "%s", ip ? ip : "127.0.0.1");
}

void th_http_after_fork(void)
{
	th_curl = NULL;
}

struct th_resp *th_http(const char *method, const char *url, const char *bearer, const char *content_type,
                        const char *body, const char *const *extra_headers)
{
	struct th_resp *r = th_xmalloc(sizeof(*r));
	struct th_buf b = {0};
	struct curl_slist *hdrs = NULL;
	char *line = NULL;
	char iface[80];
	bool want_expect = false;
	CURLcode cc;

	memset(r, 0, sizeof(*r));
	if (th_curl == NULL) {
		th_curl = curl_easy_init();
		if (th_curl == NULL) {
			fprintf(stderr, "harness: curl_easy_init failed\n");
			abort();
		}
	}
	curl_easy_reset(th_curl);
	curl_easy_setopt(th_curl, CURLOPT_URL, url);
	curl_easy_setopt(th_curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(th_curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(th_curl, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(th_curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	/* Always name the source address: curl then never reuses a connection made from
	 * another one. */
	snprintf(iface, sizeof(iface), "host!%s", th_source_ip);
	curl_easy_setopt(th_curl, CURLOPT_INTERFACE, iface);
	if (getenv("TH_CURL_VERBOSE") != NULL) /* debugging aid: curl's trace on stderr */
		curl_easy_setopt(th_curl, CURLOPT_VERBOSE, 1L);
	curl_easy_setopt(th_curl, CURLOPT_WRITEFUNCTION, th_on_body);
	curl_easy_setopt(th_curl, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(th_curl, CURLOPT_HEADERFUNCTION, th_on_header);
	curl_easy_setopt(th_curl, CURLOPT_HEADERDATA, r);

	if (strcmp(method, "GET") == 0 && body == NULL)
		curl_easy_setopt(th_curl, CURLOPT_HTTPGET, 1L);
	else
		curl_easy_setopt(th_curl, CURLOPT_CUSTOMREQUEST, method);
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(th_curl, CURLOPT_NOBODY, 1L);
	if (body != NULL) {
		curl_easy_setopt(th_curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
		curl_easy_setopt(th_curl, CURLOPT_POSTFIELDS, body);
	}

	if (extra_headers != NULL)
		for (size_t i = 0; extra_headers[i] != NULL; i++) {
			if (strncasecmp(extra_headers[i], "Expect:", 7) == 0)
				want_expect = true;
			hdrs = curl_slist_append(hdrs, extra_headers[i]);
		}
	if (!want_expect)
		hdrs = curl_slist_append(hdrs, "Expect:");
	if (bearer != NULL) {
		line = th_xasprintf("Authorization: Bearer %s", bearer);
		hdrs = curl_slist_append(hdrs, line);
		free(line);
	}
	if (content_type != NULL) {
		line = th_xasprintf("Content-Type: %s", content_type);
		hdrs = curl_slist_append(hdrs, line);
		free(line);
	} else {
		hdrs = curl_slist_append(hdrs, "Content-Type:"); /* no curl default */
	}
	curl_easy_setopt(th_curl, CURLOPT_HTTPHEADER, hdrs);

	cc = curl_easy_perform(th_curl);
	if (cc == CURLE_OK) {
		curl_easy_getinfo(th_curl, CURLINFO_RESPONSE_CODE, &r->status);
	} else {
		r->status = 0;
		r->curl_code = (int)cc;
		r->error = th_xstrdup(curl_easy_strerror(cc));
	}
	r->body = b.data ? b.data : th_xstrdup("");
	r->body_len = b.len;
	if (r->status != 0 && r->body_len > 0)
		r->json = json_loadb(r->body, r->body_len, 0, NULL);
	curl_easy_setopt(th_curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
	return r;
}

struct th_resp *th_call(const struct th_api *api, const char *method, const char *path, const char *bearer,
                        const char *json_body)
{
	char *url = th_xasprintf("%s%s", api->base_url, path);
	struct th_resp *r = th_http(method, url, bearer, json_body ? "application/json" : NULL, json_body, NULL);

	free(url);
	return r;
}

struct th_resp *th_getf(const struct th_api *api, const char *bearer, const char *fmt, ...)
{
	char path[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	return th_call(api, "GET", path, bearer, NULL);
}

struct th_resp *th_callf(const struct th_api *api, const char *method, const char *path, const char *bearer,
                         const char *fmt, ...)
{
	va_list ap;
	char *body = NULL;
	struct th_resp *r;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&body, fmt, ap);
	va_end(ap);
	if (n < 0) {
		fprintf(stderr, "harness: out of memory\n");
		abort();
	}
	r = th_call(api, method, path, bearer, body);
	free(body);
	return r;
}

bool th_resp_closed(const struct th_resp *r)
{
	return r->status == 0 && (r->curl_code == CURLE_GOT_NOTHING || r->curl_code == CURLE_RECV_ERROR ||
	                          r->curl_code == CURLE_SEND_ERROR);
}

const char *th_resp_header(const struct th_resp *r, const char *name)
{
	const char *v = NULL;

	for (size_t i = 0; i < r->nheaders; i++)
		if (strcasecmp(r->headers[i].name, name) == 0)
			v = r->headers[i].value;
	return v;
}

void th_resp_free(struct th_resp *r)
{
	if (r == NULL)
		return;
	th_clear_headers(r);
	json_decref(r->json);
	free(r->body);
	free(r->error);
	free(r);
}

struct th_resp *th_login_call(const struct th_api *api, const char *user, const char *pass)
{
	json_t *req = json_pack("{s:s, s:s}", "username", user, "password", pass);
	char *body = json_dumps(req, 0);
	struct th_resp *r = th_call(api, "POST", "/api/auth/login", NULL, body);

	free(body);
	json_decref(req);
	return r;
}

char *th_login(const struct th_api *api, const char *user, const char *pass)
{
	struct th_resp *r = th_login_call(api, user, pass);
	const char *tok = r->status == 200 ? th_json_str(r->json, "access_token") : NULL;
	char *out = tok ? th_xstrdup(tok) : NULL;

	if (out == NULL)
		print_error("harness: login of %s failed: %ld %s\n", user, r->status, r->body);
	th_resp_free(r);
	return out;
}

void th_call_expect(const struct th_api *api, const char *method, const char *path, const char *bearer,
                    const char *json_body, long status)
{
	struct th_resp *r = th_call(api, method, path, bearer, json_body);

	if (r->status != status)
		print_error("%s %s:\n", method, path);
	TH_EXPECT_STATUS(r, status);
	th_resp_free(r);
}

long long th_create_company(const struct th_api *api, const char *token, const char *name, const char *display_name,
                            bool active)
{
	json_t *req = json_pack("{s:s, s:s}", "name", name, "display_name", display_name);
	char *body;
	struct th_resp *r;
	long long id = -1;

	if (!active)
		json_object_set_new(req, "is_active", json_false());
	body = json_dumps(req, 0);
	r = th_call(api, "POST", "/api/companies", token, body);
	free(body);
	json_decref(req);
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(th_json_int(r->json, "id", &id), 0);
	th_resp_free(r);
	return id;
}

char *th_create_user(const struct th_api *api, const char *token, const char *company, const char *username,
                     const char *password, const char *role)
{
	json_t *req = json_pack("{s:s, s:s, s:s}", "username", username, "password", password, "role", role);
	char *body = json_dumps(req, 0);
	char *path = th_xasprintf("/api/%s/admins", company);
	struct th_resp *r = th_call(api, "POST", path, token, body);

	free(path);
	free(body);
	json_decref(req);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	return th_login(api, username, password);
}

long long th_open_company(const struct th_api *api, const char *token, const char *company, long long wallet)
{
	char *path = th_xasprintf("/api/%s/billing", company);
	char *body = th_xasprintf("{\"wallet_balance\": %lld}", wallet);
	struct th_resp *r;
	long long version = -1;

	th_call_expect(api, "PUT", path, token, body, 200);
	free(path);
	free(body);
	path = th_xasprintf("/api/%s/schedule", company);
	r = th_call(api, "PUT", path, token, TH_ALL_DAY_SCHEDULE);
	free(path);
	TH_EXPECT_STATUS(r, 200);
	if (th_json_int(r->json, "version", &version) != 0) {
		print_error("PUT /api/%s/schedule: no version in %.2000s\n", company, r->body);
		th_resp_free(r);
		fail();
	}
	th_resp_free(r);
	return version;
}

const char *th_json_str(const json_t *json, const char *key)
{
	const json_t *v = json_is_object(json) ? json_object_get(json, key) : NULL;

	return json_is_string(v) ? json_string_value(v) : NULL;
}

int th_json_int(const json_t *json, const char *key, long long *out)
{
	const json_t *v = json_is_object(json) ? json_object_get(json, key) : NULL;

	if (!json_is_integer(v))
		return -1;
	*out = json_integer_value(v);
	return 0;
}

bool th_is_datetime(const char *s)
{
	static const char pattern[] = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
	                              "(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$";
	regex_t re;
	bool ok;

	if (s == NULL)
		return false;
	if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
		return false;
	ok = regexec(&re, s, 0, NULL, 0) == 0;
	regfree(&re);
	return ok;
}

void th_expect_status_at(const struct th_resp *r, long status, const char *file, int line)
{
	if (r->status == status)
		return;
	print_error("expected HTTP %ld, got %ld%s%s: %.2000s\n", status, r->status, r->error ? " " : "",
	            r->error ? r->error : "", r->body);
	_fail(file, line);
}

void th_expect_error_at(const struct th_resp *r, long status, const char *detail, const char *file, int line)
{
	const json_t *err;
	const char *d, *code, *msg;

	th_expect_status_at(r, status, file, line);
	d = th_json_str(r->json, "detail");
	err = json_is_object(r->json) ? json_object_get(r->json, "error") : NULL;
	code = th_json_str(err, "code");
	msg = th_json_str(err, "message");
	if (d == NULL || (detail != NULL && strcmp(d, detail) != 0)) {
		print_error("expected detail \"%s\": %.2000s\n", detail ? detail : "<any string>", r->body);
		_fail(file, line);
	}
	if (code == NULL || *code == '\0' || msg == NULL || *msg == '\0') {
		print_error("expected error.code and error.message: %.2000s\n", r->body);
		_fail(file, line);
	}
}

/* Prints json (or "(null)") for a failed expectation. */
static void th_print_json(const char *what, const json_t *json)
{
	char *dump = json ? json_dumps(json, JSON_ENCODE_ANY) : NULL;

	print_error("%s in %.2000s\n", what, dump ? dump : "(no JSON)");
	free(dump);
}

void th_expect_str_at(const json_t *json, const char *key, const char *expected, const char *file, int line)
{
	const char *v = th_json_str(json, key);

	if (v != NULL && strcmp(v, expected) == 0)
		return;
	print_error("expected \"%s\": \"%s\"\n", key, expected);
	th_print_json("not found", json);
	_fail(file, line);
}

void th_expect_int_at(const json_t *json, const char *key, long long expected, const char *file, int line)
{
	long long v;

	if (th_json_int(json, key, &v) == 0 && v == expected)
		return;
	print_error("expected \"%s\": %lld\n", key, expected);
	th_print_json("not found", json);
	_fail(file, line);
}

void th_expect_detail_prefix_at(const struct th_resp *r, long status, const char *prefix, const char *file, int line)
{
	const char *d;

	th_expect_error_at(r, status, NULL, file, line);
	d = th_json_str(r->json, "detail");
	if (prefix != NULL && (d == NULL || strncmp(d, prefix, strlen(prefix)) != 0)) {
		print_error("expected a detail starting with \"%s\": %.2000s\n", prefix, r->body);
		_fail(file, line);
	}
}

void th_expect_answer_at(const struct th_resp *r, const struct th_expect *e, const char *file, int line)
{
	if (e->status == 200)
		th_expect_status_at(r, 200, file, line);
	else
		th_expect_error_at(r, e->status, e->detail, file, line);
}

void th_expect_admin_guards_at(const struct th_api *api, const char *method, const char *path, const char *agent,
                               const char *other_admin, const char *body, const char *file, int line)
{
	static const struct th_expect want[] = {TH_NO_AUTH, TH_BAD_AUTH, TH_ADMINS, TH_DENIED};
	const char *tokens[] = {NULL, TH_BAD_TOKEN, agent, other_admin};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct th_resp *r = th_call(api, method, path, tokens[i], body);
		th_expect_answer_at(r, &want[i], file, line);
		th_resp_free(r);
	}
}
