/*
 * ImportResult (COMPAT §2.9: inserted, duplicates, invalid, invalid_samples)
 * plus our rows and invalid_rows, shared by POST /api/numbers and the import
 * worker so that both count and cap the same way. The counts add up:
 * inserted + duplicates + invalid = rows (a repeat within the input is a
 * duplicate too).
 */
#ifndef DIALER_IMPORTRESULT_H
#define DIALER_IMPORTRESULT_H

#include <jansson.h>

#define IMPORT_INVALID_SAMPLES 5   /* invalid_samples, as the original */
#define IMPORT_INVALID_ROWS    100 /* our invalid_rows */

struct import_tally {
	long long rows, valid, invalid;
	json_t *samples, *invalid_rows;
};

void import_tally_init(struct import_tally *t);
void import_tally_free(struct import_tally *t);

/* Counts an invalid value at line (1-based); value is a JSON string, taken (decref'd). */
void import_tally_invalid(struct import_tally *t, long long line, json_t *value);

/* The result once `inserted` of the valid ones were new (caller decrefs). */
json_t *import_tally_result(const struct import_tally *t, long long inserted);

#endif
