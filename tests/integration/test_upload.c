/* POST /api/numbers/upload and the jobs around it (issue 6), against the real dialer-api and
 * dialer-import: multipart and raw CSV bodies; the sync-wait's inline 200 and its 202 (an API with
 * JOB_WAIT_SECONDS=0); GET /api/jobs/{id} and the list; exact counts on a generated file with
 * invalid rows and duplicates within the file and against the pool; the upload route's own body
 * limit (413 beyond UPLOAD_MAX_BYTES, while other routes keep HTTP_MAX_BODY_BYTES); invalid
 * multipart → 400 with a detail; a worker SIGKILLed mid-job does not leave the job running; a job
 * whose workers keep dying is failed with a clear error; company isolation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <libpq-fe.h>
#include <xlsxwriter.h>

#include "harness.h"

#define UPLOAD_MAX "16777216" /* the APIs' UPLOAD_MAX_BYTES here */

static const char *const expect100[] = {"Expect: 100-continue", NULL};

static struct th_api api, api0; /* api0: JOB_WAIT_SECONDS=0 */
static char *db_url, *root_token, *acme_token, *beta_token;
static char data_dir[512];
static struct th_proc *worker;

/* The first column of the first row of a printf-formatted query, as an integer that must not be NULL. */
#define qi(...) th_sqlf_int(db_url, __VA_ARGS__)

static struct th_proc *worker_start(void)
{
	char dkv[600];

	snprintf(dkv, sizeof(dkv), "DATA_DIR=%s", data_dir);
	struct th_proc *p = th_dialer_start("dialer-import", db_url, "import", dkv, "LOG_LEVEL=info", NULL);
	assert_non_null(p);
	return p;
}

/* Files left in DATA_DIR/uploads. */
static int uploads_left(void)
{
	char dir[600];
	int n = 0;
	snprintf(dir, sizeof(dir), "%s/uploads", data_dir);
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* ---- a generated file with known counts ---- */

struct expect {
	long long rows, invalid, valid, inserted, duplicates;
};

/* Row i (line i + 2 after the header): invalid when i % 50 == 7; a repeat of row i - 1 when
 * i % 40 == 3 (never invalid then); otherwise a new number, in one of several accepted forms;
 * rows with i % 100 == 11 (never repeats or invalid) are put into the pool beforehand. base keeps
 * files of different tests apart. */
static char *gen_csv(long long n, int base, bool quoted, struct expect *e)
{
	size_t cap = (size_t)n * 48 + 64, len = 0;
	char *s = malloc(cap);
	long long pool = 0, unique = 0;
	assert_non_null(s);
	len += (size_t)sprintf(s, "phone,name\r\n");
	memset(e, 0, sizeof(*e));
	for (long long i = 0; i < n; i++) {
		long long k = i % 40 == 3 ? i - 1 : i;
		e->rows++;
		if (i % 50 == 7) {
			e->invalid++;
			len += (size_t)sprintf(s + len, "bad-%lld,x\r\n", i);
			continue;
		}
		e->valid++;
		if (k == i)
			unique++;
		if (k == i && i % 100 == 11)
			pool++;
		const char *q = quoted && i % 2 ? "\"" : "";
		switch (i % 3) {
		case 0:
			len += (size_t)sprintf(s + len, "%s09%d%07lld%s,n%lld\r\n", q, base, k, q, i);
			break;
		case 1:
			len += (size_t)sprintf(s + len, "%s+989%d%07lld%s,n%lld\r\n", q, base, k, q, i);
			break;
		default:
			len += (size_t)sprintf(s + len, "%s98 9%d %07lld%s,\"n, %lld\"\r\n", q, base, k, q, i);
			break;
		}
	}
	e->inserted = unique - pool;
	e->duplicates = e->valid - e->inserted;
	/* the pool part, through POST /api/numbers */
	size_t pcap = (size_t)pool * 20 + 64, plen = 0;
	char *body = malloc(pcap);
	assert_non_null(body);
	plen += (size_t)sprintf(body, "{\"phone_numbers\": [");
	for (long long i = 11, c = 0; i < n; i += 100, c++)
		plen += (size_t)sprintf(body + plen, "%s\"09%d%07lld\"", c ? "," : "", base, i);
	sprintf(body + plen, "]}");
	struct th_resp *r = th_call(&api, "POST", "/api/numbers", acme_token, body);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "inserted", pool);
	th_resp_free(r);
	free(body);
	return s;
}

static char *multipart(const char *boundary, const char *filename, const char *content)
{
	size_t n = strlen(content) + 512;
	char *s = malloc(n);
	assert_non_null(s);
	snprintf(s, n,
	         "--%s\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n"
	         "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
	         "Content-Type: text/csv\r\n\r\n%s\r\n--%s--\r\n",
	         boundary, boundary, filename, content, boundary);
	return s;
}

static struct th_resp *post_upload(const struct th_api *a, const char *token, const char *query, const char *ctype,
                                   const char *body)
{
	char url[256];
	snprintf(url, sizeof(url), "%s/api/numbers/upload%s", a->base_url, query ? query : "");
	return th_http("POST", url, token, ctype, body, NULL);
}

static void check_result(const json_t *res, const struct expect *e)
{
	TH_EXPECT_INT(res, "rows", e->rows);
	TH_EXPECT_INT(res, "invalid", e->invalid);
	TH_EXPECT_INT(res, "inserted", e->inserted);
	TH_EXPECT_INT(res, "duplicates", e->duplicates);
	assert_true(json_is_array(json_object_get(res, "invalid_samples")));
	assert_true(json_is_array(json_object_get(res, "invalid_rows")));
}

/* Polls GET /api/jobs/{id} until it is finished; returns the job (caller decrefs). */
static json_t *wait_job(const struct th_api *a, const char *token, long long id, int timeout_ms)
{
	char path[64];
	long long deadline = th_now_ms() + timeout_ms;
	snprintf(path, sizeof(path), "/api/jobs/%lld", id);
	for (;;) {
		struct th_resp *r = th_call(a, "GET", path, token, NULL);
		TH_EXPECT_STATUS(r, 200);
		const char *st = th_json_str(r->json, "status");
		if (st && (!strcmp(st, "completed") || !strcmp(st, "failed"))) {
			json_t *j = json_incref(r->json);
			th_resp_free(r);
			return j;
		}
		th_resp_free(r);
		if (th_now_ms() > deadline)
			fail_msg("job %lld not finished after %d ms", id, timeout_ms);
		th_sleep_ms(100);
	}
}

/* ---- tests ---- */

static void test_multipart_counts(void **state)
{
	struct expect e;
	(void)state;
	char *csv = gen_csv(5000, 11, true, &e);
	char *body = multipart("----b0undary", "numbers.csv", csv);
	struct th_resp *r = post_upload(&api, acme_token, NULL, "multipart/form-data; boundary=----b0undary", body);
	TH_EXPECT_STATUS(r, 200);
	check_result(r->json, &e);
	/* the first invalid rows, by line (the header is line 1) */
	json_t *samples = json_object_get(r->json, "invalid_samples");
	assert_int_equal(json_array_size(samples), 5);
	assert_string_equal(json_string_value(json_array_get(samples, 0)), "bad-7");
	assert_string_equal(json_string_value(json_array_get(samples, 1)), "bad-57");
	json_t *rows = json_object_get(r->json, "invalid_rows");
	assert_int_equal(json_array_size(rows), 100);
	TH_EXPECT_INT(json_array_get(rows, 0), "line", 9);
	TH_EXPECT_STR(json_array_get(rows, 0), "value", "bad-7");
	TH_EXPECT_INT(json_array_get(rows, 99), "line", 7 + 99 * 50 + 2);
	th_resp_free(r);
	/* in the pool, normalized */
	assert_int_equal(qi("SELECT count(*) FROM numbers WHERE phone_number LIKE '0911%%'"), e.inserted + 50);
	assert_int_equal(qi("SELECT count(*) FROM numbers WHERE phone_number = '09110000001'"), 1);
	/* the job: completed, listed, its upload deleted */
	assert_int_equal(qi("SELECT count(*) FROM jobs WHERE kind = 'import' AND state = 'completed'"), 1);
	r = th_call(&api, "GET", "/api/jobs?kind=import", acme_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "total", 1);
	json_t *job = json_array_get(json_object_get(r->json, "items"), 0);
	TH_EXPECT_STR(job, "status", "completed");
	TH_EXPECT_STR(job, "kind", "import");
	TH_EXPECT_STR(job, "file_name", "numbers.csv");
	TH_EXPECT_INT(json_object_get(job, "progress"), "done", e.rows);
	TH_EXPECT_INT(json_object_get(job, "progress"), "percent", 100);
	check_result(json_object_get(job, "result"), &e);
	th_resp_free(r);
	assert_int_equal(uploads_left(), 0);
	free(body);
	free(csv);
}

static void test_raw_csv(void **state)
{
	struct expect e;
	(void)state;
	char *csv = gen_csv(700, 12, false, &e);
	struct th_resp *r = post_upload(&api, acme_token, "?filename=raw.csv", "text/csv", csv);
	TH_EXPECT_STATUS(r, 200);
	check_result(r->json, &e);
	th_resp_free(r);
	/* the same file again: every valid row is a duplicate now */
	r = post_upload(&api, acme_token, NULL, "text/csv; charset=utf-8", csv);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "inserted", 0);
	TH_EXPECT_INT(r->json, "duplicates", e.valid);
	TH_EXPECT_INT(r->json, "invalid", e.invalid);
	th_resp_free(r);
	free(csv);
}

static void test_accepted_202(void **state)
{
	struct expect e;
	(void)state;
	char *csv = gen_csv(900, 13, false, &e);
	struct th_resp *r = post_upload(&api0, acme_token, NULL, "text/csv", csv);
	TH_EXPECT_STATUS(r, 202);
	long long id = 0;
	assert_int_equal(th_json_int(r->json, "job_id", &id), 0);
	char url[64];
	snprintf(url, sizeof(url), "/api/jobs/%lld", id);
	TH_EXPECT_STR(r->json, "job_url", url);
	assert_non_null(th_resp_header(r, "Location"));
	assert_string_equal(th_resp_header(r, "Location"), url);
	th_resp_free(r);
	json_t *job = wait_job(&api0, acme_token, id, 30000);
	TH_EXPECT_STR(job, "status", "completed");
	TH_EXPECT_INT(job, "id", id);
	assert_true(json_is_null(json_object_get(job, "error")));
	check_result(json_object_get(job, "result"), &e);
	TH_EXPECT_INT(json_object_get(job, "progress"), "done", e.rows);
	TH_EXPECT_INT(json_object_get(job, "progress"), "total", e.rows);
	json_decref(job);
	/* another company's admin cannot see it; a superuser can */
	r = th_call(&api, "GET", url, beta_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Job not found");
	th_resp_free(r);
	r = th_call(&api, "GET", url, root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/jobs", beta_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "total", 0);
	th_resp_free(r);
	/* an import has no file to download */
	snprintf(url, sizeof(url), "/api/jobs/%lld/download", id);
	r = th_call(&api, "GET", url, acme_token, NULL);
	TH_EXPECT_ERROR(r, 404, NULL);
	th_resp_free(r);
	free(csv);
}

/*
 * Another transaction inserts one of the file's new numbers (09<base>0000000, uncommitted) while
 * the import writes into numbers, and commits once the import's statement (`stmt`, a prefix of
 * its text) waits for it: the worker meets a unique violation, rolls back to its savepoint and
 * runs the INSERT again with ON CONFLICT DO NOTHING: the job completes, and the number counts as
 * a duplicate. csv and e are the file and what it gives without the other transaction.
 */
static void concurrent_insert(int base, char *csv, struct expect *e, const char *stmt)
{
	char like[16], one[16];
	snprintf(like, sizeof(like), "09%d%%", base);
	snprintf(one, sizeof(one), "09%d0000000", base);
	long long before = th_sql_int(db_url, "SELECT count(*) FROM numbers WHERE phone_number LIKE $1", like, NULL);
	PGconn *hold = PQconnectdb(db_url);
	assert_int_equal(PQstatus(hold), CONNECTION_OK);
	PGresult *res = PQexec(hold, "BEGIN");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	const char *p[] = {one};
	res = PQexecParams(hold, "INSERT INTO numbers (phone_number) VALUES ($1)", 1, NULL, p, NULL, NULL, 0);
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);

	struct th_resp *r = post_upload(&api0, acme_token, NULL, "text/csv", csv);
	TH_EXPECT_STATUS(r, 202);
	long long id = 0;
	assert_int_equal(th_json_int(r->json, "job_id", &id), 0);
	th_resp_free(r);
	/* the worker's statement waits for the other transaction's number */
	char stmt_like[64];
	snprintf(stmt_like, sizeof(stmt_like), "%s%%", stmt);
	long long deadline = th_now_ms() + 20000;
	while (th_sql_int(db_url,
	                  "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
	                  stmt_like, NULL) == 0) {
		if (th_now_ms() > deadline)
			fail_msg("the import's %s never waited for the other transaction", stmt);
		th_sleep_ms(50);
	}
	res = PQexec(hold, "COMMIT");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	PQfinish(hold);

	json_t *job = wait_job(&api0, acme_token, id, 30000);
	TH_EXPECT_STR(job, "status", "completed");
	e->inserted--;
	e->duplicates++;
	check_result(json_object_get(job, "result"), e);
	json_decref(job);
	assert_int_equal(th_sql_int(db_url, "SELECT count(*) FROM numbers WHERE phone_number LIKE $1", like, NULL),
	                 before + e->inserted + 1);
}

/* Some of the file's numbers are in the pool: the worker's plain INSERT (anti-join) meets the
 * concurrent number. */
static void test_concurrent_insert(void **state)
{
	struct expect e;
	(void)state;
	char *csv = gen_csv(300, 18, false, &e);
	concurrent_insert(18, csv, &e, "INSERT INTO numbers");
	free(csv);
}

/* None of the file's numbers is in the pool: the worker COPYs them straight into numbers, and
 * that COPY meets the concurrent number. */
static void test_concurrent_copy(void **state)
{
	(void)state;
	size_t cap = 64 + 300 * 16, len = 0;
	char *csv = malloc(cap);
	assert_non_null(csv);
	len += (size_t)snprintf(csv, cap, "phone\n");
	for (int i = 0; i < 300; i++)
		len += (size_t)snprintf(csv + len, cap - len, "0919%07d\n", i * 7);
	struct expect e = {.rows = 300, .valid = 300, .inserted = 300};
	concurrent_insert(19, csv, &e, "COPY numbers");
	free(csv);
}

/* The upload route takes bodies past HTTP_MAX_BODY_BYTES (1 MiB) up to UPLOAD_MAX_BYTES;
 * the other routes keep 1 MiB, also on the same keep-alive connection afterwards. */
static void test_body_limits(void **state)
{
	struct expect e;
	(void)state;
	char *csv = gen_csv(120000, 14, false, &e);
	assert_true(strlen(csv) > 1048576);
	struct th_resp *r = post_upload(&api, acme_token, NULL, "text/csv", csv);
	if (r->status == 202) { /* a slow machine: the job finishes later */
		long long id = 0;
		assert_int_equal(th_json_int(r->json, "job_id", &id), 0);
		json_t *job = wait_job(&api, acme_token, id, 60000);
		check_result(json_object_get(job, "result"), &e);
		json_decref(job);
	} else {
		TH_EXPECT_STATUS(r, 200);
		check_result(r->json, &e);
	}
	th_resp_free(r);
	/* a JSON route refuses the same size (the client waits for 100-continue, so the refusal
	 * comes before the body) */
	char url[256];
	snprintf(url, sizeof(url), "%s/api/numbers", api.base_url);
	r = th_http("POST", url, acme_token, "application/json", csv, expect100);
	TH_EXPECT_ERROR(r, 413, NULL);
	th_resp_free(r);
	free(csv);
	/* one byte over UPLOAD_MAX_BYTES */
	size_t big = (size_t)atol(UPLOAD_MAX) + 1;
	char *huge = malloc(big + 1);
	assert_non_null(huge);
	memset(huge, '1', big);
	huge[big] = '\0';
	snprintf(url, sizeof(url), "%s/api/numbers/upload", api.base_url);
	r = th_http("POST", url, acme_token, "text/csv", huge, expect100);
	TH_EXPECT_ERROR(r, 413, NULL);
	th_resp_free(r);
	free(huge);
	assert_int_equal(uploads_left(), 0);
}

static void test_bad_requests(void **state)
{
	(void)state;
	struct th_resp *r;
	static const struct {
		const char *ctype, *body;
		long status;
		const char *detail_part;
	} cases[] = {
	    {"multipart/form-data; boundary=XX", "garbage", 400, "invalid multipart body"},
	    {"multipart/form-data; boundary=XX", "--XX\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n0912",
	     400, "closing boundary"},
	    {"multipart/form-data; boundary=XX", "--XX\r\nContent-Type: text/csv\r\n\r\nx\r\n--XX--", 400,
	     "content-disposition"},
	    {"multipart/form-data", "--XX--", 400, "boundary"},
	    {"multipart/form-data; boundary=XX",
	     "--XX\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--XX--", 422, "file"},
	    {"multipart/form-data; boundary=XX",
	     "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\n\r\n--XX--", 400,
	     "empty"},
	    {"application/json", "{}", 415, "Content-Type"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		r = post_upload(&api, acme_token, NULL, cases[i].ctype, cases[i].body);
		TH_EXPECT_ERROR(r, cases[i].status, NULL);
		const char *d = th_json_str(r->json, "detail");
		if (!d || !strstr(d, cases[i].detail_part))
			fail_msg("case %zu: detail \"%s\" lacks \"%s\"", i, d ? d : "", cases[i].detail_part);
		th_resp_free(r);
	}
	/* an empty body, no auth, an agent-less company mismatch */
	r = post_upload(&api, acme_token, NULL, "text/csv", "");
	TH_EXPECT_ERROR(r, 400, NULL);
	th_resp_free(r);
	r = post_upload(&api, NULL, NULL, "text/csv", "09121234567\n");
	TH_EXPECT_ERROR(r, 401, NULL);
	th_resp_free(r);
	r = post_upload(&api, acme_token, "?company=beta", "text/csv", "09121234567\n");
	TH_EXPECT_ERROR(r, 403, NULL);
	th_resp_free(r);
	/* a file the reader refuses fails the job with a clear error, and imports nothing */
	long long before = qi("SELECT count(*) FROM numbers");
	r = post_upload(&api, acme_token, NULL, "text/csv", "09121234567\n\"0912 unterminated\n");
	TH_EXPECT_ERROR(r, 400, NULL);
	assert_non_null(strstr(th_json_str(r->json, "detail"), "quoted field not closed"));
	th_resp_free(r);
	assert_int_equal(qi("SELECT count(*) FROM numbers"), before);
	assert_int_equal(uploads_left(), 0);
}

/* A worker SIGKILLed mid-job: the job goes back to the queue and a live worker finishes it. */
static void test_worker_killed(void **state)
{
	struct expect e;
	(void)state;
	char *csv = gen_csv(600000, 15, false, &e);
	struct th_resp *r = post_upload(&api0, acme_token, NULL, "text/csv", csv);
	TH_EXPECT_STATUS(r, 202);
	long long id = 0;
	assert_int_equal(th_json_int(r->json, "job_id", &id), 0);
	th_resp_free(r);
	/* wait until it runs and has made progress, then kill the worker */
	long long deadline = th_now_ms() + 30000;
	while (qi("SELECT count(*) FROM jobs WHERE id = %lld AND state = 'running' AND done > 0", id) == 0) {
		if (th_now_ms() > deadline)
			fail_msg("job %lld never ran", id);
		th_sleep_ms(10);
	}
	kill(th_proc_pid(worker), SIGKILL);
	th_proc_stop(worker);
	worker = NULL;
	/* killed while running (a completed job would make this test prove nothing) */
	assert_int_equal(qi("SELECT count(*) FROM jobs WHERE id = %lld AND state = 'running'", id), 1);
	worker = worker_start();
	json_t *job = wait_job(&api, acme_token, id, 90000);
	TH_EXPECT_STR(job, "status", "completed");
	TH_EXPECT_INT(job, "attempts", 2);
	check_result(json_object_get(job, "result"), &e);
	json_decref(job);
	assert_int_equal(uploads_left(), 0);
	free(csv);
}

/* An XLSX file (written with libxlsxwriter) posted as multipart by curl's own encoder: a Persian
 * header, numbers as numeric cells and as text, invalid cells; counts exact. */
static void test_xlsx(void **state)
{
	(void)state;
	char path[600];
	snprintf(path, sizeof(path), "%s/%s-numbers.xlsx", th_tmp_dir(), th_test_name());
	lxw_workbook *wb = workbook_new(path);
	lxw_worksheet *ws = workbook_add_worksheet(wb, "numbers");
	long long rows = 0, invalid = 0, valid = 0;
	worksheet_write_string(ws, 0, 0, "\xd8\xb4\xd9\x85\xd8\xa7\xd8\xb1\xd9\x87", NULL); /* شماره */
	worksheet_write_string(ws, 0, 1, "name", NULL);
	for (int i = 0; i < 3000; i++) {
		char buf[32];
		rows++;
		if (i % 30 == 5) {
			worksheet_write_string(ws, (lxw_row_t)(i + 1), 0, "not a phone", NULL);
			invalid++;
			continue;
		}
		valid++;
		if (i % 2)
			worksheet_write_number(ws, (lxw_row_t)(i + 1), 0, 9170000000.0 + i, NULL); /* 917… numeric */
		else {
			snprintf(buf, sizeof(buf), "0917%07d", i);
			worksheet_write_string(ws, (lxw_row_t)(i + 1), 0, buf, NULL);
		}
		worksheet_write_string(ws, (lxw_row_t)(i + 1), 1, "x", NULL);
	}
	assert_int_equal(workbook_close(wb), LXW_NO_ERROR);

	CURL *h = curl_easy_init();
	curl_mime *mime = curl_mime_init(h);
	curl_mimepart *part = curl_mime_addpart(mime);
	struct curl_slist *hdrs = NULL;
	char url[256], *auth = NULL, *resp = NULL;
	size_t resp_len = 0;
	FILE *out = open_memstream(&resp, &resp_len);
	long status = 0;
	curl_mime_name(part, "file");
	curl_mime_filedata(part, path);
	curl_mime_filename(part, "numbers.xlsx");
	snprintf(url, sizeof(url), "%s/api/numbers/upload", api.base_url);
	assert_true(asprintf(&auth, "Authorization: Bearer %s", acme_token) > 0);
	hdrs = curl_slist_append(hdrs, auth);
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_MIMEPOST, mime);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
	assert_int_equal(curl_easy_perform(h), CURLE_OK);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	fclose(out);
	json_t *res = json_loadb(resp, resp_len, 0, NULL);
	if (status != 200 || !res)
		fail_msg("xlsx upload: HTTP %ld: %.*s", status, (int)resp_len, resp);
	TH_EXPECT_INT(res, "rows", rows);
	TH_EXPECT_INT(res, "invalid", invalid);
	TH_EXPECT_INT(res, "inserted", valid);
	TH_EXPECT_INT(res, "duplicates", 0);
	TH_EXPECT_INT(json_array_get(json_object_get(res, "invalid_rows"), 0), "line", 7); /* row 6 + header */
	json_decref(res);
	assert_int_equal(qi("SELECT count(*) FROM numbers WHERE phone_number = '09170000001'"), 1);
	free(resp);
	free(auth);
	curl_slist_free_all(hdrs);
	curl_mime_free(mime);
	curl_easy_cleanup(h);
	unlink(path);
}

/* dialerctl import FILE --company acme: the job through PostgreSQL and Redis directly, plain
 * progress lines (stderr is not a terminal here), the ImportResult on stdout. */
static void test_cli_import(void **state)
{
	struct expect e;
	(void)state;
	char *csv = gen_csv(3000, 16, true, &e);
	char path[600], bin[600], dbkv[700], rkv[300], dkv[600], *out = NULL;
	snprintf(path, sizeof(path), "%s/%s-cli.csv", th_tmp_dir(), th_test_name());
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(csv, f);
	fclose(f);
	snprintf(bin, sizeof(bin), "%s/dialerctl", th_env("DIALER_BIN_DIR"));
	snprintf(dbkv, sizeof(dbkv), "DATABASE_URL=%s", db_url);
	snprintf(rkv, sizeof(rkv), "REDIS_URL=%s", th_env("REDIS_URL"));
	snprintf(dkv, sizeof(dkv), "DATA_DIR=%s", data_dir);
	const char *argv[] = {bin, "import", path, "--company", "acme", NULL};
	const char *env[] = {dbkv, rkv, dkv, NULL};
	assert_int_equal(th_run(argv, env, 60000, &out), 0);
	json_t *res = json_loads(out, 0, NULL);
	if (!res)
		fail_msg("dialerctl import printed: %s", out);
	check_result(res, &e);
	json_decref(res);
	free(out);
	/* the job belongs to acme, and its name is the file's */
	assert_int_equal(qi("SELECT count(*) FROM jobs WHERE file_name = 'test_upload-cli.csv' AND company_id = "
	                    "(SELECT id FROM companies WHERE name = 'acme') AND state = 'completed'"),
	                 1);
	/* an unknown company, a missing file */
	const char *bad1[] = {bin, "import", path, "--company", "nope", NULL};
	assert_int_equal(th_run(bad1, env, 30000, NULL), 1);
	const char *bad2[] = {bin, "import", "/nonexistent/file.csv", NULL};
	assert_int_equal(th_run(bad2, env, 30000, NULL), 1);
	assert_int_equal(uploads_left(), 0);
	unlink(path);
	free(csv);
}

/* A client that disconnects while its request waits for the job: the wait notices at its next
 * poll and ends (no use after free, no leak: the API's clean exit under ASan checks that), and
 * the job itself still runs. */
static void test_client_gone(void **state)
{
	(void)state;
	th_proc_stop(worker); /* nothing runs the job meanwhile: the request has to wait */
	worker = NULL;
	long long before = qi("SELECT count(*) FROM jobs");
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)api.port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	char req[1024];
	const char *body = "phone\n09161234567\n";
	int n = snprintf(req, sizeof(req),
	                 "POST /api/numbers/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
	                 "Content-Type: text/csv\r\nContent-Length: %zu\r\n\r\n%s",
	                 acme_token, strlen(body), body);
	assert_int_equal(write(fd, req, (size_t)n), n);
	long long deadline = th_now_ms() + 10000;
	while (qi("SELECT count(*) FROM jobs") == before) {
		if (th_now_ms() > deadline)
			fail_msg("the upload created no job");
		th_sleep_ms(20);
	}
	close(fd);
	th_sleep_ms(1500); /* a few polls of the wait */
	/* the API still answers, and the job runs once a worker is back */
	struct th_resp *r = th_call(&api, "GET", "/health", NULL, NULL);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);
	worker = worker_start();
	long long id = qi("SELECT max(id) FROM jobs");
	json_t *job = wait_job(&api, acme_token, id, 30000);
	TH_EXPECT_STR(job, "status", "completed");
	json_decref(job);
	char log_path[600], line[4096];
	snprintf(log_path, sizeof(log_path), "%s/%s-api.log", th_tmp_dir(), th_test_name());
	FILE *f = fopen(log_path, "r");
	bool seen = false;
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		seen |= strstr(line, "event=job_wait_client_gone") != NULL;
	fclose(f);
	assert_true(seen);
}

/* A running job whose worker is gone (no lock holder) and has used its attempts is failed. */
static void test_dead_worker_gives_up(void **state)
{
	(void)state;
	long long id = qi("INSERT INTO jobs (kind, state, worker, attempts, heartbeat_at, started_at, company_id) "
	                  "VALUES ('import', 'running', 'ghost-1-x', 3, now() - interval '1 minute', now(), "
	                  "(SELECT id FROM companies WHERE name = 'acme')) RETURNING id");
	json_t *job = wait_job(&api, acme_token, id, 20000);
	TH_EXPECT_STR(job, "status", "failed");
	const char *err = th_json_str(job, "error");
	assert_non_null(err);
	assert_non_null(strstr(err, "stopped 3 times"));
	json_decref(job);
}

/* The job cannot be queued (XADD refused: here the stream's key holds a string; in production
 * Redis going away between the token check and the XADD): 503, the job row failed with the
 * reason, and the saved upload deleted (it was left behind: the failure's UPDATE answered the
 * path it had just cleared). */
static void test_enqueue_refused(void **state)
{
	char url[64], dkv[600], portstr[16];
	int port = th_free_port();
	struct th_api api2;
	(void)state;
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
	snprintf(portstr, sizeof(portstr), "%d", port);
	snprintf(dkv, sizeof(dkv), "DATA_DIR=%s", data_dir);
	struct th_proc *redis = th_redis_start(th_tmp_dir(), port);
	assert_non_null(redis);
	const char *set[] = {"redis-cli", "-p", portstr, "SET", "dialer:jobs:import", "not a stream", NULL};
	assert_int_equal(th_run(set, NULL, 10000, NULL), 0);
	assert_int_equal(th_api_start(&api2, db_url, url, dkv, "UPLOAD_MAX_BYTES=" UPLOAD_MAX, NULL), 0);
	long long before = qi("SELECT count(*) FROM jobs");
	struct th_resp *r = post_upload(&api2, acme_token, "?filename=refused.csv", "text/csv", "09121234567\n");
	TH_EXPECT_ERROR(r, 503, NULL);
	th_resp_free(r);
	assert_int_equal(qi("SELECT count(*) FROM jobs"), before + 1);
	assert_int_equal(qi("SELECT count(*) FROM jobs WHERE file_name = 'refused.csv' AND state = 'failed' AND "
	                    "file_path IS NULL AND error LIKE '%%Redis unavailable%%'"),
	                 1);
	assert_int_equal(uploads_left(), 0);
	assert_int_equal(th_api_stop(&api2), 0);
	assert_int_equal(th_redis_stop(redis), 0);
}

/* GET /api/jobs?company=: a company named as COMPAT §1.5 says (404 unknown, 403 another
 * company's for its ADMIN), not an empty list or no filter at all. */
static void test_jobs_list_company(void **state)
{
	(void)state;
	long long acme =
	    qi("SELECT count(*) FROM jobs WHERE company_id = (SELECT id FROM companies WHERE name = 'acme')");
	struct th_resp *r = th_call(&api, "GET", "/api/jobs?company=acme", root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "total", acme);
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/jobs?company=acme", acme_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "total", acme);
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/jobs?company=acme", beta_token, NULL);
	TH_EXPECT_ERROR(r, 403, "Access denied to this company");
	th_resp_free(r);
	r = th_call(&api, "GET", "/api/jobs?company=nope", root_token, NULL);
	TH_EXPECT_ERROR(r, 404, "Company not found");
	th_resp_free(r);
}

static int group_setup(void **state)
{
	char dkv[600];
	(void)state;
	th_init();
	snprintf(data_dir, sizeof(data_dir), "%s/%s-data", th_tmp_dir(), th_test_name());
	snprintf(dkv, sizeof(dkv), "DATA_DIR=%s", data_dir);
	db_url = th_fresh_db("it_test_upload");
	if (db_url == NULL || th_redis_flush(th_env("REDIS_URL")) < 0 || th_bootstrap_db(db_url) < 0)
		return -1;
	if (th_api_start(&api, db_url, th_env("REDIS_URL"), dkv, "UPLOAD_MAX_BYTES=" UPLOAD_MAX, NULL) < 0)
		return -1;
	if (th_api_start(&api0, db_url, th_env("REDIS_URL"), dkv, "UPLOAD_MAX_BYTES=" UPLOAD_MAX, "JOB_WAIT_SECONDS=0",
	                 NULL) < 0)
		return -1;
	root_token = th_login(&api, TH_ROOT_USER, TH_ROOT_PASS);
	if (!root_token)
		return -1;
	const char *companies[] = {"acme", "beta"};
	for (int i = 0; i < 2; i++) {
		struct th_resp *r =
		    th_callf(&api, "POST", "/api/companies", root_token, "{\"name\": \"%s\", \"display_name\": \"%s\"}",
		             companies[i], companies[i]);
		if (r->status != 200)
			return -1;
		th_resp_free(r);
		char path[64];
		snprintf(path, sizeof(path), "/api/%s/admins", companies[i]);
		r = th_callf(&api, "POST", path, root_token,
		             "{\"username\": \"%s-admin\", \"password\": \"adminpass1\", \"role\": \"ADMIN\"}",
		             companies[i]);
		if (r->status != 200)
			return -1;
		th_resp_free(r);
	}
	acme_token = th_login(&api, "acme-admin", "adminpass1");
	beta_token = th_login(&api, "beta-admin", "adminpass1");
	if (!acme_token || !beta_token)
		return -1;
	worker = worker_start();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	int wst = th_proc_stop(worker);
	int st = th_api_stop(&api);
	int st0 = th_api_stop(&api0);
	free(root_token);
	free(acme_token);
	free(beta_token);
	free(db_url);
	th_fini();
	if (wst != 0)
		fprintf(stderr, "dialer-import exited with %d\n", wst);
	return st == 0 && st0 == 0 && wst == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_multipart_counts),     cmocka_unit_test(test_raw_csv),
	    cmocka_unit_test(test_accepted_202),         cmocka_unit_test(test_body_limits),
	    cmocka_unit_test(test_bad_requests),         cmocka_unit_test(test_worker_killed),
	    cmocka_unit_test(test_dead_worker_gives_up), cmocka_unit_test(test_xlsx),
	    cmocka_unit_test(test_cli_import),           cmocka_unit_test(test_client_gone),
	    cmocka_unit_test(test_concurrent_insert),    cmocka_unit_test(test_concurrent_copy),
	    cmocka_unit_test(test_enqueue_refused),      cmocka_unit_test(test_jobs_list_company),
	};
	return cmocka_run_group_tests_name("upload", tests, group_setup, group_teardown);
}
