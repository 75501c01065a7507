/*
 * platform.h - everything of the client that depends on the operating system: signals (Ctrl+C),
 * config paths and directories, terminal detection, local time, numeric address checks, the
 * immediate exit. platform_posix.c implements it for Linux and macOS; a Windows port replaces
 * that one file (SetConsoleCtrlHandler, %APPDATA%, _isatty, ...).
 */
#ifndef CLI_PLATFORM_H
#define CLI_PLATFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

/* Called from the signal handler (async-signal-safe code only) with the number of interrupts
 * so far (Ctrl+C, SIGTERM; 1 for the first). */
typedef void (*cli_interrupt_fn)(unsigned count);

/* Routes Ctrl+C and termination requests to fn (NULL restores the defaults) and ignores broken
 * pipes. Main thread. */
void cli_platform_on_interrupt(cli_interrupt_fn fn);

/* Ends the process at once with code, without cleanup (async-signal-safe). */
void cli_platform_exit_now(int code);

/* The default config file: $XDG_CONFIG_HOME/azhexgate/config.yaml, else
 * ~/.config/azhexgate/config.yaml. Writes it into buf and returns buf, or NULL when there is no
 * home directory. */
char *cli_platform_config_path(char *buf, size_t n);

/* Creates the directory that holds path (and its parents) with owner-only permissions.
 * AHG_OK or AHG_EIO (errno kept). */
int cli_platform_mkdir_for(const char *path);

/* Writes data to path atomically (temporary file + rename), owner read/write only.
 * AHG_OK or AHG_EIO (errno kept). */
int cli_platform_write_private(const char *path, const char *data, size_t len);

/* True when f is an interactive terminal. */
bool cli_platform_is_tty(FILE *f);

/* Local time of t; false when unavailable. */
bool cli_platform_localtime(time_t t, struct tm *out);

/* Wall-clock time in milliseconds since the Unix epoch (token expiry checks). */
long long cli_platform_wall_ms(void);

/* ASCII case-insensitive comparison of at most n bytes (strncasecmp); 0 when equal. */
int cli_platform_strncasecmp(const char *a, const char *b, size_t n);

/* True when s is a numeric IPv4 or IPv6 address. */
bool cli_platform_is_numeric_addr(const char *s);

#endif /* CLI_PLATFORM_H */
