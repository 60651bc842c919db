/*
 * Import worker (dialer-import): runs import jobs from dialer:jobs:import. Streams the uploaded
 * CSV/XLSX through the sheet reader, normalizes every phone (common/phone), drops repeats within
 * the file with a hash set, then sorts the set, COPYs the unique valid numbers in order into a
 * temporary table, and then either COPYs them again straight into numbers (none is in the pool)
 * or inserts those not in the pool with one INSERT (an anti-join); ON CONFLICT DO NOTHING only
 * after a concurrent insert's unique violation — all in one transaction
 * together with the job's completion, so a file that fails imports nothing. Many copies may run
 * at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "config.h"
#include "db.h"
#include "importresult.h"
#include "jobs.h"
#include "phone.h"
#include "sheet.h"
#include "util.h"
#include "worker.h"

#define SAMPLE_MAX 100 /* bytes of a reported invalid value */
#define COPY_BUF   (256 * 1024)

/* Open-addressing set of the 9 digits after "09", stored + 1 (0 = empty): 8 bytes a number at
 * the worst load (1/2). */
struct phone_set {
	uint32_t *slots;
	size_t cap, n;
};

static bool set_add(struct phone_set *s, uint32_t v)
{
	if ((s->n + 1) * 2 > s->cap) {
		struct phone_set g = {xcalloc(s->cap ? s->cap * 2 : 1 << 16, sizeof(uint32_t)),
		                      s->cap ? s->cap * 2 : 1 << 16, 0};
		for (size_t i = 0; i < s->cap; i++)
			if (s->slots[i])
				set_add(&g, s->slots[i] - 1);
		free(s->slots);
		*s = g;
	}
	size_t mask = s->cap - 1, i = (size_t)((v + 1) * 2654435761u) & mask;
	while (s->slots[i]) {
		if (s->slots[i] == v + 1)
			return false;
		i = (i + 1) & mask;
	}
	s->slots[i] = v + 1;
	s->n++;
	return true;
}

/* Turns the set into its values in ascending order in slots[0..n) (the set is no longer usable).
 * LSD radix sort, 16 bits a pass, with slots[n..2n) as the scratch: the set is at most half
 * full, so this takes no memory beyond the set's. */
static void set_sort(struct phone_set *s)
{
	size_t n = 0;
	for (size_t i = 0; i < s->cap; i++)
		if (s->slots[i])
			s->slots[n++] = s->slots[i] - 1;
	if (n < 2)
		return;
	uint32_t *a = s->slots, *b = s->slots + n;
	size_t *count = xmalloc(((1 << 16) + 1) * sizeof(size_t));
	for (int shift = 0; shift < 32; shift += 16) {
		memset(count, 0, ((1 << 16) + 1) * sizeof(size_t));
		for (size_t i = 0; i < n; i++)
			count[((a[i] >> shift) & 0xffff) + 1]++;
		for (size_t k = 1; k <= 1 << 16; k++)
			count[k] += count[k - 1];
		for (size_t i = 0; i < n; i++)
			b[count[(a[i] >> shift) & 0xffff]++] = a[i];
		uint32_t *t = a;
		a = b;
		b = t;
	}
	free(count);
	s->n = n; /* two passes: the result is back in slots[0..n) */
}

struct import {
	struct job_ctx *j;
	PGconn *db;
	struct phone_set seen;
	struct import_tally t; /* rows, valid, invalid and their samples */
	long long unique;
	long long bytes_done, bytes_total;
	char *copy;
	size_t copy_len;
	bool failed;
	bool conflict; /* the last COPY failed on a unique violation */
};

/* A value as a JSON string: bytes that are not UTF-8, and control characters, become '?'; at
 * most SAMPLE_MAX bytes of the value are looked at. */
static json_t *value_json(const char *v, size_t len)
{
	char buf[SAMPLE_MAX + 1];
	size_t n = 0, lim = len > SAMPLE_MAX ? SAMPLE_MAX : len;
	for (size_t i = 0; i < lim;) {
		unsigned char c = (unsigned char)v[i];
		size_t l = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
		if (c < 0x80 || (i + l <= lim && util_utf8_valid(v + i, l))) {
			for (size_t k = 0; k < l; k++)
				buf[n++] = c < 0x20 || c == 0x7f ? '?' : v[i + k];
			i += l;
		} else {
			buf[n++] = '?';
			i++;
		}
	}
	return json_stringn(buf, n);
}

/* What the database said about r: its primary message (no "ERROR:" prefix, no newline), else the
 * connection's. */
static const char *db_msg(struct import *im, const PGresult *r)
{
	return db_error_message(im->db, r);
}

static int copy_flush(struct import *im)
{
	if (!im->copy_len)
		return 0;
	if (PQputCopyData(im->db, im->copy, (int)im->copy_len) != 1) {
		snprintf(im->j->err, sizeof(im->j->err), "database error while loading: %s", db_msg(im, NULL));
		return -1;
	}
	im->copy_len = 0;
	return 0;
}

static int on_progress(void *ctx, const struct sheet_progress *p)
{
	struct import *im = ctx;
	im->bytes_done = (long long)p->done;
	im->bytes_total = (long long)p->total;
	return 0;
}

static int on_row(void *ctx, long line, const char *value, size_t len)
{
	struct import *im = ctx;
	char in[PHONE_INPUT_MAX + 1], out[12];
	im->t.rows++;
	if (len <= PHONE_INPUT_MAX) {
		memcpy(in, value, len);
		in[len] = '\0';
	}
	if (len <= PHONE_INPUT_MAX && !memchr(value, '\0', len) && phone_normalize(in, out) == 0) {
		im->t.valid++;
		if (set_add(&im->seen, (uint32_t)strtoul(out + 2, NULL, 10)))
			im->unique++;
	} else {
		import_tally_invalid(&im->t, line, value_json(value, len));
	}
	/* progress in rows; the total is extrapolated from the bytes read until it is known */
	long long est = im->bytes_done > 0 && im->bytes_total > 0
	                    ? (long long)((double)im->t.rows * (double)im->bytes_total / (double)im->bytes_done)
	                    : -1;
	if (est >= 0 && est < im->t.rows)
		est = im->t.rows;
	if (job_progress(im->j, im->t.rows, est)) {
		im->failed = true;
		return 1;
	}
	return 0;
}

static PGresult *exec(struct import *im, const char *sql)
{
	PGresult *r = PQexec(im->db, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_COPY_IN)
		return r;
	snprintf(im->j->err, sizeof(im->j->err), "database error: %s", db_msg(im, r));
	PQclear(r);
	return NULL;
}

/* Ends the COPY; ok false aborts it. Returns 0 when it committed to the table. */
static int copy_end(struct import *im, bool ok)
{
	int rc = 0;
	if (PQputCopyEnd(im->db, ok ? NULL : "import aborted") != 1)
		rc = -1;
	PGresult *r;
	while ((r = PQgetResult(im->db))) {
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			if (state && !strcmp(state, "23505"))
				im->conflict = true;
			if (ok)
				snprintf(im->j->err, sizeof(im->j->err), "database error while loading: %s",
				         db_msg(im, r));
			rc = -1;
		}
		PQclear(r);
	}
	return ok ? rc : -1;
}

/*
 * Sends the sorted set with `sql` (a COPY … FROM STDIN) and ends it. Returns 0, or -1 with
 * j->err set; when report_conflict is false a unique violation leaves j->err empty and sets
 * im->conflict instead (the caller retries another way).
 */
static int copy_set(struct import *im, const char *sql, bool report_conflict)
{
	PGresult *r = exec(im, sql);
	if (!r)
		return -1;
	PQclear(r);
	for (size_t i = 0; i < im->seen.n; i++) {
		if (im->copy_len + 12 > COPY_BUF && copy_flush(im))
			return copy_end(im, false);
		char *o = im->copy + im->copy_len; /* "09" + the 9 digits + "\n" */
		uint32_t v = im->seen.slots[i];
		o[0] = '0';
		o[1] = '9';
		for (int k = 10; k >= 2; k--, v /= 10)
			o[k] = (char)('0' + v % 10);
		o[11] = '\n';
		im->copy_len += 12;
	}
	if (copy_flush(im))
		return copy_end(im, false);
	im->conflict = false;
	if (copy_end(im, true) == 0)
		return 0;
	if (!report_conflict && im->conflict)
		im->j->err[0] = '\0';
	return -1;
}

static int run(struct job_ctx *j)
{
	struct import im = {.j = j, .db = j->w->db};
	char path[4096], rerr[512] = "";
	PGresult *r = NULL;
	int rc = -1;
	bool in_tx = false;
	struct stat st;
	uint64_t t_start = util_now_ns(), t_sorted = 0, t_read = 0, t_insert = 0;

	import_tally_init(&im.t);
	im.copy = xmalloc(COPY_BUF);
	if (!j->file_path || jobs_path(path, sizeof(path), j->file_path) || stat(path, &st)) {
		snprintf(j->err, sizeof(j->err), "the uploaded file is missing");
		goto out;
	}
	enum sheet_format fmt = sheet_detect(path, j->file_name);
	im.bytes_total = st.st_size;

	/* the file first: a bad one never reaches the database */
	struct sheet_opts opts = {.progress = on_progress};
	/* 0: read whole; 1: on_row stopped it (lost job: j->err says); -1: bad file */
	int read_rc = sheet_read_phones_opts(path, fmt, &opts, on_row, &im, rerr, sizeof(rerr));
	if (read_rc || im.failed || j->err[0]) {
		if (read_rc < 0)
			snprintf(j->err, sizeof(j->err), "%s", rerr);
		goto out;
	}
	if (job_progress(j, im.t.rows, im.t.rows)) /* the final count, whatever the throttle */
		goto out;
	/* in order: the pool's unique index (and its heap) are then filled left to right, without the
	 * database sorting ~1,000,000 strings (which spilled to disk at the default work_mem) */
	set_sort(&im.seen);
	t_sorted = util_now_ns();

	if (!(r = exec(&im, "BEGIN")))
		goto out;
	in_tx = true;
	PQclear(r);
	/* one big file may take longer than the session's statement timeout */
	if (!(r = exec(&im, "SET LOCAL statement_timeout = '30min'; "
	                    "CREATE TEMP TABLE import_stage (phone text NOT NULL) ON COMMIT DROP")))
		goto out;
	PQclear(r);
	if (copy_set(&im, "COPY import_stage (phone) FROM STDIN", true))
		goto out;
	t_read = util_now_ns();

	/* When none of the file's numbers is in the pool (a new list; an empty pool answers at once),
	 * the set goes straight into numbers with a second COPY: COPY writes the heap a page of rows
	 * at a time where INSERT … SELECT writes row by row, and no anti-join is needed (949,800 new
	 * numbers: bench/import-export.sh, docs/benchmarks.md). Otherwise only the numbers not in the
	 * pool yet go to an INSERT: an anti-join finds them in one pass (a re-import of 950,000 known
	 * numbers: ~0.5 s instead of 4-8 s of per-row conflict checks, and no identity value drawn per
	 * duplicate). The stage is in order, and so is what the anti-join passes on when it is a
	 * nested loop, a merge join or a one-batch hash join; a hash join in batches (a large pool at
	 * the default work_mem) mixes the order, which only costs speed. A number that another
	 * transaction inserts meanwhile makes either fail with a unique violation: both run under a
	 * savepoint, and then the INSERT is run with ON CONFLICT DO NOTHING. That one is not the
	 * first choice because its speculative insertion costs ~15% more per inserted row
	 * (1,000,000 rows: 9.6 s against 8.1 s). */
#define INSERT_NEW                                                               \
	"INSERT INTO numbers (phone_number) SELECT s.phone FROM import_stage s " \
	"WHERE NOT EXISTS (SELECT 1 FROM numbers n WHERE n.phone_number = s.phone)"
	if (!(r = exec(&im, "SELECT EXISTS (SELECT 1 FROM import_stage s "
	                    "WHERE EXISTS (SELECT 1 FROM numbers n WHERE n.phone_number = s.phone))")))
		goto out;
	bool known = strcmp(PQgetvalue(r, 0, 0), "f") != 0;
	PQclear(r);
	if (!(r = exec(&im, "SAVEPOINT import_fast")))
		goto out;
	PQclear(r);
	r = NULL;
	long long inserted = -1;
	if (!known) {
		if (copy_set(&im, "COPY numbers (phone_number) FROM STDIN", false) == 0)
			inserted = (long long)im.seen.n;
		else if (!im.conflict)
			goto out;
	} else {
		r = PQexec(im.db, INSERT_NEW);
		if (PQresultStatus(r) == PGRES_COMMAND_OK) {
			inserted = strtoll(PQcmdTuples(r), NULL, 10);
		} else {
			const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			if (!state || strcmp(state, "23505")) { /* anything but unique_violation */
				snprintf(j->err, sizeof(j->err), "database error: %s", db_msg(&im, r));
				goto out;
			}
		}
		PQclear(r);
		r = NULL;
	}
	if (inserted < 0) {
		log_info("event=import_conflict job_id=%lld retry=on_conflict", j->id);
		if (!(r = exec(&im, "ROLLBACK TO SAVEPOINT import_fast")))
			goto out;
		PQclear(r);
		if (!(r = exec(&im, INSERT_NEW " ON CONFLICT (phone_number) DO NOTHING")))
			goto out;
		inserted = strtoll(PQcmdTuples(r), NULL, 10);
		PQclear(r);
		r = NULL;
	}
	t_insert = util_now_ns();
	json_t *result = import_tally_result(&im.t, inserted);
	int crc = job_complete(j, im.db, result, NULL, NULL, NULL, 0);
	json_decref(result);
	if (crc != 0)
		goto out; /* no longer ours, or the update failed: roll back */
	if (!(r = exec(&im, "COMMIT"))) {
		in_tx = false;
		goto out;
	}
	in_tx = false;
	PQclear(r);
	r = NULL;
	jobs_file_remove(j->file_path);
	/* read_ms: reading, normalizing and sorting; copy_ms: the COPY into the temp table; insert_ms:
	 * the INSERT into numbers; commit_ms: the completion and COMMIT (bench/import-export.sh) */
	uint64_t t_end = util_now_ns();
	log_info("event=import_done job_id=%lld rows=%lld inserted=%lld duplicates=%lld invalid=%lld unique=%lld "
	         "read_ms=%.1f copy_ms=%.1f insert_ms=%.1f commit_ms=%.1f",
	         j->id, im.t.rows, inserted, im.t.valid - inserted, im.t.invalid, im.unique,
	         (double)(t_sorted - t_start) / 1e6, (double)(t_read - t_sorted) / 1e6,
	         (double)(t_insert - t_read) / 1e6, (double)(t_end - t_insert) / 1e6);
	rc = 0;
out:
	if (in_tx)
		PQclear(PQexec(im.db, "ROLLBACK"));
	PQclear(r);
	import_tally_free(&im.t);
	free(im.copy);
	free(im.seen.slots);
	return rc;
}

static const struct job_runner runner = {JOB_IMPORT, run};

int main(void)
{
	return jobs_worker_main(&runner);
}
