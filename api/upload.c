/*
 * POST /api/numbers/upload (COMPAT §2.9; ADMIN): a multipart/form-data body with a `file` part,
 * or the file itself as the body (text/csv, xlsx, octet-stream), up to UPLOAD_MAX_BYTES (the
 * route's RF_LARGE_BODY; 413 beyond). The file is saved to DATA_DIR/uploads on the CPU pool
 * (parsed by common/multipart on the way), an import job is created, and the request waits for
 * it (jobs_wait): 200 with the ImportResult, or 202 with the job's URL.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "api.h"
#include "config.h"
#include "jobs.h"
#include "multipart.h"

#define FIELD "file"
/* The file part's bytes are gathered before write(2): the multipart parser hands over a CSV's
 * lines one at a time (it stops at every CR), which was 2 syscalls a row. */
#define WBUF_SIZE (256 * 1024)

struct upload {
	struct evbuffer *body; /* the request's input buffer (borrowed; the loop leaves it alone meanwhile) */
	bool multipart;
	char boundary[MULTIPART_BOUNDARY_MAX + 1];
	char rel[128];                             /* the saved file, relative to DATA_DIR */
	char filename[MULTIPART_FILENAME_MAX + 1]; /* the client's name for it (base name) */
	char ctype[MULTIPART_CTYPE_MAX + 1];
	int fd;
	char *wbuf; /* WBUF_SIZE bytes of the file part not yet written */
	size_t wlen;
	bool in_file, saw_file;
	long long written;
	/* the outcome on the CPU pool: status 0 = saved */
	int status;
	char field[16];
	char err[300];
};

static void upload_free(void *p)
{
	struct upload *u = p;
	if (u->fd >= 0)
		close(u->fd);
	free(u->wbuf);
	free(u);
}

static int write_all(struct upload *u, const char *d, size_t n)
{
	while (n) {
		ssize_t w = write(u->fd, d, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			u->status = 500;
			snprintf(u->err, sizeof(u->err), "cannot save the upload: %s", strerror(errno));
			return -1;
		}
		d += w;
		n -= (size_t)w;
		u->written += w;
	}
	return 0;
}

/* The client's file name without a directory (browsers on Windows once sent full paths). */
static void base_name(char *out, size_t n, const char *name)
{
	const char *b = name;
	for (const char *p = name; *p; p++)
		if (*p == '/' || *p == '\\')
			b = p + 1;
	snprintf(out, n, "%s", b);
}

static int part_begin(void *ctx, const struct multipart_part *part)
{
	struct upload *u = ctx;
	if (strcmp(part->name, FIELD))
		return 0; /* other fields are ignored */
	if (u->saw_file) {
		u->status = 400;
		snprintf(u->field, sizeof(u->field), FIELD);
		snprintf(u->err, sizeof(u->err), "file: more than one file part");
		return 1;
	}
	u->saw_file = u->in_file = true;
	base_name(u->filename, sizeof(u->filename), part->filename);
	snprintf(u->ctype, sizeof(u->ctype), "%s", part->content_type);
	return 0;
}

static int wbuf_flush(struct upload *u)
{
	size_t n = u->wlen;
	u->wlen = 0;
	return n ? write_all(u, u->wbuf, n) : 0;
}

static int part_data(void *ctx, const char *d, size_t n)
{
	struct upload *u = ctx;
	if (!u->in_file)
		return 0;
	if (u->wlen + n > WBUF_SIZE && wbuf_flush(u))
		return -1;
	if (n >= WBUF_SIZE)
		return write_all(u, d, n);
	memcpy(u->wbuf + u->wlen, d, n);
	u->wlen += n;
	return 0;
}

static int part_end(void *ctx)
{
	struct upload *u = ctx;
	if (!u->in_file)
		return 0;
	u->in_file = false;
	return wbuf_flush(u);
}

static const struct multipart_cbs mp_cbs = {part_begin, part_data, part_end};

/* On the CPU pool: save the body (or its file part) to DATA_DIR/uploads. */
static void save(void *state)
{
	struct upload *u = state;
	struct multipart *mp = u->multipart ? multipart_new(u->boundary, &mp_cbs, u) : NULL;
	struct evbuffer_ptr pos;
	if (mp)
		u->wbuf = xmalloc(WBUF_SIZE);
	struct evbuffer_iovec v[16];
	int n;

	u->fd = jobs_file_create("uploads", ".upload", u->rel, sizeof(u->rel));
	if (u->fd < 0) {
		u->status = 500;
		snprintf(u->err, sizeof(u->err), "cannot save the upload: %s", strerror(errno));
		multipart_free(mp);
		return;
	}
	evbuffer_ptr_set(u->body, &pos, 0, EVBUFFER_PTR_SET);
	/* the body's chunks in place, 16 at a time (with len -1, evbuffer_peek fills at most 16 and
	 * answers how many it filled) */
	while ((n = evbuffer_peek(u->body, -1, &pos, v, 16)) > 0) {
		size_t got = 0;
		for (int i = 0; i < n && i < 16; i++) {
			int rc = mp ? multipart_feed(mp, v[i].iov_base, v[i].iov_len)
			            : write_all(u, v[i].iov_base, v[i].iov_len);
			if (rc) {
				if (mp && !u->status) {
					u->status = 400;
					snprintf(u->field, sizeof(u->field), "body");
					snprintf(u->err, sizeof(u->err), "invalid multipart body: %s",
					         multipart_error(mp));
				}
				goto out;
			}
			got += v[i].iov_len;
		}
		if (n < 16 || evbuffer_ptr_set(u->body, &pos, got, EVBUFFER_PTR_ADD))
			break;
	}
	if (mp && multipart_finish(mp)) {
		u->status = 400;
		snprintf(u->field, sizeof(u->field), "body");
		snprintf(u->err, sizeof(u->err), "invalid multipart body: %s", multipart_error(mp));
	} else if (mp && !u->saw_file) {
		u->status = 422;
		snprintf(u->field, sizeof(u->field), FIELD);
		snprintf(u->err, sizeof(u->err), "field required");
	} else if (u->written == 0) {
		u->status = 400;
		snprintf(u->field, sizeof(u->field), FIELD);
		snprintf(u->err, sizeof(u->err), "file: the file is empty");
	}
out:
	multipart_free(mp);
	if (close(u->fd) && !u->status) {
		u->status = 500;
		snprintf(u->err, sizeof(u->err), "cannot save the upload: %s", strerror(errno));
	}
	u->fd = -1;
}

static void saved(struct http_ctx *c)
{
	struct upload *u = c->state;
	if (u->status) {
		if (u->rel[0])
			jobs_file_remove(u->rel);
		if (u->status == 422)
			http_invalid(c, u->field, u->err);
		else if (u->status == 400)
			http_error_details(c, 400, "BAD_REQUEST", json_pack("{s:s}", "field", u->field), "%s", u->err);
		else
			http_error(c, u->status, NULL, "%s", u->err);
		return;
	}
	log_info("event=upload_saved path=%s bytes=%lld name=\"%s\"", u->rel, u->written, u->filename);
	json_t *params = json_pack("{s:I}", "bytes", (json_int_t)u->written);
	struct job_new spec = {
	    .kind = JOB_IMPORT,
	    .company_id = c->company_id,
	    .params = params,
	    .file_path = u->rel,
	    .file_name = u->filename[0] ? u->filename : NULL,
	    .content_type = u->ctype[0] ? u->ctype : NULL,
	};
	jobs_start(c, &spec, jobs_reply_result);
	json_decref(params);
}

static bool raw_type(const char *ct)
{
	static const char *const ok[] = {"text/csv",
	                                 "application/csv",
	                                 "text/plain",
	                                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
	                                 "application/octet-stream",
	                                 "application/vnd.ms-excel"};
	size_t n = strcspn(ct, "; \t");
	for (size_t i = 0; i < ARRAY_LEN(ok); i++)
		if (strlen(ok[i]) == n && !strncasecmp(ct, ok[i], n))
			return true;
	return false;
}

static void upload_scoped(struct http_ctx *c)
{
	struct upload *u = c->state;
	const char *ct = http_header(c, "Content-Type");
	u->body = evhttp_request_get_input_buffer(c->req);
	if (evbuffer_get_length(u->body) == 0) {
		http_error_details(c, 400, "BAD_REQUEST", json_pack("{s:s}", "field", FIELD),
		                   "file: the upload is empty");
		return;
	}
	if (ct && !strncasecmp(ct, "multipart/", 10)) {
		char err[128];
		if (multipart_boundary(ct, u->boundary, err, sizeof(err))) {
			http_error_details(c, 400, "BAD_REQUEST", json_pack("{s:s}", "field", "Content-Type"), "%s",
			                   err);
			return;
		}
		u->multipart = true;
	} else if (!ct || raw_type(ct)) {
		const char *name = http_query(c, "filename");
		base_name(u->filename, sizeof(u->filename), name && strlen(name) <= MULTIPART_FILENAME_MAX ? name : "");
		snprintf(u->ctype, sizeof(u->ctype), "%.*s", (int)strcspn(ct ? ct : "", ";"), ct ? ct : "");
	} else {
		http_error(
		    c, 415, "UNSUPPORTED_MEDIA_TYPE",
		    "Unsupported Content-Type: send multipart/form-data with a file field, text/csv or an xlsx file");
		return;
	}
	if (!http_offload_or_reply(c, save, saved))
		return;
}

static void upload(struct http_ctx *c)
{
	const char *company = http_query(c, "company");
	if (!require_admin_or_reply(c))
		return;
	struct upload *u = xcalloc(1, sizeof(*u));
	u->fd = -1;
	c->state = u;
	c->state_free = upload_free;
	company_or_own_then(c, company, false, upload_scoped);
}

static const struct route routes[] = {
    {"POST", "/api/numbers/upload", upload, AUTH_JWT, RF_LARGE_BODY},
};

void upload_routes(void)
{
	http_routes_add(routes, ARRAY_LEN(routes));
}
