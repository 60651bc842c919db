/*
 * Streaming multipart/form-data parser (multipart.h): a byte-level state machine for the
 * delimiters and part headers, memchr over part bodies. Nothing is buffered but one header line
 * and the few delimiter bytes matched so far, so memory is flat in the body's size.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "multipart.h"
#include "util.h"

enum mp_state { S_START, S_AFTER_DELIM, S_HEADERS, S_BODY, S_END, S_ERROR };

struct multipart {
	const struct multipart_cbs *cbs;
	void *ctx;
	enum mp_state st;
	char delim[4 + MULTIPART_BOUNDARY_MAX + 1]; /* "\r\n--" boundary */
	size_t dlen;
	size_t match;  /* delimiter bytes matched (S_START: from delim + 2) */
	char after[2]; /* S_AFTER_DELIM: the two bytes after a delimiter */
	size_t nafter;
	char line[MULTIPART_HEADER_LINE_MAX + 1];
	size_t llen;
	bool saw_cr;
	int nheaders, nparts;
	bool has_disposition, has_ctype;
	struct multipart_part part;
	char err[160];
};

static int fail(struct multipart *m, const char *fmt, ...) PRINTF_LIKE(2, 3);

static int fail(struct multipart *m, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->err, sizeof(m->err), fmt, ap);
	va_end(ap);
	m->st = S_ERROR;
	return -1;
}

static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* RFC 2046 bchars */
static bool is_bchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("'()+_,-./:=? ", c));
}

static const char *skip_ows(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* A token or quoted-string parameter value at *pp into out (cap bytes with the NUL). Returns 0,
 * or -1 (malformed, or too long: *too_long set). */
static int param_value(const char **pp, char *out, size_t cap, bool *too_long)
{
	const char *p = *pp;
	size_t n = 0;
	*too_long = false;
	if (*p == '"') {
		for (p++; *p != '"'; p++) {
			if (!*p)
				return -1;
			if (*p == '\\') {
				p++;
				if (!*p)
					return -1;
			}
			if (n + 1 >= cap) {
				*too_long = true;
				return -1;
			}
			out[n++] = *p;
		}
		p++;
	} else {
		while (is_tchar((unsigned char)*p)) {
			if (n + 1 >= cap) {
				*too_long = true;
				return -1;
			}
			out[n++] = *p++;
		}
		if (n == 0)
			return -1;
	}
	out[n] = '\0';
	*pp = p;
	return 0;
}

static int parse_disposition(struct multipart *m, const char *v)
{
	const char *p = v;
	char pname[32], scratch[MULTIPART_FILENAME_MAX + 1];
	bool has_name = false, too_long;
	size_t n = 0;
	while (is_tchar((unsigned char)p[n]))
		n++;
	if (n != 9 || strncasecmp(p, "form-data", 9))
		return fail(m, "part %d: content-disposition is not form-data", m->nparts);
	p = skip_ows(p + n);
	while (*p) {
		if (*p != ';')
			return fail(m, "part %d: malformed content-disposition", m->nparts);
		p = skip_ows(p + 1);
		n = 0;
		while (is_tchar((unsigned char)p[n]))
			n++;
		if (n == 0 || n >= sizeof(pname))
			return fail(m, "part %d: malformed content-disposition parameter", m->nparts);
		memcpy(pname, p, n);
		pname[n] = '\0';
		p = skip_ows(p + n);
		if (*p != '=')
			return fail(m, "part %d: content-disposition parameter %s has no value", m->nparts, pname);
		p = skip_ows(p + 1);
		if (!strcasecmp(pname, "name")) {
			if (has_name)
				return fail(m, "part %d: two names", m->nparts);
			if (param_value(&p, m->part.name, sizeof(m->part.name), &too_long))
				return fail(m, too_long ? "part %d: name too long" : "part %d: malformed name",
				            m->nparts);
			has_name = true;
		} else if (!strcasecmp(pname, "filename")) {
			if (m->part.has_filename)
				return fail(m, "part %d: two filenames", m->nparts);
			if (param_value(&p, m->part.filename, sizeof(m->part.filename), &too_long))
				return fail(m, too_long ? "part %d: filename too long" : "part %d: malformed filename",
				            m->nparts);
			m->part.has_filename = true;
		} else if (param_value(&p, scratch, sizeof(scratch), &too_long)) {
			return fail(m, "part %d: malformed content-disposition parameter %s", m->nparts, pname);
		}
		p = skip_ows(p);
	}
	if (!has_name || !m->part.name[0])
		return fail(m, "part %d: no name in content-disposition", m->nparts);
	if (!util_utf8_valid(m->part.name, strlen(m->part.name)) ||
	    !util_utf8_valid(m->part.filename, strlen(m->part.filename)))
		return fail(m, "part %d: name or filename is not UTF-8", m->nparts);
	return 0;
}

/* One complete header line (without its CRLF) in m->line. */
static int header_line(struct multipart *m)
{
	char *colon, *v, *end;
	if (m->line[0] == ' ' || m->line[0] == '\t')
		return fail(m, "part %d: folded header line", m->nparts);
	if (++m->nheaders > MULTIPART_HEADERS_MAX)
		return fail(m, "part %d: more than %d headers", m->nparts, MULTIPART_HEADERS_MAX);
	colon = strchr(m->line, ':');
	if (!colon || colon == m->line)
		return fail(m, "part %d: malformed header line", m->nparts);
	for (char *p = m->line; p < colon; p++)
		if (!is_tchar((unsigned char)*p))
			return fail(m, "part %d: malformed header name", m->nparts);
	*colon = '\0';
	v = (char *)skip_ows(colon + 1);
	end = v + strlen(v);
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	if (!strcasecmp(m->line, "content-disposition")) {
		if (m->has_disposition)
			return fail(m, "part %d: two content-disposition headers", m->nparts);
		m->has_disposition = true;
		return parse_disposition(m, v);
	}
	if (!strcasecmp(m->line, "content-type")) {
		if (m->has_ctype)
			return fail(m, "part %d: two content-type headers", m->nparts);
		if (strlen(v) > MULTIPART_CTYPE_MAX)
			return fail(m, "part %d: content-type too long", m->nparts);
		m->has_ctype = true;
		memcpy(m->part.content_type, v, strlen(v) + 1);
	}
	return 0; /* other headers are ignored */
}

static void part_reset(struct multipart *m)
{
	memset(&m->part, 0, sizeof(m->part));
	m->nheaders = 0;
	m->has_disposition = m->has_ctype = false;
	m->llen = 0;
	m->saw_cr = false;
}

static int emit(struct multipart *m, const char *d, size_t n)
{
	if (n && m->cbs->part_data && m->cbs->part_data(m->ctx, d, n))
		return fail(m, "stopped");
	return 0;
}

/* Part body bytes until the delimiter. Returns the bytes used, or -1. Sets S_AFTER_DELIM once
 * the delimiter is complete. The delimiter starts with the only CR it contains (bchars have
 * none), so after a mismatch a new match can only start at a CR: no KMP table needed. */
static long body_bytes(struct multipart *m, const char *d, size_t n)
{
	size_t i = 0, run = 0;
	while (i < n) {
		if (m->match == 0) {
			const char *cr = memchr(d + i, '\r', n - i);
			if (!cr) {
				i = n;
				break;
			}
			i = (size_t)(cr - d);
			if (emit(m, d + run, i - run))
				return -1;
			m->match = 1;
			run = ++i;
			continue;
		}
		if (d[i] == m->delim[m->match]) {
			run = ++i;
			if (++m->match == m->dlen) {
				m->match = 0;
				if (m->cbs->part_end && m->cbs->part_end(m->ctx))
					return fail(m, "stopped");
				m->st = S_AFTER_DELIM;
				m->nafter = 0;
				return (long)i;
			}
			continue;
		}
		/* mismatch: what matched was data; d[i] is looked at again from a fresh start */
		if (emit(m, m->delim, m->match))
			return -1;
		m->match = 0;
		run = i;
	}
	if (emit(m, d + run, n - run))
		return -1;
	return (long)n;
}

int multipart_feed(struct multipart *m, const char *data, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = (unsigned char)data[i];
		switch (m->st) {
		case S_ERROR:
			return -1;
		case S_END:
			return 0; /* the epilogue is ignored */
		case S_START:
			if (c != (unsigned char)m->delim[2 + m->match])
				return fail(m, "body does not start with the boundary");
			i++;
			if (2 + ++m->match == m->dlen) {
				m->match = 0;
				m->st = S_AFTER_DELIM;
				m->nafter = 0;
			}
			break;
		case S_AFTER_DELIM:
			m->after[m->nafter++] = (char)c;
			i++;
			if (m->nafter < 2)
				break;
			if (!memcmp(m->after, "--", 2)) {
				m->st = S_END;
			} else if (!memcmp(m->after, "\r\n", 2)) {
				if (++m->nparts > MULTIPART_PARTS_MAX)
					return fail(m, "more than %d parts", MULTIPART_PARTS_MAX);
				part_reset(m);
				m->st = S_HEADERS;
			} else {
				return fail(m, "boundary not followed by CRLF or --");
			}
			break;
		case S_HEADERS:
			i++;
			if (m->saw_cr) {
				if (c != '\n')
					return fail(m, "part %d: CR without LF in headers", m->nparts);
				m->saw_cr = false;
				m->line[m->llen] = '\0';
				if (m->llen == 0) {
					if (!m->has_disposition)
						return fail(m, "part %d: no content-disposition", m->nparts);
					if (m->cbs->part_begin && m->cbs->part_begin(m->ctx, &m->part))
						return fail(m, "stopped");
					m->st = S_BODY;
					m->match = 0;
					break;
				}
				if (header_line(m))
					return -1;
				m->llen = 0;
			} else if (c == '\r') {
				m->saw_cr = true;
			} else if (c == '\n') {
				return fail(m, "part %d: header line not ended by CRLF", m->nparts);
			} else if ((c < 0x20 && c != '\t') || c == 0x7f) {
				return fail(m, "part %d: control character in headers", m->nparts);
			} else if (m->llen >= MULTIPART_HEADER_LINE_MAX) {
				return fail(m, "part %d: header line longer than %d bytes", m->nparts,
				            MULTIPART_HEADER_LINE_MAX);
			} else {
				m->line[m->llen++] = (char)c;
			}
			break;
		case S_BODY: {
			long used = body_bytes(m, data + i, len - i);
			if (used < 0)
				return -1;
			i += (size_t)used;
			break;
		}
		}
	}
	return m->st == S_ERROR ? -1 : 0;
}

int multipart_finish(struct multipart *m)
{
	if (m->st == S_ERROR)
		return -1;
	if (m->st != S_END)
		return fail(m, "body ended before the closing boundary");
	return 0;
}

const char *multipart_error(const struct multipart *m)
{
	return m->err;
}

int multipart_boundary(const char *ct, char *out, char *err, size_t errlen)
{
	const char *p;
	size_t n = 0;
	if (!ct || strncasecmp(ct, "multipart/form-data", 19) || (ct[19] && ct[19] != ';' && ct[19] != ' ')) {
		snprintf(err, errlen, "content type is not multipart/form-data");
		return -1;
	}
	p = skip_ows(ct + 19);
	while (*p == ';') {
		char name[32];
		size_t k = 0;
		p = skip_ows(p + 1);
		while (is_tchar((unsigned char)p[k]) && k < sizeof(name) - 1) {
			name[k] = p[k];
			k++;
		}
		name[k] = '\0';
		p = skip_ows(p + k);
		if (!k || *p != '=')
			break;
		p = skip_ows(p + 1);
		if (!strcasecmp(name, "boundary")) {
			bool quoted = *p == '"';
			if (quoted)
				p++;
			while (*p && (quoted ? *p != '"' : (*p != ';' && *p != ' ' && *p != '\t'))) {
				if (n >= MULTIPART_BOUNDARY_MAX || !is_bchar((unsigned char)*p)) {
					snprintf(err, errlen, "invalid multipart boundary");
					return -1;
				}
				out[n++] = *p++;
			}
			if (quoted && *p != '"') {
				snprintf(err, errlen, "invalid multipart boundary");
				return -1;
			}
			out[n] = '\0';
			if (n == 0 || out[n - 1] == ' ') {
				snprintf(err, errlen, "invalid multipart boundary");
				return -1;
			}
			return 0;
		}
		/* another parameter (charset): skip its value */
		if (*p == '"') {
			for (p++; *p && *p != '"'; p++)
				if (*p == '\\' && p[1])
					p++;
			if (*p == '"')
				p++;
		} else {
			while (*p && *p != ';')
				p++;
		}
		p = skip_ows(p);
	}
	snprintf(err, errlen, "multipart content type without a boundary");
	return -1;
}

struct multipart *multipart_new(const char *boundary, const struct multipart_cbs *cbs, void *ctx)
{
	struct multipart *m = xcalloc(1, sizeof(*m));
	size_t n = strlen(boundary);
	if (n > MULTIPART_BOUNDARY_MAX)
		n = MULTIPART_BOUNDARY_MAX;
	m->cbs = cbs;
	m->ctx = ctx;
	memcpy(m->delim, "\r\n--", 4);
	memcpy(m->delim + 4, boundary, n);
	m->dlen = 4 + n;
	m->st = S_START;
	return m;
}

void multipart_free(struct multipart *m)
{
	free(m);
}
