/*
 * azhexgate-emulator: runs the emulator of Azure Relay Hybrid Connections, the Microsoft.Relay
 * ARM subset, managed identity and Key Vault on loopback.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ahg/config.h"
#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/net.h"
#include "emu/emulator.h"

static const struct ahg_opt_def common_opts[] = {
    AHG_OPTS_LOG("text"),
};

static struct ahg_loop *the_loop;

static void
on_signal(int sig)
{
    (void)sig;
    if (the_loop)
        ahg_loop_stop(the_loop);
}

int
main(int argc, char **argv)
{
    size_t n = sizeof(common_opts) / sizeof(common_opts[0]) + emu_nopts;
    struct ahg_opt_def *opts = calloc(n, sizeof(*opts));
    if (!opts)
        return AHG_EXIT_FAILURE;
    memcpy(opts, common_opts, sizeof(common_opts));
    memcpy(opts + sizeof(common_opts) / sizeof(common_opts[0]), emu_opts,
           emu_nopts * sizeof(*opts));
    struct ahg_config_spec spec = {
        .prog = "azhexgate-emulator",
        .summary = "Local emulator of Azure Relay Hybrid Connections, Microsoft.Relay ARM, "
                   "managed identity and Key Vault",
        .opts = opts,
        .nopts = n,
    };
    struct ahg_config *cfg = NULL;
    int code = ahg_config_main(&cfg, &spec, argc, argv);
    if (code >= 0) {
        free(opts);
        return code;
    }
    ahg_config_log_setup(cfg, "emulator", AHG_LOG_FORMAT_TEXT);
    char err[512] = "";

    the_loop = ahg_loop_new(NULL);
    if (!the_loop) {
        AHG_LOG_ERROR("cannot create the event loop");
        ahg_config_free(cfg);
        free(opts);
        return AHG_EXIT_FAILURE;
    }
    struct emu *e = emu_new(the_loop, cfg, err, sizeof(err));
    if (!e) {
        AHG_LOG_ERROR("%s", err);
        ahg_loop_free(the_loop);
        ahg_config_free(cfg);
        free(opts);
        return AHG_EXIT_FAILURE;
    }
    const char *ready = ahg_config_str(cfg, "emulator.ready_file");
    if (ready && emu_write_ready_file(e, ready) != AHG_OK)
        AHG_LOG_WARN("cannot write the ready file %s", ready);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    ahg_loop_run(the_loop);
    AHG_LOG_INFO("emulator stopping");
    ahg_loop_free(the_loop);
    emu_free(e);
    ahg_config_free(cfg);
    free(opts);
    return AHG_EXIT_OK;
}
