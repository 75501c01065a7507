/*
 * Fuzzes the YAML config loader: the input is the config file (one scratch file under $TMPDIR,
 * rewritten for every input and removed at exit, passed as --config) against a table with every
 * option type, a secret, a required option and a validator; a loaded config is printed to /dev/null
 * (the escaping path).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ahg/config.h"
#include "ahg/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
validate_host(const char *value, char *err, size_t errlen)
{
    if (strchr(value, ' ')) {
        (void)snprintf(err, errlen, "host must not contain spaces");
        return AHG_ECONFIG;
    }
    return AHG_OK;
}

static const struct ahg_opt_def fz_opts[] = {
    {.name = "listen.port", .type = AHG_OPT_INT, .def = "8080", .min = 1, .max = 65535},
    {.name = "listen.host", .type = AHG_OPT_STRING, .validate = validate_host},
    {.name = "relay.endpoint", .type = AHG_OPT_STRING, .flags = AHG_OPT_REQUIRED},
    {.name = "relay.api_key", .type = AHG_OPT_STRING, .flags = AHG_OPT_SECRET},
    {.name = "relay.hc.name", .type = AHG_OPT_STRING},
    {.name = "log_format", .type = AHG_OPT_ENUM, .choices = "json|text", .def = "json"},
    {.name = "tls", .type = AHG_OPT_BOOL, .def = "false"},
    {.name = "timeout", .type = AHG_OPT_DURATION, .def = "30s", .min = 100, .max = 3600000},
    {.name = "grace", .type = AHG_OPT_DURATION},
    {.name = "max_body", .type = AHG_OPT_SIZE, .def = "64MiB", .min = 1024, .max = 1LL << 30},
    {.name = "cache_size", .type = AHG_OPT_SIZE},
    {.name = "tags", .type = AHG_OPT_LIST},
    {.name = "routes.allow", .type = AHG_OPT_LIST, .def = "a,b"},
    {.name = "retries", .type = AHG_OPT_INT},
};

static const struct ahg_config_spec fz_spec = {
    .prog = "azhexgate-fuzz",
    .summary = "Config loader fuzz target.",
    .opts = fz_opts,
    .nopts = sizeof fz_opts / sizeof fz_opts[0],
};

static int fd = -1;
static char path[256];
static FILE *devnull;

static void
remove_scratch(void)
{
    (void)unlink(path);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fd < 0) {
        const char *tmp = getenv("TMPDIR");
        (void)snprintf(path, sizeof(path), "%s/fuzz-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        fd = mkstemp(path);
        devnull = fopen("/dev/null", "w");
        if (fd < 0 || !devnull)
            __builtin_trap();
        (void)atexit(remove_scratch);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
        __builtin_trap();
    char *const argv[] = {"azhexgate-fuzz", "--config", path, NULL};
    char *const envp[] = {NULL};
    struct ahg_config *cfg = NULL;
    char err[512];
    int rc = ahg_config_load(&cfg, &fz_spec, 3, argv, envp, err, sizeof(err));
    if (rc == AHG_OK) {
        if (!cfg)
            __builtin_trap();
        ahg_config_print(cfg, devnull);
        const char *const *items = NULL;
        (void)ahg_config_list(cfg, "tags", &items);
        (void)ahg_config_int(cfg, "max_body");
        (void)ahg_config_str(cfg, "relay.api_key");
        ahg_config_free(cfg);
    } else if (cfg || !memchr(err, '\0', sizeof(err))) {
        __builtin_trap();
    }
    return 0;
}
