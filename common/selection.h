/*
 * The numbers selection (COMPAT §2.9, SPEC §4 "Selection semantics"): one
 * builder of the FROM/WHERE/ORDER BY text and its bound parameters, shared by
 * the list, count, bulk actions and export. Values never enter the SQL text.
 */
#ifndef DIALER_SELECTION_H
#define DIALER_SELECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <jansson.h>

#include "common.h"

#define SELECTION_SEARCH_MAX 100    /* characters of `search` */
#define SELECTION_IDS_MAX    100000 /* entries of `ids` / `excluded_ids` */

enum selection_sort {
	SELECTION_SORT_CREATED_AT = 0, /* numbers.id, as the original */
	SELECTION_SORT_LAST_ATTEMPT_AT,
	SELECTION_SORT_STATUS,
};

struct selection {
	long company_id;                /* target company, 0 = none (status filter and per-company columns off) */
	long only_agent_id;             /* AGENT callers: only numbers whose company state names them; 0 = off */
	long agent_id;                  /* `agent_id` filter (needs a company); 0 = off */
	const char *status;             /* CallStatus or NULL; IN_QUEUE = no state row for the company */
	const char *global_status;      /* or NULL */
	const char *search;             /* raw user text or NULL (see selection_build) */
	const long long *search_agents; /* the company's users matching search (selection_search_patterns) */
	size_t nsearch_agents;
	bool has_start, has_end;
	time_t start, end; /* UTC instants: [start, end) */
	bool select_all;   /* true: every match (lists); false: only `ids` (none when empty) */
	const long long *ids;
	size_t nids;
	const long long *excluded;
	size_t nexcluded;
	enum selection_sort sort;
	bool ascending;
};

/* The built query. Every string is owned by it; free with selection_query_free. */
struct selection_query {
	char *from_where;    /* "FROM numbers n LEFT JOIN number_state s ... WHERE ..." */
	char *order_by;      /* "ORDER BY ..." */
	const char **params; /* nparams bound values ($1..$n), NULL for SQL NULL */
	int nparams;
	size_t cap;
	int company_param; /* $n of the target company id, 0 without one */
};

/*
 * Builds the selection. The state of the target company is joined as `s`
 * (LEFT JOIN; its columns are NULL without a company) and the number as `n`.
 * `search` is matched as a substring of the phone number (Persian and
 * Arabic-Indic digits mapped, separators dropped, LIKE wildcards escaped) or,
 * with a company, as a number assigned to one of search_agents: the caller
 * finds those first (users of the company whose first/last/full name or
 * username matches name_like case-insensitively, or whose phone matches
 * phone_like), which keeps the phone predicate alone so that the trigram
 * index serves it. Callers may append more parameters with
 * selection_param and refer to them as $<nparams>. Returns 0 or -1 (bad
 * input: a field beyond its limit); q is then empty.
 */
int selection_build(const struct selection *f, struct selection_query *q) MUSTCHECK;

/*
 * The LIKE patterns of a search ('%...%', wildcards escaped): phone_like only
 * when the text is digits and separators, name_like always. Returns -1 (both
 * NULL) when the search is blank or too long. Caller frees both.
 */
int selection_search_patterns(const char *search, char **phone_like, char **name_like) MUSTCHECK;

/* The company's users a search names, for selection.search_agents: $1 the
 * company id, $2 name_like and $3 phone_like of selection_search_patterns
 * ($3 may be NULL). At most 1000. */
#define SELECTION_SEARCH_AGENTS_SQL                                                                \
	"SELECT id FROM users WHERE company_id = $1 AND (username ILIKE $2 OR first_name ILIKE $2" \
	" OR last_name ILIKE $2 OR concat_ws(' ', first_name, last_name) ILIKE $2"                 \
	" OR ($3::text IS NOT NULL AND phone_number LIKE $3)) LIMIT 1000"

/* Appends a bound parameter (copied; NULL = SQL NULL); returns its number ($n). */
int selection_param(struct selection_query *q, const char *value);

void selection_query_free(struct selection_query *q);

/* Parses sort_by ("created_at", "last_attempt_at", "status") and sort_order
 * ("asc", "desc"); NULL means the default (created_at, desc). Returns 0 or -1. */
int selection_parse_sort(const char *sort_by, const char *sort_order, enum selection_sort *sort,
                         bool *ascending) MUSTCHECK;

/*
 * A selection as a job's params (a JSON object; new reference) and back: what
 * a request resolved (company, search agents, date instants) travels with the
 * job, so that the worker selects exactly what the request meant.
 */
json_t *selection_to_json(const struct selection *f);

/* The id arrays selection_from_json allocates; free with selection_arrays_free. */
struct selection_arrays {
	long long *ids, *excluded, *agents;
};

/*
 * Fills f from j (made by selection_to_json). Strings in f are borrowed from j
 * (keep j alive while f is used); the arrays are allocated into a. Returns 0,
 * or -1 when j is malformed (a wrong type, an unknown status or sort, an
 * array beyond SELECTION_IDS_MAX).
 */
int selection_from_json(const json_t *j, struct selection *f, struct selection_arrays *a) MUSTCHECK;
void selection_arrays_free(struct selection_arrays *a);

/* The 13 call statuses and the 3 global statuses (COMPAT §3.2), NULL-terminated. */
extern const char *const selection_call_statuses[];
extern const char *const selection_global_statuses[];

/* True when s is one of the 13 call statuses / the 3 global statuses. */
bool selection_status_valid(const char *s);
bool selection_global_status_valid(const char *s);

/* True when a non-superuser may change a number whose company status is
 * status (NULL = IN_QUEUE): IN_QUEUE, MISSED, BUSY, POWER_OFF, BANNED. */
bool selection_status_mutable(const char *status);

/* SQL list of the mutable statuses, for guards inside statements. */
#define SELECTION_MUTABLE_SQL "('IN_QUEUE', 'MISSED', 'BUSY', 'POWER_OFF', 'BANNED')"

#endif
