/* ImportResult (importresult.h). */
#include "importresult.h"

void import_tally_init(struct import_tally *t)
{
	*t = (struct import_tally){.samples = json_array(), .invalid_rows = json_array()};
}

void import_tally_free(struct import_tally *t)
{
	json_decref(t->samples);
	json_decref(t->invalid_rows);
	t->samples = t->invalid_rows = NULL;
}

void import_tally_invalid(struct import_tally *t, long long line, json_t *value)
{
	t->invalid++;
	if (json_array_size(t->samples) < IMPORT_INVALID_SAMPLES)
		json_array_append(t->samples, value);
	if (json_array_size(t->invalid_rows) < IMPORT_INVALID_ROWS)
		json_array_append_new(t->invalid_rows,
		                      json_pack("{s:I, s:O}", "line", (json_int_t)line, "value", value));
	json_decref(value);
}

json_t *import_tally_result(const struct import_tally *t, long long inserted)
{
	return json_pack("{s:I, s:I, s:I, s:O, s:I, s:O}", "inserted", (json_int_t)inserted, "duplicates",
	                 (json_int_t)(t->valid - inserted), "invalid", (json_int_t)t->invalid, "invalid_samples",
	                 t->samples, "rows", (json_int_t)t->rows, "invalid_rows", t->invalid_rows);
}
