/*
 * dialer-webhooks: delivers the events of dialer:events to the webhooks companies registered
 * (api/webhooks.c). Its own consumer group "webhooks" turns entries into pending deliveries in
 * PostgreSQL (ingest.c; acknowledged only once recorded), and due deliveries are sent as
 * signed POSTs, many at once on one libcurl multi handle, retried with backoff for up to
 * WEBHOOK_MAX_AGE_SECONDS (deliver.c). Any number of copies may run, on any machines.
 */
#include <inttypes.h>
#include <stdio.h>

#include <curl/curl.h>

#include "config.h"
#include "db.h"
#include "deliver.h"
#include "ingest.h"
#include "util.h"
#include "worker.h"

#define READ_BLOCK_MS         100 /* an idle read returns after this; SIGTERM is seen within it */
#define POLL_MS               50  /* longest wait for responses before looking at the stream again */
#define RETENTION_EVERY_TICKS 10  /* seconds between retention rounds */
#define GC_EVERY_TICKS        300 /* seconds between dead-consumer clean-ups */
#define REPORT_EVERY_TICKS    10  /* seconds between progress lines */

static struct {
	unsigned epoch; /* the worker_ctx epoch the connections were prepared for */
	bool claim_now; /* deliveries were just queued: claim without waiting for the poll */
	unsigned long ticks;
	unsigned long queued; /* since the last progress line */
	uint64_t since_ns;
} ws;

static void prepare(struct worker_ctx *w)
{
	if (ws.epoch == w->epoch)
		return;
	ingest_reset(); /* what this consumer read but did not acknowledge before the failure: again */
	/* claims and outcomes commit without waiting for the WAL flush (a round of deliveries would
	 * otherwise wait for two fsyncs): a database crash may forget the last of them, and those
	 * deliveries are sent again, which at-least-once allows. Queueing stays durable (ingest.c). */
	PGresult *r = PQexec(w->db, "SET synchronous_commit = off");
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		log_warn("event=db_session_setup_failed error=\"%s\"", db_error_message(w->db, r));
	PQclear(r);
	ws.epoch = w->epoch;
}

static int webhooks_run(struct worker_ctx *w)
{
	long queued = 0;
	bool full = false;

	prepare(w);
	/* a failure of one side does not stop the other: the stream is read even while outcomes
	 * or claims fail (what ingest cannot record stays pending in the group) */
	int drc = deliver_pump(w, ws.claim_now);
	if (drc == 0)
		ws.claim_now = false;
	/* while requests are in flight, the stream is only peeked at: their responses are waited
	 * for below instead */
	int irc = ingest_run(w, deliver_in_flight() > 0 ? 0 : READ_BLOCK_MS, &queued, &full);
	if (queued > 0) {
		ws.queued += (unsigned long)queued;
		ws.claim_now = true;
	}
	if (drc || irc)
		return -1;
	if (!full && !ws.claim_now)
		deliver_wait(POLL_MS);
	return 0;
}

static void report(void)
{
	unsigned long read, bad, dropped, attempts, delivered, retried, failed;
	uint64_t now = util_now_ns();
	double secs = (double)(now - ws.since_ns) / 1e9;

	ingest_take_counts(&read, &bad, &dropped);
	deliver_take_counts(&attempts, &delivered, &retried, &failed);
	if (read || attempts || dropped)
		log_info("event=progress events=%lu malformed=%lu queued=%lu dropped=%lu attempts=%lu delivered=%lu "
		         "per_s=%.0f retries=%lu failed=%lu in_flight=%d",
		         read, bad, ws.queued, dropped, attempts, delivered, secs > 0 ? (double)delivered / secs : 0.0,
		         retried, failed, deliver_in_flight());
	ws.queued = 0;
	ws.since_ns = now;
}

static void webhooks_tick(struct worker_ctx *w)
{
	long queued = 0;

	prepare(w);
	ws.ticks++;
	ingest_claim(w, &queued);
	if (queued > 0) {
		ws.queued += (unsigned long)queued;
		ws.claim_now = true;
	}
	if (ws.ticks % RETENTION_EVERY_TICKS == 0)
		deliver_retention(w);
	if (ws.ticks % GC_EVERY_TICKS == 0)
		(void)worker_consumers_gc(w, STREAM_EVENTS, WEBHOOKS_GROUP, WORKER_CONSUMER_GC_IDLE_MS);
	if (ws.ticks % REPORT_EVERY_TICKS == 0) {
		report();
		ingest_check_lag(w);
	}
}

static void webhooks_stop(struct worker_ctx *w)
{
	deliver_stop(w);
	report();
}

int main(void)
{
	static const struct worker_def def = {
	    .type = "webhooks",
	    .stream = STREAM_EVENTS,
	    .group = WEBHOOKS_GROUP,
	    .group_start = NULL, /* "$": a first start does not replay the stream's history */
	    .needs_db = true,
	    .tick = webhooks_tick,
	    .run = webhooks_run,
	    .stop = webhooks_stop,
	};
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "dialer-webhooks: curl_global_init failed\n");
		return 1;
	}
	ws.since_ns = util_now_ns();
	int rc = worker_main(&def);
	curl_global_cleanup();
	return rc;
}
