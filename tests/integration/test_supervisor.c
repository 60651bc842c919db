/* The process runner of `make run` (issue 3 item 2): supervisord with the config that
 * scripts/supervisor-conf.sh generates from the Procfile runs every process type, restarts a
 * SIGKILLed dialer-results within 2 s while the others keep running, and on SIGTERM stops
 * them all, each with exit status 0, within the harness's 10 s. Every process is in the one
 * group "dialer" (all_running checks the names): supervisord stops groups one by one, and
 * nine groups took 6-10 s under ASan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define MAX_PROGS 64
#define MAX_TYPES 32

/* One line of `supervisorctl status`. */
struct prog {
	char name[128]; /* "dialer:results-0" */
	char state[32]; /* RUNNING, STARTING, … */
	int pid;        /* 0 when not running */
};

static char *db_url;
static char dir[512], conf[600], sup_log[600];
static struct th_proc *sup;
static char types[MAX_TYPES][64]; /* process types of the Procfile */
static size_t ntypes;

/* Reads the process type names of the Procfile ("name: command" lines). */
static int read_procfile(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1024];

	if (f == NULL) {
		print_error("cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	ntypes = 0;
	while (fgets(line, sizeof(line), f) != NULL && ntypes < MAX_TYPES) {
		char *colon = strchr(line, ':');
		char *p = line;

		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '#' || *p == '\n' || *p == '\0' || colon == NULL)
			continue;
		*colon = '\0';
		snprintf(types[ntypes++], sizeof(types[0]), "%.63s", p);
	}
	fclose(f);
	return ntypes > 0 ? 0 : -1;
}

static bool is_state(const char *s)
{
	static const char *const states[] = {"STOPPED",  "STARTING", "RUNNING", "BACKOFF",
	                                     "STOPPING", "EXITED",   "FATAL",   "UNKNOWN"};

	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		if (strcmp(s, states[i]) == 0)
			return true;
	return false;
}

/* Runs `supervisorctl -c CONF status` and parses it into out; returns the count (0 when
 * supervisord does not answer yet). */
static size_t read_status(struct prog *out)
{
	const char *argv[] = {"supervisorctl", "-c", conf, "status", NULL};
	char *text = NULL, *save = NULL;
	size_t n = 0;

	/* supervisorctl exits 3 when some program is not RUNNING: the text is what counts. */
	(void)th_run(argv, NULL, 20000, &text);
	if (text == NULL)
		return 0;
	for (char *line = strtok_r(text, "\n", &save); line != NULL && n < MAX_PROGS;
	     line = strtok_r(NULL, "\n", &save)) {
		struct prog p = {0};
		const char *pid;

		if (sscanf(line, "%127s %31s", p.name, p.state) != 2 || !is_state(p.state))
			continue;
		pid = strstr(line, " pid ");
		p.pid = pid ? atoi(pid + 5) : 0;
		out[n++] = p;
	}
	free(text);
	return n;
}

/* The process's name inside its group ("results-0" of "dialer:results-0"). */
static const char *proc_name(const struct prog *p)
{
	const char *colon = strchr(p->name, ':');

	return colon ? colon + 1 : p->name;
}

/* true when program p runs process type t: it is "dialer:t-N" (group dialer, copy N). */
static bool runs_type(const struct prog *p, const char *t)
{
	size_t n = strlen(t);
	const char *rest;

	if (strncmp(p->name, "dialer:", 7) != 0 || strncmp(p->name + 7, t, n) != 0 || p->name[7 + n] != '-')
		return false;
	rest = p->name + 7 + n + 1;
	if (*rest == '\0')
		return false;
	for (; *rest != '\0'; rest++)
		if (*rest < '0' || *rest > '9')
			return false;
	return true;
}

/* true when every Procfile type has a program and every program is RUNNING. */
static bool all_running(const struct prog *progs, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(progs[i].state, "RUNNING") != 0 || progs[i].pid <= 0)
			return false;
	for (size_t t = 0; t < ntypes; t++) {
		bool found = false;

		for (size_t i = 0; i < n && !found; i++)
			found = runs_type(&progs[i], types[t]);
		if (!found)
			return false;
	}
	return true;
}

static void print_status(const struct prog *progs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		print_message("  %-32s %-10s pid %d\n", progs[i].name, progs[i].state, progs[i].pid);
}

static int api_port;

static int group_setup(void **state)
{
	const char *root, *bindir, *redis;
	char script[600], procfile[600], rundir[600];
	char *kv[12] = {0};
	int port, st, rc = -1;

	(void)state;
	db_url = th_setup_db();
	root = th_env("DIALER_ROOT");
	bindir = th_env("DIALER_BIN_DIR");
	redis = th_env("REDIS_URL");
	if (db_url == NULL || root == NULL || bindir == NULL || redis == NULL)
		return -1;

	snprintf(dir, sizeof(dir), "%s/test_supervisor", th_tmp_dir());
	snprintf(conf, sizeof(conf), "%s/supervisord.conf", dir);
	snprintf(rundir, sizeof(rundir), "%s/run", dir);
	snprintf(sup_log, sizeof(sup_log), "%s/supervisord.out", dir);
	snprintf(script, sizeof(script), "%s/scripts/supervisor-conf.sh", root);
	snprintf(procfile, sizeof(procfile), "%s/Procfile", root);
	if ((mkdir(dir, 0755) < 0 && errno != EEXIST) || (mkdir(rundir, 0755) < 0 && errno != EEXIST))
		return -1;
	unlink(sup_log);
	if (read_procfile(procfile) < 0)
		return -1;

	/* The generator, with the sanitized binaries of this test run. */
	if (asprintf(&kv[0], "SUPERVISOR_BIN_DIR=%s", bindir) < 0)
		goto out;
	{
		const char *argv[] = {script, procfile, conf, rundir, NULL};
		const char *env[] = {kv[0], NULL};

		st = th_run(argv, env, 60000, NULL);
		if (st != 0) {
			print_error("%s exited with %d\n", script, st);
			goto out;
		}
	}
	if (access(conf, R_OK) != 0) {
		print_error("%s did not write %s\n", script, conf);
		goto out;
	}

	port = th_free_port();
	api_port = port;
	if (asprintf(&kv[1], "DATABASE_URL=%s", db_url) < 0 || asprintf(&kv[2], "REDIS_URL=%s", redis) < 0 ||
	    asprintf(&kv[3], "PORT=%d", port) < 0)
		goto out;
	kv[4] = strdup("SECRET_KEY=" TH_SECRET_KEY);
	kv[5] = strdup("DIALER_TOKEN=" TH_DIALER_TOKEN);
	kv[6] = strdup("DEFAULT_COMPANY=" TH_DEFAULT_COMPANY);
	kv[7] = strdup("BIND_ADDRESS=127.0.0.1");
	kv[8] = strdup("API_THREADS=2");
	kv[9] = strdup("LOG_LEVEL=info");
	/* dialer-events' handoff socket in this run's temp dir, not the checkout's .run/ */
	if (asprintf(&kv[10], "EVENTS_SOCKET=%s/%s-events.sock", th_tmp_dir(), th_test_name()) < 0)
		goto out;
	{
		/* -e info: the "stopped: NAME (exit status N)" lines this test reads are info. */
		const char *argv[] = {"supervisord", "-n", "-c", conf, "-e", "info", NULL};

		sup = th_proc_start("supervisord", argv, (const char *const *)kv, sup_log);
	}
	if (sup == NULL)
		goto out;
	for (long long deadline = th_now_ms() + 60000; th_wait_port(port, 200) < 0;) {
		if (!th_proc_alive(sup) || th_now_ms() >= deadline) {
			print_error("dialer-api did not listen on %d under supervisord (see %s)\n", port, sup_log);
			goto out;
		}
	}
	rc = 0;
out:
	for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
		free(kv[i]);
	return rc;
}

static int group_teardown(void **state)
{
	(void)state;
	if (sup != NULL)
		th_proc_stop(sup);
	sup = NULL;
	free(db_url);
	th_fini();
	return 0;
}

static void test_all_running(void **state)
{
	struct prog progs[MAX_PROGS];
	long long deadline = th_now_ms() + 60000;
	size_t n;

	(void)state;
	for (;;) {
		n = read_status(progs);
		if (all_running(progs, n) || th_now_ms() >= deadline)
			break;
		th_sleep_ms(250);
	}
	print_status(progs, n);
	assert_true(all_running(progs, n));

	/* The API got the environment: it answers on PORT. */
	{
		char url[64];
		struct th_resp *r;

		snprintf(url, sizeof(url), "http://127.0.0.1:%d/health", api_port);
		r = th_http("GET", url, NULL, NULL, NULL, NULL);
		TH_EXPECT_STATUS(r, 200);
		th_resp_free(r);
	}
}

static void test_sigkill_restart(void **state)
{
	struct prog before[MAX_PROGS], now[MAX_PROGS];
	size_t nb, nn = 0;
	const struct prog *victim = NULL;
	long long t0;
	bool restarted = false;

	(void)state;
	nb = read_status(before);
	assert_true(all_running(before, nb));
	for (size_t i = 0; i < nb && victim == NULL; i++)
		if (runs_type(&before[i], "results"))
			victim = &before[i];
	assert_non_null(victim);

	assert_int_equal(kill(victim->pid, SIGKILL), 0);
	t0 = th_now_ms();
	/* RUNNING again, with a new pid, in a status read that started within 2 s. */
	while (th_now_ms() - t0 <= 2000) {
		nn = read_status(now);
		for (size_t i = 0; i < nn; i++)
			if (strcmp(now[i].name, victim->name) == 0 && strcmp(now[i].state, "RUNNING") == 0 &&
			    now[i].pid > 0 && now[i].pid != victim->pid)
				restarted = true;
		if (restarted)
			break;
		th_sleep_ms(50);
	}
	print_message("after SIGKILL of %s (pid %d), %lld ms:\n", victim->name, victim->pid, th_now_ms() - t0);
	print_status(now, nn);
	assert_true(restarted);

	/* The new process stays up (the config may use startsecs=0, where RUNNING is shown at
	 * once even for a process about to crash). */
	th_sleep_ms(1500);
	{
		struct prog later[MAX_PROGS];
		size_t nl = read_status(later);
		int newpid = 0;

		for (size_t i = 0; i < nn; i++)
			if (strcmp(now[i].name, victim->name) == 0)
				newpid = now[i].pid;
		assert_true(newpid > 0 && kill(newpid, 0) == 0);
		for (size_t i = 0; i < nl; i++)
			if (strcmp(later[i].name, victim->name) == 0) {
				assert_string_equal(later[i].state, "RUNNING");
				assert_int_equal(later[i].pid, newpid);
			}
	}

	/* Nothing else was touched. */
	assert_int_equal(nn, nb);
	for (size_t i = 0; i < nb; i++) {
		const struct prog *b = &before[i];

		if (b == victim)
			continue;
		for (size_t j = 0; j < nn; j++)
			if (strcmp(now[j].name, b->name) == 0) {
				assert_string_equal(now[j].state, "RUNNING");
				assert_int_equal(now[j].pid, b->pid);
			}
	}
}

/* true when pid no longer runs (gone, or a zombie nobody reaped yet). */
static bool pid_gone(int pid)
{
	char path[64], buf[512];
	FILE *f;
	const char *rp;
	bool zombie = false;

	if (kill(pid, 0) < 0 && errno == ESRCH)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return true;
	if (fgets(buf, sizeof(buf), f) != NULL) {
		rp = strrchr(buf, ')');
		zombie = rp != NULL && rp[1] == ' ' && rp[2] == 'Z';
	}
	fclose(f);
	return zombie;
}

static void test_stop_all(void **state)
{
	struct prog progs[MAX_PROGS];
	size_t n;
	long long elapsed = 0, deadline;
	bool left = false;
	int st;

	(void)state;
	n = read_status(progs);
	assert_true(all_running(progs, n));
	st = th_proc_stop_timed(sup, &elapsed);
	sup = NULL;
	print_message("supervisord exited %d after SIGTERM in %lld ms\n", st, elapsed);
	assert_int_equal(st, 0);

	deadline = th_now_ms() + 2000;
	for (size_t i = 0; i < n; i++) {
		while (!pid_gone(progs[i].pid) && th_now_ms() < deadline)
			th_sleep_ms(20);
		if (!pid_gone(progs[i].pid)) {
			print_error("%s (pid %d) outlived supervisord; killing it\n", progs[i].name, progs[i].pid);
			kill(progs[i].pid, SIGKILL);
			left = true;
		}
	}
	assert_false(left);

	/* Each program stopped cleanly: SIGTERM handled, exit 0, LeakSanitizer silent. */
	{
		FILE *f = fopen(sup_log, "r");
		char *text = NULL;
		size_t cap = 0;
		ssize_t len;

		assert_non_null(f);
		len = getdelim(&text, &cap, '\0', f);
		fclose(f);
		assert_true(len > 0);
		for (size_t i = 0; i < n; i++) {
			char want[200];

			snprintf(want, sizeof(want), "stopped: %.127s (exit status 0)", proc_name(&progs[i]));
			if (strstr(text, want) == NULL)
				print_error("%s: no \"%s\" in %s\n", progs[i].name, want, sup_log);
			assert_non_null(strstr(text, want));
		}
		free(text);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_all_running),
	    cmocka_unit_test(test_sigkill_restart),
	    cmocka_unit_test(test_stop_all),
	};

	return cmocka_run_group_tests_name("supervisor", tests, group_setup, group_teardown);
}
