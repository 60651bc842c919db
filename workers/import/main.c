/*
 * Import worker: loads CSV/XLSX number files (jobs stream) with COPY. Joins its
 * consumer group and idles until the import work lands.
 */
#include "worker.h"

int main(void)
{
	static const struct worker_def def = {
	    .type = "import",
	    .stream = STREAM_JOBS_IMPORT,
	    .group = "import",
	    .needs_db = true,
	};
	return worker_main(&def);
}
