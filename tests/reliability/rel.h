/*
 * rel.h - shared pieces of the reliability suites: the real emulator binary as a child process
 * (every port 0, HCs hc1 and hc2, root key TH_KEY, debug logs), a test event loop for the
 * harness' WebSocket/HTTP clients, and process measurements (RSS).
 */
#ifndef AHG_REL_H
#define AHG_REL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "harness.h"
#include "tsupport.h"

struct rel {
    struct th t; /* loop, tick and port (the relay port) for the harness clients */
    struct ts_proc emu;
    char dir[256];
    char ready[320], log[320];
    int relay_port, mgmt_port, admin_port;
};

/* Creates the test loop (no emulator yet) and the scratch directory. */
void rel_init(struct rel *r, const char *tag);
/* Starts the emulator binary (AHG_REL_EMULATOR_BIN overrides the path) with extra flags
 * (NULL-terminated, may be NULL) and extra environment (may be NULL); waits for its ready file. */
void rel_emu_start(struct rel *r, const char *const *extra, const char *const *env);
/* SIGTERM to the emulator; asserts a clean exit (0: no leak reports), then frees the loop and
 * removes the scratch directory. */
void rel_finish(struct rel *r);
/* Resident set size of pid in KiB (0 when unknown). */
long rel_rss_kb(pid_t pid);
/* Open file descriptors of pid (-1 when unknown). */
long rel_fd_count(pid_t pid);
/* A gauge/counter of the emulator's /metrics (-1 when absent). */
long long rel_metric(struct rel *r, const char *name);
/* The same from the /metrics of any admin listener on 127.0.0.1:port. */
long long rel_metric_at(int port, const char *name);
/* True when AHG_LONG_TESTS=1 (longer variants). */
bool rel_long(void);
/* True when the file contains needle (binary-safe substring search). */
bool rel_file_has(const char *path, const char *needle);
/* Lines in the file (-1 when unreadable). */
long rel_count_lines(const char *path);

/* Opens a listener control channel on hc with token (ServiceBusAuthorization header). */
void rel_listen(struct rel *r, struct tws *c, const char *hc, const char *token);
/* n WebSocket clients; rel_settled(set) (a th_wait condition) is true once each of them is open,
 * failed or closed. */
struct rel_set {
    const struct tws *c;
    size_t n;
};
bool rel_settled(void *set);
/* A TCP connection to 127.0.0.1:port (connect in progress when nonblock); -1 with errno. */
int rel_tcp_connect(int port, bool nonblock);
/* Opens n non-blocking connections to 127.0.0.1:port into fds, in batches, each batch waited
 * for (connected) before the next; returns how many connected within ms (the rest of fds may
 * hold connections still in progress, or -1). */
size_t rel_open_conns(int port, int *fds, size_t n, unsigned ms);
/* What rel_await_408 saw on the connections of a slowloris/idle attack. */
struct rel_408 {
    size_t n408;      /* connections answered 408 */
    size_t slow408;   /* of those, slowloris ones (the first nslow) */
    size_t nclosed;   /* connections closed without an answer */
    size_t idle_open; /* idle ones (after the first nslow) neither answered nor closed */
    uint64_t
        all_done_ms; /* when the last connection was answered or closed; 0 if some never were */
};
/* Waits up to ms until each of the n connections fds (the first nslow: slowloris, a head that
 * never ends; the others: idle, never a byte) got an answer or was closed. */
void rel_await_408(const int *fds, size_t n, size_t nslow, unsigned ms, struct rel_408 *out);
/* GET http://127.0.0.1:port<path>: the status, 0 when no answer. */
long rel_get_status(int port, const char *path);

/* A TLS handshake with 127.0.0.1:port offering exactly version ver (TLS1_VERSION...; security
 * level 0, so old versions are really offered): 0 on success, else the OpenSSL reason code of
 * the failure (why gets its text). */
int rel_tls_try(int port, int ver, char *why, size_t whylen);
/* Offers TLS 1.0, 1.1, 1.2 and 1.3 in turn to 127.0.0.1:port (printing each outcome as
 * "rel: tls <name> <version> -> ..."); fails the test unless 1.2 and 1.3 succeed and 1.0 and
 * 1.1 end with the server's protocol_version alert (not a local refusal). */
void rel_tls_expect_min_12(const char *name, int port);
/* Raises RLIMIT_NOFILE to at least want; false when impossible. */
bool rel_raise_nofile(unsigned long want);

#endif /* AHG_REL_H */
