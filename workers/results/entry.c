/*
 * Results-stream entries: field/value pairs to a checked struct. The API has
 * validated every report already; these checks keep an entry written by
 * anything else (an older or newer API, an operator's XADD) from failing a
 * whole batch in PostgreSQL: such an entry becomes a dead letter instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "entry.h"
#include "phone.h"
#include "selection.h"
#include "util.h"

#define INT32_MAXL 2147483647L
#define INT64_MAXL 9223372036854775807L
/* attempted_at / accepted_at: 1970 .. 3000 in µs */
#define US_MAX 32503680000000000L

enum kind { K_STR, K_INT, K_PHONE };

/* The fields of version 1, where each goes, and its range. */
static const struct field {
	const char *name;
	enum kind kind;
	size_t off;
	long min, max;
} fields[] = {
    {"company_id", K_INT, offsetof(struct result_entry, company_id), 1, INT32_MAXL},
    {"company", K_STR, offsetof(struct result_entry, company), 0, 0},
    {"phone", K_PHONE, offsetof(struct result_entry, phone), 0, 0},
    {"phone_raw", K_STR, offsetof(struct result_entry, phone_raw), 0, 0},
    {"number_id", K_INT, offsetof(struct result_entry, number_id), 1, INT64_MAXL},
    {"status", K_STR, offsetof(struct result_entry, status), 0, 0},
    {"attempted_at", K_INT, offsetof(struct result_entry, attempted_us), 0, US_MAX},
    {"scenario_id", K_INT, offsetof(struct result_entry, scenario_id), 1, INT32_MAXL},
    {"outbound_line_id", K_INT, offsetof(struct result_entry, outbound_line_id), 1, INT32_MAXL},
    {"agent_id", K_INT, offsetof(struct result_entry, agent_id), 1, INT32_MAXL},
    {"agent_phone", K_PHONE, offsetof(struct result_entry, agent_phone), 0, 0},
    {"reason", K_STR, offsetof(struct result_entry, reason), 0, 0},
    {"user_message", K_STR, offsetof(struct result_entry, user_message), 0, 0},
    {"call_allowed", K_STR, offsetof(struct result_entry, call_allowed), 0, 0},
    {"batch_id", K_STR, offsetof(struct result_entry, batch_id), 0, 0},
    {"rid", K_STR, offsetof(struct result_entry, rid), 0, 0},
    {"accepted_at", K_INT, offsetof(struct result_entry, accepted_us), 0, US_MAX},
};

/* Already normalized (the API writes 09XXXXXXXXX). */
static bool phone_ok(const char *s)
{
	char out[12];
	return phone_normalize(s, out) == 0 && !strcmp(out, s);
}

static void set_bad(struct result_entry *e, const char *what, const char *name)
{
	if (!e->bad[0])
		snprintf(e->bad, sizeof(e->bad), "malformed entry: %s%s", what, name ? name : "");
}

int entry_parse(const redisReply *el, struct result_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->deliveries = 1;
	if (!el || el->type != REDIS_REPLY_ARRAY || el->elements < 2 || el->element[0]->type != REDIS_REPLY_STRING)
		return -1;
	e->id = el->element[0]->str;
	const redisReply *f = el->element[1];
	if (f->type != REDIS_REPLY_ARRAY || f->elements % 2) {
		set_bad(e, "no fields", NULL); /* deleted meanwhile (nil) or not a stream entry */
		return 0;
	}
	e->fields = f;
	bool version = false;
	for (size_t i = 0; i + 1 < f->elements; i += 2) {
		const redisReply *k = f->element[i], *v = f->element[i + 1];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
			set_bad(e, "non-string field", NULL);
			continue;
		}
		if (!util_utf8_valid(v->str, v->len)) {
			/* named by position: the key's own bytes may not be UTF-8 either, and the reason is stored
			 * as text */
			char pos[48];
			snprintf(pos, sizeof(pos), "value of field %zu", i / 2 + 1);
			set_bad(e, "not UTF-8: ", pos);
			continue;
		}
		if (!strcmp(k->str, "v")) {
			version = !strcmp(v->str, "1");
			continue;
		}
		for (size_t j = 0; j < ARRAY_LEN(fields); j++) {
			const struct field *d = &fields[j];
			if (strcmp(k->str, d->name))
				continue;
			char *at = (char *)e + d->off;
			if (d->kind == K_INT) {
				if (util_parse_long(v->str, d->min, d->max, (long *)(void *)at))
					set_bad(e, "bad ", d->name);
			} else if (d->kind == K_PHONE && !phone_ok(v->str)) {
				set_bad(e, "bad ", d->name);
			} else {
				*(const char **)(void *)at = v->str;
			}
			break;
		}
		/* fields this version does not know are kept in the stream, ignored here */
	}
	if (!version)
		set_bad(e, "unsupported version", NULL);
	if (!e->company_id)
		set_bad(e, "missing ", "company_id");
	if (!e->attempted_us)
		set_bad(e, "missing ", "attempted_at");
	if (!e->phone && !e->number_id)
		set_bad(e, "missing ", "phone and number_id");
	if (!e->status) {
		set_bad(e, "missing ", "status");
	} else if (!selection_status_valid(e->status)) {
		set_bad(e, "bad ", "status");
	}
	return 0;
}

/* s (len bytes) with every byte of an invalid UTF-8 sequence or NUL as '?'. Caller decrefs. */
static json_t *json_str_lossy(const char *s, size_t len)
{
	if (util_utf8_valid(s, len))
		return json_stringn(s, len);
	char *copy = xmalloc(len + 1);
	for (size_t i = 0; i < len; i++)
		copy[i] = (unsigned char)s[i] < 0x80 && s[i] ? s[i] : '?';
	copy[len] = '\0';
	json_t *j = json_stringn(copy, len);
	free(copy);
	return j;
}

char *entry_json(const struct result_entry *e)
{
	json_t *o = json_object();
	const redisReply *f = e->fields;
	for (size_t i = 0; f && i + 1 < f->elements; i += 2) {
		const redisReply *k = f->element[i], *v = f->element[i + 1];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			continue;
		json_t *key = json_str_lossy(k->str, k->len);
		json_object_set_new(o, json_string_value(key), json_str_lossy(v->str, v->len));
		json_decref(key);
	}
	char *out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!out) {
		log_error("event=oom what=entry_json");
		abort();
	}
	return out;
}
