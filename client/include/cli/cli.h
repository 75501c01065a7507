/*
 * cli/cli.h - the azhexgate command line: subcommands `start` and `version`.
 */
#ifndef CLI_CLI_H
#define CLI_CLI_H

/* Runs the CLI; returns the process exit code (0, 64 usage, 78 config, 1 failure). Installs
 * SIGINT/SIGTERM handlers for `start`. Main thread only. */
int cli_main(int argc, char **argv);

#endif /* CLI_CLI_H */
