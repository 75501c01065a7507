/*
 * cli.c - the azhexgate command line (cli/cli.h): the option table of `start` (also the keys of
 * the config file), the subcommands `config show|set`, `completion bash|zsh|fish` and `version`,
 * and the dispatch to start.c.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ahg/config.h"
#include "ahg/err.h"
#include "cli_int.h"
#include "platform.h"

#define PROG "azhexgate"
/* Longest config file `config set` rewrites. */
#define CONFIG_EDIT_MAX ((size_t)256 * 1024)

static int
validate_host(const char *v, char *err, size_t errlen)
{
    if (!strcmp(v, "localhost") || cli_platform_is_numeric_addr(v))
        return AHG_OK;
    (void)snprintf(err, errlen, "expected a numeric IP address or localhost");
    return AHG_ECONFIG;
}

static int
validate_endpoint(const char *v, char *err, size_t errlen)
{
    if (!v[0] || !strncmp(v, "ws://", 5) || !strncmp(v, "wss://", 6))
        return AHG_OK;
    (void)snprintf(err, errlen, "expected a ws:// or wss:// URL");
    return AHG_ECONFIG;
}

static int
validate_api_url(const char *v, char *err, size_t errlen)
{
    if (!v[0] || !strncmp(v, "http://", 7) || !strncmp(v, "https://", 8))
        return AHG_OK;
    (void)snprintf(err, errlen, "expected an http:// or https:// URL");
    return AHG_ECONFIG;
}

static int
validate_subdomain(const char *v, char *err, size_t errlen)
{
    size_t n = strlen(v);
    bool ok = n <= 63 && (n == 0 || (v[0] != '-' && v[n - 1] != '-'));
    for (size_t i = 0; ok && i < n; i++)
        ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '-';
    if (ok)
        return AHG_OK;
    (void)snprintf(err, errlen,
                   "expected a DNS label: 1-63 of a-z 0-9 '-', not starting or ending with '-'");
    return AHG_ECONFIG;
}

static int
validate_basic_auth(const char *v, char *err, size_t errlen)
{
    const char *c = strchr(v, ':');
    if (!v[0] || (c && c != v && c[1]))
        return AHG_OK;
    (void)snprintf(err, errlen, "expected user:password");
    return AHG_ECONFIG;
}

static int
validate_cidr(const char *v, char *err, size_t errlen)
{
    char addr[64];
    const char *slash = strchr(v, '/');
    size_t n = slash ? (size_t)(slash - v) : strlen(v);
    bool ok = n > 0 && n < sizeof(addr);
    if (ok) {
        memcpy(addr, v, n);
        addr[n] = 0;
        ok = cli_platform_is_numeric_addr(addr);
    }
    if (ok && slash) {
        char *end = NULL;
        long bits = strtol(slash + 1, &end, 10);
        ok = slash[1] && end && !*end && bits >= 0 && bits <= (strchr(addr, ':') ? 128 : 32);
    }
    if (ok)
        return AHG_OK;
    (void)snprintf(err, errlen, "expected an address or CIDR block, e.g. 203.0.113.0/24");
    return AHG_ECONFIG;
}

static int
validate_host_header(const char *v, char *err, size_t errlen)
{
    if (v[0] && !strpbrk(v, " \t\r\n") && strlen(v) < 256)
        return AHG_OK;
    (void)snprintf(err, errlen, "expected preserve, rewrite or a host[:port] value");
    return AHG_ECONFIG;
}

static const struct ahg_opt_def start_opts[] = {
    {.name = "port",
     .short_flag = 'p',
     .type = AHG_OPT_INT,
     .min = 1,
     .max = 65535,
     .metavar = "PORT",
     .help = "Local port to expose.",
     .flags = AHG_OPT_REQUIRED},
    {.name = "local_host",
     .type = AHG_OPT_STRING,
     .def = "127.0.0.1",
     .metavar = "ADDR",
     .help = "Address of the local service (numeric; localhost means 127.0.0.1).",
     .validate = validate_host},
    {.name = "api_url",
     .type = AHG_OPT_STRING,
     .metavar = "URL",
     .help = "Management API base URL, e.g. https://api.example.com.",
     .validate = validate_api_url},
    {.name = "api_key",
     .type = AHG_OPT_STRING,
     .metavar = "KEY",
     .help = "API key for the management API.",
     .flags = AHG_OPT_SECRET},
    {.name = "api_ca_file",
     .type = AHG_OPT_STRING,
     .metavar = "FILE",
     .help = "CA bundle (PEM) to verify the management API's certificate with (tests)."},
    {.name = "subdomain",
     .type = AHG_OPT_STRING,
     .metavar = "NAME",
     .help = "Ask for this subdomain instead of a random one.",
     .validate = validate_subdomain},
    {.name = "basic_auth",
     .type = AHG_OPT_STRING,
     .metavar = "USER:PASS",
     .help = "Require HTTP basic authentication on the public URL.",
     .validate = validate_basic_auth,
     .flags = AHG_OPT_SECRET},
    {.name = "allow_cidr",
     .type = AHG_OPT_LIST,
     .metavar = "CIDR",
     .help = "Only let callers from this address block in (repeatable).",
     .validate = validate_cidr},
    {.name = "host_header",
     .type = AHG_OPT_STRING,
     .def = "preserve",
     .metavar = "preserve|rewrite|VALUE",
     .help = "Host header sent to the local service: as the caller sent it, the local "
             "host:port, or VALUE.",
     .validate = validate_host_header},
    {.name = "relay_endpoint",
     .type = AHG_OPT_STRING,
     .metavar = "URL",
     .help = "Advanced/testing: connect to this relay (ws:// or wss://) directly instead of "
             "asking the management API.",
     .validate = validate_endpoint},
    {.name = "hybrid_connection",
     .type = AHG_OPT_STRING,
     .metavar = "NAME",
     .help = "Advanced/testing: the Hybrid Connection to listen on (with --relay-endpoint)."},
    {.name = "listener_token",
     .type = AHG_OPT_STRING,
     .metavar = "TOKEN",
     .help = "Advanced/testing: listener SAS token (with --relay-endpoint).",
     .flags = AHG_OPT_SECRET},
    {.name = "relay_ca_file",
     .type = AHG_OPT_STRING,
     .metavar = "FILE",
     .help = "Extra CA bundle (PEM) to verify wss:// relay certificates with (tests)."},
    {.name = "relay_insecure",
     .type = AHG_OPT_BOOL,
     .def = "false",
     .help = "Skip certificate checks on wss:// (tests only)."},
    {.name = "drain_timeout",
     .type = AHG_OPT_DURATION,
     .def = "5s",
     .min = 0,
     .max = 3600000,
     .help = "How long in-flight requests may finish after Ctrl+C."},
    {.name = "keepalive",
     .type = AHG_OPT_DURATION,
     .def = "30s",
     .min = 100,
     .max = 3600000,
     .help = "Interval of keep-alive pings on the control channel."},
    {.name = "log_format",
     .type = AHG_OPT_ENUM,
     .def = "text",
     .choices = "text|json",
     .help = "Log format."},
    {.name = "quiet",
     .short_flag = 'q',
     .type = AHG_OPT_BOOL,
     .def = "false",
     .help = "Print only warnings and errors."},
};

#define NOPTS (sizeof(start_opts) / sizeof(start_opts[0]))

static const struct ahg_opt_def demo_opts[] = {
    {.name = "port",
     .short_flag = 'p',
     .type = AHG_OPT_INT,
     .def = "3000",
     .min = 0,
     .max = 65535,
     .metavar = "PORT",
     .help = "Port to serve the demo app on (0 = any free port).",
     .env = ""},
    {.name = "listen",
     .type = AHG_OPT_STRING,
     .def = "127.0.0.1",
     .metavar = "ADDR",
     .help = "Numeric address to listen on.",
     .env = "",
     .validate = validate_host},
};

static int
cmd_demo(int argc, char **argv)
{
    static const struct ahg_config_spec spec = {
        .prog = PROG " demo",
        .summary =
            "Serve the built-in demo app: a page with a WebSocket and an SSE stream, and "
            "/echo /sink /headers /status/N /delay/MS /bytes/N /healthz, to expose when nothing "
            "else listens yet.",
        .usage = "[--port PORT] [--listen ADDR]",
        .opts = demo_opts,
        .nopts = sizeof(demo_opts) / sizeof(demo_opts[0]),
        .default_file = "",
    };
    struct ahg_config *cfg = NULL;
    char err[512] = "";
    int rc = ahg_config_load(&cfg, &spec, argc, argv, NULL, err, sizeof(err));
    if (rc != AHG_OK) {
        (void)fprintf(stderr, PROG " demo: %s\n", err);
        return ahg_err_exit_code(rc);
    }
    int code = ahg_config_run_builtin(cfg, &spec, stdout);
    if (code < 0)
        code = cli_run_demo(cfg);
    ahg_config_free(cfg);
    return code;
}

static void
usage(FILE *out)
{
    (void)fprintf(out, "Usage: " PROG " <command> [OPTIONS]\n\n"
                       "Expose a local port through an AzHexGate tunnel.\n\n"
                       "Commands:\n"
                       "  start        Start a tunnel to a local port (" PROG " start --help)\n"
                       "  config       Show or change the config file (" PROG " config --help)\n"
                       "  completion   Print a shell completion script: bash, zsh or fish\n"
                       "  demo         Serve the built-in demo app (" PROG " demo --help)\n"
                       "  version      Print the version\n\n"
                       "Example:\n"
                       "  " PROG " config set api_url https://api.example.com\n"
                       "  " PROG " config set api_key KEY\n"
                       "  " PROG " start --port 3000\n");
}

/* What a loaded configuration borrows (ahg_config_load): it must outlive the configuration. */
struct loadctx {
    struct ahg_opt_def opts[NOPTS];
    struct ahg_config_spec spec;
    char path[1024];
};

/* Loads the configuration with the start table; `required` keeps the REQUIRED flags (start)
 * or drops them (config show). */
static int
load(struct ahg_config **cfg, struct loadctx *lc, const char *prog, const char *summary,
     const char *usage_line, int argc, char **argv, bool required)
{
    memcpy(lc->opts, start_opts, sizeof(start_opts));
    if (!required)
        for (size_t i = 0; i < NOPTS; i++)
            lc->opts[i].flags &= ~AHG_OPT_REQUIRED;
    struct ahg_config_spec spec = {
        .prog = prog,
        .summary = summary,
        .usage = usage_line,
        .opts = lc->opts,
        .nopts = NOPTS,
        .default_file = cli_platform_config_path(lc->path, sizeof(lc->path)),
    };
    lc->spec = spec;
    char err[1024] = "";
    int rc = ahg_config_load(cfg, &lc->spec, argc, argv, NULL, err, sizeof(err));
    if (rc != AHG_OK) {
        (void)fprintf(stderr, "%s: %s\n", prog, err);
        return ahg_err_exit_code(rc);
    }
    return ahg_config_run_builtin(*cfg, &lc->spec, stdout);
}

static int
cmd_start(int argc, char **argv)
{
    struct loadctx lc;
    struct ahg_config *cfg = NULL;
    int code = load(&cfg, &lc, PROG " start",
                    "Expose a local port through the relay: asks the management API for a tunnel, "
                    "prints its public URL and forwards every request to the local port.",
                    "--port PORT [--api-url URL] [--api-key KEY] [OPTIONS]", argc, argv, true);
    if (code < 0)
        code = cli_run_start(cfg);
    ahg_config_free(cfg);
    return code;
}

/* ---- config ---- */

static void
config_usage(FILE *out)
{
    char path[1024];
    const char *p = cli_platform_config_path(path, sizeof(path));
    (void)fprintf(out,
                  "Usage: " PROG " config show [--config FILE]\n"
                  "       " PROG " config set KEY VALUE [--config FILE]\n\n"
                  "Show the effective settings of `" PROG " start` (flags > AZHEXGATE_* "
                  "environment > config file > defaults; secrets redacted), or write one key\n"
                  "into the config file (default %s; $XDG_CONFIG_HOME honoured;\n"
                  "AZHEXGATE_CONFIG or --config FILE choose another).\n\nKeys:\n",
                  p ? p : "~/.config/azhexgate/config.yaml");
    for (size_t i = 0; i < NOPTS; i++)
        (void)fprintf(out, "  %-18s %s\n", start_opts[i].name, start_opts[i].help);
    (void)fprintf(out,
                  "\nSecrets (api_key, basic_auth, listener_token) can also be kept in a file:\n"
                  "KEY_file PATH (e.g. api_key_file); setting one form removes the other.\n"
                  "\nExample:\n  " PROG " config set api_key KEY\n");
}

static const struct ahg_opt_def *
find_key(const char *key, char *norm, size_t n)
{
    (void)snprintf(norm, n, "%s", key);
    for (char *c = norm; *c; c++)
        if (*c == '-')
            *c = '_';
    for (size_t i = 0; i < NOPTS; i++)
        if (!strcmp(start_opts[i].name, norm))
            return &start_opts[i];
    return NULL;
}

/* A YAML double-quoted scalar of v. */
static void
yaml_quote(const char *v, char *out, size_t n)
{
    size_t o = 0;
    if (n < 3)
        return;
    out[o++] = '"';
    for (; *v && o + 5 < n; v++) {
        unsigned char c = (unsigned char)*v;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, n - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = 0;
}

/* The config file's text without the top-level lines of key and key_file (and their
 * continuation lines): a secret is set directly or from a file, never both. */
static char *
read_without_key(const char *path, const char *key, size_t *len, int *rc)
{
    *rc = AHG_OK;
    *len = 0;
    char *out = malloc(CONFIG_EDIT_MAX + 1);
    if (!out) {
        *rc = AHG_ENOMEM;
        return NULL;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno != ENOENT)
            *rc = AHG_EIO;
        out[0] = 0;
        return out;
    }
    char line[8192];
    bool skipping = false;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f)) {
        bool top = line[0] != ' ' && line[0] != '\t' && line[0] != '-' && line[0] != '\n' &&
                   line[0] != '#';
        if (top)
            skipping =
                !strncmp(line, key, kl) &&
                (line[kl] == ':' || (!strncmp(line + kl, "_file", 5) && line[kl + 5] == ':'));
        else if (line[0] == '#' || line[0] == '\n')
            skipping = false;
        if (skipping)
            continue;
        size_t ln = strlen(line);
        if (*len + ln > CONFIG_EDIT_MAX) {
            *rc = AHG_ELIMIT;
            break;
        }
        memcpy(out + *len, line, ln);
        *len += ln;
    }
    (void)fclose(f);
    if (*len && out[*len - 1] != '\n')
        out[(*len)++] = '\n';
    out[*len] = 0;
    return out;
}

static int
config_set(const char *path, const char *key, const char *value)
{
    char norm[128], base[128];
    const struct ahg_opt_def *d = find_key(key, norm, sizeof(norm));
    (void)snprintf(base, sizeof(base), "%s", norm);
    size_t nl = strlen(norm);
    if (!d && nl > 5 && !strcmp(norm + nl - 5, "_file")) {
        /* a secret's file variant: api_key_file PATH (the file is read at start) */
        base[nl - 5] = 0;
        char tmp[128];
        d = find_key(base, tmp, sizeof(tmp));
        if (d && !(d->flags & AHG_OPT_SECRET))
            d = NULL;
    }
    if (!d) {
        (void)fprintf(stderr,
                      PROG " config set: unknown key '%s' (" PROG " config --help lists "
                           "the keys)\n",
                      key);
        return AHG_EXIT_USAGE;
    }
    /* validate the value exactly as its environment variable would be (a LIST is
     * comma-separated there too) */
    struct ahg_opt_def scratch[NOPTS];
    memcpy(scratch, start_opts, sizeof(start_opts));
    for (size_t i = 0; i < NOPTS; i++)
        scratch[i].flags &= ~AHG_OPT_REQUIRED;
    struct ahg_config_spec spec = {.prog = PROG " config set", .opts = scratch, .nopts = NOPTS};
    size_t elen = strlen(AHG_CONFIG_ENV_PREFIX) + strlen(norm) + strlen(value) + 2;
    char *envv = malloc(elen);
    if (!envv)
        return AHG_EXIT_FAILURE;
    int ek = snprintf(envv, elen, AHG_CONFIG_ENV_PREFIX "%s=", norm);
    for (int i = 0; i < ek; i++)
        if (envv[i] >= 'a' && envv[i] <= 'z')
            envv[i] = (char)(envv[i] - 'a' + 'A');
    (void)snprintf(envv + ek, elen - (size_t)ek, "%s", value);
    char *const env[] = {envv, NULL};
    char a0[] = PROG, a1[] = "--config", a2[] = "";
    char *args[] = {a0, a1, a2, NULL};
    int nargs = 3;
    struct ahg_config *cfg = NULL;
    char err[512] = "";
    int rc = ahg_config_load(&cfg, &spec, nargs, args, env, err, sizeof(err));
    ahg_config_free(cfg);
    const char *why = err;
    size_t el = (size_t)ek - 1; /* "AZHEXGATE_NAME" without '=' */
    if (!strncmp(err, envv, el) && err[el] == ':')
        why = err + el + 1 + (err[el + 1] == ' ');
    if (rc != AHG_OK)
        (void)fprintf(stderr, PROG " config set: %s: %s\n", norm,
                      (d->flags & AHG_OPT_SECRET) && !strcmp(norm, base) ? "invalid value" : why);
    memset(envv, 0, elen);
    free(envv);
    if (rc != AHG_OK) {
        return AHG_EXIT_CONFIG;
    }
    size_t len = 0;
    char *text = read_without_key(path, base, &len, &rc);
    if (!text || rc != AHG_OK) {
        (void)fprintf(stderr, PROG " config set: cannot read %s: %s\n", path,
                      rc == AHG_ELIMIT ? "file too large" : strerror(errno));
        free(text);
        return AHG_EXIT_CONFIG;
    }
    char q[AHG_CONFIG_MAX_VALUE / 8];
    size_t room = CONFIG_EDIT_MAX + 1 - len;
    int n;
    if (d->type == AHG_OPT_LIST) {
        /* comma-separated items become a YAML sequence */
        n = snprintf(text + len, room, "%s:\n", norm);
        char item[1024];
        const char *p = value;
        while (n > 0 && (size_t)n < room && *p) {
            size_t k = strcspn(p, ",");
            (void)snprintf(item, sizeof(item), "%.*s", (int)k, p);
            yaml_quote(item, q, sizeof(q));
            if (item[0]) {
                int m = snprintf(text + len + n, room - (size_t)n, "  - %s\n", q);
                n = m < 0 ? -1 : n + m;
            }
            p += k + (p[k] == ',');
        }
    } else {
        yaml_quote(value, q, sizeof(q));
        n = snprintf(text + len, room, "%s: %s\n", norm, q);
    }
    if (n < 0 || (size_t)n >= room) {
        (void)fprintf(stderr, PROG " config set: %s is too large\n", path);
        free(text);
        return AHG_EXIT_CONFIG;
    }
    len += (size_t)n;
    if (cli_platform_mkdir_for(path) != AHG_OK ||
        cli_platform_write_private(path, text, len) != AHG_OK) {
        (void)fprintf(stderr, PROG " config set: cannot write %s: %s\n", path, strerror(errno));
        memset(text, 0, len);
        free(text);
        return AHG_EXIT_CONFIG;
    }
    memset(text, 0, len);
    free(text);
    (void)printf("%s = %s  (written to %s)\n", norm,
                 (d->flags & AHG_OPT_SECRET) && !strcmp(norm, base) ? "[REDACTED]" : value, path);
    return AHG_EXIT_OK;
}

static int
cmd_config(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "help")) {
        config_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? AHG_EXIT_USAGE : AHG_EXIT_OK;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "show")) {
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                config_usage(stdout);
                return AHG_EXIT_OK;
            }
        }
        /* argv[1..] with --print-config: flags, environment and file, secrets redacted */
        char **args = calloc((size_t)argc + 2, sizeof(*args));
        if (!args)
            return AHG_EXIT_FAILURE;
        static char a0[] = PROG " config show", pc[] = "--print-config";
        args[0] = a0;
        for (int i = 2; i < argc; i++)
            args[i - 1] = argv[i];
        args[argc - 1] = pc;
        struct loadctx lc;
        struct ahg_config *cfg = NULL;
        int code = load(&cfg, &lc, PROG " config show", "Show the effective settings.",
                        "[--config FILE]", argc, args, false);
        ahg_config_free(cfg);
        free(args);
        return code < 0 ? AHG_EXIT_OK : code;
    }
    if (!strcmp(sub, "set")) {
        const char *file = NULL;
        const char *pos[3] = {NULL, NULL, NULL};
        int np = 0;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                config_usage(stdout);
                return AHG_EXIT_OK;
            }
            if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c")) && i + 1 < argc)
                file = argv[++i];
            else if (!strncmp(argv[i], "--config=", 9))
                file = argv[i] + 9;
            else if (np < 3)
                pos[np++] = argv[i];
            else
                np++;
        }
        if (np != 2) {
            (void)fprintf(stderr, PROG " config set: expected KEY VALUE\n");
            config_usage(stderr);
            return AHG_EXIT_USAGE;
        }
        char path[1024];
        if (!file || !file[0])
            file = getenv("AZHEXGATE_CONFIG");
        if (!file || !file[0])
            file = cli_platform_config_path(path, sizeof(path));
        if (!file) {
            (void)fprintf(stderr, PROG " config set: no home directory: pass --config FILE\n");
            return AHG_EXIT_CONFIG;
        }
        return config_set(file, pos[0], pos[1]);
    }
    (void)fprintf(stderr, PROG " config: unknown subcommand '%s'\n", sub);
    config_usage(stderr);
    return AHG_EXIT_USAGE;
}

/* ---- completion ---- */

static void
flag_of(const struct ahg_opt_def *d, char *out, size_t n)
{
    (void)snprintf(out, n, "--%s", d->name);
    for (char *c = out; *c; c++)
        if (*c == '_')
            *c = '-';
}

static void
all_flags(FILE *out, const char *sep)
{
    char f[128];
    for (size_t i = 0; i < NOPTS; i++) {
        flag_of(&start_opts[i], f, sizeof(f));
        (void)fprintf(out, "%s%s", f, sep);
        if (start_opts[i].flags & AHG_OPT_SECRET)
            (void)fprintf(out, "%s-file%s", f, sep);
    }
    (void)fprintf(out, "--config%s--print-config%s--check-config%s--help", sep, sep, sep);
}

static int
cmd_completion(int argc, char **argv)
{
    const char *sh = argc >= 2 ? argv[1] : "";
    if (!strcmp(sh, "-h") || !strcmp(sh, "--help")) {
        (void)printf("Usage: " PROG " completion bash|zsh|fish\n\n"
                     "Print a completion script for the shell, e.g.\n"
                     "  source <(" PROG " completion bash)\n"
                     "  " PROG " completion zsh > \"${fpath[1]}/_" PROG "\"\n"
                     "  " PROG " completion fish > ~/.config/fish/completions/" PROG ".fish\n");
        return AHG_EXIT_OK;
    }
    if (!strcmp(sh, "bash")) {
        (void)printf(
            "# bash completion for " PROG "\n_azhexgate() {\n"
            "    local cur=\"${COMP_WORDS[COMP_CWORD]}\"\n"
            "    if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
            "        COMPREPLY=($(compgen -W \"start config completion demo version help\" -- "
            "\"$cur\")); return\n    fi\n"
            "    case \"${COMP_WORDS[1]}\" in\n"
            "    start) COMPREPLY=($(compgen -W \"");
        all_flags(stdout, " ");
        (void)printf("\" -- \"$cur\")) ;;\n"
                     "    config) if [ \"$COMP_CWORD\" -eq 2 ]; then COMPREPLY=($(compgen -W "
                     "\"show set\" -- \"$cur\")); elif [ \"$COMP_CWORD\" -eq 3 ] && "
                     "[ \"${COMP_WORDS[2]}\" = set ]; then COMPREPLY=($(compgen -W \"");
        for (size_t i = 0; i < NOPTS; i++)
            (void)printf("%s ", start_opts[i].name);
        (void)printf("\" -- \"$cur\")); fi ;;\n"
                     "    completion) COMPREPLY=($(compgen -W \"bash zsh fish\" -- \"$cur\")) ;;\n"
                     "    esac\n}\ncomplete -F _azhexgate " PROG "\n");
        return AHG_EXIT_OK;
    }
    if (!strcmp(sh, "zsh")) {
        (void)printf("#compdef " PROG "\n_azhexgate() {\n"
                     "    if (( CURRENT == 2 )); then\n"
                     "        compadd start config completion demo version help; return\n    fi\n"
                     "    case $words[2] in\n"
                     "    start) compadd -- ");
        all_flags(stdout, " ");
        (void)printf(" ;;\n    config) if (( CURRENT == 3 )); then compadd show set; "
                     "elif (( CURRENT == 4 )); then compadd -- ");
        for (size_t i = 0; i < NOPTS; i++)
            (void)printf("%s ", start_opts[i].name);
        (void)printf("; fi ;;\n    completion) compadd bash zsh fish ;;\n    esac\n}\n"
                     "compdef _azhexgate " PROG "\n");
        return AHG_EXIT_OK;
    }
    if (!strcmp(sh, "fish")) {
        (void)printf("# fish completion for " PROG "\n"
                     "complete -c " PROG " -f\n"
                     "complete -c " PROG " -n __fish_use_subcommand -a 'start config completion "
                     "demo version help'\n"
                     "complete -c " PROG " -n '__fish_seen_subcommand_from config' -a 'show set'\n"
                     "complete -c " PROG " -n '__fish_seen_subcommand_from completion' "
                     "-a 'bash zsh fish'\n");
        char f[128];
        for (size_t i = 0; i < NOPTS; i++) {
            flag_of(&start_opts[i], f, sizeof(f));
            (void)printf("complete -c " PROG " -n '__fish_seen_subcommand_from start' -l %s%s "
                         "-d '%s'\n",
                         f + 2, start_opts[i].type == AHG_OPT_BOOL ? "" : " -r",
                         start_opts[i].name);
        }
        return AHG_EXIT_OK;
    }
    (void)fprintf(stderr, PROG " completion: expected bash, zsh or fish%s%s%s\n",
                  sh[0] ? " (got '" : "", sh, sh[0] ? "')" : "");
    return AHG_EXIT_USAGE;
}

int
cli_main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return AHG_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return AHG_EXIT_OK;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        (void)printf(PROG " %s\n", AHG_VERSION);
        return AHG_EXIT_OK;
    }
    if (!strcmp(cmd, "start"))
        return cmd_start(argc - 1, argv + 1);
    if (!strcmp(cmd, "config"))
        return cmd_config(argc - 1, argv + 1);
    if (!strcmp(cmd, "completion"))
        return cmd_completion(argc - 1, argv + 1);
    if (!strcmp(cmd, "demo"))
        return cmd_demo(argc - 1, argv + 1);
    (void)fprintf(stderr, PROG ": unknown command '%s'\n", cmd);
    usage(stderr);
    return AHG_EXIT_USAGE;
}
