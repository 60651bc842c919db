/*
 * Stats worker: will roll call results up into per-company tables from its
 * own consumer group on the results stream (issue 7). Until it consumes, it
 * joins no group: an unread group would hold back the results stream's
 * trimming, and Redis would keep every result.
 */
#include "worker.h"

int main(void)
{
	static const struct worker_def def = {
	    .type = "stats",
	    .needs_db = true,
	};
	return worker_main(&def);
}
