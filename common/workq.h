/*
 * A small process-wide thread pool for CPU-heavy work (bcrypt) so event loops
 * never stall: work runs on a pool thread, done runs back on the caller's loop.
 */
#ifndef DIALER_WORKQ_H
#define DIALER_WORKQ_H

#include <event2/event.h>

#include "common.h"

/* Starts nthreads pool threads with a queue bound of max_queued jobs. Call once,
 * after evthread_use_pthreads(). */
void workq_start(int nthreads, int max_queued);
/* Stops and joins the pool threads (queued jobs are still run). */
void workq_stop(void);

/*
 * Runs work(arg) on a pool thread, then done(arg) on base's loop. Returns -1
 * (nothing will run) when the queue is full: the caller answers 503.
 */
int workq_submit(struct event_base *base, void (*work)(void *), void (*done)(void *), void *arg) MUSTCHECK;

#endif
