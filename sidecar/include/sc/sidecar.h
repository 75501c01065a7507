/*
 * sc/sidecar.h - azhexgate-sidecar: the tunnel client for Kubernetes pods. Configured only by
 * the environment (AZHEXGATE_*) and mounted files (*_FILE secrets, an optional YAML file named
 * by AZHEXGATE_CONFIG); a local admin listener (/healthz, /readyz, /metrics); JSON logs; a
 * SIGTERM drain that releases the tunnel; reconnects forever. See docs/sidecar.md.
 */
#ifndef SC_SIDECAR_H
#define SC_SIDECAR_H

#include <stddef.h>

#include "ahg/config.h"

/* The option table (ahg/config.h); every option is environment/file only (no flags). */
extern const struct ahg_opt_def sc_opts[];
extern const size_t sc_nopts;

/* Longest DNS label. */
#define SC_LABEL_MAX 63

/*
 * The subdomain derived from the pod: "<pod name, made a DNS label, cut>-<8 hex of
 * SHA-256(namespace "/" pod)>", lower case, at most 63 characters, [a-z0-9-], never starting
 * or ending with '-'. The same pod name and namespace always give the same label (a
 * restarted pod keeps its URL); pods of different namespaces differ. ns may be NULL or "".
 * out must hold SC_LABEL_MAX + 1 bytes. AHG_OK, or AHG_EINVAL (no pod name, out too small).
 * Pure; any thread.
 */
int sc_derive_subdomain(const char *pod, const char *ns, char *out, size_t outsz);

/* True when s is a DNS label: 1-63 of [a-z0-9-] (lower case), not starting or ending with '-'. */
int sc_label_ok(const char *s);

/*
 * Runs the sidecar with a loaded configuration until SIGTERM/SIGINT has drained it; returns
 * the exit code (0 after a drain, 78 for configuration errors found at start, 1 otherwise).
 * envp supplies the Kubernetes fallbacks POD_NAME, HOSTNAME and POD_NAMESPACE (NULL = the
 * process environment). Installs the signal handlers. Main thread only.
 */
int sc_run(const struct ahg_config *cfg, char *const envp[]);

#endif /* SC_SIDECAR_H */
