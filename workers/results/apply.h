/*
 * Applies a batch of results-stream entries to PostgreSQL in one transaction
 * with a fixed number of round-trips (COMPAT §3.5, §3.6 charging): numbers
 * resolved or auto-created, agents resolved, attempts inserted (the
 * call_attempts trigger derives number_state, the global status and clears
 * the lock), wallets charged, entries that cannot apply dead-lettered, and
 * entries applied before (same stream id) skipped.
 */
#ifndef DIALER_RESULTS_APPLY_H
#define DIALER_RESULTS_APPLY_H

#include <libpq-fe.h>

#include "common.h"
#include "entry.h"

#define APPLY_DISABLED_MAX 64

enum apply_rc {
	APPLY_OK = 0,         /* committed */
	APPLY_LOST = -1,      /* the connection is gone: nothing committed, retry after reconnecting */
	APPLY_TRANSIENT = -2, /* deadlock, serialization, cancel…: nothing committed, retry as is */
	APPLY_FAILED = -3,    /* a statement failed on this data: nothing committed, split the batch */
};

struct apply_summary {
	int applied;      /* attempts inserted */
	int duplicates;   /* entries applied (or dead-lettered) before: skipped */
	int dead;         /* entries moved to dead_letters now */
	int unknown_refs; /* applied with a scenario or line id of no such row of the company: stored NULL */
	long disabled[APPLY_DISABLED_MAX]; /* companies the charges disabled */
	int ndisabled;                     /* may exceed APPLY_DISABLED_MAX (then only the first are listed) */
	char error[256];                   /* the failure, for logs */
	long long *numbers;                /* the numbers the applied entries named (their locks to release); free */
	int nnumbers;
};

/*
 * Creates this connection's staging table when it is missing; call after
 * every (re)connect. Returns 0 or -1.
 */
int apply_prepare(PGconn *pg) MUSTCHECK;

/*
 * Applies entries[0..n) (n ≥ 1; entries with bad[0] set are dead-lettered
 * with that reason) in one transaction and fills *out. Entries are borrowed.
 * Returns an enum apply_rc; on anything but APPLY_OK the transaction was
 * rolled back and out->error says why. The caller frees out->numbers.
 */
int apply_batch(PGconn *pg, const struct result_entry *entries, int n, struct apply_summary *out) MUSTCHECK;

#endif
