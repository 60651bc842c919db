/*
 * dialer-webhooks, the HTTP side: claims due deliveries from PostgreSQL (FOR UPDATE SKIP
 * LOCKED, a lease, a per-webhook cap), sends them concurrently with the libcurl multi
 * interface, and records each attempt's outcome (delivered, retry with backoff, failed).
 */
#ifndef WEBHOOKS_DELIVER_H
#define WEBHOOKS_DELIVER_H

#include "worker.h"

/*
 * One turn: reaps finished requests and records their outcomes (one statement), then, while
 * fewer than WEBHOOK_CONCURRENCY are in flight, claims due deliveries and starts them: at once
 * when claim_now, when outcomes were just recorded (their webhooks' slots are free) or when the
 * last claim found some, else at most every 100 ms (retries coming due).
 * Returns 0, or -1 when PostgreSQL failed: outcomes not yet recorded are kept and recorded on
 * a later turn when the connection is down, dropped when PostgreSQL refused the statement
 * itself (their claims lapse and they are sent again). The first call sets up the multi
 * handle (after curl_global_init).
 */
int deliver_pump(struct worker_ctx *w, bool claim_now) MUSTCHECK;

/* Requests in flight. */
int deliver_in_flight(void);

/* Waits up to ms for network activity of the requests in flight (at once when none). */
void deliver_wait(int ms);

/* Before exit: lets the requests in flight finish (up to WEBHOOK_TIMEOUT_MS), records their
 * outcomes when PostgreSQL is up, then frees everything. */
void deliver_stop(struct worker_ctx *w);

/* Marks failed (last_error "expired: …") the pending deliveries queued more than
 * WEBHOOK_MAX_AGE_SECONDS ago and not in flight, then deletes finished deliveries (and their
 * attempts), and stored events nobody needs any more, older than WEBHOOK_LOG_RETENTION_HOURS;
 * a bounded amount per call. */
void deliver_retention(struct worker_ctx *w);

/* Counters since the last call (then zeroed): attempts, delivered, retries scheduled, given up. */
void deliver_take_counts(unsigned long *attempts, unsigned long *delivered, unsigned long *retried,
                         unsigned long *failed);

#endif
