/*
 * Thread pool with a bounded FIFO; completion is handed back to the submitting
 * loop with event_active (libevent is thread-safe after evthread_use_pthreads).
 */
#include <pthread.h>
#include <stdlib.h>

#include "workq.h"

struct wjob {
	struct wjob *next;
	void (*work)(void *);
	void (*done)(void *);
	void *arg;
	struct event *ev;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct wjob *head, *tail;
static int queued, max_q, nthr;
static bool stopping;
static pthread_t *threads;

static void *run(void *unused)
{
	UNUSED(unused);
	for (;;) {
		pthread_mutex_lock(&mu);
		while (!head && !stopping)
			pthread_cond_wait(&cv, &mu);
		struct wjob *j = head;
		if (!j) {
			pthread_mutex_unlock(&mu);
			return NULL;
		}
		head = j->next;
		if (!head)
			tail = NULL;
		queued--;
		pthread_mutex_unlock(&mu);
		j->work(j->arg);
		event_active(j->ev, EV_TIMEOUT, 1);
	}
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct wjob *j = arg;
	UNUSED(fd);
	UNUSED(what);
	event_free(j->ev);
	j->done(j->arg);
	free(j);
}

void workq_start(int n, int max_queued)
{
	nthr = n;
	max_q = max_queued;
	threads = xcalloc((size_t)n, sizeof(pthread_t));
	for (int i = 0; i < n; i++)
		if (pthread_create(&threads[i], NULL, run, NULL)) {
			log_error("event=workq_start_failed");
			abort();
		}
}

void workq_stop(void)
{
	pthread_mutex_lock(&mu);
	stopping = true;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	for (int i = 0; i < nthr; i++)
		pthread_join(threads[i], NULL);
	free(threads);
	threads = NULL;
	nthr = 0;
}

int workq_submit(struct event_base *base, void (*work)(void *), void (*done)(void *), void *arg)
{
	struct wjob *j = xcalloc(1, sizeof(*j));
	j->work = work;
	j->done = done;
	j->arg = arg;
	j->ev = event_new(base, -1, 0, done_cb, j);
	pthread_mutex_lock(&mu);
	if (queued >= max_q || stopping || nthr == 0) {
		pthread_mutex_unlock(&mu);
		event_free(j->ev);
		free(j);
		return -1;
	}
	if (tail)
		tail->next = j;
	else
		head = j;
	tail = j;
	queued++;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
	return 0;
}
