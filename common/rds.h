/*
 * Asynchronous Redis client for one libevent loop (hiredis async + its libevent
 * adapter): commands issued in one loop turn go out pipelined; the connection
 * is re-opened with backoff when lost.
 */
#ifndef DIALER_RDS_H
#define DIALER_RDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "common.h"

struct rds;

/* reply is borrowed (freed by hiredis after return); NULL when Redis is unavailable. */
typedef void (*rds_cb)(redisReply *reply, void *arg);

/* Parsed redis://[:password@]host[:port][/db]. */
struct rds_url {
	char host[256];
	int port;
	char password[256];
	int db;
};

/* Parses a redis URL. Returns 0 or -1. */
int rds_url_parse(const char *url, struct rds_url *out) MUSTCHECK;

/* Starts connecting to url on base. Caller frees with rds_free. */
struct rds *rds_new(struct event_base *base, const char *url);
/* Disconnects; pending callbacks get NULL, those of commands that could not be sent too (the loop
 * need not run again), and so do those of commands these callbacks send (a callback must not send
 * again and again on NULL). */
void rds_free(struct rds *r);

/* Sends a command (argv copied). cb runs later from the loop (or from rds_free), never inside this
 * call, exactly once; cb NULL: the reply is ignored. */
void rds_command(struct rds *r, rds_cb cb, void *arg, int argc, const char **argv, const size_t *lens);

/* True while the connection is up (AUTH/SELECT done). */
bool rds_connected(const struct rds *r);

/* A stream entry id "<ms>-<seq>", parsed; as text it fits RDS_ID_MAX with its NUL. */
struct rds_stream_id {
	uint64_t ms, seq;
};
#define RDS_ID_MAX 48

/* Parses a stream id: digits, '-', digits, shorter than RDS_ID_MAX (NULL or anything else: -1). */
int rds_id_parse(const char *s, struct rds_stream_id *out) MUSTCHECK;

/* True when a comes before b in a stream. */
bool rds_id_less(struct rds_stream_id a, struct rds_stream_id b);

/* -1, 0, 1 as stream id a sorts before, equal to, after b (text order when one is not an id). */
int rds_id_cmp(const char *a, const char *b);

/* The id right after id ("<ms>-<seq+1>", or the next millisecond's first), into out. 0 or -1. */
int rds_id_next(const char *id, char out[RDS_ID_MAX]) MUSTCHECK;

/* The value of key in a flat [k, v, k, v …] reply (a stream entry's fields, an XINFO
 * record), of any type; NULL when absent. Borrowed from flat. */
const redisReply *rds_flat_field(const redisReply *flat, const char *key);

/* The value of field `name` in a stream entry's field/value array (XREAD, XRANGE), when it
 * is a string; NULL otherwise. Borrowed from fields. */
const redisReply *rds_entry_field(const redisReply *fields, const char *name);

/*
 * XACK of ids[0..n) on a blocking connection (nothing sent when n is 0). Returns 0, or -1
 * (logged) when Redis fails.
 */
int rds_xack_ids(redisContext *rc, const char *stream, const char *group, const char *const *ids, size_t n);

/* The same for the entries of list[0..n) (an XREADGROUP/XAUTOCLAIM entry list; entries
 * without an id are skipped). */
int rds_xack(redisContext *rc, const char *stream, const char *group, const redisReply *list, size_t n);

/*
 * One XAUTOCLAIM page on a blocking connection: entries of group pending longer
 * than idle_ms (a decimal string) move to consumer, at most count (a decimal
 * string) from *cursor on, only their ids when justid. Returns the reply, whose
 * element[1] is the entry list (the caller frees the reply), and sets cursor to
 * where the next page starts ("0-0": none); NULL (logged) when Redis fails.
 */
redisReply *rds_autoclaim(redisContext *rc, const char *stream, const char *group, const char *consumer,
                          const char *idle_ms, const char *count, bool justid, char cursor[RDS_ID_MAX]);

/* The entry list of a one-stream XREADGROUP/XREAD reply ([[stream, [entries]]]), or NULL when
 * the reply is not one (nil: nothing new). Borrowed from r. */
const redisReply *rds_xread_entries(const redisReply *r);

/*
 * Blocking connection for processes without a loop (workers, CLI): retries with
 * backoff until connected or *stop becomes true (stop may be NULL: one try).
 * Reads and writes on it time out after RDS_SYNC_TIMEOUT_S (blocking reads
 * must ask for less). Returns NULL when it gives up. Caller frees with redisFree.
 */
#define RDS_SYNC_TIMEOUT_S 10
redisContext *rds_connect_sync(const char *url, volatile int *stop);

#endif
