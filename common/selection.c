/*
 * The numbers selection builder: filters, id lists and sort order become SQL
 * text with $n placeholders plus the bound values (see selection.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "selection.h"
#include "util.h"

const char *const selection_call_statuses[] = {
    "IN_QUEUE", "MISSED",    "CONNECTED", "FAILED",  "NOT_INTERESTED", "HANGUP",     "DISCONNECTED",
    "BUSY",     "POWER_OFF", "BANNED",    "UNKNOWN", "INBOUND_CALL",   "COMPLAINED", NULL,
};
const char *const selection_global_statuses[] = {"ACTIVE", "COMPLAINED", "POWER_OFF", NULL};
static const char *const mutable_statuses[] = {"IN_QUEUE", "MISSED", "BUSY", "POWER_OFF", "BANNED", NULL};

static bool in_list(const char *s, const char *const *list)
{
	if (!s)
		return false;
	for (; *list; list++)
		if (!strcmp(s, *list))
			return true;
	return false;
}

bool selection_status_valid(const char *s)
{
	return in_list(s, selection_call_statuses);
}

bool selection_global_status_valid(const char *s)
{
	return in_list(s, selection_global_statuses);
}

bool selection_status_mutable(const char *status)
{
	return !status || in_list(status, mutable_statuses);
}

int selection_parse_sort(const char *sort_by, const char *sort_order, enum selection_sort *sort, bool *ascending)
{
	*sort = SELECTION_SORT_CREATED_AT;
	*ascending = false;
	if (sort_by) {
		if (!strcmp(sort_by, "created_at"))
			*sort = SELECTION_SORT_CREATED_AT;
		else if (!strcmp(sort_by, "last_attempt_at"))
			*sort = SELECTION_SORT_LAST_ATTEMPT_AT;
		else if (!strcmp(sort_by, "status"))
			*sort = SELECTION_SORT_STATUS;
		else
			return -1;
	}
	if (sort_order) {
		if (!strcmp(sort_order, "asc"))
			*ascending = true;
		else if (strcmp(sort_order, "desc"))
			return -1;
	}
	return 0;
}

int selection_param(struct selection_query *q, const char *value)
{
	if ((size_t)q->nparams == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 8;
		q->params = xrealloc(q->params, q->cap * sizeof(*q->params));
	}
	q->params[q->nparams++] = value ? xstrdup(value) : NULL;
	return q->nparams;
}

static int param_long(struct selection_query *q, long long v)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "%lld", v);
	return selection_param(q, buf);
}

/* "{1,2,3}", bound as $n::bigint[] so that a list of any length is one parameter. */
static int param_ids(struct selection_query *q, const long long *ids, size_t n)
{
	size_t cap = n * 21 + 3, len = 0;
	char *buf = xmalloc(cap);
	buf[len++] = '{';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "", ids[i]);
	buf[len++] = '}';
	buf[len] = '\0';
	int k = selection_param(q, buf);
	free(buf);
	return k;
}

/* '%' + s with LIKE's wildcards and escape escaped + '%'. Caller frees. */
static char *like_pattern(const char *s)
{
	size_t n = strlen(s), k = 0;
	char *p = xmalloc(2 * n + 3);
	p[k++] = '%';
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%' || s[i] == '_' || s[i] == '\\')
			p[k++] = '\\';
		p[k++] = s[i];
	}
	p[k++] = '%';
	p[k] = '\0';
	return p;
}

int selection_search_patterns(const char *search, char **phone_like, char **name_like)
{
	char text[SELECTION_SEARCH_MAX * 4 + 1], digits[sizeof(text)];
	size_t nd = 0, len;
	bool all_digits = true;
	*phone_like = *name_like = NULL;
	if (!search || util_utf8_chars(search) > SELECTION_SEARCH_MAX)
		return -1;
	if (util_ascii_digits(search, text, sizeof(text)))
		return -1;
	char *t = text;
	while (*t == ' ' || *t == '\t')
		t++;
	len = strlen(t);
	while (len && (t[len - 1] == ' ' || t[len - 1] == '\t'))
		t[--len] = '\0';
	if (!len)
		return -1;
	for (const char *s = t; *s; s++) {
		if (*s >= '0' && *s <= '9')
			digits[nd++] = *s;
		else if (!strchr(" -.()+", *s))
			all_digits = false;
	}
	digits[nd] = '\0';
	if (all_digits && nd > 0)
		*phone_like = like_pattern(digits);
	*name_like = like_pattern(t);
	return 0;
}

/* The search predicate, or nothing when the text is blank. Phone numbers
 * hold only digits, so a search with letters can match only agents. */
static void add_search(FILE *w, struct selection_query *q, const struct selection *f)
{
	char *phone, *name;
	if (selection_search_patterns(f->search, &phone, &name))
		return;
	fputs(" AND (", w);
	if (phone)
		fprintf(w, "n.phone_number LIKE $%d", selection_param(q, phone));
	if (f->company_id && f->nsearch_agents)
		fprintf(w, "%ss.assigned_agent_id = ANY ($%d::bigint[])", phone ? " OR " : "",
		        param_ids(q, f->search_agents, f->nsearch_agents));
	else if (!phone)
		fputs("false", w);
	fputs(")", w);
	free(phone);
	free(name);
}

int selection_build(const struct selection *f, struct selection_query *q)
{
	char *buf = NULL;
	size_t len = 0;
	int pc = 0;
	memset(q, 0, sizeof(*q));
	if ((f->search && util_utf8_chars(f->search) > SELECTION_SEARCH_MAX) || f->nids > SELECTION_IDS_MAX ||
	    f->nexcluded > SELECTION_IDS_MAX)
		return -1;
	FILE *w = open_memstream(&buf, &len);
	if (!w)
		abort();
	if (f->company_id) {
		pc = param_long(q, f->company_id);
		q->company_param = pc;
		fprintf(w, "FROM numbers n LEFT JOIN number_state s ON s.company_id = $%d AND s.number_id = n.id", pc);
	} else {
		/* no target company: the per-company columns are NULL, as in the original */
		fputs("FROM numbers n LEFT JOIN number_state s ON false", w);
	}
	fputs(" WHERE true", w);
	if (!f->select_all) {
		if (f->nids == 0)
			fputs(" AND false", w);
		else
			fprintf(w, " AND n.id = ANY ($%d::bigint[])", param_ids(q, f->ids, f->nids));
	}
	if (f->nexcluded)
		fprintf(w, " AND NOT (n.id = ANY ($%d::bigint[]))", param_ids(q, f->excluded, f->nexcluded));
	if (f->global_status)
		fprintf(w, " AND n.global_status = $%d", selection_param(q, f->global_status));
	if (f->status && f->company_id) {
		if (!strcmp(f->status, "IN_QUEUE"))
			fputs(" AND s.number_id IS NULL", w);
		else
			fprintf(w, " AND s.status = $%d", selection_param(q, f->status));
	}
	/* agents are assigned per company: without one, nobody is assigned anything */
	for (int i = 0; i < 2; i++) {
		long agent = i ? f->agent_id : f->only_agent_id;
		if (agent && f->company_id)
			fprintf(w, " AND s.assigned_agent_id = $%d", param_long(q, agent));
		else if (agent)
			fputs(" AND false", w);
	}
	if (f->search)
		add_search(w, q, f);
	if (f->has_start || f->has_end) {
		char cond[160] = "";
		size_t cl = 0;
		const char *col = f->company_id ? "a.attempted_at" : "n.last_called_at";
		if (f->has_start)
			cl += (size_t)snprintf(cond + cl, sizeof(cond) - cl, " AND %s >= to_timestamp($%d)", col,
			                       param_long(q, (long long)f->start));
		if (f->has_end)
			cl += (size_t)snprintf(cond + cl, sizeof(cond) - cl, " AND %s < to_timestamp($%d)", col,
			                       param_long(q, (long long)f->end));
		if (f->company_id)
			fprintf(w,
			        " AND EXISTS (SELECT 1 FROM call_attempts a WHERE a.company_id = $%d AND a.number_id = "
			        "n.id%s)",
			        pc, cond);
		else
			fputs(cond, w);
	}
	fclose(w);
	q->from_where = buf;

	const char *dir = f->ascending ? "ASC" : "DESC";
	if (f->company_id && f->sort == SELECTION_SORT_LAST_ATTEMPT_AT)
		q->order_by = xasprintf("ORDER BY s.last_attempt_at %s NULLS LAST, n.id %s", dir, dir);
	else if (f->company_id && f->sort == SELECTION_SORT_STATUS)
		q->order_by = xasprintf("ORDER BY s.status %s NULLS LAST, n.id %s", dir, dir);
	else
		q->order_by = xasprintf("ORDER BY n.id %s", dir);
	return 0;
}

void selection_query_free(struct selection_query *q)
{
	for (int i = 0; i < q->nparams; i++)
		free((void *)q->params[i]);
	free(q->params);
	free(q->from_where);
	free(q->order_by);
	memset(q, 0, sizeof(*q));
}

/* ---- job params ---- */

static json_t *ids_json(const long long *ids, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_integer(ids[i]));
	return a;
}

json_t *selection_to_json(const struct selection *f)
{
	static const char *const sorts[] = {"created_at", "last_attempt_at", "status"};
	json_t *j = json_object();
	json_object_set_new(j, "company_id", json_integer(f->company_id));
	json_object_set_new(j, "only_agent_id", json_integer(f->only_agent_id));
	json_object_set_new(j, "agent_id", json_integer(f->agent_id));
	json_object_set_new(j, "status", f->status ? json_string(f->status) : json_null());
	json_object_set_new(j, "global_status", f->global_status ? json_string(f->global_status) : json_null());
	json_object_set_new(j, "search", f->search ? json_string(f->search) : json_null());
	json_object_set_new(j, "search_agents", ids_json(f->search_agents, f->nsearch_agents));
	json_object_set_new(j, "start", f->has_start ? json_integer((json_int_t)f->start) : json_null());
	json_object_set_new(j, "end", f->has_end ? json_integer((json_int_t)f->end) : json_null());
	json_object_set_new(j, "select_all", json_boolean(f->select_all));
	json_object_set_new(j, "ids", ids_json(f->ids, f->nids));
	json_object_set_new(j, "excluded_ids", ids_json(f->excluded, f->nexcluded));
	json_object_set_new(j, "sort_by", json_string(sorts[f->sort]));
	json_object_set_new(j, "sort_order", json_string(f->ascending ? "asc" : "desc"));
	return j;
}

/* j[key], an array of integers, into *out (allocated); -1 when malformed. */
static int ids_from_json(const json_t *j, const char *key, long long **out, size_t *n)
{
	json_t *a = json_object_get(j, key), *v;
	size_t i;
	*out = NULL;
	*n = 0;
	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > SELECTION_IDS_MAX)
		return -1;
	*out = xmalloc((json_array_size(a) ? json_array_size(a) : 1) * sizeof(**out));
	json_array_foreach(a, i, v)
	{
		if (!json_is_integer(v))
			return -1;
		(*out)[i] = json_integer_value(v);
	}
	*n = json_array_size(a);
	return 0;
}

/* j[key]: absent or null → NULL; a string → it (borrowed); else -1. */
static int str_from_json(const json_t *j, const char *key, const char **out)
{
	json_t *v = json_object_get(j, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -1;
	*out = json_string_value(v);
	return 0;
}

static int long_from_json(const json_t *j, const char *key, long *out)
{
	json_t *v = json_object_get(j, key);
	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 2147483647)
		return -1;
	*out = (long)json_integer_value(v);
	return 0;
}

static int time_from_json(const json_t *j, const char *key, bool *has, time_t *out)
{
	json_t *v = json_object_get(j, key);
	*has = false;
	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v))
		return -1;
	*has = true;
	*out = (time_t)json_integer_value(v);
	return 0;
}

int selection_from_json(const json_t *j, struct selection *f, struct selection_arrays *a)
{
	const char *sort_by, *sort_order;
	memset(f, 0, sizeof(*f));
	memset(a, 0, sizeof(*a));
	if (!json_is_object(j))
		return -1;
	if (long_from_json(j, "company_id", &f->company_id) || long_from_json(j, "only_agent_id", &f->only_agent_id) ||
	    long_from_json(j, "agent_id", &f->agent_id) || str_from_json(j, "status", &f->status) ||
	    str_from_json(j, "global_status", &f->global_status) || str_from_json(j, "search", &f->search) ||
	    str_from_json(j, "sort_by", &sort_by) || str_from_json(j, "sort_order", &sort_order) ||
	    time_from_json(j, "start", &f->has_start, &f->start) || time_from_json(j, "end", &f->has_end, &f->end) ||
	    ids_from_json(j, "ids", &a->ids, &f->nids) ||
	    ids_from_json(j, "excluded_ids", &a->excluded, &f->nexcluded) ||
	    ids_from_json(j, "search_agents", &a->agents, &f->nsearch_agents))
		goto bad;
	if ((f->status && !selection_status_valid(f->status)) ||
	    (f->global_status && !selection_global_status_valid(f->global_status)) ||
	    selection_parse_sort(sort_by, sort_order, &f->sort, &f->ascending))
		goto bad;
	f->select_all = json_is_true(json_object_get(j, "select_all"));
	f->ids = a->ids;
	f->excluded = a->excluded;
	f->search_agents = a->agents;
	return 0;
bad:
	selection_arrays_free(a);
	memset(f, 0, sizeof(*f));
	return -1;
}

void selection_arrays_free(struct selection_arrays *a)
{
	free(a->ids);
	free(a->excluded);
	free(a->agents);
	memset(a, 0, sizeof(*a));
}
