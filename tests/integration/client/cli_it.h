/*
 * cli_it.h - shared pieces of the client integration tests: a local test app (echo, fixed
 * sizes, chunked, SSE, WebSocket echo) and a sender that connects to the relay with
 * sb-hc-action=connect and speaks raw HTTP/1.1 in binary frames, as the gateway will.
 */
#ifndef CLI_IT_H
#define CLI_IT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ahg/http.h"
#include "ahg/httpd.h"
#include "ahg/wsconn.h"
#include "harness.h"
#include "tbody.h"
#include "tsupport.h"

/* Generated bodies: tb_pat, tb_fnv, tb_pat_sum (tbody.h). */

/* The local app on t's loop: /echo (anything else too), /size/N, /chunked, /sse, /ws. */
struct app {
    struct ahg_httpd *srv;
    int port;
    unsigned requests;
};
void app_start(struct th *t, struct app *a);

struct snd {
    struct th *t;
    char hc[64];
    struct ahg_wsconn *ws;
    bool open, failed, gone;
    int fail_status;
    struct ahg_http_parser *p;
    bool head_done, done, raw;
    int status;
    char xmethod[16];
    char xhost[128]; /* the Host the local app saw (X-Host) */
    uint64_t body_bytes, sum;
    unsigned arrivals;
    uint64_t first_ms, last_ms;
    char body[4096];
    size_t blen;
    unsigned char rawbuf[1024];
    size_t rawlen;
    uint64_t up_total, up_off;
    bool up_chunked;
};

/* Connects a sender to t's relay port for HC hc; true when the upgrade succeeded. */
bool snd_connect(struct th *t, struct snd *s, const char *hc);
/* Sends a request (a generated body of size bytes, chunked or with Content-Length) and waits
 * for the whole response (fails the test after 60 s). */
void snd_request(struct snd *s, const char *method, const char *path, uint64_t size, bool chunked);
/* Runs t's loop until the response (or a 101) arrived or the connection is gone. */
bool snd_wait(struct snd *s, unsigned ms);
void snd_free(struct snd *s);
/* n senders on t's relay port for HC hc at once, each asking GET /size/(1000 + i); fails the
 * test unless every one gets 200 and its generated body within ms. */
void snd_concurrent(struct th *t, const char *hc, int n, unsigned ms);

/* ---- child processes: the azhexgate and emulator binaries ---- */

#include <sys/types.h>

struct px {
    struct th t; /* only loop, port and tick are used */
    struct app app;
    char dir[64];
    char ready[128], emu_out[128], cli_out[128];
    pid_t emu, cli;
    const char *emu_flag; /* one extra emulator flag, or NULL */
};

/* cmocka setup/teardown: a test loop with a tick, a free relay port, the local app; kills the
 * children at the end. */
int px_setup(void **state);
int px_teardown(void **state);
/* Forks and execs argv with stdout and stderr appended to out. */
pid_t spawn(const char *const argv[], const char *out);
bool file_has(const char *path, const char *needle);
/* Runs p's loop until the file contains needle (true) or ms passed. */
bool wait_file(struct px *p, const char *path, const char *needle, unsigned ms);
/* The child's exit status (128+signal when killed), or -1 after ms; runs p's loop meanwhile. */
int wait_exit(struct px *p, pid_t pid, unsigned ms);
/* Starts the emulator binary on p->t.port with HC hc1 and waits until it is ready. */
void emu_start(struct px *p);
/* Runs azhexgate with args (NULL-terminated) to completion; its exit code (output in out). */
int run_cli(const char *out, const char *const *args);
/* The same, running p's loop meanwhile (in-process servers keep answering). */
int run_cli_in(struct px *p, const char *out, const char *const *args);

/* ---- the stand-in management API ----
 * A small ahg_httpd on the test loop speaking the management API of docs/state.md, standing in
 * for the controller (another component) until it lands: POST /api/tunnels hands out the
 * emulator's pre-created HC "hc1" with a real SAS token signed with the emulator's key,
 * POST /api/tunnels/{sid}/token signs a new one, DELETE counts releases. The key is
 * STANDIN_KEY; anything else is 401. */
#define STANDIN_KEY "test-api-key-0123456789"
#define STANDIN_SID "0123456789abcdef0123456789abcdef"

struct standin_api {
    struct ahg_httpd *srv;
    int port;
    int relay_port;
    const char *relay_host; /* host name in relay_endpoint ("relay.localhost") */
    long long token_secs;   /* listener token lifetime */
    int fail_status;        /* answer POST /api/tunnels with this status when not 0 */
    bool renew_gone;        /* answer renewals with 404 (the session expired) */
    unsigned creates, renews, deletes;
    char last_body[2048];
    size_t blen;
    char last_key[128];
};

void standin_api_start(struct th *t, struct standin_api *s, int relay_port);

#endif /* CLI_IT_H */
