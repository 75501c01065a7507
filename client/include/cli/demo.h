/*
 * cli/demo.h - the built-in demo app (`azhexgate demo`): something to expose when nothing
 * listens on the port yet, and the origin of the end-to-end and browser tests.
 *
 * Routes (any other path: 404):
 *   GET  /             an HTML page that opens a WebSocket to /ws and an EventSource on
 *                      /events through whatever URL it was loaded from, and shows both states
 *                      (#ws-state, #ws-echo, #sse-state, #sse-count; body[data-ready="1"] once the
 *                      echo came back and three events arrived)
 *   GET  /ws           WebSocket echo (text and binary, any size up to 16 MiB per message)
 *   GET  /events       Server-Sent Events, one every `every` ms (query, default 500, min 10),
 *                      `count` events then the end (default: until the caller leaves)
 *   *    /echo         the request body streamed back (chunked), X-Echo-Method and the
 *                      request's Content-Type
 *   POST /sink         takes a body of any size (also PUT) and answers its length and FNV-1a
 *                      64 checksum, {"bytes":N,"fnv1a64":"<16 hex>"} (uploads without an echo)
 *   GET  /headers      the request head as JSON {"method","target","headers":[[name,value]…]}
 *   GET  /status/NNN   an empty NNN answer (200..599)
 *   GET  /delay/MS     200 after MS milliseconds (at most 600000)
 *   GET  /bytes/N      N bytes (at most 64 GiB) of a repeating pattern, Content-Length set,
 *                      streamed with backpressure
 *   GET  /healthz      "ok"
 *
 * Threading: loop thread only.
 */
#ifndef CLI_DEMO_H
#define CLI_DEMO_H

struct ahg_loop;
struct cli_demo;

struct cli_demo_opts {
    const char *iface; /* numeric bind address; NULL = 127.0.0.1 */
    int port;          /* 0 = any free port */
};

/* NULL with *err (AHG_EIO when the port is taken). */
struct cli_demo *cli_demo_new(struct ahg_loop *loop, const struct cli_demo_opts *opts, int *err);
int cli_demo_port(const struct cli_demo *d);
/* Call after ahg_loop_free() (the server lives as long as its loop, like every listener). */
void cli_demo_free(struct cli_demo *d);

#endif /* CLI_DEMO_H */
