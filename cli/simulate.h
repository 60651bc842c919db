/*
 * `dialerctl simulate`: a call center played against the API, for demos and
 * smoke tests (issue 5 item 5).
 */
#ifndef DIALER_SIMULATE_H
#define DIALER_SIMULATE_H

/*
 * Runs the simulator with the arguments after "simulate" (argv[0] is
 * "simulate"). Needs config_load() done: PORT and DIALER_TOKEN are its
 * defaults. Prints a live line each second and a summary on stdout, errors on
 * stderr. Returns the exit status: 0 when the run completed, 1 when the API
 * refused it (token, company, size) or never answered, 2 on bad usage.
 */
int simulate_main(int argc, char **argv);

/* The usage lines for dialerctl's help. */
#define SIMULATE_USAGE                                                                                     \
	"       dialerctl simulate --rate N --duration S [--size B] [--url URL] [--token T] [--company C]" \
	" [--concurrency K] [--seed X]\n"

#endif
