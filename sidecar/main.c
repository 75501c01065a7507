/*
 * main.c - azhexgate-sidecar: see sc/sidecar.h.
 */
#include <stdio.h>

#include "ahg/config.h"
#include "ahg/err.h"
#include "sc/sidecar.h"

int
main(int argc, char **argv)
{
    struct ahg_config_spec spec = {
        .prog = "azhexgate-sidecar",
        .summary = "AzHexGate tunnel sidecar for Kubernetes pods: exposes a port of the pod "
                   "through the relay (configured by AZHEXGATE_* variables and mounted files)",
        .opts = sc_opts,
        .nopts = sc_nopts,
    };
    struct ahg_config *cfg = NULL;
    char err[512] = "";
    int rc = ahg_config_load(&cfg, &spec, argc, argv, NULL, err, sizeof(err));
    if (rc != AHG_OK) {
        (void)fprintf(stderr, "azhexgate-sidecar: %s\n%s", err,
                      rc == AHG_EUSAGE ? "Try 'azhexgate-sidecar --help'.\n" : "");
        return ahg_err_exit_code(rc);
    }
    int code = ahg_config_run_builtin(cfg, &spec, stdout);
    if (code < 0)
        code = sc_run(cfg, NULL);
    ahg_config_free(cfg);
    return code;
}
