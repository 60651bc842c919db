/*
 * result.ingested events of a committed batch: grouped by company, capped, one pipelined round
 * trip to Redis (and one indexed read of dead_letters, only for a batch that had dead letters or
 * duplicates).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "emit.h"
#include "events.h"
#include "util.h"

#define MESSAGE_MAX 200 /* bytes of user_message in an event (cut on a character boundary) */

struct group {
	long company_id;
	long count;
	json_t *results;
};

static json_t *iso_us(long us)
{
	char out[32];
	util_iso_us(us, out);
	return json_string(out);
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *id_or_null(long v)
{
	return v > 0 ? json_integer(v) : json_null();
}

static json_t *message(const char *s)
{
	if (!s)
		return json_null();
	return json_stringn(s, util_utf8_cut(s, MESSAGE_MAX));
}

static json_t *result_json(const struct result_entry *e)
{
	json_t *o = json_object();
	json_object_set_new(o, "stream_id", json_string(e->id));
	json_object_set_new(o, "phone_number", str_or_null(e->phone));
	json_object_set_new(o, "number_id", id_or_null(e->number_id));
	json_object_set_new(o, "status", str_or_null(e->status));
	json_object_set_new(o, "reason", str_or_null(e->reason));
	json_object_set_new(o, "attempted_at", iso_us(e->attempted_us));
	json_object_set_new(o, "agent_id", id_or_null(e->agent_id));
	json_object_set_new(o, "agent_phone", str_or_null(e->agent_phone));
	json_object_set_new(o, "scenario_id", id_or_null(e->scenario_id));
	json_object_set_new(o, "outbound_line_id", id_or_null(e->outbound_line_id));
	json_object_set_new(o, "batch_id", str_or_null(e->batch_id));
	json_object_set_new(o, "user_message", message(e->user_message));
	return o;
}

/* Which of the batch's n entries are dead letters: a flag per entry (caller frees), or NULL
 * when the read failed (logged; no entry counts as dead). */
static bool *dead_flags(PGconn *db, const struct result_entry *e, int n)
{
	struct buf b = {0};
	buf_add(&b, "{", 1);
	for (int i = 0; i < n; i++)
		buf_array_elem(&b, e[i].id);
	buf_add(&b, "}", 1);
	const char *p[1] = {b.p};
	PGresult *res =
	    db ? db_exec(db, "SELECT stream_id FROM dead_letters WHERE stream_id = ANY ($1::text[])", 1, p) : NULL;
	free(b.p);
	if (!res) {
		log_warn("event=event_emit_failed reason=\"cannot read dead letters\"");
		return NULL;
	}
	bool *dead = xcalloc((size_t)n, sizeof(*dead));
	for (int r = 0; r < PQntuples(res); r++)
		for (int i = 0; i < n; i++)
			if (!strcmp(e[i].id, PQgetvalue(res, r, 0))) {
				dead[i] = true;
				break;
			}
	PQclear(res);
	return dead;
}

void results_emit(struct worker_ctx *w, const struct result_entry *e, int n, const struct apply_summary *s)
{
	struct group *g = NULL;
	size_t ng = 0, last = 0;
	bool *dead = NULL;
	struct events_batch b = {0};

	if (s->applied + s->duplicates == 0)
		return;
	if (s->dead > 0 || s->duplicates > 0)
		dead = dead_flags(w->db, e, n);
	for (int i = 0; i < n; i++) {
		if (e[i].bad[0] || e[i].company_id <= 0 || (dead && dead[i]))
			continue;
		if (!(ng && g[last].company_id == e[i].company_id)) {
			for (last = 0; last < ng && g[last].company_id != e[i].company_id; last++)
				;
			if (last == ng) {
				g = xrealloc(g, (ng + 1) * sizeof(*g));
				g[ng] = (struct group){e[i].company_id, 0, json_array()};
				ng++;
			}
		}
		if (g[last].count++ < cfg.events_results_max)
			json_array_append_new(g[last].results, result_json(&e[i]));
	}
	for (size_t k = 0; k < ng; k++)
		events_batch_add_new(&b, EVENTS_RESULT_INGESTED, g[k].company_id,
		                     json_pack("{s:I, s:o, s:b}", "count", (json_int_t)g[k].count, "results",
		                               g[k].results, "truncated", g[k].count > cfg.events_results_max));
	events_batch_send(w->redis, &b);
	events_batch_free(&b);
	free(g);
	free(dead);
}
