#include "ahg/config.h"
#include "ahg/err.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#define FIX(name) AHG_TEST_FIXTURES "/config/" name

/* Fixture paths as objects, for argv arrays (keeps literal concatenation out of them). */
static const char fx_basic[] = FIX("basic.yaml");
static const char fx_nested[] = FIX("nested.yaml");
static const char fx_bad_value[] = FIX("bad_value.yaml");
static const char fx_unknown_key[] = FIX("unknown_key.yaml");
static const char fx_secret_txt[] = FIX("secret.txt");

static int
validate_key(const char *value, char *err, size_t errlen)
{
    if (strlen(value) < 8) {
        /* Deliberately echoes the value: the loader must not show it for secrets. */
        (void)snprintf(err, errlen, "key '%s' is too short", value);
        return AHG_ECONFIG;
    }
    return AHG_OK;
}

static int
validate_host(const char *value, char *err, size_t errlen)
{
    if (strchr(value, ' ')) {
        (void)snprintf(err, errlen, "host must not contain spaces");
        return AHG_ECONFIG;
    }
    return AHG_OK;
}

static const struct ahg_opt_def test_opts[] = {
    {.name = "listen.port",
     .flag = "port",
     .short_flag = 'p',
     .type = AHG_OPT_INT,
     .def = "8080",
     .min = 1,
     .max = 65535,
     .metavar = "PORT",
     .help = "TCP port to listen on."},
    {.name = "relay.endpoint",
     .type = AHG_OPT_STRING,
     .flags = AHG_OPT_REQUIRED,
     .metavar = "URL",
     .help = "Azure Relay namespace endpoint."},
    {.name = "relay.api_key",
     .flag = "api-key",
     .env = "AZHEXGATE_API_KEY",
     .type = AHG_OPT_STRING,
     .flags = AHG_OPT_SECRET,
     .metavar = "KEY",
     .validate = validate_key,
     .help = "API key for the controller."},
    {.name = "log_format",
     .type = AHG_OPT_ENUM,
     .choices = "json|text",
     .def = "json",
     .help = "Log line format."},
    {.name = "tls", .type = AHG_OPT_BOOL, .def = "false", .help = "Serve TLS."},
    {.name = "verbose", .short_flag = 'v', .type = AHG_OPT_BOOL, .help = "Verbose output."},
    {.name = "timeout",
     .type = AHG_OPT_DURATION,
     .def = "30s",
     .min = 100,
     .max = 3600000,
     .help = "Idle timeout."},
    {.name = "grace", .type = AHG_OPT_DURATION, .help = "Shutdown grace period."},
    {.name = "max_body",
     .type = AHG_OPT_SIZE,
     .def = "64MiB",
     .min = 1024,
     .max = 1LL << 30,
     .help = "Largest request body."},
    {.name = "cache_size", .type = AHG_OPT_SIZE, .help = "Cache size."},
    {.name = "tags", .short_flag = 't', .type = AHG_OPT_LIST, .metavar = "TAG", .help = "Tags."},
    {.name = "host", .type = AHG_OPT_STRING, .validate = validate_host, .help = "Public host."},
    {.name = "retries", .type = AHG_OPT_INT, .help = "Retry count."},
    {.name = "internal",
     .flag = "",
     .env = "",
     .type = AHG_OPT_STRING,
     .def = "builtin",
     .help = "Only settable in the config file."},
};

static const struct ahg_config_spec test_spec = {
    .prog = "azhexgate-test",
    .summary = "Test binary for the config module.",
    .usage = "[OPTIONS]",
    .default_file = NULL,
    .opts = test_opts,
    .nopts = sizeof test_opts / sizeof test_opts[0],
    .allow_positional = false,
};

static char errbuf[1024];

static int
load_spec(const struct ahg_config_spec *spec, struct ahg_config **cfg, const char *const *argv,
          const char *const *envp)
{
    int argc = 0;

    while (argv[argc])
        argc++;
    errbuf[0] = 'X'; /* must be overwritten */
    errbuf[1] = '\0';
    return ahg_config_load(cfg, spec, argc, (char *const *)argv, (char *const *)envp, errbuf,
                           sizeof errbuf);
}

static int
load(struct ahg_config **cfg, const char *const *argv, const char *const *envp)
{
    return load_spec(&test_spec, cfg, argv, envp);
}

#define ARGS(...) ((const char *const[]){"azhexgate-test", __VA_ARGS__, NULL})
#define NOARGS    ((const char *const[]){"azhexgate-test", NULL})
#define ENV(...)  ((const char *const[]){__VA_ARGS__, NULL})
#define ENDPOINT  "AZHEXGATE_RELAY_ENDPOINT=sb://env.example/"
#define BASE_ENV  ENV(ENDPOINT)

/* Loads, expecting failure with rc; returns nothing but checks *cfg stays NULL. */
static void
expect_fail(int want, const char *const *argv, const char *const *envp)
{
    struct ahg_config *cfg = (struct ahg_config *)&cfg; /* poison: must become NULL */
    int rc = load(&cfg, argv, envp);

    if (rc != want)
        print_error("unexpected rc %d (%s), err: %s\n", rc, ahg_err_name(rc), errbuf);
    assert_int_equal(rc, want);
    assert_null(cfg);
    assert_true(errbuf[0] != '\0' && strcmp(errbuf, "X") != 0);
}

static struct ahg_config *
expect_ok(const char *const *argv, const char *const *envp)
{
    struct ahg_config *cfg = NULL;
    int rc = load(&cfg, argv, envp);

    if (rc != AHG_OK)
        print_error("load failed: %s\n", errbuf);
    assert_int_equal(rc, AHG_OK);
    assert_non_null(cfg);
    assert_string_equal(errbuf, "");
    return cfg;
}

static bool
contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

/* Captures what fn writes for cfg/spec. Caller frees. */
static char *
capture(const struct ahg_config *cfg, int mode, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(f);
    if (mode == 0)
        ahg_config_print(cfg, f);
    else if (mode == 1)
        ahg_config_usage(&test_spec, f);
    else
        *rc = ahg_config_run_builtin(cfg, &test_spec, f);
    assert_int_equal(fclose(f), 0);
    assert_non_null(buf);
    return buf;
}

static char *
write_tmp(const char *content, size_t len)
{
    char *path = strdup("/tmp/ahg_test_config_XXXXXX");
    int fd;

    assert_non_null(path);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
    return path;
}

static void
drop_tmp(char *path)
{
    (void)unlink(path);
    free(path);
}

/* ------------------------------------------------------------------ tests */

static void
test_config_defaults_apply_when_nothing_set(void **state)
{
    struct ahg_config *cfg;
    const char *const *items = NULL;
    (void)state;

    cfg = expect_ok(NOARGS, BASE_ENV);
    assert_int_equal(ahg_config_action(cfg), AHG_CONFIG_RUN);
    assert_int_equal(ahg_config_int(cfg, "listen.port"), 8080);
    assert_string_equal(ahg_config_str(cfg, "listen.port"), "8080");
    assert_int_equal(ahg_config_source(cfg, "listen.port"), AHG_SRC_DEFAULT);
    assert_null(ahg_config_origin(cfg, "listen.port"));
    assert_int_equal(ahg_config_int(cfg, "timeout"), 30000);
    assert_int_equal(ahg_config_int(cfg, "max_body"), 64LL * 1024 * 1024);
    assert_string_equal(ahg_config_str(cfg, "log_format"), "json");
    assert_int_equal(ahg_config_int(cfg, "log_format"), 0);
    assert_false(ahg_config_bool(cfg, "tls"));
    assert_true(ahg_config_is_set(cfg, "tls"));
    assert_false(ahg_config_is_set(cfg, "verbose"));
    assert_false(ahg_config_is_set(cfg, "host"));
    assert_null(ahg_config_str(cfg, "host"));
    assert_null(ahg_config_str(cfg, "relay.api_key"));
    assert_int_equal(ahg_config_list(cfg, "tags", &items), 0);
    assert_non_null(items);
    assert_null(items[0]);
    assert_string_equal(ahg_config_str(cfg, "internal"), "builtin");
    assert_string_equal(ahg_config_str(cfg, "relay.endpoint"), "sb://env.example/");
    assert_null(ahg_config_file(cfg));
    ahg_config_free(cfg);
}

static void
test_config_precedence_every_pair(void **state)
{
    (void)state;
    /* bit 0: file (9000), bit 1: env (9100), bit 2: flag (9200) */
    for (int mask = 0; mask < 8; mask++) {
        const char *argv[6] = {"azhexgate-test"};
        const char *envp[4] = {ENDPOINT};
        int na = 1, ne = 1;
        long long want = 8080;
        enum ahg_opt_source src = AHG_SRC_DEFAULT;
        struct ahg_config *cfg;

        if (mask & 1) {
            argv[na++] = "--config";
            argv[na++] = fx_basic;
            want = 9000;
            src = AHG_SRC_FILE;
        }
        if (mask & 2) {
            envp[ne++] = "AZHEXGATE_LISTEN_PORT=9100";
            want = 9100;
            src = AHG_SRC_ENV;
        }
        if (mask & 4) {
            argv[na++] = "--port";
            argv[na++] = "9200";
            want = 9200;
            src = AHG_SRC_FLAG;
        }
        argv[na] = NULL;
        envp[ne] = NULL;
        cfg = expect_ok(argv, envp);
        assert_int_equal(ahg_config_int(cfg, "listen.port"), want);
        assert_int_equal(ahg_config_source(cfg, "listen.port"), src);
        if (src == AHG_SRC_FILE)
            assert_string_equal(ahg_config_origin(cfg, "listen.port"), FIX("basic.yaml") ":3");
        if (src == AHG_SRC_ENV)
            assert_string_equal(ahg_config_origin(cfg, "listen.port"), "AZHEXGATE_LISTEN_PORT");
        if (src == AHG_SRC_FLAG)
            assert_string_equal(ahg_config_origin(cfg, "listen.port"), "--port");
        /* The env endpoint always beats the file one. */
        assert_string_equal(ahg_config_str(cfg, "relay.endpoint"), "sb://env.example/");
        assert_int_equal(ahg_config_source(cfg, "relay.endpoint"), AHG_SRC_ENV);
        ahg_config_free(cfg);
    }
}

static void
test_config_source_names(void **state)
{
    (void)state;
    assert_string_equal(ahg_config_source_name(AHG_SRC_DEFAULT), "default");
    assert_string_equal(ahg_config_source_name(AHG_SRC_FILE), "file");
    assert_string_equal(ahg_config_source_name(AHG_SRC_ENV), "env");
    assert_string_equal(ahg_config_source_name(AHG_SRC_FLAG), "flag");
    assert_string_equal(ahg_config_source_name((enum ahg_opt_source)42), "unknown");
}

static void
test_config_flag_forms(void **state)
{
    struct ahg_config *cfg;
    const char *const *items;
    (void)state;

    cfg = expect_ok(ARGS("--port=1234", "--tls"), BASE_ENV);
    assert_int_equal(ahg_config_int(cfg, "listen.port"), 1234);
    assert_true(ahg_config_bool(cfg, "tls"));
    assert_int_equal(ahg_config_source(cfg, "tls"), AHG_SRC_FLAG);
    ahg_config_free(cfg);

    cfg = expect_ok(ARGS("-p", "4321", "--tls", "--no-tls"), BASE_ENV);
    assert_int_equal(ahg_config_int(cfg, "listen.port"), 4321);
    assert_false(ahg_config_bool(cfg, "tls"));
    assert_string_equal(ahg_config_origin(cfg, "tls"), "--tls");
    ahg_config_free(cfg);

    cfg = expect_ok(ARGS("-p99", "--tls=off", "--port", "5", "--port", "6"), BASE_ENV);
    assert_int_equal(ahg_config_int(cfg, "listen.port"), 6); /* last one wins */
    assert_false(ahg_config_bool(cfg, "tls"));
    assert_int_equal(ahg_config_source(cfg, "tls"), AHG_SRC_FLAG);
    ahg_config_free(cfg);

    /* Short bool cluster followed by a short option taking the rest as its value. */
    cfg = expect_ok(ARGS("-vtalpha", "--tags=beta", "--relay-endpoint", "sb://flag/"), ENV("X=1"));
    assert_true(ahg_config_bool(cfg, "verbose"));
    assert_int_equal(ahg_config_list(cfg, "tags", &items), 2);
    assert_string_equal(items[0], "alpha");
    assert_string_equal(items[1], "beta");
    assert_null(items[2]);
    assert_string_equal(ahg_config_str(cfg, "relay.endpoint"), "sb://flag/");
    ahg_config_free(cfg);

    /* A flag value may start with '-' (negative numbers). */
    cfg = expect_ok(ARGS("--retries", "-3"), BASE_ENV);
    assert_int_equal(ahg_config_int(cfg, "retries"), -3);
    ahg_config_free(cfg);
}

static void
test_config_positional_and_double_dash(void **state)
{
    struct ahg_config_spec spec = test_spec;
    struct ahg_config *cfg = NULL;
    const char *const *args = NULL;
    (void)state;

    spec.allow_positional = true;
    assert_int_equal(
        load_spec(&spec, &cfg,
                  ARGS("http", "--port", "3000", "-", "localhost:8000", "--", "--not-a-flag", "-p"),
                  BASE_ENV),
        AHG_OK);
    assert_int_equal(ahg_config_positional(cfg, &args), 5);
    assert_string_equal(args[0], "http");
    assert_string_equal(args[1], "-");
    assert_string_equal(args[2], "localhost:8000");
    assert_string_equal(args[3], "--not-a-flag");
    assert_string_equal(args[4], "-p");
    assert_null(args[5]);
    assert_int_equal(ahg_config_int(cfg, "listen.port"), 3000);
    ahg_config_free(cfg);

    /* Without allow_positional a stray argument is a usage error naming it. */
    expect_fail(AHG_EUSAGE, ARGS("--port", "1", "stray"), BASE_ENV);
    assert_true(contains(errbuf, "stray"));
    expect_fail(AHG_EUSAGE, ARGS("--", "x"), BASE_ENV);

    cfg = expect_ok(NOARGS, BASE_ENV);
    assert_int_equal(ahg_config_positional(cfg, &args), 0);
    assert_non_null(args);
    assert_null(args[0]);
    ahg_config_free(cfg);
}

static void
test_config_unknown_flag_is_usage_error(void **state)
{
    (void)state;
    expect_fail(AHG_EUSAGE, ARGS("--bogus"), BASE_ENV);
    assert_string_equal(errbuf, "unknown option '--bogus'");
    assert_int_equal(ahg_err_exit_code(AHG_EUSAGE), AHG_EXIT_USAGE);

    /* The value of a mistyped flag may be a secret: it is not echoed. */
    expect_fail(AHG_EUSAGE, ARGS("--apikey=hunter2hunter2"), BASE_ENV);
    assert_true(contains(errbuf, "--apikey"));
    assert_false(contains(errbuf, "hunter2"));

    expect_fail(AHG_EUSAGE, ARGS("-x"), BASE_ENV);
    assert_string_equal(errbuf, "unknown option '-x'");
    expect_fail(AHG_EUSAGE, ARGS("-vx"), BASE_ENV);
    expect_fail(AHG_EUSAGE, ARGS("--no-port"), BASE_ENV);       /* not a bool */
    expect_fail(AHG_EUSAGE, ARGS("--tls-file", "x"), BASE_ENV); /* not a secret */
    expect_fail(AHG_EUSAGE, ARGS("--internal", "x"), BASE_ENV); /* has no flag */
    expect_fail(AHG_EUSAGE, ARGS("--help=yes"), BASE_ENV);
    expect_fail(AHG_EUSAGE, ARGS("--no-tls=1"), BASE_ENV);
}

static void
test_config_missing_flag_value_is_usage_error(void **state)
{
    (void)state;
    expect_fail(AHG_EUSAGE, ARGS("--port"), BASE_ENV);
    assert_string_equal(errbuf, "--port: missing value");
    expect_fail(AHG_EUSAGE, ARGS("-p"), BASE_ENV);
    expect_fail(AHG_EUSAGE, ARGS("--config"), BASE_ENV);
    expect_fail(AHG_EUSAGE, ARGS("-c"), BASE_ENV);
    expect_fail(AHG_EUSAGE, ARGS("--api-key-file"), BASE_ENV);
}

static void
test_config_bad_int_names_its_source(void **state)
{
    struct ahg_config *cfg;
    (void)state;

    expect_fail(AHG_ECONFIG, ARGS("--port", "abc"), BASE_ENV);
    assert_string_equal(errbuf, "--port: expected an integer in 1..65535, got 'abc'");
    assert_int_equal(ahg_err_exit_code(AHG_ECONFIG), AHG_EXIT_CONFIG);

    expect_fail(AHG_ECONFIG, ARGS("-p", "0"), BASE_ENV);
    assert_string_equal(errbuf, "--port: expected an integer in 1..65535, got '0'");

    expect_fail(AHG_ECONFIG, NOARGS, ENV(ENDPOINT, "AZHEXGATE_LISTEN_PORT=70000"));
    assert_string_equal(errbuf,
                        "AZHEXGATE_LISTEN_PORT: expected an integer in 1..65535, got '70000'");

    /* An empty environment value is set, and invalid for an int. */
    expect_fail(AHG_ECONFIG, NOARGS, ENV(ENDPOINT, "AZHEXGATE_LISTEN_PORT="));
    assert_true(contains(errbuf, "AZHEXGATE_LISTEN_PORT: expected an integer"));

    /* Unbounded ints: full long long range, strict syntax. */
    cfg = expect_ok(ARGS("--retries=-9223372036854775808"), BASE_ENV);
    assert_true(ahg_config_int(cfg, "retries") == -9223372036854775807LL - 1);
    ahg_config_free(cfg);
    cfg = expect_ok(ARGS("--retries=+7"), BASE_ENV);
    assert_int_equal(ahg_config_int(cfg, "retries"), 7);
    ahg_config_free(cfg);
    expect_fail(AHG_ECONFIG, ARGS("--retries=9223372036854775808"), BASE_ENV);
    assert_string_equal(errbuf, "--retries: expected an integer, got '9223372036854775808'");
    expect_fail(AHG_ECONFIG, ARGS("--retries= 7"), BASE_ENV);
    expect_fail(AHG_ECONFIG, ARGS("--retries=7x"), BASE_ENV);
    expect_fail(AHG_ECONFIG, ARGS("--retries=-"), BASE_ENV);
    expect_fail(AHG_ECONFIG, ARGS("--retries="), BASE_ENV);
}

static void
test_config_durations_parse_to_ms(void **state)
{
    static const struct {
        const char *in;
        long long ms;
    } ok[] = {
        {"250ms", 250},   {"30s", 30000},
        {"5m", 300000},   {"1h", 3600000},
        {"1d", 86400000}, {"45", 45000},
        {"0", 0},         {"0ms", 0},
        {"007s", 7000},   {"100000d", 8640000000000LL},
    };
    static const char *const bad[] = {"",
                                      "abc",
                                      "1.5s",
                                      "-1s",
                                      "5 s",
                                      "5S",
                                      "ms",
                                      "10y",
                                      "1h30m",
                                      "s",
                                      " 5s",
                                      "99999999999999999999s",
                                      "9999999999999999d"};
    (void)state;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char arg[64];
        struct ahg_config *cfg;
        (void)snprintf(arg, sizeof arg, "--grace=%s", ok[i].in);
        cfg = expect_ok(ARGS(arg), BASE_ENV);
        assert_true(ahg_config_int(cfg, "grace") == ok[i].ms);
        assert_string_equal(ahg_config_str(cfg, "grace"), ok[i].in);
        ahg_config_free(cfg);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char arg[64];
        (void)snprintf(arg, sizeof arg, "--grace=%s", bad[i]);
        expect_fail(AHG_ECONFIG, ARGS(arg), BASE_ENV);
        assert_true(contains(errbuf, "--grace: expected a duration"));
    }
    /* Bounds (100ms..1h) are inclusive and shown with units. */
    expect_fail(AHG_ECONFIG, ARGS("--timeout=99ms"), BASE_ENV);
    assert_true(contains(errbuf, "in 100ms..1h, got '99ms'"));
    expect_fail(AHG_ECONFIG, ARGS("--timeout=2h"), BASE_ENV);
    {
        struct ahg_config *cfg = expect_ok(ARGS("--timeout=100ms"), BASE_ENV);
        assert_int_equal(ahg_config_int(cfg, "timeout"), 100);
        ahg_config_free(cfg);
        cfg = expect_ok(ARGS("--timeout=60m"), BASE_ENV);
        assert_int_equal(ahg_config_int(cfg, "timeout"), 3600000);
        ahg_config_free(cfg);
    }
}

static void
test_config_sizes_parse_to_bytes(void **state)
{
    static const struct {
        const char *in;
        long long bytes;
    } ok[] = {
        {"512", 512},        {"0", 0},          {"64k", 65536},
        {"64K", 65536},      {"64KiB", 65536},  {"64kb", 65536},
        {"1m", 1048576},     {"1MiB", 1048576}, {"2g", 2147483648LL},
        {"3GiB", 3LL << 30}, {"1t", 1LL << 40}, {"10b", 10},
    };
    static const char *const bad[] = {"",    "1.5m", "-1",          "k",  "12q",
                                      "1e3", "1 k",  "9999999999t", "1kk"};
    (void)state;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char arg[64];
        struct ahg_config *cfg;
        (void)snprintf(arg, sizeof arg, "--cache-size=%s", ok[i].in);
        cfg = expect_ok(ARGS(arg), BASE_ENV);
        assert_true(ahg_config_int(cfg, "cache_size") == ok[i].bytes);
        ahg_config_free(cfg);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char arg[64];
        (void)snprintf(arg, sizeof arg, "--cache-size=%s", bad[i]);
        expect_fail(AHG_ECONFIG, ARGS(arg), BASE_ENV);
        assert_true(contains(errbuf, "--cache-size: expected a size"));
    }
    expect_fail(AHG_ECONFIG, ARGS("--max-body=2g"), BASE_ENV);
    assert_true(contains(errbuf, "in 1KiB..1GiB, got '2g'"));
    expect_fail(AHG_ECONFIG, ARGS("--max-body=1023"), BASE_ENV);
    {
        struct ahg_config *cfg = expect_ok(ARGS("--max-body=1g"), BASE_ENV);
        assert_int_equal(ahg_config_int(cfg, "max_body"), 1LL << 30);
        ahg_config_free(cfg);
    }
}

static void
test_config_bools_accept_common_spellings(void **state)
{
    static const struct {
        const char *in;
        bool v;
    } ok[] = {{"true", true}, {"false", false}, {"yes", true}, {"no", false},  {"on", true},
              {"off", false}, {"1", true},      {"0", false},  {"TRUE", true}, {"Off", false}};
    static const char *const bad[] = {"maybe", "2", "", "y", "truee"};
    (void)state;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char env[64];
        struct ahg_config *cfg;
        (void)snprintf(env, sizeof env, "AZHEXGATE_TLS=%s", ok[i].in);
        cfg = expect_ok(NOARGS, ENV(ENDPOINT, env));
        assert_int_equal(ahg_config_bool(cfg, "tls"), ok[i].v);
        assert_int_equal(ahg_config_int(cfg, "tls"), ok[i].v ? 1 : 0);
        assert_int_equal(ahg_config_source(cfg, "tls"), AHG_SRC_ENV);
        ahg_config_free(cfg);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char arg[64];
        (void)snprintf(arg, sizeof arg, "--tls=%s", bad[i]);
        expect_fail(AHG_ECONFIG, ARGS(arg), BASE_ENV);
        assert_true(contains(errbuf, "--tls: expected a boolean"));
    }
}

static void
test_config_enums_are_exact(void **state)
{
    struct ahg_config *cfg;
    (void)state;

    cfg = expect_ok(ARGS("--log-format", "text"), BASE_ENV);
    assert_string_equal(ahg_config_str(cfg, "log_format"), "text");
    assert_int_equal(ahg_config_int(cfg, "log_format"), 1);
    ahg_config_free(cfg);

    expect_fail(AHG_ECONFIG, ARGS("--log-format", "xml"), BASE_ENV);
    assert_string_equal(errbuf, "--log-format: expected one of json|text, got 'xml'");
    expect_fail(AHG_ECONFIG, ARGS("--log-format=JSON"), BASE_ENV);
    expect_fail(AHG_ECONFIG, ARGS("--log-format=json|text"), BASE_ENV);
    expect_fail(AHG_ECONFIG, ARGS("--log-format="), BASE_ENV);
    expect_fail(AHG_ECONFIG, ARGS("--log-format=jso"), BASE_ENV);
}

static void
test_config_validate_callback_runs(void **state)
{
    struct ahg_config *cfg;
    (void)state;

    expect_fail(AHG_ECONFIG, ARGS("--host", "a b"), BASE_ENV);
    assert_string_equal(errbuf, "--host: host must not contain spaces");
    cfg = expect_ok(ARGS("--host", "tunnel.example.com"), BASE_ENV);
    assert_string_equal(ahg_config_str(cfg, "host"), "tunnel.example.com");
    ahg_config_free(cfg);

    /* Control characters in an echoed value are escaped. */
    expect_fail(AHG_ECONFIG, ARGS("--port", "1\n2"), BASE_ENV);
    assert_null(strchr(errbuf, '\n'));
    assert_true(contains(errbuf, "got '1\\x0a2'"));
}

static void
test_config_required_option_missing(void **state)
{
    struct ahg_config *cfg;
    (void)state;

    expect_fail(AHG_ECONFIG, NOARGS, ENV("AZHEXGATE_UNRELATED=1"));
    assert_true(contains(errbuf, "missing required option relay.endpoint"));
    assert_true(contains(errbuf, "--relay-endpoint"));
    assert_true(contains(errbuf, "AZHEXGATE_RELAY_ENDPOINT"));
    expect_fail(AHG_ECONFIG, ARGS("--check-config"), ENV("AZHEXGATE_UNRELATED=1"));

    /* --help and --version skip validation (even of bad values); --print-config skips the
     * required check. */
    cfg = expect_ok(ARGS("--port", "abc", "--help"), ENV("AZHEXGATE_LISTEN_PORT=x"));
    assert_int_equal(ahg_config_action(cfg), AHG_CONFIG_HELP);
    assert_int_equal(ahg_config_int(cfg, "listen.port"), 8080);
    ahg_config_free(cfg);
    cfg = expect_ok(ARGS("-h"), ENV("AZHEXGATE_UNRELATED=1"));
    assert_int_equal(ahg_config_action(cfg), AHG_CONFIG_HELP);
    ahg_config_free(cfg);
    cfg = expect_ok(ARGS("--version"), ENV("AZHEXGATE_UNRELATED=1"));
    assert_int_equal(ahg_config_action(cfg), AHG_CONFIG_VERSION);
    ahg_config_free(cfg);
    cfg = expect_ok(ARGS("--print-config"), ENV("AZHEXGATE_UNRELATED=1"));
    assert_int_equal(ahg_config_action(cfg), AHG_CONFIG_PRINT);
    assert_false(ahg_config_is_set(cfg, "relay.endpoint"));
    ahg_config_free(cfg);
    /* --print-config still validates values. */
    expect_fail(AHG_ECONFIG, ARGS("--print-config", "--port=0"), BASE_ENV);
}

static void
test_config_secret_from_env_file(void **state)
{
    struct ahg_config *cfg;
    (void)state;

    cfg = expect_ok(NOARGS, ENV(ENDPOINT, "AZHEXGATE_API_KEY_FILE=" FIX("secret.txt")));
    assert_string_equal(ahg_config_str(cfg, "relay.api_key"), "s3cr3t-from-file");
    assert_int_equal(ahg_config_source(cfg, "relay.api_key"), AHG_SRC_ENV);
    assert_string_equal(ahg_config_origin(cfg, "relay.api_key"), "AZHEXGATE_API_KEY_FILE");
    ahg_config_free(cfg);

    cfg = expect_ok(NOARGS, ENV(ENDPOINT, "AZHEXGATE_API_KEY=direct-env-key"));
    assert_string_equal(ahg_config_str(cfg, "relay.api_key"), "direct-env-key");
    ahg_config_free(cfg);

    /* *_FILE only exists for secrets. */
    cfg = expect_ok(NOARGS, ENV(ENDPOINT, "AZHEXGATE_HOST_FILE=" FIX("secret.txt")));
    assert_false(ahg_config_is_set(cfg, "host"));
    ahg_config_free(cfg);
}

static void
test_config_secret_from_flag_file(void **state)
{
    struct ahg_config *cfg;
    (void)state;

    cfg = expect_ok(ARGS("--api-key-file", FIX("secret.txt")), BASE_ENV);
    assert_string_equal(ahg_config_str(cfg, "relay.api_key"), "s3cr3t-from-file");
    assert_int_equal(ahg_config_source(cfg, "relay.api_key"), AHG_SRC_FLAG);
    assert_string_equal(ahg_config_origin(cfg, "relay.api_key"), "--api-key-file");
    ahg_config_free(cfg);

    /* A flag file beats the env, a direct flag beats an env file. */
    cfg = expect_ok(ARGS("--api-key-file=" FIX("secret.txt")),
                    ENV(ENDPOINT, "AZHEXGATE_API_KEY=env-key-value"));
    assert_string_equal(ahg_config_str(cfg, "relay.api_key"), "s3cr3t-from-file");
    ahg_config_free(cfg);
    cfg = expect_ok(ARGS("--api-key=flag-key-value"),
                    ENV(ENDPOINT, "AZHEXGATE_API_KEY_FILE=" FIX("secret.txt")));
    assert_string_equal(ahg_config_str(cfg, "relay.api_key"), "flag-key-value");
    assert_string_equal(ahg_config_origin(cfg, "relay.api_key"), "--api-key");
    ahg_config_free(cfg);
}

static void
test_config_secret_from_yaml_file_relative_to_config(void **state)
{
    struct ahg_config *cfg;
    (void)state;

    cfg = expect_ok(ARGS("-c", FIX("secret_file.yaml")), ENV("AZHEXGATE_UNRELATED=1"));
    assert_string_equal(ahg_config_str(cfg, "relay.api_key"), "s3cr3t-from-file");
    assert_int_equal(ahg_config_source(cfg, "relay.api_key"), AHG_SRC_FILE);
    assert_string_equal(ahg_config_origin(cfg, "relay.api_key"), FIX("secret_file.yaml") ":3");
    assert_string_equal(ahg_config_file(cfg), FIX("secret_file.yaml"));
    ahg_config_free(cfg);
}

static void
test_config_secret_direct_and_file_at_same_level_conflict(void **state)
{
    struct ahg_config *cfg;
    (void)state;

    expect_fail(AHG_ECONFIG, NOARGS,
                ENV(ENDPOINT, "AZHEXGATE_API_KEY=env-key-value",
                    "AZHEXGATE_API_KEY_FILE=" FIX("secret.txt")));
    assert_string_equal(errbuf, "AZHEXGATE_API_KEY and AZHEXGATE_API_KEY_FILE are both set");

    expect_fail(AHG_ECONFIG, ARGS("--api-key-file", fx_secret_txt, "--api-key=flagvalue1"),
                BASE_ENV);
    assert_string_equal(errbuf, "--api-key and --api-key-file are both given");
    assert_false(contains(errbuf, "flagvalue1"));

    expect_fail(AHG_ECONFIG, ARGS("--config", FIX("secret_conflict.yaml")), BASE_ENV);
    assert_string_equal(errbuf, FIX("secret_conflict.yaml") ":4: both relay.api_key and "
                                                            "relay.api_key_file are set");
    assert_false(contains(errbuf, "inline-value"));

    /* Different levels are fine: the higher one wins. */
    cfg = expect_ok(ARGS("--config", FIX("secret_file.yaml")),
                    ENV("AZHEXGATE_API_KEY=env-overrides-file"));
    assert_string_equal(ahg_config_str(cfg, "relay.api_key"), "env-overrides-file");
    ahg_config_free(cfg);
}

static void
test_config_secret_file_errors_name_the_file(void **state)
{
    char *big, *path;
    char arg[256];
    (void)state;

    expect_fail(AHG_ECONFIG, ARGS("--api-key-file", "/nonexistent/ahg/key"), BASE_ENV);
    assert_true(contains(errbuf, "--api-key-file"));
    assert_true(contains(errbuf, "'/nonexistent/ahg/key'"));

    expect_fail(AHG_ECONFIG, NOARGS, ENV(ENDPOINT, "AZHEXGATE_API_KEY_FILE=/nonexistent/k"));
    assert_true(contains(errbuf, "AZHEXGATE_API_KEY_FILE"));
    assert_true(contains(errbuf, "/nonexistent/k"));

    /* Larger than 64 KiB: rejected, content never shown. */
    big = malloc(AHG_CONFIG_MAX_SECRET_FILE + 1);
    assert_non_null(big);
    memset(big, 'Q', AHG_CONFIG_MAX_SECRET_FILE + 1);
    path = write_tmp(big, AHG_CONFIG_MAX_SECRET_FILE + 1);
    (void)snprintf(arg, sizeof arg, "--api-key-file=%s", path);
    expect_fail(AHG_ECONFIG, ARGS(arg), BASE_ENV);
    assert_true(contains(errbuf, "larger than 64 KiB"));
    assert_false(contains(errbuf, "QQQ"));
    drop_tmp(path);

    /* Exactly 64 KiB is accepted. */
    path = write_tmp(big, AHG_CONFIG_MAX_SECRET_FILE);
    (void)snprintf(arg, sizeof arg, "--api-key-file=%s", path);
    {
        struct ahg_config *cfg = expect_ok(ARGS(arg), BASE_ENV);
        assert_int_equal(strlen(ahg_config_str(cfg, "relay.api_key")), AHG_CONFIG_MAX_SECRET_FILE);
        ahg_config_free(cfg);
    }
    drop_tmp(path);
    free(big);

    /* A NUL byte would silently truncate the secret: rejected. */
    path = write_tmp("abcdefgh\0ijkl", 13);
    (void)snprintf(arg, sizeof arg, "--api-key-file=%s", path);
    expect_fail(AHG_ECONFIG, ARGS(arg), BASE_ENV);
    assert_true(contains(errbuf, "NUL"));
    drop_tmp(path);
}

static void
test_config_invalid_secret_is_not_echoed(void **state)
{
    char *path;
    char arg[256];
    (void)state;

    expect_fail(AHG_ECONFIG, NOARGS, ENV(ENDPOINT, "AZHEXGATE_API_KEY=zq7"));
    assert_string_equal(errbuf, "AZHEXGATE_API_KEY: invalid value");
    assert_false(contains(errbuf, "zq7"));

    expect_fail(AHG_ECONFIG, ARGS("--api-key", "zq7"), BASE_ENV);
    assert_string_equal(errbuf, "--api-key: invalid value");

    path = write_tmp("zq7\n", 4);
    (void)snprintf(arg, sizeof arg, "--api-key-file=%s", path);
    expect_fail(AHG_ECONFIG, ARGS(arg), BASE_ENV);
    assert_string_equal(errbuf, "--api-key-file: invalid value");
    drop_tmp(path);
}

static void
test_config_yaml_nested_list_and_flat_keys(void **state)
{
    struct ahg_config *cfg;
    const char *const *items;
    (void)state;

    cfg = expect_ok(ARGS("--config=" FIX("nested.yaml")), ENV("AZHEXGATE_UNRELATED=1"));
    assert_string_equal(ahg_config_str(cfg, "relay.endpoint"), "sb://nested.example/");
    assert_int_equal(ahg_config_source(cfg, "relay.endpoint"), AHG_SRC_FILE);
    assert_string_equal(ahg_config_origin(cfg, "relay.endpoint"), FIX("nested.yaml") ":3");
    assert_int_equal(ahg_config_int(cfg, "listen.port"), 7000);
    assert_int_equal(ahg_config_list(cfg, "tags", &items), 2);
    assert_string_equal(items[0], "alpha");
    assert_string_equal(items[1], "beta gamma");
    assert_null(items[2]);
    assert_int_equal(ahg_config_source(cfg, "tags"), AHG_SRC_FILE);
    assert_int_equal(ahg_config_int(cfg, "timeout"), 300000);
    assert_int_equal(ahg_config_int(cfg, "max_body"), 1048576);
    assert_true(ahg_config_bool(cfg, "tls"));
    /* Quoted '' sets an empty string; a plain null leaves the default. */
    assert_true(ahg_config_is_set(cfg, "host"));
    assert_string_equal(ahg_config_str(cfg, "host"), "");
    assert_string_equal(ahg_config_str(cfg, "internal"), "from-file");
    assert_string_equal(ahg_config_str(cfg, "log_format"), "json");
    ahg_config_free(cfg);
}

static void
test_config_yaml_syntax_error_has_line(void **state)
{
    (void)state;
    expect_fail(AHG_ECONFIG, ARGS("--config", FIX("syntax.yaml")), BASE_ENV);
    assert_true(strncmp(errbuf, FIX("syntax.yaml") ":4: YAML syntax error: ",
                        strlen(FIX("syntax.yaml") ":4: YAML syntax error: ")) == 0);
}

static void
test_config_yaml_unknown_key_has_line(void **state)
{
    (void)state;
    expect_fail(AHG_ECONFIG, ARGS("--config", FIX("unknown_key.yaml")), BASE_ENV);
    assert_string_equal(errbuf, FIX("unknown_key.yaml") ":5: unknown key 'relay.endpont'");
}

static void
test_config_yaml_bad_value_has_line(void **state)
{
    (void)state;
    expect_fail(AHG_ECONFIG, ARGS("--config", FIX("bad_value.yaml")), BASE_ENV);
    assert_string_equal(errbuf, FIX("bad_value.yaml") ":3: listen.port: expected an integer in "
                                                      "1..65535, got 'abc'");
    /* A higher source does not hide an invalid file value. */
    expect_fail(AHG_ECONFIG, ARGS("--config", fx_bad_value, "--port", "1"), BASE_ENV);
}

static void
test_config_yaml_empty_file_sets_nothing(void **state)
{
    struct ahg_config *cfg;
    (void)state;

    cfg = expect_ok(ARGS("--config", FIX("empty.yaml")), BASE_ENV);
    assert_string_equal(ahg_config_file(cfg), FIX("empty.yaml"));
    assert_int_equal(ahg_config_int(cfg, "listen.port"), 8080);
    assert_int_equal(ahg_config_source(cfg, "listen.port"), AHG_SRC_DEFAULT);
    ahg_config_free(cfg);
}

static void
test_config_yaml_structure_errors(void **state)
{
    static const struct {
        const char *yaml;
        const char *want; /* expected message after "<path>:" */
    } cases[] = {
        {"- a\n- b\n", "1: the top level must be a mapping, got a list"},
        {"listen: 5\n", "1: listen: expected a mapping, got a scalar"},
        {"tags:\n  a: b\n", "2: tags: expected a list, got a mapping"},
        {"tags:\n  - [x]\n", "2: tags: expected a list of strings"},
        {"listen:\n  port: [1]\n", "2: listen.port: expected a scalar value, got a list"},
        {"listen.port: 1\nlisten:\n  port: 2\n", "3: listen.port is set more than once"},
        {"log_format: text\nlog_format: json\n", "2: log_format is set more than once"},
        {"nope: 1\n", "1: unknown key 'nope'"},
        {"host_file: x\n", "1: unknown key 'host_file'"},
        {"relay:\n  endpoint: x\n---\nother: 1\n", "4: only one YAML document is allowed"},
        {"[1, 2]: x\n", "1: keys must be plain strings"},
    };
    char arg[256], want[512];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = write_tmp(cases[i].yaml, strlen(cases[i].yaml));
        (void)snprintf(arg, sizeof arg, "--config=%s", path);
        (void)snprintf(want, sizeof want, "%s:%s", path, cases[i].want);
        expect_fail(AHG_ECONFIG, ARGS(arg), BASE_ENV);
        if (strcmp(errbuf, want) != 0)
            print_error("case %zu: got '%s'\n", i, errbuf);
        assert_string_equal(errbuf, want);
        drop_tmp(path);
    }

    /* Accepted shapes: null values, a scalar for a LIST, an empty section. */
    {
        static const char y[] = "listen:\nhost: ~\ntags: solo\nrelay:\n  endpoint: null\n";
        char *path = write_tmp(y, strlen(y));
        struct ahg_config *cfg;
        const char *const *items;
        (void)snprintf(arg, sizeof arg, "--config=%s", path);
        cfg = expect_ok(ARGS(arg), BASE_ENV);
        assert_false(ahg_config_is_set(cfg, "host"));
        assert_int_equal(ahg_config_list(cfg, "tags", &items), 1);
        assert_string_equal(items[0], "solo");
        assert_string_equal(ahg_config_str(cfg, "relay.endpoint"), "sb://env.example/");
        ahg_config_free(cfg);
        drop_tmp(path);
    }
}

static void
test_config_yaml_file_size_is_capped(void **state)
{
    size_t n = AHG_CONFIG_MAX_FILE + 1;
    char *big = malloc(n), *path, arg[256];
    (void)state;

    assert_non_null(big);
    memset(big, '#', n); /* one huge comment: valid YAML if it were allowed */
    path = write_tmp(big, n);
    (void)snprintf(arg, sizeof arg, "--config=%s", path);
    expect_fail(AHG_ECONFIG, ARGS(arg), BASE_ENV);
    assert_true(contains(errbuf, "larger than 1 MiB"));
    drop_tmp(path);

    path = write_tmp(big, n - 1);
    (void)snprintf(arg, sizeof arg, "--config=%s", path);
    ahg_config_free(expect_ok(ARGS(arg), BASE_ENV));
    drop_tmp(path);
    free(big);
}

/* A config file whose size fstat does not know (a pipe: st_size 0) is read by growing the
 * buffer, and the 1 MiB cap still applies. (Found while fuzzing: the loader allocated 1 MiB for
 * every file whatever its size.) */
static void
test_config_yaml_from_pipe_grows_and_is_capped(void **state)
{
    size_t n = 20000;
    char *yaml = malloc(n + 64), arg[256];
    int fds[2];
    (void)state;

    assert_non_null(yaml);
    memset(yaml, '#', n); /* a long comment, then one value after several buffer growths */
    (void)snprintf(yaml + n, 64, "\nlisten:\n  port: 7777\n");
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    assert_int_equal(close(fds[1]), 0);
    (void)snprintf(arg, sizeof arg, "--config=/proc/self/fd/%d", fds[0]);
    struct ahg_config *cfg = expect_ok(ARGS(arg), BASE_ENV);
    assert_int_equal(ahg_config_int(cfg, "listen.port"), 7777);
    ahg_config_free(cfg);
    assert_int_equal(close(fds[0]), 0);
    free(yaml);

    /* over the cap through a pipe: the writer is a child, the pipe holds only 64 KiB */
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        static char chunk[4096];
        memset(chunk, '#', sizeof chunk);
        (void)close(fds[0]);
        for (size_t done = 0; done <= AHG_CONFIG_MAX_FILE; done += sizeof chunk)
            if (write(fds[1], chunk, sizeof chunk) < 0)
                break;
        _exit(0);
    }
    assert_int_equal(close(fds[1]), 0);
    (void)snprintf(arg, sizeof arg, "--config=/proc/self/fd/%d", fds[0]);
    expect_fail(AHG_ECONFIG, ARGS(arg), BASE_ENV);
    assert_true(contains(errbuf, "larger than 1 MiB"));
    assert_int_equal(close(fds[0]), 0);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
}

static void
test_config_file_path_precedence(void **state)
{
    struct ahg_config_spec spec = test_spec;
    struct ahg_config *cfg = NULL;
    (void)state;

    /* --config beats AZHEXGATE_CONFIG beats default_file. */
    spec.default_file = FIX("bad_value.yaml");
    assert_int_equal(load_spec(&spec, &cfg, ARGS("--config", FIX("nested.yaml")),
                               ENV("AZHEXGATE_CONFIG=" FIX("basic.yaml"))),
                     AHG_OK);
    assert_string_equal(ahg_config_file(cfg), FIX("nested.yaml"));
    ahg_config_free(cfg);

    assert_int_equal(load_spec(&spec, &cfg, NOARGS, ENV("AZHEXGATE_CONFIG=" FIX("basic.yaml"))),
                     AHG_OK);
    assert_string_equal(ahg_config_file(cfg), FIX("basic.yaml"));
    assert_int_equal(ahg_config_int(cfg, "listen.port"), 9000);
    ahg_config_free(cfg);

    /* The default file is used when nothing else names one. */
    spec.default_file = FIX("basic.yaml");
    assert_int_equal(load_spec(&spec, &cfg, NOARGS, ENV("X=1")), AHG_OK);
    assert_string_equal(ahg_config_file(cfg), FIX("basic.yaml"));
    assert_string_equal(ahg_config_str(cfg, "relay.endpoint"), "sb://file.example/");
    ahg_config_free(cfg);

    /* A missing default file is fine; an empty --config means "no file". */
    spec.default_file = "/nonexistent/azhexgate.yaml";
    assert_int_equal(load_spec(&spec, &cfg, NOARGS, BASE_ENV), AHG_OK);
    assert_null(ahg_config_file(cfg));
    ahg_config_free(cfg);
    spec.default_file = FIX("basic.yaml");
    assert_int_equal(load_spec(&spec, &cfg, ARGS("--config="), BASE_ENV), AHG_OK);
    assert_null(ahg_config_file(cfg));
    ahg_config_free(cfg);

    /* A named file that is missing is a config error. */
    expect_fail(AHG_ECONFIG, ARGS("--config", "/nonexistent/gw.yaml"), BASE_ENV);
    assert_true(contains(errbuf, "--config: cannot read config file '/nonexistent/gw.yaml'"));
    expect_fail(AHG_ECONFIG, NOARGS, ENV(ENDPOINT, "AZHEXGATE_CONFIG=/nonexistent/env.yaml"));
    assert_true(contains(errbuf, "AZHEXGATE_CONFIG: cannot read config file"));
}

static void
test_config_list_from_every_source(void **state)
{
    struct ahg_config *cfg;
    const char *const *items;
    (void)state;

    cfg = expect_ok(ARGS("-t", "a", "--tags", "b", "--tags=c,d"), BASE_ENV);
    assert_int_equal(ahg_config_list(cfg, "tags", &items), 3);
    assert_string_equal(items[0], "a");
    assert_string_equal(items[1], "b");
    assert_string_equal(items[2], "c,d"); /* flags are not split */
    assert_int_equal(ahg_config_source(cfg, "tags"), AHG_SRC_FLAG);
    ahg_config_free(cfg);

    cfg = expect_ok(NOARGS, ENV(ENDPOINT, "AZHEXGATE_TAGS= x, y ,,z,"));
    assert_int_equal(ahg_config_list(cfg, "tags", &items), 3);
    assert_string_equal(items[0], "x");
    assert_string_equal(items[1], "y");
    assert_string_equal(items[2], "z");
    assert_int_equal(ahg_config_source(cfg, "tags"), AHG_SRC_ENV);
    ahg_config_free(cfg);

    /* A higher source replaces the whole list. */
    cfg = expect_ok(ARGS("--config", fx_nested, "-t", "only"), ENV("AZHEXGATE_TAGS=e1,e2"));
    assert_int_equal(ahg_config_list(cfg, "tags", &items), 1);
    assert_string_equal(items[0], "only");
    ahg_config_free(cfg);
    cfg = expect_ok(ARGS("--config", FIX("nested.yaml")), ENV("AZHEXGATE_TAGS=e1,e2"));
    assert_int_equal(ahg_config_list(cfg, "tags", NULL), 2);
    assert_int_equal(ahg_config_source(cfg, "tags"), AHG_SRC_ENV);
    ahg_config_free(cfg);

    /* An empty env list is set and empty; scalar getters don't apply to lists. */
    cfg = expect_ok(NOARGS, ENV(ENDPOINT, "AZHEXGATE_TAGS="));
    assert_true(ahg_config_is_set(cfg, "tags"));
    assert_int_equal(ahg_config_list(cfg, "tags", &items), 0);
    assert_null(items[0]);
    assert_null(ahg_config_str(cfg, "tags"));
    assert_int_equal(ahg_config_list(cfg, "listen.port", &items), 0);
    ahg_config_free(cfg);
}

static void
test_config_env_rules(void **state)
{
    struct ahg_config *cfg;
    (void)state;

    /* Empty string is a value; unknown AZHEXGATE_* and options without env are ignored. */
    cfg = expect_ok(NOARGS, ENV(ENDPOINT, "AZHEXGATE_HOST=", "AZHEXGATE_NOT_AN_OPTION=1",
                                "AZHEXGATE_INTERNAL=ignored", "AZHEXGATE_LISTEN_PORTX=1",
                                "AZHEXGATE_LISTEN_PORT"));
    assert_true(ahg_config_is_set(cfg, "host"));
    assert_string_equal(ahg_config_str(cfg, "host"), "");
    assert_int_equal(ahg_config_source(cfg, "host"), AHG_SRC_ENV);
    assert_string_equal(ahg_config_str(cfg, "internal"), "builtin");
    assert_int_equal(ahg_config_int(cfg, "listen.port"), 8080);
    ahg_config_free(cfg);
}

static void
test_config_print_shows_sources_and_redacts_secret(void **state)
{
    struct ahg_config *cfg;
    char *out;
    int rc = 0;
    (void)state;

    cfg = expect_ok(ARGS("--config", fx_basic, "--port", "9200", "--api-key=TopSecretValue42", "-t",
                         "a", "-t", "b", "--print-config"),
                    ENV("AZHEXGATE_TLS=yes"));
    assert_int_equal(ahg_config_action(cfg), AHG_CONFIG_PRINT);
    out = capture(cfg, 0, NULL);
    assert_true(contains(out, "# config file: " FIX("basic.yaml") " (from --config)\n"));
    assert_true(contains(out, "\nlisten.port = 9200  (flag --port)\n"));
    assert_true(
        contains(out, "\nrelay.endpoint = sb://file.example/  (file " FIX("basic.yaml") ":5)\n"));
    assert_true(contains(out, "\nrelay.api_key = [REDACTED]  (flag --api-key)\n"));
    assert_true(contains(out, "\nlog_format = text  (file " FIX("basic.yaml") ":6)\n"));
    assert_true(contains(out, "\ntls = yes  (env AZHEXGATE_TLS)\n"));
    assert_true(contains(out, "\ntimeout = 30s  (default)\n"));
    assert_true(contains(out, "\ntags = [a, b]  (flag --tags)\n"));
    assert_true(contains(out, "\nhost = (unset)\n"));
    assert_false(contains(out, "TopSecretValue42"));
    assert_false(contains(out, "TopSecret"));
    free(out);

    out = capture(cfg, 2, &rc);
    assert_int_equal(rc, AHG_EXIT_OK);
    assert_true(contains(out, "[REDACTED]"));
    assert_false(contains(out, "TopSecretValue42"));
    free(out);
    ahg_config_free(cfg);

    /* Unset secret and unset required option. */
    cfg = expect_ok(ARGS("--print-config"), ENV("X=1"));
    out = capture(cfg, 0, NULL);
    assert_true(contains(out, "# config file: (none)\n"));
    assert_true(contains(out, "\nrelay.api_key = (unset)\n"));
    assert_true(contains(out, "\nrelay.endpoint = (unset, required)\n"));
    free(out);
    ahg_config_free(cfg);

    /* A secret read from a file is redacted too. */
    cfg = expect_ok(ARGS("--config", FIX("secret_file.yaml")), ENV("X=1"));
    out = capture(cfg, 0, NULL);
    assert_true(contains(out, "relay.api_key = [REDACTED]  (file "));
    assert_false(contains(out, "s3cr3t"));
    free(out);
    ahg_config_free(cfg);
}

static void
test_config_check_action(void **state)
{
    struct ahg_config *cfg;
    char *out;
    int rc = 0;
    (void)state;

    cfg = expect_ok(ARGS("--check-config"), BASE_ENV);
    assert_int_equal(ahg_config_action(cfg), AHG_CONFIG_CHECK);
    out = capture(cfg, 2, &rc);
    assert_int_equal(rc, AHG_EXIT_OK);
    assert_string_equal(out, "azhexgate-test: configuration OK\n");
    free(out);
    ahg_config_free(cfg);

    expect_fail(AHG_ECONFIG, ARGS("--check-config", "--config", fx_unknown_key), BASE_ENV);

    /* RUN: nothing printed, main continues. */
    cfg = expect_ok(NOARGS, BASE_ENV);
    rc = 0;
    out = capture(cfg, 2, &rc);
    assert_int_equal(rc, -1);
    assert_string_equal(out, "");
    free(out);
    ahg_config_free(cfg);
}

static void
test_config_help_lists_every_flag_and_env(void **state)
{
    static const char *const needles[] = {
        "Usage: azhexgate-test [OPTIONS]\n",
        "Test binary for the config module.",
        "-p, --port PORT",
        "Default: 8080.",
        "AZHEXGATE_LISTEN_PORT",
        "--relay-endpoint URL",
        "AZHEXGATE_RELAY_ENDPOINT",
        "Required.",
        "--api-key KEY, --api-key-file FILE",
        "AZHEXGATE_API_KEY or AZHEXGATE_API_KEY_FILE",
        "YAML: relay.api_key or relay.api_key_file.",
        "--log-format json|text",
        "AZHEXGATE_LOG_FORMAT",
        "--tls[=BOOL], --no-tls",
        "AZHEXGATE_TLS",
        "-v, --verbose[=BOOL], --no-verbose",
        "AZHEXGATE_VERBOSE",
        "--timeout DURATION",
        "AZHEXGATE_TIMEOUT",
        "--grace DURATION",
        "AZHEXGATE_GRACE",
        "--max-body SIZE",
        "AZHEXGATE_MAX_BODY",
        "--cache-size SIZE",
        "AZHEXGATE_CACHE_SIZE",
        "-t, --tags TAG  (repeatable)",
        "AZHEXGATE_TAGS (comma-separated)",
        "--host VALUE",
        "AZHEXGATE_HOST",
        "--retries N",
        "AZHEXGATE_RETRIES",
        "(config file only)",
        "YAML: internal.",
        "-c, --config FILE",
        "AZHEXGATE_CONFIG",
        "--print-config",
        "--check-config",
        "-h, --help",
        "--version",
    };
    struct ahg_config *cfg;
    char *out, *out2;
    int rc = 0;
    (void)state;

    out = capture(NULL, 1, NULL);
    for (size_t i = 0; i < sizeof needles / sizeof needles[0]; i++) {
        if (!contains(out, needles[i]))
            print_error("missing from --help: '%s'\n%s", needles[i], out);
        assert_true(contains(out, needles[i]));
    }
    /* Every help line of the table is there. */
    for (size_t i = 0; i < test_spec.nopts; i++)
        assert_true(contains(out, test_opts[i].help));
    assert_false(contains(out, "AZHEXGATE_INTERNAL"));
    assert_false(contains(out, "--internal"));

    cfg = expect_ok(ARGS("--help"), ENV("X=1"));
    out2 = capture(cfg, 2, &rc);
    assert_int_equal(rc, AHG_EXIT_OK);
    assert_string_equal(out, out2);
    free(out2);
    free(out);
    ahg_config_free(cfg);
}

static void
test_config_version_action(void **state)
{
    struct ahg_config *cfg;
    char *out;
    int rc = 0;
    (void)state;

    cfg = expect_ok(ARGS("--version", "--print-config"), ENV("X=1"));
    assert_int_equal(ahg_config_action(cfg), AHG_CONFIG_VERSION);
    out = capture(cfg, 2, &rc);
    assert_int_equal(rc, AHG_EXIT_OK);
    assert_true(strncmp(out, "azhexgate-test ", 15) == 0);
    assert_true(out[strlen(out) - 1] == '\n');
    free(out);
    ahg_config_free(cfg);
}

static void
test_config_spec_errors_are_einval(void **state)
{
    static const struct ahg_opt_def dup_flag[] = {
        {.name = "a", .flag = "x", .type = AHG_OPT_STRING},
        {.name = "b", .flag = "x", .type = AHG_OPT_STRING},
    };
    static const struct ahg_opt_def builtin_clash[] = {{.name = "help", .type = AHG_OPT_BOOL}};
    static const struct ahg_opt_def bad_default[] = {
        {.name = "n", .type = AHG_OPT_INT, .def = "ten"}};
    static const struct ahg_opt_def no_choices[] = {{.name = "e", .type = AHG_OPT_ENUM}};
    static const struct ahg_opt_def section_clash[] = {
        {.name = "relay", .type = AHG_OPT_STRING},
        {.name = "relay.endpoint", .type = AHG_OPT_STRING},
    };
    static const struct ahg_opt_def short_h[] = {
        {.name = "hh", .short_flag = 'h', .type = AHG_OPT_STRING}};
    static const struct ahg_opt_def bad_name[] = {{.name = "Relay.Endpoint"}};
    static const struct ahg_opt_def neg_clash[] = {
        {.name = "tls", .type = AHG_OPT_BOOL},
        {.name = "no_tls", .type = AHG_OPT_STRING},
    };
    static const struct ahg_opt_def env_clash[] = {
        {.name = "a_b", .type = AHG_OPT_STRING, .flag = "one"},
        {.name = "a.b", .type = AHG_OPT_STRING, .flag = "two"},
    };
    static const struct {
        const struct ahg_opt_def *opts;
        size_t n;
    } cases[] = {
        {dup_flag, 2}, {builtin_clash, 1}, {bad_default, 1}, {no_choices, 1}, {section_clash, 2},
        {short_h, 1},  {bad_name, 1},      {neg_clash, 2},   {env_clash, 2},
    };
    struct ahg_config *cfg = NULL;
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ahg_config_spec spec = {.prog = "p", .opts = cases[i].opts, .nopts = cases[i].n};
        assert_int_equal(load_spec(&spec, &cfg, NOARGS, ENV("X=1")), AHG_EINVAL);
        assert_null(cfg);
        assert_true(strncmp(errbuf, "spec: ", 6) == 0);
    }
    assert_int_equal(ahg_config_load(NULL, &test_spec, 0, NULL, NULL, NULL, 0), AHG_EINVAL);
    assert_int_equal(ahg_config_load(&cfg, NULL, 0, NULL, NULL, errbuf, sizeof errbuf), AHG_EINVAL);
}

static void
test_config_getters_tolerate_unknown_names_and_null(void **state)
{
    struct ahg_config *cfg;
    const char *const *items = NULL;
    (void)state;

    cfg = expect_ok(NOARGS, BASE_ENV);
    assert_null(ahg_config_str(cfg, "nope"));
    assert_int_equal(ahg_config_int(cfg, "nope"), 0);
    assert_false(ahg_config_bool(cfg, "nope"));
    assert_false(ahg_config_bool(cfg, "listen.port")); /* not a bool */
    assert_false(ahg_config_is_set(cfg, "nope"));
    assert_int_equal(ahg_config_source(cfg, "nope"), AHG_SRC_DEFAULT);
    assert_null(ahg_config_origin(cfg, "nope"));
    assert_int_equal(ahg_config_list(cfg, "nope", &items), 0);
    assert_non_null(items);
    assert_null(ahg_config_str(cfg, NULL));
    ahg_config_free(cfg);

    assert_null(ahg_config_str(NULL, "listen.port"));
    assert_int_equal(ahg_config_action(NULL), AHG_CONFIG_RUN);
    assert_int_equal(ahg_config_positional(NULL, &items), 0);
    assert_null(items[0]);
    ahg_config_free(NULL);

    /* NULL err buffer is allowed. */
    assert_int_equal(ahg_config_load(&cfg, &test_spec, 2, (char *const *)ARGS("--bogus"),
                                     (char *const *)ENV("X=1"), NULL, 0),
                     AHG_EUSAGE);
    assert_null(cfg);
}

/* --help-markdown prints the reference table (no validation, like --help). */
static void
test_config_help_markdown(void **state)
{
    struct ahg_config *cfg;
    int rc = -1;
    char *out;

    (void)state;
    cfg = expect_ok(ARGS("--help-markdown"), ENV("AZHEXGATE_LISTEN_PORT=notanumber"));
    assert_int_equal(ahg_config_action(cfg), AHG_CONFIG_MARKDOWN);
    out = capture(cfg, 2, &rc);
    assert_int_equal(rc, AHG_EXIT_OK);
    assert_non_null(strstr(out, "| YAML key | flag | environment | default | description |"));
    assert_non_null(strstr(out,
                           "| `listen.port` | `-p` `--port` | `AZHEXGATE_LISTEN_PORT` | `8080` | "
                           "TCP port to listen on. |\n"));
    /* secrets: the file variants, no default shown */
    assert_non_null(strstr(out, "| `relay.api_key` (`_file`) | `--api-key` / `--api-key-file` | "
                                "`AZHEXGATE_API_KEY` / `AZHEXGATE_API_KEY_FILE` |  | "));
    assert_non_null(strstr(out, "One of `json\\|text`."));
    assert_non_null(strstr(out, "**Required.**"));
    free(out);
    ahg_config_free(cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults_apply_when_nothing_set),
        cmocka_unit_test(test_config_precedence_every_pair),
        cmocka_unit_test(test_config_source_names),
        cmocka_unit_test(test_config_flag_forms),
        cmocka_unit_test(test_config_positional_and_double_dash),
        cmocka_unit_test(test_config_help_markdown),
        cmocka_unit_test(test_config_unknown_flag_is_usage_error),
        cmocka_unit_test(test_config_missing_flag_value_is_usage_error),
        cmocka_unit_test(test_config_bad_int_names_its_source),
        cmocka_unit_test(test_config_durations_parse_to_ms),
        cmocka_unit_test(test_config_sizes_parse_to_bytes),
        cmocka_unit_test(test_config_bools_accept_common_spellings),
        cmocka_unit_test(test_config_enums_are_exact),
        cmocka_unit_test(test_config_validate_callback_runs),
        cmocka_unit_test(test_config_required_option_missing),
        cmocka_unit_test(test_config_secret_from_env_file),
        cmocka_unit_test(test_config_secret_from_flag_file),
        cmocka_unit_test(test_config_secret_from_yaml_file_relative_to_config),
        cmocka_unit_test(test_config_secret_direct_and_file_at_same_level_conflict),
        cmocka_unit_test(test_config_secret_file_errors_name_the_file),
        cmocka_unit_test(test_config_invalid_secret_is_not_echoed),
        cmocka_unit_test(test_config_yaml_nested_list_and_flat_keys),
        cmocka_unit_test(test_config_yaml_syntax_error_has_line),
        cmocka_unit_test(test_config_yaml_unknown_key_has_line),
        cmocka_unit_test(test_config_yaml_bad_value_has_line),
        cmocka_unit_test(test_config_yaml_empty_file_sets_nothing),
        cmocka_unit_test(test_config_yaml_structure_errors),
        cmocka_unit_test(test_config_yaml_file_size_is_capped),
        cmocka_unit_test(test_config_yaml_from_pipe_grows_and_is_capped),
        cmocka_unit_test(test_config_file_path_precedence),
        cmocka_unit_test(test_config_list_from_every_source),
        cmocka_unit_test(test_config_env_rules),
        cmocka_unit_test(test_config_print_shows_sources_and_redacts_secret),
        cmocka_unit_test(test_config_check_action),
        cmocka_unit_test(test_config_help_lists_every_flag_and_env),
        cmocka_unit_test(test_config_version_action),
        cmocka_unit_test(test_config_spec_errors_are_einval),
        cmocka_unit_test(test_config_getters_tolerate_unknown_names_and_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
