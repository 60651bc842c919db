/* Export and bulk as jobs against the real dialer-api, dialer-export and dialer-bulk (issue 6
 * items 5, 6, 7, 8): POST /api/numbers/export answered inline with the XLSX file, read back and
 * checked cell by cell (libzip + expat here, independent of the writer); the 202 path with the
 * job polled and downloaded; another company cannot download it; an expired file is gone (410);
 * the body's errors; bulk over BULK_SYNC_LIMIT as a job with the synchronous answer's shape;
 * `dialerctl export` with the same cells. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <expat.h>
#include <zip.h>

#include "harness.h"

#define NCOLS    13
#define MAX_ROWS 64
#define XLSX_CT  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

static struct th_api api;  /* JOB_WAIT_SECONDS=20: jobs answer inline */
static struct th_api api0; /* JOB_WAIT_SECONDS=0: every job answers 202 */
static struct th_proc *export_worker, *bulk_worker;
static char *db_url, data_dir[512];
static char *root_token, *admin_token, *agent_token, *globex_token, *admin0_token, *globex0_token;
static long long acme_id, globex_id, agent_id;

/* ------------------------------------------------------------------ fixture helpers */

static char *sql(const char *q)
{
	return th_sql_get(db_url, q, NULL);
}

/* sql() as an integer; it must not be NULL. */
static long long sql_int(const char *q)
{
	return th_sql_int(db_url, q, NULL);
}

static long long create_user(const char *company, const char *username, const char *role, const char *first,
                             const char *last, const char *phone)
{
	char path[96];
	struct th_resp *r;
	long long id = -1;

	snprintf(path, sizeof(path), "/api/%s/admins", company);
	r = th_callf(&api, "POST", path, root_token,
	             "{\"username\": \"%s\", \"password\": \"secret-pass-1\", \"role\": \"%s\", \"first_name\": \"%s\","
	             " \"last_name\": \"%s\", \"phone_number\": \"%s\"}",
	             username, role, first, last, phone);
	TH_EXPECT_STATUS(r, 200);
	assert_int_equal(th_json_int(r->json, "id", &id), 0);
	th_resp_free(r);
	return id;
}

static struct th_proc *worker_start(const char *type)
{
	char name[64], dkv[600];

	snprintf(name, sizeof(name), "dialer-%s", type);
	snprintf(dkv, sizeof(dkv), "DATA_DIR=%s", data_dir);
	return th_dialer_start(name, db_url, type, dkv, "LOG_LEVEL=info", "TIMEZONE=Asia/Tehran", NULL);
}

static int group_setup(void **state)
{
	char dkv[600];

	(void)state;
	snprintf(data_dir, sizeof(data_dir), "%s/%s-data", th_tmp_dir(), th_test_name());
	snprintf(dkv, sizeof(dkv), "DATA_DIR=%s", data_dir);
	if (th_setup_api(&api, &db_url, &root_token, dkv, "JOB_WAIT_SECONDS=20", "BULK_SYNC_LIMIT=5",
	                 "TIMEZONE=Asia/Tehran", NULL) < 0 ||
	    th_api_start(&api0, db_url, th_env("REDIS_URL"), dkv, "JOB_WAIT_SECONDS=0", "BULK_SYNC_LIMIT=5",
	                 "TIMEZONE=Asia/Tehran", NULL) < 0)
		return -1;
	export_worker = worker_start("export");
	bulk_worker = worker_start("bulk");
	if (export_worker == NULL || bulk_worker == NULL)
		return -1;
	acme_id = th_create_company(&api, root_token, "acme", "acme co", true);
	globex_id = th_create_company(&api, root_token, "globex", "globex co", true);
	create_user("acme", "acme-admin", "ADMIN", "Ada", "Admin", "09350000001");
	agent_id = create_user("acme", "acme-agent", "AGENT", "Zahra", "Karimi", "09350000002");
	create_user("globex", "globex-admin", "ADMIN", "Gus", "Globex", "09350000004");
	admin_token = th_login(&api, "acme-admin", "secret-pass-1");
	agent_token = th_login(&api, "acme-agent", "secret-pass-1");
	globex_token = th_login(&api, "globex-admin", "secret-pass-1");
	admin0_token = th_login(&api0, "acme-admin", "secret-pass-1");
	globex0_token = th_login(&api0, "globex-admin", "secret-pass-1");
	return admin_token && agent_token && globex_token && admin0_token && globex0_token ? 0 : -1;
}

static int group_teardown(void **state)
{
	int st = 0;

	(void)state;
	if (th_proc_stop(export_worker) != 0)
		st = -1;
	if (th_proc_stop(bulk_worker) != 0)
		st = -1;
	if (th_api_stop(&api0) != 0)
		st = -1;
	free(admin_token);
	free(agent_token);
	free(globex_token);
	free(admin0_token);
	free(globex0_token);
	if (th_teardown_api(&api, &db_url, &root_token) != 0)
		st = -1;
	return st;
}

/* ------------------------------------------------------------------ a small XLSX reader */

/* The cells of one sheet: text of every cell (inline string, or the <v> of a number), its
 * type attribute and style index. Rows and columns 0-based. */
struct sheet {
	int nrows;
	char *text[MAX_ROWS][NCOLS];
	char type[MAX_ROWS][NCOLS][12];
	int style[MAX_ROWS][NCOLS];
	/* parser state */
	int row, col;
	bool in_text;
	char buf[4096];
	size_t len;
	bool overflow;
};

/* "B12" → row 11, col 1 */
static bool cell_ref(const char *r, int *row, int *col)
{
	int c = 0;
	while (*r >= 'A' && *r <= 'Z')
		c = c * 26 + (*r++ - 'A' + 1);
	long n = strtol(r, NULL, 10);
	*row = (int)n - 1;
	*col = c - 1;
	return c > 0 && n > 0;
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	struct sheet *s = ud;
	if (!strcmp(name, "c")) {
		s->row = s->col = -1;
		char type[12] = "n";
		int style = 0;
		for (int i = 0; atts[i]; i += 2) {
			if (!strcmp(atts[i], "r") && !cell_ref(atts[i + 1], &s->row, &s->col))
				s->overflow = true;
			else if (!strcmp(atts[i], "t"))
				snprintf(type, sizeof(type), "%s", atts[i + 1]);
			else if (!strcmp(atts[i], "s"))
				style = atoi(atts[i + 1]);
		}
		if (s->row < 0 || s->row >= MAX_ROWS || s->col < 0 || s->col >= NCOLS) {
			s->overflow = true;
			s->row = -1;
			return;
		}
		snprintf(s->type[s->row][s->col], sizeof(s->type[0][0]), "%s", type);
		s->style[s->row][s->col] = style;
		if (s->row + 1 > s->nrows)
			s->nrows = s->row + 1;
	} else if ((!strcmp(name, "v") || !strcmp(name, "t")) && s->row >= 0) {
		s->in_text = true;
		s->len = 0;
	}
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
	struct sheet *s = ud;
	if ((!strcmp(name, "v") || !strcmp(name, "t")) && s->in_text) {
		s->in_text = false;
		s->buf[s->len] = '\0';
		free(s->text[s->row][s->col]);
		s->text[s->row][s->col] = strdup(s->buf);
	}
}

static void XMLCALL on_text(void *ud, const XML_Char *t, int n)
{
	struct sheet *s = ud;
	if (!s->in_text)
		return;
	if (s->len + (size_t)n >= sizeof(s->buf)) {
		s->overflow = true;
		return;
	}
	memcpy(s->buf + s->len, t, (size_t)n);
	s->len += (size_t)n;
}

/* The whole of zip entry name of path (caller frees), or NULL. */
static char *zip_entry(const char *path, const char *name, size_t *len)
{
	int err = 0;
	zip_t *z = zip_open(path, ZIP_RDONLY, &err);
	zip_stat_t st;
	char *out = NULL;

	if (!z)
		return NULL;
	if (zip_stat(z, name, 0, &st) == 0 && (st.valid & ZIP_STAT_SIZE) && st.size < (64u << 20)) {
		zip_file_t *f = zip_fopen(z, name, 0);
		out = calloc(1, st.size + 1);
		if (f && out && zip_fread(f, out, st.size) == (zip_int64_t)st.size) {
			*len = st.size;
		} else {
			free(out);
			out = NULL;
		}
		if (f)
			zip_fclose(f);
	}
	zip_close(z);
	return out;
}

/* Reads sheet entry (e.g. "xl/worksheets/sheet1.xml") of the XLSX at path into s. */
static void sheet_read(const char *path, const char *entry, struct sheet *s)
{
	size_t len = 0;
	char *xml = zip_entry(path, entry, &len);

	memset(s, 0, sizeof(*s));
	if (!xml)
		fail_msg("%s: no %s in the file", path, entry);
	XML_Parser p = XML_ParserCreate("UTF-8");
	XML_SetUserData(p, s);
	XML_SetElementHandler(p, on_start, on_end);
	XML_SetCharacterDataHandler(p, on_text);
	if (XML_Parse(p, xml, (int)len, 1) != XML_STATUS_OK)
		fail_msg("%s: %s is not well-formed: %s", path, entry, XML_ErrorString(XML_GetErrorCode(p)));
	XML_ParserFree(p);
	free(xml);
	assert_false(s->overflow);
}

static void sheet_free(struct sheet *s)
{
	for (int r = 0; r < MAX_ROWS; r++)
		for (int c = 0; c < NCOLS; c++)
			free(s->text[r][c]);
}

/* Cell (row, col) as text, "" when empty. */
static const char *cell(const struct sheet *s, int row, int col)
{
	return s->text[row][col] ? s->text[row][col] : "";
}

static void expect_cell(const struct sheet *s, int row, int col, const char *expected)
{
	if (strcmp(cell(s, row, col), expected))
		fail_msg("cell (%d, %d): got \"%s\", expected \"%s\"", row, col, cell(s, row, col), expected);
}

/* A date cell: a number with the date style whose value is the Excel serial of the local
 * (Asia/Tehran) wall time, given here as seconds since the epoch of that wall time. */
static void expect_date(const struct sheet *s, int row, int col, double local_epoch)
{
	double want = local_epoch / 86400.0 + 25569.0;
	if (strcmp(s->type[row][col], "n") || !s->text[row][col] || s->style[row][col] == 0)
		fail_msg("cell (%d, %d): not a styled number (type %s, style %d)", row, col, s->type[row][col],
		         s->style[row][col]);
	double got = strtod(s->text[row][col], NULL);
	if (fabs(got - want) > 1e-6) /* 0.09 s */
		fail_msg("cell (%d, %d): got %.9f, expected %.9f", row, col, got, want);
}

/* Writes body to a file under the test's temp dir; returns its path (static buffer). */
static const char *save(const struct th_resp *r, const char *name)
{
	static char path[600];
	snprintf(path, sizeof(path), "%s/%s-%s", th_tmp_dir(), th_test_name(), name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(r->body, 1, r->body_len, f), r->body_len);
	assert_int_equal(fclose(f), 0);
	return path;
}

/* ------------------------------------------------------------------ the known set */

static const char *const headers[NCOLS] = {
    "شماره",
    "وضعیت",
    "تعداد تلاش",
    "آخرین تلاش",
    "پیام تماس",
    "تاریخ ایجاد",
    "تاریخ ایجاد (شمسی)",
    "زمان آخرین تلاش",
    "آخرین تلاش (شمسی)",
    "نام کارشناس",
    "نام کاربری کارشناس",
    "سناریو",
    "خط",
};

static long long scenario_id, line_id;

/* 09127000001..4 created at fixed instants, with acme and globex history:
 *   ...01 acme: MISSED then CONNECTED (agent, scenario, line, message "<call back> & 'later'")
 *   ...02 never called
 *   ...03 acme: BUSY, no agent, no message
 *   ...04 globex: CONNECTED (IN_QUEUE for acme) */
static void make_numbers(void)
{
	static int done;
	char q[1024];

	if (done++)
		return;
	struct th_resp *r = th_call(&api, "POST", "/api/numbers", admin_token,
	                            "{\"phone_numbers\": [\"09127000001\", \"09127000002\", \"09127000003\","
	                            " \"09127000004\"]}");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "inserted", 4);
	th_resp_free(r);
	/* 2026-03-20T20:30:00Z = 2026-03-21 00:00 in Tehran = 1405/01/01; each a minute apart */
	free(sql("UPDATE numbers SET created_at = '2026-03-20 20:30:00+00'::timestamptz"
	         " + (substr(phone_number, 8)::int - 1) * interval '1 minute' WHERE phone_number LIKE '0912700000_'"));
	snprintf(q, sizeof(q),
	         "INSERT INTO scenarios (company_id, name, display_name) VALUES (%lld, 'sales', 'فروش') RETURNING id",
	         acme_id);
	scenario_id = sql_int(q);
	snprintf(q, sizeof(q),
	         "INSERT INTO outbound_lines (company_id, phone_number, display_name) VALUES (%lld, '02191000000',"
	         " 'Main line') RETURNING id",
	         acme_id);
	line_id = sql_int(q);
	snprintf(q, sizeof(q),
	         "INSERT INTO call_attempts (company_id, number_id, phone_number, status, attempted_at, agent_id,"
	         " scenario_id, outbound_line_id, user_message)"
	         " SELECT %lld, id, phone_number, 'MISSED', '2026-02-10 10:00:00+00', NULL, NULL, NULL, 'first'"
	         " FROM numbers WHERE phone_number = '09127000001'",
	         acme_id);
	free(sql(q));
	snprintf(q, sizeof(q),
	         "INSERT INTO call_attempts (company_id, number_id, phone_number, status, attempted_at, agent_id,"
	         " scenario_id, outbound_line_id, user_message)"
	         " SELECT %lld, id, phone_number, 'CONNECTED', '2026-02-18 10:00:00.123456+00', %lld, %lld, %lld,"
	         " '<call back> & ''later''' FROM numbers WHERE phone_number = '09127000001'",
	         acme_id, agent_id, scenario_id, line_id);
	free(sql(q));
	snprintf(q, sizeof(q),
	         "INSERT INTO call_attempts (company_id, number_id, phone_number, status, attempted_at)"
	         " SELECT %lld, id, phone_number, 'BUSY', '2026-02-19 21:00:00+00' FROM numbers"
	         " WHERE phone_number = '09127000003'",
	         acme_id);
	free(sql(q));
	snprintf(q, sizeof(q),
	         "INSERT INTO call_attempts (company_id, number_id, phone_number, status, attempted_at)"
	         " SELECT %lld, id, phone_number, 'CONNECTED', '2026-02-16 12:00:00+00' FROM numbers"
	         " WHERE phone_number = '09127000004'",
	         globex_id);
	free(sql(q));
}

/* Tehran is UTC+03:30 (no daylight saving since 2022) */
#define TEHRAN (3.5 * 3600)

/* Checks the four numbers of make_numbers, in id order from row 1, as company acme sees them. */
static void expect_known_rows(const struct sheet *s)
{
	assert_int_equal(s->nrows, 5);
	for (int c = 0; c < NCOLS; c++)
		expect_cell(s, 0, c, headers[c]);
	/* created: 2026-03-20T20:30Z + i minutes; 1774038600 = 2026-03-20T20:30:00Z */
	for (int i = 0; i < 4; i++) {
		char phone[24];
		snprintf(phone, sizeof(phone), "0912700000%d", i + 1);
		expect_cell(s, i + 1, 0, phone);
		assert_string_equal(s->type[i + 1][0], "inlineStr");
		expect_date(s, i + 1, 5, 1774038600.0 + 60 * i + TEHRAN);
		expect_cell(s, i + 1, 6, "1405/01/01");
	}
	/* ...01: CONNECTED, 2 attempts, the last one's time, message, agent, scenario, line */
	expect_cell(s, 1, 1, "CONNECTED");
	expect_cell(s, 1, 2, "2");
	expect_cell(s, 1, 3, "2026-02-18T10:00:00.123456Z");
	expect_cell(s, 1, 4, "<call back> & 'later'");
	expect_date(s, 1, 7, 1771408800.123456 + TEHRAN); /* 2026-02-18T10:00:00.123456Z */
	expect_cell(s, 1, 8, "1404/11/29");
	expect_cell(s, 1, 9, "Zahra Karimi");
	expect_cell(s, 1, 10, "acme-agent");
	expect_cell(s, 1, 11, "فروش");
	expect_cell(s, 1, 12, "Main line");
	/* ...02 and ...04 (globex's call is not acme's): IN_QUEUE, 0, nothing else */
	for (int row = 2; row <= 4; row += 2) {
		expect_cell(s, row, 1, "IN_QUEUE");
		expect_cell(s, row, 2, "0");
		for (int c = 3; c < NCOLS; c++)
			if (c != 5 && c != 6)
				expect_cell(s, row, c, "");
	}
	/* ...03: BUSY at 2026-02-19T21:00Z = 2026-02-20 00:30 in Tehran = 1 Esfand 1404 */
	expect_cell(s, 3, 1, "BUSY");
	expect_cell(s, 3, 2, "1");
	expect_cell(s, 3, 3, "2026-02-19T21:00:00.000000Z");
	expect_cell(s, 3, 4, "");
	expect_date(s, 3, 7, 1771534800.0 + TEHRAN);
	expect_cell(s, 3, 8, "1404/12/01");
	for (int c = 9; c < NCOLS; c++)
		expect_cell(s, 3, c, "");
}

static void expect_xlsx_headers(const struct th_resp *r)
{
	const char *ct = th_resp_header(r, "Content-Type"), *cd = th_resp_header(r, "Content-Disposition");
	assert_non_null(ct);
	assert_string_equal(ct, XLSX_CT);
	assert_non_null(cd);
	if (strncmp(cd, "attachment; filename=\"numbers_export.xlsx\"", 42))
		fail_msg("Content-Disposition: %s", cd);
	assert_true(r->body_len > 4 && !memcmp(r->body, "PK\x03\x04", 4));
}

/* ------------------------------------------------------------------ tests */

/* Inline answer: the file itself, sheet "numbers", every cell of a known set. */
static void test_export_inline(void **state)
{
	struct sheet s;
	size_t len;

	(void)state;
	make_numbers();
	struct th_resp *r = th_call(&api, "POST", "/api/numbers/export", admin_token,
	                            "{\"select_all\": true, \"search\": \"091270000\", \"sort_by\": \"created_at\","
	                            " \"sort_order\": \"asc\", \"company_name\": \"acme\"}");
	TH_EXPECT_STATUS(r, 200);
	expect_xlsx_headers(r);
	const char *path = save(r, "inline.xlsx");
	th_resp_free(r);

	char *wb = zip_entry(path, "xl/workbook.xml", &len);
	assert_non_null(wb);
	assert_non_null(strstr(wb, "<sheet name=\"numbers\""));
	assert_null(strstr(wb, "<sheet name=\"numbers_2\""));
	free(wb);
	char *styles = zip_entry(path, "xl/styles.xml", &len);
	assert_non_null(styles);
	assert_non_null(strstr(styles, "formatCode=\"yyyy-mm-dd hh:mm:ss\""));
	free(styles);
	sheet_read(path, "xl/worksheets/sheet1.xml", &s);
	expect_known_rows(&s);
	sheet_free(&s);

	/* the default order is newest first; ids and excluded_ids; the user's own company */
	long long a = sql_int("SELECT id FROM numbers WHERE phone_number = '09127000001'");
	long long c = sql_int("SELECT id FROM numbers WHERE phone_number = '09127000003'");
	r = th_callf(&api, "POST", "/api/numbers/export", admin_token, "{\"ids\": [%lld, %lld, %lld]}", a, c, a + 1);
	TH_EXPECT_STATUS(r, 200);
	path = save(r, "ids.xlsx");
	th_resp_free(r);
	sheet_read(path, "xl/worksheets/sheet1.xml", &s);
	assert_int_equal(s.nrows, 4);
	expect_cell(&s, 1, 0, "09127000003");
	expect_cell(&s, 1, 1, "BUSY");
	expect_cell(&s, 2, 0, "09127000002");
	expect_cell(&s, 3, 0, "09127000001");
	sheet_free(&s);
	r = th_callf(&api, "POST", "/api/numbers/export", admin_token,
	             "{\"select_all\": true, \"search\": \"091270000\", \"excluded_ids\": [%lld],"
	             " \"filter_status\": \"IN_QUEUE\"}",
	             a + 1);
	TH_EXPECT_STATUS(r, 200);
	path = save(r, "filtered.xlsx");
	th_resp_free(r);
	sheet_read(path, "xl/worksheets/sheet1.xml", &s);
	assert_int_equal(s.nrows, 2);
	expect_cell(&s, 1, 0, "09127000004");
	expect_cell(&s, 1, 1, "IN_QUEUE");
	sheet_free(&s);

	/* a superuser without a company: the pool alone, no per-company columns (as on the list) */
	r = th_callf(&api, "POST", "/api/numbers/export", root_token, "{\"ids\": [%lld], \"sort_order\": \"asc\"}", a);
	TH_EXPECT_STATUS(r, 200);
	path = save(r, "nocompany.xlsx");
	th_resp_free(r);
	sheet_read(path, "xl/worksheets/sheet1.xml", &s);
	assert_int_equal(s.nrows, 2);
	expect_cell(&s, 1, 0, "09127000001");
	expect_cell(&s, 1, 1, "IN_QUEUE");
	expect_cell(&s, 1, 2, "0");
	expect_date(&s, 1, 5, 1774038600.0 + TEHRAN);
	for (int col = 7; col < NCOLS; col++)
		expect_cell(&s, 1, col, "");
	expect_cell(&s, 1, 3, "");
	expect_cell(&s, 1, 4, "");
	sheet_free(&s);

	/* an empty selection is a file with the header only */
	r = th_call(&api, "POST", "/api/numbers/export", admin_token,
	            "{\"select_all\": true, \"search\": \"0911111\", \"start_date\": \"۲۰۲۶-۰۲-۱۸\"}");
	TH_EXPECT_STATUS(r, 200);
	path = save(r, "empty.xlsx");
	th_resp_free(r);
	sheet_read(path, "xl/worksheets/sheet1.xml", &s);
	assert_int_equal(s.nrows, 1);
	expect_cell(&s, 0, 0, "شماره");
	sheet_free(&s);
}

/* The body's errors, in COMPAT §6's order; roles. Nothing is created for them. */
static void test_export_errors(void **state)
{
	static const struct {
		const char *body;
		int status;
		const char *detail; /* substring */
	} bad[] = {
	    {"{}", 400, "No numbers selected"},
	    {"{\"ids\": [], \"company_name\": \"nope\"}", 400, "No numbers selected"},
	    {"{\"select_all\": false}", 400, "No numbers selected"},
	    {"{\"ids\": [1], \"start_date\": \"2026-13-01\"}", 400, "Invalid date format"},
	    {"{\"ids\": [1], \"end_date\": \"yesterday\"}", 400, "Invalid date format"},
	    {"{\"ids\": [\"1\"]}", 422, "ids"},
	    {"{\"select_all\": true, \"sort_by\": \"phone\"}", 422, "sort_by"},
	    {"{\"select_all\": true, \"sort_order\": \"up\"}", 422, "sort_order"},
	    {"{\"select_all\": true, \"filter_status\": \"NOPE\"}", 422, "filter_status"},
	    {"{\"select_all\": true, \"company_name\": \"nope\"}", 404, "Company not found"},
	    {"{\"select_all\": true, \"company_name\": \"globex\"}", 403, "Access denied"},
	    {"[1, 2]", 422, NULL},
	    {"{\"select_all\": tru", 422, NULL},
	};
	struct th_resp *r;

	(void)state;
	long long before = sql_int("SELECT count(*) FROM jobs");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = th_call(&api, "POST", "/api/numbers/export", admin_token, bad[i].body);
		TH_EXPECT_ERROR(r, bad[i].status, NULL);
		if (bad[i].detail && !strstr(th_json_str(r->json, "detail"), bad[i].detail))
			fail_msg("%s: detail %s lacks %s", bad[i].body, th_json_str(r->json, "detail"), bad[i].detail);
		th_resp_free(r);
	}
	r = th_call(&api, "POST", "/api/numbers/export", agent_token, "{\"select_all\": true}");
	TH_EXPECT_ERROR(r, 403, "Admins only");
	th_resp_free(r);
	r = th_call(&api, "POST", "/api/numbers/export", NULL, "{\"select_all\": true}");
	TH_EXPECT_ERROR(r, 401, NULL);
	th_resp_free(r);
	assert_int_equal(sql_int("SELECT count(*) FROM jobs"), before);
}

/* Polls GET /api/jobs/{id} until the job is completed or failed (20 s at most); returns the last
 * answer (caller frees). */
static struct th_resp *poll_job(const struct th_api *a, const char *token, long long id)
{
	char path[64];
	snprintf(path, sizeof(path), "/api/jobs/%lld", id);
	for (int i = 0; i < 200; i++) {
		struct th_resp *r = th_call(a, "GET", path, token, NULL);
		TH_EXPECT_STATUS(r, 200);
		const char *st = th_json_str(r->json, "status");
		if (st && (!strcmp(st, "completed") || !strcmp(st, "failed")))
			return r;
		th_resp_free(r);
		th_sleep_ms(100);
	}
	fail_msg("job %lld did not finish in 20 s", id);
	return NULL;
}

/* A 202 answer: {job_id, job_url} and Location; returns the job id. */
static long long expect_accepted(const struct th_resp *r)
{
	long long id = -1;
	char url[64];
	TH_EXPECT_STATUS(r, 202);
	assert_int_equal(th_json_int(r->json, "job_id", &id), 0);
	snprintf(url, sizeof(url), "/api/jobs/%lld", id);
	TH_EXPECT_STR(r->json, "job_url", url);
	assert_non_null(th_resp_header(r, "Location"));
	assert_string_equal(th_resp_header(r, "Location"), url);
	return id;
}

/* JOB_WAIT_SECONDS=0: 202, the job's progress and result, its download, who may download it,
 * and expiry. */
static void test_export_job(void **state)
{
	struct sheet s;
	char path[96], q[256];

	(void)state;
	make_numbers();
	struct th_resp *r = th_call(&api0, "POST", "/api/numbers/export", admin0_token,
	                            "{\"select_all\": true, \"search\": \"091270000\", \"sort_order\": \"asc\"}");
	long long id = expect_accepted(r);
	th_resp_free(r);

	r = poll_job(&api0, admin0_token, id);
	TH_EXPECT_STR(r->json, "status", "completed");
	TH_EXPECT_STR(r->json, "kind", "export");
	json_t *progress = json_object_get(r->json, "progress");
	TH_EXPECT_INT(progress, "done", 4);
	TH_EXPECT_INT(progress, "total", 4);
	json_t *result = json_object_get(r->json, "result");
	TH_EXPECT_INT(result, "rows", 4);
	TH_EXPECT_STR(result, "file_name", "numbers_export.xlsx");
	snprintf(path, sizeof(path), "/api/jobs/%lld/download", id);
	TH_EXPECT_STR(r->json, "download_url", path);
	assert_non_null(th_json_str(r->json, "expires_at"));
	th_resp_free(r);
	snprintf(q, sizeof(q),
	         "SELECT round(extract(epoch FROM expires_at - finished_at) / 3600) FROM jobs WHERE id = %lld", id);
	assert_int_equal(sql_int(q), 24); /* EXPORT_TTL_HOURS */

	r = th_call(&api0, "GET", path, admin0_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	expect_xlsx_headers(r);
	const char *file = save(r, "job.xlsx");
	th_resp_free(r);
	sheet_read(file, "xl/worksheets/sheet1.xml", &s);
	expect_known_rows(&s);
	sheet_free(&s);

	/* the file is where the job says, complete (no .part left) */
	snprintf(q, sizeof(q), "SELECT file_path FROM jobs WHERE id = %lld", id);
	char *rel = sql(q), full[1024], part[1024];
	assert_non_null(rel);
	assert_int_equal(strncmp(rel, "exports/", 8), 0);
	snprintf(full, sizeof(full), "%s/%s", data_dir, rel);
	snprintf(part, sizeof(part), "%s/exports/job-%lld.xlsx.part", data_dir, id);
	assert_int_equal(access(full, R_OK), 0);
	assert_int_not_equal(access(part, F_OK), 0);

	/* another company's admin: the job is not theirs (404), on either API */
	r = th_call(&api0, "GET", path, globex0_token, NULL);
	TH_EXPECT_ERROR(r, 404, NULL);
	th_resp_free(r);
	r = th_call(&api, "GET", path, globex_token, NULL);
	TH_EXPECT_ERROR(r, 404, NULL);
	th_resp_free(r);
	snprintf(q, sizeof(q), "/api/jobs/%lld", id);
	r = th_call(&api, "GET", q, globex_token, NULL);
	TH_EXPECT_ERROR(r, 404, NULL);
	th_resp_free(r);
	/* the superuser may */
	r = th_call(&api, "GET", path, root_token, NULL);
	TH_EXPECT_STATUS(r, 200);
	th_resp_free(r);

	/* past its life: the download is gone (410), and the worker's sweep deletes the file */
	snprintf(q, sizeof(q), "UPDATE jobs SET expires_at = now() - interval '1 second' WHERE id = %lld", id);
	free(sql(q));
	r = th_call(&api0, "GET", path, admin0_token, NULL);
	TH_EXPECT_ERROR(r, 410, NULL);
	th_resp_free(r);
	free(rel);
}

/* The expiry sweep of the export worker removes an expired file and clears the row (it runs
 * every 60 s: the worker is restarted, which sweeps at once). */
static void test_export_expiry_sweep(void **state)
{
	char q[256];

	(void)state;
	make_numbers();
	struct th_resp *r = th_call(&api0, "POST", "/api/numbers/export", admin0_token, "{\"select_all\": true}");
	long long id = expect_accepted(r);
	th_resp_free(r);
	th_resp_free(poll_job(&api0, admin0_token, id));
	snprintf(q, sizeof(q), "SELECT file_path FROM jobs WHERE id = %lld", id);
	char *rel = sql(q), full[1024];
	assert_non_null(rel);
	snprintf(full, sizeof(full), "%s/%s", data_dir, rel);
	assert_int_equal(access(full, F_OK), 0);
	snprintf(q, sizeof(q), "UPDATE jobs SET expires_at = now() - interval '1 second' WHERE id = %lld", id);
	free(sql(q));
	assert_int_equal(th_proc_stop(export_worker), 0);
	export_worker = worker_start("export");
	assert_non_null(export_worker);
	snprintf(q, sizeof(q), "SELECT count(*) FROM jobs WHERE id = %lld AND file_path IS NULL", id);
	for (int i = 0; i < 100 && sql_int(q) == 0; i++)
		th_sleep_ms(100);
	assert_int_equal(sql_int(q), 1);
	assert_int_not_equal(access(full, F_OK), 0);
	free(rel);
}

static struct th_resp *bulk(const struct th_api *a, const char *token, const char *body)
{
	return th_call(a, "POST", "/api/numbers/bulk", token, body);
}

static void expect_counts(const json_t *j, long long updated, long long reset, long long deleted, long long skipped)
{
	TH_EXPECT_INT(j, "updated", updated);
	TH_EXPECT_INT(j, "reset", reset);
	TH_EXPECT_INT(j, "deleted", deleted);
	TH_EXPECT_INT(j, "skipped_immutable", skipped);
}

/* BULK_SYNC_LIMIT=5: 5 numbers stay synchronous (no job), 8 run as a bulk job with the same
 * answer, inline or through 202 and the job's result. */
static void test_bulk_job(void **state)
{
	struct th_resp *r;
	char body[600];

	(void)state;
	r = th_call(&api, "POST", "/api/numbers", admin_token,
	            "{\"phone_numbers\": [\"09128000001\", \"09128000002\", \"09128000003\", \"09128000004\","
	            " \"09128000005\", \"09128000006\", \"09128000007\", \"09128000008\"]}");
	TH_EXPECT_STATUS(r, 200);
	TH_EXPECT_INT(r->json, "inserted", 8);
	th_resp_free(r);
	snprintf(body, sizeof(body),
	         "INSERT INTO call_attempts (company_id, number_id, phone_number, status, attempted_at)"
	         " SELECT %lld, id, phone_number, 'CONNECTED', now() FROM numbers WHERE phone_number = '09128000008'",
	         acme_id);
	free(sql(body));

	long long jobs0 = sql_int("SELECT count(*) FROM jobs WHERE kind = 'bulk'");
	r = bulk(
	    &api, admin_token,
	    "{\"action\": \"update_status\", \"status\": \"BUSY\", \"select_all\": true, \"search\": \"0912800000\","
	    " \"filter_status\": \"IN_QUEUE\", \"excluded_ids\": [], \"company_name\": \"acme\","
	    " \"start_date\": null, \"sort_by\": \"created_at\", \"sort_order\": \"desc\", \"ids\": []}");
	/* 7 match: over the limit, a job, answered inline */
	TH_EXPECT_STATUS(r, 200);
	expect_counts(r->json, 7, 0, 0, 0);
	th_resp_free(r);
	assert_int_equal(sql_int("SELECT count(*) FROM jobs WHERE kind = 'bulk' AND state = 'completed'"), jobs0 + 1);
	assert_int_equal(sql_int("SELECT count(*) FROM number_state s JOIN numbers n ON n.id = s.number_id"
	                         " WHERE n.phone_number LIKE '0912800000_' AND s.status = 'BUSY'"),
	                 7);

	long long first = sql_int("SELECT min(id) FROM numbers WHERE phone_number LIKE '0912800000_'");
	snprintf(body, sizeof(body), "{\"action\": \"reset\", \"ids\": [%lld, %lld, %lld, %lld, %lld]}", first,
	         first + 1, first + 2, first + 3, first + 4);
	r = bulk(&api, admin_token, body);
	TH_EXPECT_STATUS(r, 200);
	expect_counts(r->json, 0, 5, 0, 0);
	th_resp_free(r);
	assert_int_equal(sql_int("SELECT count(*) FROM jobs WHERE kind = 'bulk'"), jobs0 + 1); /* no job */

	/* over the limit for a company admin: the immutable one (CONNECTED) is skipped and counted */
	r = bulk(&api0, admin0_token,
	         "{\"action\": \"update_status\", \"status\": \"MISSED\", \"select_all\": true,"
	         " \"search\": \"0912800000\"}");
	long long id = expect_accepted(r);
	th_resp_free(r);
	r = poll_job(&api0, admin0_token, id);
	TH_EXPECT_STR(r->json, "status", "completed");
	TH_EXPECT_STR(r->json, "kind", "bulk");
	expect_counts(json_object_get(r->json, "result"), 7, 0, 0, 1);
	TH_EXPECT_INT(json_object_get(r->json, "progress"), "done", 8);
	TH_EXPECT_INT(json_object_get(r->json, "progress"), "total", 8);
	th_resp_free(r);
	assert_int_equal(sql_int("SELECT count(*) FROM number_state s JOIN numbers n ON n.id = s.number_id"
	                         " WHERE n.phone_number LIKE '0912800000_' AND s.status = 'MISSED'"),
	                 7);

	/* delete as a job, inline */
	r = bulk(&api, admin_token, "{\"action\": \"delete\", \"select_all\": true, \"search\": \"0912800000\"}");
	TH_EXPECT_STATUS(r, 200);
	expect_counts(r->json, 0, 0, 7, 1);
	th_resp_free(r);
	r = bulk(&api, root_token, "{\"action\": \"delete\", \"select_all\": true, \"search\": \"0912800000\"}");
	TH_EXPECT_STATUS(r, 200);
	expect_counts(r->json, 0, 0, 1, 0); /* one left: at the limit, synchronous */
	th_resp_free(r);
	assert_int_equal(sql_int("SELECT count(*) FROM numbers WHERE phone_number LIKE '0912800000_'"), 0);

	/* the job is the company's: another company does not see it */
	snprintf(body, sizeof(body), "/api/jobs/%lld", id);
	r = th_call(&api, "GET", body, globex_token, NULL);
	TH_EXPECT_ERROR(r, 404, NULL);
	th_resp_free(r);
}

/* dialerctl export: the same cells, plain progress lines when stderr is not a terminal. */
static void test_cli_export(void **state)
{
	char out[600], dbkv[600], company[32];
	struct sheet s;
	struct stat st;

	(void)state;
	make_numbers();
	snprintf(out, sizeof(out), "%s/%s-cli.xlsx", th_tmp_dir(), th_test_name());
	snprintf(dbkv, sizeof(dbkv), "DATABASE_URL=%s", db_url);
	snprintf(company, sizeof(company), "%lld", acme_id);
	char bin[512];
	snprintf(bin, sizeof(bin), "%s/dialerctl", th_env("DIALER_BIN_DIR"));
	const char *argv[] = {bin,        "export",    "--out",        out,   "--company", company,
	                      "--search", "091270000", "--sort-order", "asc", NULL};
	const char *env[] = {dbkv, "TIMEZONE=Asia/Tehran", NULL};
	char *stdout_text = NULL;
	assert_int_equal(th_run(argv, env, 60000, &stdout_text), 0);
	assert_non_null(strstr(stdout_text, "exported 4 rows to"));
	free(stdout_text);
	assert_int_equal(stat(out, &st), 0);
	sheet_read(out, "xl/worksheets/sheet1.xml", &s);
	expect_known_rows(&s);
	sheet_free(&s);

	/* by slug, with a status filter; bad usage is exit 2 and writes nothing */
	const char *argv2[] = {bin, "export", "--out", out, "--company", "acme", "--status", "BUSY", NULL};
	assert_int_equal(th_run(argv2, env, 60000, NULL), 0);
	sheet_read(out, "xl/worksheets/sheet1.xml", &s);
	assert_int_equal(s.nrows, 2);
	expect_cell(&s, 1, 0, "09127000003");
	sheet_free(&s);
	char bad_out[620];
	snprintf(bad_out, sizeof(bad_out), "%s.bad", out);
	const char *argv3[] = {bin, "export", "--out", bad_out, "--status", "NOPE", NULL};
	assert_int_equal(th_run(argv3, env, 60000, NULL), 2);
	const char *argv4[] = {bin, "export", "--out", bad_out, "--company", "nope", NULL};
	assert_int_equal(th_run(argv4, env, 60000, NULL), 1);
	assert_int_not_equal(stat(bad_out, &st), 0);
}

/* The general-purpose flags (and *method) of entry name in the central directory of the zip at
 * path; -1 when it has no such entry. */
static int zip_entry_flags(const char *path, const char *name, int *method)
{
	FILE *f = fopen(path, "rb");
	unsigned char *z;
	long n;
	int flags = -1;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 22);
	rewind(f);
	z = malloc((size_t)n);
	assert_non_null(z);
	assert_int_equal(fread(z, 1, (size_t)n, f), (size_t)n);
	fclose(f);
#define LE16(p) ((unsigned)(p)[0] | (unsigned)(p)[1] << 8)
#define LE32(p) (LE16(p) | (unsigned long)LE16((p) + 2) << 16)
	long eocd = n - 22;
	while (eocd >= 0 && LE32(z + eocd) != 0x06054b50UL)
		eocd--;
	assert_true(eocd >= 0);
	unsigned long at = LE32(z + eocd + 16);
	for (unsigned k = LE16(z + eocd + 10); k > 0 && at + 46 <= (unsigned long)eocd; k--) {
		const unsigned char *e = z + at;
		unsigned nlen = LE16(e + 28);
		assert_int_equal(LE32(e), 0x02014b50UL);
		if (nlen == strlen(name) && !memcmp(e + 46, name, nlen)) {
			flags = (int)LE16(e + 8);
			*method = (int)LE16(e + 10);
			break;
		}
		at += 46 + nlen + LE16(e + 30) + LE16(e + 32);
	}
#undef LE16
#undef LE32
	free(z);
	return flags;
}

/* The sheet is deflated at level 1 (common/xlsxexport.c defines minizip's
 * zipOpenNewFileInZip4_64 for libxlsxwriter to call): minizip records a level-1 deflate as bits
 * 1-2 of the entry's flags. Checked in the file the worker writes and in dialerctl's, since each
 * binary must carry the definition in its dynamic symbol table for the call to reach it. */
static void test_zip_level(void **state)
{
	char out[600], dbkv[600], company[32], bin[512];
	int method = -1;

	(void)state;
	make_numbers();
	struct th_resp *r = th_call(&api, "POST", "/api/numbers/export", admin_token, "{\"select_all\": true}");
	TH_EXPECT_STATUS(r, 200);
	const char *path = save(r, "level.xlsx");
	th_resp_free(r);
	int flags = zip_entry_flags(path, "xl/worksheets/sheet1.xml", &method);
	assert_int_equal(method, 8); /* deflate */
	assert_int_equal(flags & 6, 6);

	snprintf(out, sizeof(out), "%s/%s-cli.xlsx", th_tmp_dir(), th_test_name());
	snprintf(dbkv, sizeof(dbkv), "DATABASE_URL=%s", db_url);
	snprintf(company, sizeof(company), "%lld", acme_id);
	snprintf(bin, sizeof(bin), "%s/dialerctl", th_env("DIALER_BIN_DIR"));
	const char *argv[] = {bin, "export", "--out", out, "--company", company, NULL};
	const char *env[] = {dbkv, NULL};
	assert_int_equal(th_run(argv, env, 60000, NULL), 0);
	method = -1;
	flags = zip_entry_flags(out, "xl/worksheets/sheet1.xml", &method);
	assert_int_equal(method, 8);
	assert_int_equal(flags & 6, 6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_export_inline), cmocka_unit_test(test_export_errors),
	    cmocka_unit_test(test_export_job),    cmocka_unit_test(test_export_expiry_sweep),
	    cmocka_unit_test(test_bulk_job),      cmocka_unit_test(test_cli_export),
	    cmocka_unit_test(test_zip_level),
	};

	return cmocka_run_group_tests_name("export", tests, group_setup, group_teardown);
}
