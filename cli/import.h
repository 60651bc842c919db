/*
 * `dialerctl import FILE [--company NAME|ID]`: queues an import job directly (PostgreSQL + Redis,
 * no API login), then follows its progress until it ends.
 */
#ifndef DIALER_CLI_IMPORT_H
#define DIALER_CLI_IMPORT_H

/*
 * Runs the command with the arguments after "import" (argv[0] is "import"). Needs config_load()
 * done. Copies FILE into DATA_DIR/uploads (so it must run where the import workers see DATA_DIR),
 * creates the job and shows a live progress bar (percent, rows/s, ETA) on a terminal, a plain
 * line a second otherwise; prints the ImportResult JSON on stdout at the end. Returns 0 when the
 * job completed, 1 when it failed or could not be created, 2 on bad usage.
 */
int import_main(int argc, char **argv);

#define IMPORT_USAGE "       dialerctl import FILE [--company NAME|ID]\n"

#endif
