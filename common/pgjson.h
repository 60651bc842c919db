/*
 * PGresult rows to jansson objects, typed by column OID: bool, integers,
 * floats/numeric, json/jsonb are converted; everything else is a string.
 */
#ifndef DIALER_PGJSON_H
#define DIALER_PGJSON_H

#include <jansson.h>
#include <libpq-fe.h>

/* Row as an object keyed by column name. New reference. */
json_t *pgjson_row(const PGresult *res, int row);
/* All rows as an array of objects. New reference. */
json_t *pgjson_rows(const PGresult *res);
/* One cell, typed as above (json null for SQL NULL). New reference. */
json_t *pgjson_cell(const PGresult *res, int row, int col);

#endif
