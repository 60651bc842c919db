/*
 * Non-blocking PostgreSQL connection pool for one libevent loop: queries are
 * queued, sent with PQsendQueryParams and completed from EV_READ, so a slow
 * query never blocks the loop. A connection can be pinned for a transaction.
 */
#ifndef DIALER_PGPOOL_H
#define DIALER_PGPOOL_H

#include <stdbool.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "common.h"

struct pgpool;
struct pgconn;

/*
 * Query completion. res is borrowed (cleared by the pool after return); it is
 * NULL when no connection could run the query (database down, queue full,
 * connection lost mid-query). res may carry PGRES_FATAL_ERROR.
 */
typedef void (*pgpool_cb)(PGresult *res, void *arg);

/* Connection handed out by pgpool_acquire; NULL when the database is down. */
typedef void (*pgpool_acquire_cb)(struct pgconn *conn, void *arg);

/*
 * Creates a pool of size connections to conninfo (URL or key=value) on base.
 * Connections are opened at once and re-opened with backoff when lost.
 * statement_timeout_ms bounds every statement. Caller frees with pgpool_free.
 */
struct pgpool *pgpool_new(struct event_base *base, const char *conninfo, int size, int statement_timeout_ms);

/* Closes every connection; pending callbacks are called with NULL first. */
void pgpool_free(struct pgpool *pool);

/*
 * Queues one statement with nparams text parameters (NULL entries are SQL
 * NULL). sql and values are copied. cb runs later from the loop, never inside
 * this call.
 */
void pgpool_query(struct pgpool *pool, const char *sql, int nparams, const char *const *values, pgpool_cb cb,
                  void *arg);

/* Pins an idle connection (FIFO with queries); cb gets NULL when none can be had. */
void pgpool_acquire(struct pgpool *pool, pgpool_acquire_cb cb, void *arg);

/* Runs a statement on a pinned connection. */
void pgpool_query_on(struct pgconn *conn, const char *sql, int nparams, const char *const *values, pgpool_cb cb,
                     void *arg);

/* Unpins conn. If it is inside a transaction or broken, the pool rolls back or reconnects. */
void pgpool_release(struct pgconn *conn);

/* True when at least one connection is established. */
bool pgpool_healthy(const struct pgpool *pool);

/* SQLSTATE of an error result, or "" . Borrowed. */
const char *pgpool_sqlstate(const PGresult *res);

#endif
