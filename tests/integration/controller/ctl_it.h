/*
 * ctl_it.h - integration harness for the controller: the emulator in-process (the emulator
 * suite's harness: relay, ARM, identity on 127.0.0.1), a real redis-server, and up to three
 * controllers on the same loop, each with its own Redis connection and API listener (so they
 * behave as separate replicas). Requests go through ahg/egress.h (libcurl on a thread) while
 * the test runs the loop.
 */
#ifndef CTL_IT_H
#define CTL_IT_H

#include <stdbool.h>
#include <stddef.h>

#include "ahg/store.h"
#include "ctl/controller.h"
#include "harness.h"
#include "tsupport.h"

#define CIT_KEY_A "key-alpha-0123456789"
#define CIT_KEY_B "key-bravo-0123456789"
#define CIT_MAX   3

struct cit_ctl {
    struct ahg_ctl *ctl;
    struct ahg_store *store;
    struct ahg_httpd *api;
    int port;
    struct ahg_ctl_opts o;
    char endpoint[128], arm[128], identity[160], replica[32];
};

struct cit {
    struct th t;
    struct ts_redis redis;
    char redis_url[128];
    struct ahg_egress *eg;
    struct ahg_store *store; /* the test's own view of Redis */
    struct cit_ctl c[CIT_MAX];
};

struct cit_resp {
    int status;
    char *body;
    char *headers;
    bool done;
};

/* Starts the emulator (extra flags may be NULL) and redis-server. */
void cit_start(struct cit *c, const char *const *emu_extra);
void cit_stop(struct cit *c);
/* Options every controller gets (emulator endpoints, keys CIT_KEY_A/B), adjusted by tweak. */
void cit_ctl_start(struct cit *c, int i, void (*tweak)(struct ahg_ctl_opts *o));
/* Frees controller i (drain first when drain is true, which releases its lease). */
void cit_ctl_stop(struct cit *c, int i, bool drain);

/* A request to controller i's API; key NULL = no header. Waits up to 30 s. */
void cit_req(struct cit *c, int i, const char *method, const char *path, const char *key,
             const char *body, const char *const *extra_headers, struct cit_resp *r);
void cit_resp_free(struct cit_resp *r);
/* A string member of the JSON body (malloc'd) or NULL. */
char *cit_json_str(const struct cit_resp *r, const char *member);
/* The error code of an error body, into out. */
const char *cit_err_code(const struct cit_resp *r, char *out, size_t outsz);

/* Store helpers (wait for the answer): GET as a malloc'd string or NULL; SCARD. */
char *cit_get(struct cit *c, const char *key);
long long cit_scard(struct cit *c, const char *key);
void cit_set(struct cit *c, const char *key, const char *val, unsigned long long px);
void cit_del(struct cit *c, const char *key);

/* True when the emulator has an HC of this name. */
bool cit_hc_exists(struct cit *c, const char *name);
/* Listener with token on hc: true when the control channel opens (then closed again). */
bool cit_listen(struct cit *c, const char *hc, const char *token);
/* The same, leaving the listener w open (tws_free(w) closes it). */
bool cit_listen_open(struct cit *c, struct tws *w, const char *hc, const char *token);

#endif /* CTL_IT_H */
