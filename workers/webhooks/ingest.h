/*
 * dialer-webhooks, the stream side: reads dialer:events in consumer group "webhooks", turns
 * each event into one pending delivery per matching webhook of its company (one statement per
 * batch), and acknowledges the entries only after that statement committed.
 */
#ifndef WEBHOOKS_INGEST_H
#define WEBHOOKS_INGEST_H

#include "worker.h"

#define WEBHOOKS_GROUP "webhooks"

/* After a (re)connect: re-read this consumer's own pending entries before new ones. */
void ingest_reset(void);

/*
 * Reads one batch (XREADGROUP … BLOCK block_ms; 0 = do not wait), records it and acknowledges
 * it. *queued gets the deliveries created added, *full whether the batch was a full one (more
 * may be waiting). Returns 0, or -1 when Redis or PostgreSQL failed (the entries stay pending
 * and are read again).
 */
int ingest_run(struct worker_ctx *w, int block_ms, long *queued, bool *full) MUSTCHECK;

/* Takes over entries other consumers (dead or stalled) have held longer than CLAIM_IDLE_MS,
 * and records them like new ones. *queued as above. */
void ingest_claim(struct worker_ctx *w, long *queued);

/* Warns (event=falling_behind) when the group is more than half of EVENTS_STREAM_LEN entries
 * behind: dialer:events is trimmed to about that many (MAXLEN ~), and what the group has not
 * read by then is lost for webhooks. */
void ingest_check_lag(struct worker_ctx *w);

/* Counters since the last call (then zeroed): entries read, entries skipped as malformed,
 * deliveries dropped because a backlog was full. */
void ingest_take_counts(unsigned long *read, unsigned long *bad, unsigned long *dropped);

#endif
