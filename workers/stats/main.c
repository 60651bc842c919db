/*
 * Stats worker: rolls call results up into per-company tables from its own
 * consumer group on the results stream. Joins the group and idles until the stats work lands.
 */
#include "worker.h"

int main(void)
{
	static const struct worker_def def = {
	    .type = "stats",
	    .stream = STREAM_RESULTS,
	    .group = "stats",
	    .needs_db = true,
	};
	return worker_main(&def);
}
