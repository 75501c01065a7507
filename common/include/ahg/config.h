/*
 * ahg/config.h - the configuration system of every AzHexGate binary.
 *
 * Each binary describes its options in ONE static table of struct ahg_opt_def and
 * calls ahg_config_load() once from main(). A value comes from, highest first:
 *
 *   command-line flag  >  environment (AZHEXGATE_*, *_FILE for secrets)  >  YAML file  >  default
 *
 * Every value is parsed and validated at load time (type, choices, bounds, validate
 * callback); the resulting struct ahg_config is immutable and may be read from any
 * thread without locking. Reloading (SIGHUP) is just another ahg_config_load() with
 * the same argv/envp; swap the pointer once the new object loaded successfully.
 *
 * Option naming (derived from ahg_opt_def.name, e.g. "relay.api_key"):
 *   YAML   relay:\n  api_key: x     (nested mappings) or  relay.api_key: x  (flat)
 *   flag   --relay-api-key x  /  --relay-api-key=x     ('.' and '_' become '-')
 *   env    AZHEXGATE_RELAY_API_KEY=x                    (upper case, '.'/'-' become '_')
 * Secrets (AHG_OPT_SECRET) can also be read from a file: YAML relay.api_key_file,
 * flag --relay-api-key-file, env AZHEXGATE_RELAY_API_KEY_FILE. Secret values are never
 * printed by this module (--print-config shows "[REDACTED]", errors say "invalid value").
 *
 * Built-in flags: -c/--config FILE, --print-config, --check-config, -h/--help, --version.
 * The config file is --config, else $AZHEXGATE_CONFIG, else spec->default_file if it
 * exists; an empty path means "no config file".
 */
#ifndef AHG_CONFIG_H
#define AHG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Prefix of derived environment variable names. */
#define AHG_CONFIG_ENV_PREFIX "AZHEXGATE_"
/* Environment variable naming the config file (below --config, above default_file). */
#define AHG_CONFIG_ENV_FILE "AZHEXGATE_CONFIG"
/* Hard caps: YAML file size, secret file size, one value, items of one LIST, name length. */
#define AHG_CONFIG_MAX_FILE        ((size_t)1024 * 1024)
#define AHG_CONFIG_MAX_SECRET_FILE ((size_t)64 * 1024)
#define AHG_CONFIG_MAX_VALUE       ((size_t)64 * 1024)
#define AHG_CONFIG_MAX_LIST        ((size_t)1024)
#define AHG_CONFIG_MAX_NAME        ((size_t)96)

enum ahg_opt_type {
    AHG_OPT_STRING,   /* any text */
    AHG_OPT_INT,      /* decimal long long, optional sign */
    AHG_OPT_BOOL,     /* true/false yes/no on/off 1/0 (case-insensitive) */
    AHG_OPT_DURATION, /* "250ms" "30s" "5m" "1h" "1d", bare integer = seconds; stored in ms */
    AHG_OPT_SIZE,     /* "512" "64k" "64KiB" "1m" "1MiB" "2g" (binary units); stored in bytes */
    AHG_OPT_ENUM,     /* one of the '|'-separated `choices` (case-sensitive) */
    AHG_OPT_LIST,     /* repeatable string: flag repeated, YAML sequence, env comma-separated */
};

/* Never printed; also settable via <flag>-file, <ENV>_FILE and YAML <key>_file. */
#define AHG_OPT_SECRET 0x1u
/* Must be set from some source (a default counts) when the action is RUN or CHECK. */
#define AHG_OPT_REQUIRED 0x2u

/* Fill tables with designated initializers ({.name = ..., .type = ...}); fields are ordered
 * for packing, not for positional initialization. */
struct ahg_opt_def {
    const char *name; /* dotted YAML path, snake_case keys: "relay.endpoint", "log_format" */
    const char *flag; /* long flag without dashes; NULL derives it from name; "" = no flag */
    const char *env;  /* NULL derives AZHEXGATE_<NAME>; "" = no environment variable */
    char short_flag;  /* e.g. 'p', or 0; 'c' and 'h' are taken by built-ins */
    enum ahg_opt_type type;
    const char *def;     /* default as text, validated like any value (LIST: comma-separated);
                            NULL = unset */
    const char *choices; /* ENUM only: "json|text" */
    long long min, max;  /* INT / DURATION (ms) / SIZE (bytes) inclusive bounds when min < max */
    const char *metavar; /* for --help, e.g. "PORT"; NULL picks one from the type */
    const char *help;    /* one line for --help */
    /* Optional extra check of the textual value (each item for LIST), called after the type
     * check. Returns AHG_OK or AHG_ECONFIG with a short reason in err. For secrets the reason
     * is discarded (the error then says "invalid value"). Must be thread-safe and pure. */
    int (*validate)(const char *value, char *err, size_t errlen);
    unsigned flags; /* AHG_OPT_SECRET | AHG_OPT_REQUIRED */
};

struct ahg_config_spec {
    const char *prog;         /* "azhexgate-gateway" */
    const char *summary;      /* one line for --help */
    const char *usage;        /* "[OPTIONS]"; NULL prints "[OPTIONS]" */
    const char *default_file; /* used if it exists and no --config/AZHEXGATE_CONFIG; may be NULL */
    const struct ahg_opt_def *opts;
    size_t nopts;
    bool allow_positional; /* keep non-option args (CLI subcommands) instead of failing */
};

enum ahg_config_action {
    AHG_CONFIG_RUN,      /* no built-in action: main continues */
    AHG_CONFIG_HELP,     /* --help / -h */
    AHG_CONFIG_PRINT,    /* --print-config */
    AHG_CONFIG_CHECK,    /* --check-config */
    AHG_CONFIG_VERSION,  /* --version */
    AHG_CONFIG_MARKDOWN, /* --help-markdown: the option reference as a Markdown table */
};

enum ahg_opt_source { AHG_SRC_DEFAULT, AHG_SRC_FILE, AHG_SRC_ENV, AHG_SRC_FLAG };

struct ahg_config;

/*
 * Parses argv, the environment and the config file against spec and returns a new,
 * immutable configuration in *out (free it with ahg_config_free()).
 *
 * argv[0] is the program name; argv is only read during the call. envp is a
 * NULL-terminated "NAME=value" array; NULL means the process environment (`environ`).
 * spec, its opts table and every string it points to are borrowed and must outlive *out
 * (they are normally static const tables).
 *
 * Flags: "--name value", "--name=value", "-p value", "-pvalue", bool "--flag", "--flag=false",
 * "--no-flag", clusters of short bool flags ("-vq"), "--" ends options; LIST flags repeat; a
 * repeated scalar flag keeps its last value. Unknown AZHEXGATE_* variables are ignored. An
 * empty environment value is set to "" (valid for STRING, invalid for INT...). In YAML a
 * plain empty/~/null value leaves the option unset; "" (quoted) sets it to "".
 * With --help or --version only argv syntax is checked (no file, environment, value or
 * required checks) and options keep their defaults. With --print-config required options
 * are not enforced (they print as "(unset)").
 *
 * Returns AHG_OK (*out set, err = ""), or *out = NULL and a one-line message in err
 * (err may be NULL; truncated to errlen):
 *   AHG_EUSAGE  unknown flag, missing flag argument, value given to a flag that takes none,
 *               unexpected positional argument
 *   AHG_ECONFIG bad value ("--port: expected an integer in 1..65535, got 'abc'",
 *               "AZHEXGATE_LISTEN_PORT: ...", "cfg.yaml:7: listen.port: ..."), unreadable or
 *               too large config/secret file, YAML syntax error or unknown key (file:line),
 *               direct and *_FILE variant both set at the same level, missing required option
 *   AHG_EINVAL  bad arguments or a bug in spec (duplicate names/flags, invalid default...)
 *   AHG_ENOMEM  allocation failure
 * Thread-safe: uses no global state (it only reads `environ` when envp is NULL).
 */
int ahg_config_load(struct ahg_config **out, const struct ahg_config_spec *spec, int argc,
                    char *const argv[], char *const envp[], char *err, size_t errlen);

/* The built-in action requested on the command line. */
enum ahg_config_action ahg_config_action(const struct ahg_config *cfg);

/*
 * Value getters by option name (the `name` of the table entry). All are thread-safe and
 * return borrowed data that lives as long as cfg. An unknown name or an unset option gives
 * NULL / 0 / false / an empty list.
 */

/* The value as text (as given, for any scalar type; secrets too); NULL if unset or LIST. */
const char *ahg_config_str(const struct ahg_config *cfg, const char *name);
/* INT value, DURATION in milliseconds, SIZE in bytes, BOOL as 0/1, ENUM as the index of the
 * value in `choices`; 0 if unset or STRING/LIST. */
long long ahg_config_int(const struct ahg_config *cfg, const char *name);
/* BOOL value; false if unset or not a BOOL. */
bool ahg_config_bool(const struct ahg_config *cfg, const char *name);
/* LIST items: returns the count and, if items is not NULL, points *items at a
 * NULL-terminated array (never NULL itself). 0 for non-LIST options. */
size_t ahg_config_list(const struct ahg_config *cfg, const char *name, const char *const **items);
/* true if the option has a value from any source, including its default. */
bool ahg_config_is_set(const struct ahg_config *cfg, const char *name);
/* Where the value came from (AHG_SRC_DEFAULT if unset or unknown). */
enum ahg_opt_source ahg_config_source(const struct ahg_config *cfg, const char *name);
/* Precise origin for messages: "--port", "AZHEXGATE_API_KEY_FILE", "/etc/gw.yaml:7"; NULL for
 * defaults, unset or unknown options. */
const char *ahg_config_origin(const struct ahg_config *cfg, const char *name);
/* "default", "file", "env" or "flag" ("unknown" otherwise). Static string. */
const char *ahg_config_source_name(enum ahg_opt_source src);
/* Path of the config file that was read, or NULL if none. */
const char *ahg_config_file(const struct ahg_config *cfg);
/* Positional arguments (only with spec->allow_positional): count, and *args (if args is not
 * NULL) points at a NULL-terminated array, never NULL itself. */
size_t ahg_config_positional(const struct ahg_config *cfg, const char *const **args);

/*
 * Writes the effective configuration, one line per option in table order:
 *   "name = value  (source origin)", e.g. "listen.port = 9000  (flag --port)";
 * LISTs as "[a, b]", unset options as "(unset)", secrets as "[REDACTED]". Control characters
 * are escaped so every option stays on one line. The first line is a "# config file: ..."
 * comment. Thread-safe for distinct `out` streams.
 */
void ahg_config_print(const struct ahg_config *cfg, FILE *out);

/* Writes --help text generated from the table: usage line, summary, then every option with
 * its flags, metavar, help, default (never for secrets), environment variable(s) and YAML
 * key, then the built-in flags. spec is only read. */
void ahg_config_usage(const struct ahg_config_spec *spec, FILE *out);

/* The option reference as Markdown (a heading and one table row per option), for
 * docs/configuration.md, which scripts/gen-config-docs.sh builds from every binary. */
void ahg_config_markdown(const struct ahg_config_spec *spec, FILE *out);

/*
 * Convenience for main(): performs the built-in action on `out` (HELP: usage, VERSION:
 * "<prog> <version>", PRINT: ahg_config_print, CHECK: "<prog>: configuration OK") and
 * returns the process exit code (AHG_EXIT_OK), or -1 when the action is RUN and main should
 * continue. spec must be the one cfg was loaded with.
 */
int ahg_config_run_builtin(const struct ahg_config *cfg, const struct ahg_config_spec *spec,
                           FILE *out);

/* Frees cfg and every value it owns (secret values are wiped first). NULL is a no-op. */
void ahg_config_free(struct ahg_config *cfg);

/*
 * The start of every main(): loads the configuration (errors go to stderr as
 * "<prog>: <reason>", plus "Try '<prog> --help'." for usage errors) and runs the built-in
 * actions (--help, --version, --print-config, --check-config, --help-markdown). Returns -1 when
 * main should go on with *out, else the exit code to return (*out is then NULL).
 */
/* The two logging options every server binary has (read by ahg_config_log_setup), for option
 * tables: AHG_OPTS_LOG("json"), with the default format as a string literal. */
#define AHG_OPTS_LOG(default_format)                                                               \
    {.name = "log_format",                                                                         \
     .type = AHG_OPT_ENUM,                                                                         \
     .def = (default_format),                                                                      \
     .choices = "text|json",                                                                       \
     .help = "log line format"},                                                                   \
    {                                                                                              \
        .name = "log_level", .type = AHG_OPT_ENUM, .def = "info",                                  \
        .choices = "debug|info|warn|error", .help = "lowest level logged"                          \
    }

int ahg_config_main(struct ahg_config **out, const struct ahg_config_spec *spec, int argc,
                    char *const argv[]);

/*
 * Sets up logging from the options "log_format" and "log_level" of cfg (when the table has
 * them; else fmt and info), for component comp, on stderr.
 */
void ahg_config_log_setup(const struct ahg_config *cfg, const char *comp, int default_format);

#endif /* AHG_CONFIG_H */
