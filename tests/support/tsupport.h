/*
 * tests/support/tsupport.h - helpers for tests that run the real binaries as child processes:
 * free ports, spawning with output captured to a file, waiting for a line of output or for
 * the exit, a real redis-server, and a blocking HTTP client (libcurl) for the test thread.
 *
 * Test code only (linked into test executables, never into the product). Functions abort the
 * test (cmocka fail) on setup errors they cannot report otherwise.
 */
#ifndef AHG_TSUPPORT_H
#define AHG_TSUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A free TCP port on 127.0.0.1 (bound and released; racy only against other processes). */
int ts_free_port(void);

/* A scratch directory under $TMPDIR (or /tmp), removed by ts_rmtree. */
void ts_mkdtemp(char *out, size_t outsz, const char *tag);
void ts_rmtree(const char *dir);

struct ts_proc {
    pid_t pid;
    char out[512]; /* stdout and stderr go here */
    int status;    /* exit status once reaped (WEXITSTATUS or 128+signal) */
    bool reaped;
};

/*
 * Starts argv[0] (a path) with argv, stdout+stderr appended to outfile, env = this process'
 * environment plus env (NULL-terminated "NAME=value" list, may be NULL; same names override).
 */
void ts_spawn(struct ts_proc *p, const char *const argv[], const char *const env[],
              const char *outfile);
/* Waits until the output file contains needle; false on timeout or when the process exited
 * without printing it. */
bool ts_wait_output(struct ts_proc *p, const char *needle, unsigned ms);
/* The whole output so far (malloc'd, NUL-terminated; caller frees). */
char *ts_output(const struct ts_proc *p);
/* Waits for the exit; returns the status (exit code, or 128+signal), -1 on timeout. */
int ts_wait_exit(struct ts_proc *p, unsigned ms);
/* Sends sig (ignored when already reaped). */
void ts_signal(struct ts_proc *p, int sig);
/* SIGKILL + reap (no-op when already reaped). */
void ts_kill(struct ts_proc *p);
/* True while the process runs. */
bool ts_alive(struct ts_proc *p);
/* Waits until something accepts TCP connections on 127.0.0.1:port. */
bool ts_wait_port(int port, unsigned ms);

/* A real redis-server on 127.0.0.1 (port 0 = a free one), optionally with a password. */
struct ts_redis {
    struct ts_proc proc;
    int port;
    char dir[256];
    char password[64];
};
void ts_redis_start(struct ts_redis *r, int port, const char *password);
/* Stops it (SIGKILL) and removes its directory. */
void ts_redis_stop(struct ts_redis *r);
/* "redis://127.0.0.1:PORT" into out. */
void ts_redis_url(const struct ts_redis *r, char *out, size_t outsz);

/* ---- blocking HTTP client for the test thread ---- */

struct ts_resp {
    long status;   /* 0 when no answer (then err says why) */
    char *headers; /* the raw header block(s) */
    char *body;    /* NUL-terminated */
    size_t len;
    char err[256]; /* libcurl's message when status == 0 */
};

struct ts_req {
    const char *method;         /* NULL = GET */
    const char *url;            /* e.g. http://12345678.localhost:8080/path */
    const char *const *headers; /* NULL-terminated "Name: value" list, may be NULL */
    const void *body;
    size_t body_len;
    const char *connect_to; /* "127.0.0.1:PORT": connect here whatever the URL's host */
    const char *ca_file;    /* for https */
    unsigned timeout_ms;    /* 0 = 30 s */
};

/* Performs the request; the response is filled even for error statuses. */
void ts_http(const struct ts_req *q, struct ts_resp *r);
/* A header value of the last response block (case-insensitive name), malloc'd, or NULL. */
char *ts_resp_header(const struct ts_resp *r, const char *name);
void ts_resp_free(struct ts_resp *r);

#endif /* AHG_TSUPPORT_H */
