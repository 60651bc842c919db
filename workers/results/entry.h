/*
 * One entry of the results stream as api/dialer.c (report_result) writes it:
 * field/value strings, parsed and checked before they reach PostgreSQL.
 */
#ifndef DIALER_RESULTS_ENTRY_H
#define DIALER_RESULTS_ENTRY_H

#include <stdbool.h>

#include <hiredis/hiredis.h>

#include "common.h"

#define ENTRY_BAD_MAX 96

/*
 * Every string is borrowed from the redisReply the entry was parsed from,
 * which must outlive it; NULL means "not given". Numbers are 0 when not given.
 */
struct result_entry {
	const char *id;           /* stream id "<ms>-<seq>" */
	int deliveries;           /* 1 for a first read; from XPENDING for a claimed entry */
	bool last_chance;         /* delivered more than MAX_DELIVERIES times: dead-lettered if this one fails */
	char bad[ENTRY_BAD_MAX];  /* "" or why it cannot be applied as it is (dead-letter reason) */
	const redisReply *fields; /* the field/value array (NULL when the entry was deleted) */
	long company_id;
	long number_id, scenario_id, outbound_line_id, agent_id;
	long attempted_us, accepted_us; /* µs since the epoch */
	const char *company, *phone, *phone_raw, *status, *agent_phone, *reason, *user_message, *batch_id,
	    *call_allowed, *rid;
};

/*
 * Parses one element of an XREADGROUP/XAUTOCLAIM entry list ([id, [f, v, …]])
 * into *out (zeroed first; deliveries set to 1). A malformed entry is not an
 * error: out->bad then says what is wrong. Returns -1 only when the element
 * does not even have an id (then it is skipped).
 */
int entry_parse(const redisReply *el, struct result_entry *out) MUSTCHECK;

/*
 * Every field of the entry as a JSON object of strings (invalid UTF-8
 * replaced), for a dead letter whose entry could not be parsed. Caller frees.
 */
char *entry_json(const struct result_entry *e);

#endif
