/*
 * Blocking PostgreSQL helpers for processes without a request loop (CLI,
 * workers, scheduler): connect with retry, run a statement, run migrations.
 */
#ifndef DIALER_DB_H
#define DIALER_DB_H

#include <libpq-fe.h>

#include "common.h"

/*
 * Connects to conninfo, retrying with backoff until it works or *stop becomes
 * true (stop may be NULL: a single try). Returns NULL when it gives up.
 */
PGconn *db_connect(const char *conninfo, volatile int *stop);

/*
 * Runs one statement with text parameters. Returns the result when its status
 * is COMMAND_OK or TUPLES_OK (caller PQclears), else logs and returns NULL.
 */
PGresult *db_exec(PGconn *pg, const char *sql, int n, const char *const *params);

/*
 * What the database said about r: its primary message (no "ERROR:" prefix, no
 * newline), else the connection's error (pg may be NULL), else "connection lost".
 */
const char *db_error_message(PGconn *pg, const PGresult *r);

/*
 * Applies schema/NNN_*.sql files from dir not yet in schema_migrations, each
 * in its own transaction, under an advisory lock (safe when several processes
 * start at once). dir NULL: $DIALER_SCHEMA_DIR, else <exe dir>/../schema.
 * Returns the count applied, or -1.
 */
int db_migrate(PGconn *pg, const char *dir);

#endif
