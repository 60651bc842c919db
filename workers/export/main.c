/*
 * Export worker: writes XLSX exports (jobs stream) with libxlsxwriter. Joins its
 * consumer group and idles until the export work lands.
 */
#include "worker.h"

int main(void)
{
	static const struct worker_def def = {
	    .type = "export",
	    .stream = STREAM_JOBS_EXPORT,
	    .group = "export",
	    .needs_db = true,
	};
	return worker_main(&def);
}
