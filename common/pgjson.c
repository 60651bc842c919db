/*
 * Typed PGresult → JSON. Column OIDs come from pg_type (stable built-ins).
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "pgjson.h"

enum {
	OID_BOOL = 16,
	OID_INT8 = 20,
	OID_INT2 = 21,
	OID_INT4 = 23,
	OID_JSON = 114,
	OID_FLOAT4 = 700,
	OID_FLOAT8 = 701,
	OID_NUMERIC = 1700,
	OID_JSONB = 3802,
};

json_t *pgjson_cell(const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return json_null();
	const char *v = PQgetvalue(res, row, col);
	switch (PQftype(res, col)) {
	case OID_BOOL:
		return json_boolean(v[0] == 't');
	case OID_INT2:
	case OID_INT4:
	case OID_INT8:
		return json_integer(strtoll(v, NULL, 10));
	case OID_FLOAT4:
	case OID_FLOAT8:
	case OID_NUMERIC:
		return json_real(strtod(v, NULL));
	case OID_JSON:
	case OID_JSONB: {
		json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
		return j ? j : json_null();
	}
	default:
		return json_string(v);
	}
}

json_t *pgjson_row(const PGresult *res, int row)
{
	json_t *o = json_object();
	int n = PQnfields(res);
	for (int c = 0; c < n; c++)
		json_object_set_new(o, PQfname(res, c), pgjson_cell(res, row, c));
	return o;
}

json_t *pgjson_rows(const PGresult *res)
{
	json_t *a = json_array();
	int n = PQntuples(res);
	for (int r = 0; r < n; r++)
		json_array_append_new(a, pgjson_row(res, r));
	return a;
}
