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
 * A child still running when the test program exits (e.g. after a failed test) is killed then.
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

/* Waits until path exists (ready files are written atomically); false on timeout. */
bool ts_wait_file(const char *path, unsigned ms);
/* The integer value of the "key=value" line of a ready file; -1 when absent. */
int ts_ready_value(const char *path, const char *key);

/* The all-in-one server (azhexgate-server: emulator + controller + gateway, in-memory store). */
struct ts_server {
    struct ts_proc proc;
    int public_port, relay_port;
    char api_key_file[320]; /* the generated API key (--api-key-out) */
    char api_url[128];      /* http://api.localhost:PORT */
};
/* Starts bin on a free public port (every other port 0) with its log, ready file and API key in
 * dir, plus extra args (NULL-terminated, may be NULL), and waits until it is ready (fails the
 * test with its output otherwise). Stop it with ts_kill(&s->proc). */
void ts_server_start(struct ts_server *s, const char *bin, const char *dir,
                     const char *const *extra);

/* A real redis-server on 127.0.0.1 (port 0 = a free one), optionally with a password, DEBUG
 * allowed from local connections. Starting it again on its own port after ts_redis_stop (a
 * restart) keeps its directory name. */
struct ts_redis {
    struct ts_proc proc;
    int port;
    char dir[256];
    char password[64];
};
void ts_redis_start(struct ts_redis *r, int port, const char *password);
/* The same with the append-only file on (appendfsync everysec): a server killed with SIGKILL and
 * started again on its port (after ts_kill(&r->proc), not ts_redis_stop) still has every write
 * it acknowledged. */
void ts_redis_start_aof(struct ts_redis *r, int port, const char *password);
/* The same with TLS only on the port: server.pem, server.key and ca.pem from certs_dir, no
 * client certificates. */
void ts_redis_start_tls(struct ts_redis *r, int port, const char *password, const char *certs_dir);
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
