/*
 * Results worker: applies reported call results from the results stream to PostgreSQL.
 * Until the dialer pipeline lands it joins its consumer group and idles (it reads nothing,
 * so nothing is acknowledged or lost).
 */
#include "worker.h"

int main(void)
{
	static const struct worker_def def = {
	    .type = "results",
	    .stream = STREAM_RESULTS,
	    .group = "results",
	    .needs_db = true,
	};
	return worker_main(&def);
}
