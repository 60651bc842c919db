/*
 * The results worker's one hook into the events stream: after a batch has committed, one
 * result.ingested event per company of the batch (pipelined: one round trip), listing its
 * results up to EVENTS_RESULTS_MAX. Never fails the batch.
 */
#ifndef DIALER_RESULTS_EMIT_H
#define DIALER_RESULTS_EMIT_H

#include "apply.h"
#include "entry.h"
#include "worker.h"

/*
 * Emits the events of the batch e[0..n) that apply_batch committed with summary s. Entries that
 * were dead-lettered are left out (looked up only when the batch had dead letters or
 * duplicates); a redelivered entry applied before is announced again (at least once: consumers
 * dedupe on its stream_id). Everything borrowed.
 */
void results_emit(struct worker_ctx *w, const struct result_entry *e, int n, const struct apply_summary *s);

#endif
