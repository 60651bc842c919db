/*
 * The numbers actions (COMPAT §2.9: status change, reset, delete) as one
 * statement over a built selection, shared by the API (one number, or a bulk
 * at or under BULK_SYNC_LIMIT) and the bulk job (the same statement, chunk by
 * chunk in id order).
 */
#ifndef DIALER_NUMACTION_H
#define DIALER_NUMACTION_H

#include <stdbool.h>

#include "common.h"
#include "selection.h"

enum numaction { NUMACTION_STATUS, NUMACTION_DELETE, NUMACTION_RESET };

/* "update_status", "delete", "reset" */
const char *numaction_name(enum numaction act);

/* Numbers per statement of a bulk job: progress moves and row locks are held briefly. */
#define NUMACTION_CHUNK 10000

/*
 * The statement for act over the selection q (built by selection_build),
 * appending the parameters it needs to q: the selected numbers are locked,
 * those the caller may change (superuser, or a status in
 * SELECTION_MUTABLE_SQL) are changed. company_id is the target company (not
 * used by a delete); new_status only for NUMACTION_STATUS. With chunk > 0 the
 * statement takes only the next chunk numbers in id order with an id above
 * after_id ("0" for the first). One row: matched, changed, the status of one
 * matched number (NULL = IN_QUEUE, for the single-number guard's message), the
 * highest matched id (NULL when none). Caller frees.
 */
char *numaction_sql(struct selection_query *q, enum numaction act, bool superuser, long company_id,
                    const char *new_status, long chunk, const char *after_id);

/*
 * The answer of POST /api/numbers/bulk (COMPAT §2.9) plus what SPEC §3 adds:
 * {updated, reset, deleted, skipped_immutable}, changed counted under act's
 * key, matched - changed skipped. The API's and the bulk job's. New reference.
 */
json_t *numaction_result(enum numaction act, long matched, long changed);

#endif
