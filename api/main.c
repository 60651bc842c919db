/*
 * dialer-api: N event-loop threads (API_THREADS, default one per core), each
 * with its own SO_REUSEPORT listener, PostgreSQL pool and Redis connection.
 * The main thread waits for SIGTERM/SIGINT, then drains in-flight requests.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/thread.h>

#include "api.h"
#include "config.h"
#include "metrics.h"
#include "workq.h"

#define DRAIN_SECONDS 15

static void *loop_main(void *arg)
{
	struct api_thread *t = arg;
	event_base_loop(t->base, EVLOOP_NO_EXIT_ON_EMPTY);
	dialer_thread_exit();
	return NULL;
}

static int total_inflight(struct api_thread *ts, int n)
{
	int sum = 0;
	for (int i = 0; i < n; i++)
		sum += atomic_load(&ts[i].inflight);
	return sum;
}

int main(int argc, char **argv)
{
	UNUSED(argc);
	UNUSED(argv);
	sigset_t set;
	int sig = 0, n, rc = 1;
	struct api_thread *ts = NULL;

	log_init("api");
	metrics_init();
	if (config_load(CONFIG_NEED_SECRET | CONFIG_NEED_DIALER_TOKEN))
		return 2;
	if (evthread_use_pthreads()) {
		log_error("event=start_failed error=\"libevent threads unavailable\"");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	/* only the main thread takes SIGTERM/SIGINT (sigwait); loops never see them */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	auth_routes();
	companies_routes();
	users_routes();
	tokens_routes();
	ops_routes();
	schedule_routes();
	holidays_routes();
	billing_routes();
	catalog_routes();
	numbers_routes();
	upload_routes();
	dialer_routes();
	deadletters_routes();
	stats_routes();
	webhooks_routes();
	jobs_routes();
	events_routes();
	auth_init();
	workq_start(2, 512);

	n = cfg.api_threads > 0 ? cfg.api_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	ts = xcalloc((size_t)n, sizeof(*ts));
	for (int i = 0; i < n; i++) {
		if (http_thread_init(&ts[i], i)) {
			log_error("event=start_failed port=%d", cfg.port);
			for (int k = 0; k <= i; k++)
				http_thread_free(&ts[k]);
			goto out;
		}
	}
	for (int i = 0; i < n; i++)
		pthread_create(&ts[i].tid, NULL, loop_main, &ts[i]);
	log_info("event=started port=%d threads=%d db_pool_per_thread=%d", cfg.port, n, cfg.db_pool_size);

	while (sigwait(&set, &sig) != 0)
		;
	log_info("event=draining signal=%s inflight=%d", sig == SIGTERM ? "TERM" : "INT", total_inflight(ts, n));
	for (int i = 0; i < n; i++)
		http_thread_stop_accepting(&ts[i]);
	for (int waited = 0; total_inflight(ts, n) > 0 && waited < DRAIN_SECONDS * 20; waited++)
		usleep(50 * 1000);
	if (total_inflight(ts, n) > 0)
		log_warn("event=drain_timeout inflight=%d", total_inflight(ts, n));
	for (int i = 0; i < n; i++)
		event_base_loopbreak(ts[i].base);
	for (int i = 0; i < n; i++)
		pthread_join(ts[i].tid, NULL);
	for (int i = 0; i < n; i++)
		http_thread_free(&ts[i]);
	rc = 0;
	log_info("event=stopped");
out:
	workq_stop();
	auth_cleanup();
	free(ts);
	config_free();
	libevent_global_shutdown();
	return rc;
}
