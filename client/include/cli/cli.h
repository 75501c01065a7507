/*
 * cli/cli.h - the azhexgate command line: subcommands `start`, `config`, `completion` and
 * `version`.
 */
#ifndef CLI_CLI_H
#define CLI_CLI_H

/* Exit codes beyond the common ones of ahg/err.h (0 ok, 1 failure, 64 usage, 78 config);
 * values from sysexits.h. */
#define CLI_EXIT_API_REJECTED 65 /* the API refused the request (400, 404, 409 ...) */
#define CLI_EXIT_API_UNREACHABLE                                                                   \
    69                         /* the API URL cannot be reached (refused, DNS, TLS, timeout)       \
                                */
#define CLI_EXIT_API_ERROR  75 /* the API failed (5xx, 429): try again later */
#define CLI_EXIT_RELAY_AUTH 76 /* the relay refused the listener token (401/403) */
#define CLI_EXIT_API_AUTH   77 /* the API refused the API key (401/403) */

/* Runs the CLI; returns the process exit code. Installs the interrupt handlers for `start`.
 * Main thread only. */
int cli_main(int argc, char **argv);

#endif /* CLI_CLI_H */
