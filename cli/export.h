/*
 * `dialerctl export`: the numbers export (common/xlsxexport) run in this
 * process against DATABASE_URL, with a live progress display (issue 6 item 7).
 */
#ifndef DIALER_CLI_EXPORT_H
#define DIALER_CLI_EXPORT_H

/*
 * Runs the export with the arguments after "export" (argv[0] is "export").
 * Needs config_load() done (DATABASE_URL, TIMEZONE). Writes FILE.part next to
 * FILE and renames it when complete. Progress on stderr, the summary on
 * stdout. Returns the exit status: 0 done, 1 failed, 2 bad usage.
 */
int export_main(int argc, char **argv);

#define EXPORT_USAGE                                                                                              \
	"       dialerctl export --out FILE [--company ID|SLUG] [--status S] [--global-status S] [--search TEXT]" \
	" [--start-date YYYY-MM-DD] [--end-date YYYY-MM-DD] [--agent-id ID] [--sort-by F] [--sort-order asc|desc]\n"

#endif
