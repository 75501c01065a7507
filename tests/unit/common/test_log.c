#include "ahg/log.h"

#include "ahg/err.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <libwebsockets.h>
#include <cmocka.h>

/* ------------------------------------------------------------------ */
/* Capture: the logger writes into a pipe whose read end is non-blocking. */
/* ------------------------------------------------------------------ */

static int pipe_r = -1, pipe_w = -1;
static char captured[256 * 1024];

static int
group_setup(void **state)
{
    int fds[2];
    (void)state;
    if (pipe(fds) != 0)
        return -1;
    pipe_r = fds[0];
    pipe_w = fds[1];
    return fcntl(pipe_r, F_SETFL, O_NONBLOCK) == 0 ? 0 : -1;
}

static int
group_teardown(void **state)
{
    (void)state;
    ahg_log_setup("test", AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_INFO, 2);
    close(pipe_r);
    close(pipe_w);
    return 0;
}

/* Everything written since the last call, NUL-terminated. */
static const char *
drain(void)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = read(pipe_r, captured + len, sizeof(captured) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    captured[len] = '\0';
    return captured;
}

static void
use(enum ahg_log_format fmt, enum ahg_log_level lvl)
{
    ahg_log_setup("test", fmt, lvl, pipe_w);
    (void)drain();
}

static size_t
count_char(const char *s, char c)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += *s == c;
    return n;
}

/* Drain exactly one line and parse it as JSON (caller deletes). */
static cJSON *
one_json_line(void)
{
    const char *out = drain();
    size_t len = strlen(out);
    cJSON *j;

    assert_true(len > 0);
    assert_int_equal(count_char(out, '\n'), 1);
    assert_int_equal(out[len - 1], '\n');
    j = cJSON_ParseWithLength(out, len - 1);
    assert_non_null(j);
    assert_true(cJSON_IsObject(j));
    return j;
}

static const char *
jstr(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    assert_non_null(v);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static double
jnum(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    assert_non_null(v);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static bool
ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* 2026-11-25T02:07:40.123Z */
static void
assert_ts_shape(const char *ts)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    assert_int_equal(strlen(ts), sizeof(shape) - 1);
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        if (shape[i] == 'd')
            assert_true(ts[i] >= '0' && ts[i] <= '9');
        else
            assert_int_equal(ts[i], shape[i]);
    }
}

static void
check_redact(const char *in, const char *want)
{
    char out[4096], again[4096];
    size_t n = ahg_log_redact(in, out, sizeof(out));
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
    /* redaction is idempotent */
    ahg_log_redact(out, again, sizeof(again));
    assert_string_equal(again, want);
}

/* ------------------------------------------------------------------ */
/* Tests                                                                */
/* ------------------------------------------------------------------ */

/* Must run first: nothing has called ahg_log_setup() yet. */
static void
test_log_defaults_before_setup(void **state)
{
    int saved = dup(2);
    cJSON *j;
    (void)state;

    assert_true(ahg_log_enabled(AHG_LOG_LVL_INFO));
    assert_false(ahg_log_enabled(AHG_LOG_LVL_DEBUG));
    assert_true(saved >= 0);
    (void)drain();
    assert_int_equal(dup2(pipe_w, 2), 2);
    AHG_LOG_INFO("to stderr %d", 1);
    AHG_LOG_DEBUG("not at info");
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    j = one_json_line();
    assert_string_equal(jstr(j, "comp"), "ahg");
    assert_string_equal(jstr(j, "level"), "info");
    assert_string_equal(jstr(j, "msg"), "to stderr 1");
    cJSON_Delete(j);
}

static void
test_log_level_and_format_parse(void **state)
{
    enum ahg_log_level l = AHG_LOG_LVL_ERROR;
    enum ahg_log_format f = AHG_LOG_FORMAT_TEXT;
    (void)state;

    assert_int_equal(ahg_log_level_parse("debug", &l), AHG_OK);
    assert_int_equal(l, AHG_LOG_LVL_DEBUG);
    assert_int_equal(ahg_log_level_parse("INFO", &l), AHG_OK);
    assert_int_equal(l, AHG_LOG_LVL_INFO);
    assert_int_equal(ahg_log_level_parse("Warn", &l), AHG_OK);
    assert_int_equal(l, AHG_LOG_LVL_WARN);
    l = AHG_LOG_LVL_DEBUG;
    assert_int_equal(ahg_log_level_parse("WARNING", &l), AHG_OK);
    assert_int_equal(l, AHG_LOG_LVL_WARN);
    assert_int_equal(ahg_log_level_parse("error", &l), AHG_OK);
    assert_int_equal(l, AHG_LOG_LVL_ERROR);
    assert_int_equal(ahg_log_level_parse("err", &l), AHG_EINVAL);
    assert_int_equal(ahg_log_level_parse("", &l), AHG_EINVAL);
    assert_int_equal(ahg_log_level_parse("info ", &l), AHG_EINVAL);
    assert_int_equal(ahg_log_level_parse(NULL, &l), AHG_EINVAL);
    assert_int_equal(ahg_log_level_parse("info", NULL), AHG_EINVAL);
    assert_int_equal(l, AHG_LOG_LVL_ERROR); /* untouched on error */

    assert_int_equal(ahg_log_format_parse("JSON", &f), AHG_OK);
    assert_int_equal(f, AHG_LOG_FORMAT_JSON);
    assert_int_equal(ahg_log_format_parse("text", &f), AHG_OK);
    assert_int_equal(f, AHG_LOG_FORMAT_TEXT);
    assert_int_equal(ahg_log_format_parse("yaml", &f), AHG_EINVAL);
    assert_int_equal(ahg_log_format_parse(NULL, &f), AHG_EINVAL);
    assert_int_equal(f, AHG_LOG_FORMAT_TEXT);

    assert_string_equal(ahg_log_level_name(AHG_LOG_LVL_WARN), "warn");
    assert_string_equal(ahg_log_level_name((enum ahg_log_level)42), "unknown");
}

static void
test_log_json_shape(void **state)
{
    const struct ahg_log_field fields[] = {
        {"tunnel_id", "t-42"}, {"req_id", "0123456789abcdef"}, {"peer", NULL}, {NULL, NULL}};
    const char *out;
    cJSON *j;
    (void)state;

    use(AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_INFO);
    AHG_LOGF(AHG_LOG_LVL_WARN, fields, "upstream %s answered %d", "svc", 502);
    out = drain();
    assert_non_null(strstr(out, "\",\"level\":\"warn\",\"comp\":\"test\",\"msg\":\"upstream svc "
                                "answered 502\",\"tunnel_id\":\"t-42\",\"req_id\":"
                                "\"0123456789abcdef\",\"peer\":null}\n"));
    assert_true(strncmp(out, "{\"ts\":\"", 7) == 0);
    j = cJSON_ParseWithLength(out, strlen(out) - 1);
    assert_non_null(j);
    assert_ts_shape(jstr(j, "ts"));
    assert_string_equal(jstr(j, "level"), "warn");
    assert_string_equal(jstr(j, "comp"), "test");
    assert_string_equal(jstr(j, "msg"), "upstream svc answered 502");
    assert_string_equal(jstr(j, "tunnel_id"), "t-42");
    assert_string_equal(jstr(j, "req_id"), "0123456789abcdef");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "peer")));
    cJSON_Delete(j);
}

static void
test_log_json_escaping(void **state)
{
    const struct ahg_log_field fields[] = {{"v", "tab\there"}, {NULL, NULL}};
    const char *out;
    cJSON *j;
    (void)state;

    use(AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_INFO);
    /* quote, backslash, newline, control, DEL, é € 😀, then invalid bytes: lone
     * 0xff, overlong C0 80, surrogate ED A0 80, cut sequence E2 82 at the end */
    ahg_log_emit(AHG_LOG_LVL_INFO, fields, "%s",
                 "q\"b\\n\nc\x01"
                 "d\x7f|\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\xff|\xc0\x80|"
                 "\xed\xa0\x80|\xe2\x82");
    out = drain();
    assert_non_null(strstr(out, "\"msg\":\"q\\\"b\\\\n\\u000ac\\u0001d\\u007f|"
                                "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\xef\xbf\xbd|"
                                "\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                                "\xef\xbf\xbd\xef\xbf\xbd\""));
    assert_non_null(strstr(out, "\"v\":\"tab\\u0009here\""));
    j = cJSON_ParseWithLength(out, strlen(out) - 1);
    assert_non_null(j);
    assert_string_equal(jstr(j, "msg"), "q\"b\\n\nc\x01"
                                        "d\x7f|\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|"
                                        "\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|"
                                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                                        "\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(jstr(j, "v"), "tab\there");
    cJSON_Delete(j);
}

static int side_effects;

static int
bump(void)
{
    return ++side_effects;
}

static void
test_log_level_filtering(void **state)
{
    const struct ahg_log_field fields[] = {{"k", "v"}, {NULL, NULL}};
    const char *out;
    (void)state;

    use(AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_INFO);
    side_effects = 0;
    AHG_LOG_DEBUG("dropped %d", bump());
    AHG_LOGF(AHG_LOG_LVL_DEBUG, fields, "dropped too %d", bump());
    assert_int_equal(side_effects, 0); /* arguments never evaluated */
    ahg_log_emit(AHG_LOG_LVL_DEBUG, NULL, "direct call filtered as well");
    assert_string_equal(drain(), "");
    AHG_LOG_INFO("kept %d", bump());
    assert_int_equal(side_effects, 1);
    out = drain();
    assert_non_null(strstr(out, "\"msg\":\"kept 1\""));

    use(AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_WARN);
    AHG_LOG_INFO("info dropped %d", bump());
    assert_int_equal(side_effects, 1);
    assert_string_equal(drain(), "");
    AHG_LOG_WARN("warn kept");
    AHG_LOG_ERROR("error kept");
    out = drain();
    assert_int_equal(count_char(out, '\n'), 2);
    assert_non_null(strstr(out, "\"level\":\"warn\",\"comp\":\"test\",\"msg\":\"warn kept\""));
    assert_non_null(strstr(out, "\"level\":\"error\",\"comp\":\"test\",\"msg\":\"error kept\""));

    use(AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_DEBUG);
    AHG_LOG_DEBUG("debug kept %d", bump());
    assert_int_equal(side_effects, 2);
    assert_non_null(strstr(drain(), "\"level\":\"debug\""));
}

static void
test_log_text_format(void **state)
{
    /* ("key" itself names a secret, see test_log_key_is_secret) */
    const struct ahg_log_field fields[] = {{"name", "value"},   {"name2", "value with spaces"},
                                           {"q", "say \"hi\""}, {"empty", ""},
                                           {"nil", NULL},       {NULL, NULL}};
    const char *out;
    (void)state;

    use(AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_DEBUG);
    AHG_LOGF(AHG_LOG_LVL_INFO, fields, "msg");
    out = drain();
    assert_true(strlen(out) > 24);
    {
        char ts[25];
        memcpy(ts, out, 24);
        ts[24] = '\0';
        assert_ts_shape(ts);
    }
    assert_string_equal(out + 24, " INFO  test: msg name=value name2=\"value with spaces\" "
                                  "q=\"say \\\"hi\\\"\" empty=\"\" nil=null\n");

    AHG_LOG_ERROR("line1\nline2\tx\x1b");
    out = drain();
    assert_int_equal(count_char(out, '\n'), 1);
    assert_string_equal(out + 24, " ERROR test: line1\\nline2\\tx\\x1b\n");
    AHG_LOG_WARN("w");
    assert_string_equal(drain() + 24, " WARN  test: w\n");
    AHG_LOG_DEBUG("d");
    assert_string_equal(drain() + 24, " DEBUG test: d\n");
    AHG_LOGF(AHG_LOG_LVL_INFO, fields + 4, "%s", "");
    assert_string_equal(drain() + 24, " INFO  test: nil=null\n");
}

static void
test_log_comp_field_and_reserved_keys(void **state)
{
    const struct ahg_log_field fields[] = {{"comp", "worker"}, {"msg", "m"}, {"ts", "t"},
                                           {"level", "l"},     {"x", "y"},   {NULL, NULL}};
    const struct ahg_log_field secret_comp[] = {{"comp", "w Bearer tok5"}, {NULL, NULL}};
    cJSON *j;
    (void)state;

    use(AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_INFO);
    AHG_LOGF(AHG_LOG_LVL_INFO, fields, "hello");
    j = one_json_line();
    assert_string_equal(jstr(j, "comp"), "worker");
    assert_string_equal(jstr(j, "msg"), "hello");
    assert_string_equal(jstr(j, "x_msg"), "m");
    assert_string_equal(jstr(j, "x_ts"), "t");
    assert_string_equal(jstr(j, "x_level"), "l");
    assert_string_equal(jstr(j, "x"), "y");
    assert_int_equal(cJSON_GetArraySize(j), 8);
    cJSON_Delete(j);

    /* the next line is back to the process component */
    AHG_LOG_INFO("again");
    j = one_json_line();
    assert_string_equal(jstr(j, "comp"), "test");
    cJSON_Delete(j);

    /* an overriding component is redacted like any value */
    AHG_LOGF(AHG_LOG_LVL_INFO, secret_comp, "x");
    j = one_json_line();
    assert_string_equal(jstr(j, "comp"), "w Bearer [REDACTED]");
    cJSON_Delete(j);
}

static void
test_log_truncation_json(void **state)
{
    char *big = malloc(20001);
    const struct ahg_log_field fields[] = {{"req_id", "r1"}, {NULL, NULL}};
    const char *out, *msg;
    cJSON *j;
    (void)state;

    assert_non_null(big);
    memset(big, 'a', 20000);
    big[20000] = '\0';
    use(AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_INFO);
    AHG_LOGF(AHG_LOG_LVL_INFO, fields, "%s", big);
    out = drain();
    assert_true(strlen(out) <= AHG_LOG_LINE_MAX);
    assert_true(strlen(out) > AHG_LOG_LINE_MAX - 200); /* cut, not dropped */
    assert_true(ends_with(out, "a" AHG_LOG_TRUNCATED "\",\"req_id\":\"r1\"}\n"));
    j = cJSON_ParseWithLength(out, strlen(out) - 1);
    assert_non_null(j);
    msg = jstr(j, "msg");
    assert_true(ends_with(msg, "aaa" AHG_LOG_TRUNCATED));
    assert_string_equal(jstr(j, "req_id"), "r1");
    cJSON_Delete(j);

    /* a message that needs escaping is cut between escapes, never inside one */
    memset(big, '"', 20000);
    AHG_LOG_INFO("%s", big);
    out = drain();
    assert_true(strlen(out) <= AHG_LOG_LINE_MAX);
    j = cJSON_ParseWithLength(out, strlen(out) - 1);
    assert_non_null(j);
    assert_true(ends_with(jstr(j, "msg"), "\"\"" AHG_LOG_TRUNCATED));
    cJSON_Delete(j);
    free(big);
}

static void
test_log_truncation_text(void **state)
{
    char *big = malloc(20001);
    const struct ahg_log_field fields[] = {{"req_id", "r1"}, {NULL, NULL}};
    const char *out;
    (void)state;

    assert_non_null(big);
    memset(big, 'a', 20000);
    big[20000] = '\0';
    use(AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_INFO);
    AHG_LOGF(AHG_LOG_LVL_INFO, fields, "%s", big);
    out = drain();
    assert_true(strlen(out) <= AHG_LOG_LINE_MAX);
    assert_true(strlen(out) > AHG_LOG_LINE_MAX - 200);
    assert_int_equal(count_char(out, '\n'), 1);
    assert_true(ends_with(out, "aaa" AHG_LOG_TRUNCATED " req_id=r1\n"));
    free(big);
}

static void
test_log_truncation_of_field_value(void **state)
{
    char *big = malloc(30001);
    const struct ahg_log_field fields[] = {
        {"first", "1"}, {"big", big}, {"after", "never"}, {NULL, NULL}};
    const char *out;
    cJSON *j;
    (void)state;

    assert_non_null(big);
    memset(big, 'b', 30000);
    big[30000] = '\0';
    use(AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_INFO);
    AHG_LOGF(AHG_LOG_LVL_INFO, fields, "short message");
    out = drain();
    assert_true(strlen(out) <= AHG_LOG_LINE_MAX);
    j = cJSON_ParseWithLength(out, strlen(out) - 1);
    assert_non_null(j);
    assert_string_equal(jstr(j, "msg"), "short message");
    assert_string_equal(jstr(j, "first"), "1");
    assert_true(ends_with(jstr(j, "big"), "bbb" AHG_LOG_TRUNCATED));
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "after"));
    cJSON_Delete(j);

    use(AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_INFO);
    AHG_LOGF(AHG_LOG_LVL_INFO, fields, "short message");
    out = drain();
    assert_true(strlen(out) <= AHG_LOG_LINE_MAX);
    assert_non_null(strstr(out, " INFO  test: short message first=1 big=bbbb"));
    assert_true(ends_with(out, "bbb" AHG_LOG_TRUNCATED "\n"));
    free(big);
}

static void
test_log_field_redaction_by_key(void **state)
{
    const struct ahg_log_field fields[] = {{"password", "hunter2"},
                                           {"Authorization", "Basic dXNlcjpwYXNz"},
                                           {"listener_token", "lt-secret"},
                                           {"primaryKey", "pk-secret"},
                                           {"X-AzHexGate-ApiKey", "ak-secret"},
                                           {"db_password", "dbp-secret"},
                                           {"Set-Cookie", "sid=cookie-secret"},
                                           {"tunnel_id", "t1"},
                                           {"keyName", "RootManageSharedAccessKey"},
                                           {"value", "plain"},
                                           {NULL, NULL}};
    static const char *const leaked[] = {"hunter2",   "dXNlcjpwYXNz", "lt-secret",    "pk-secret",
                                         "ak-secret", "dbp-secret",   "cookie-secret"};
    const char *out;
    cJSON *j;
    (void)state;

    use(AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_INFO);
    AHG_LOGF(AHG_LOG_LVL_INFO, fields, "login");
    out = drain();
    for (size_t i = 0; i < sizeof(leaked) / sizeof(leaked[0]); i++)
        assert_null(strstr(out, leaked[i]));
    j = cJSON_ParseWithLength(out, strlen(out) - 1);
    assert_non_null(j);
    for (size_t i = 0; i < 7; i++)
        assert_string_equal(jstr(j, fields[i].key), AHG_LOG_REDACTED);
    assert_string_equal(jstr(j, "tunnel_id"), "t1");
    assert_string_equal(jstr(j, "keyName"), "RootManageSharedAccessKey");
    assert_string_equal(jstr(j, "value"), "plain");
    cJSON_Delete(j);

    use(AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_INFO);
    AHG_LOGF(AHG_LOG_LVL_INFO, fields, "login");
    out = drain();
    for (size_t i = 0; i < sizeof(leaked) / sizeof(leaked[0]); i++)
        assert_null(strstr(out, leaked[i]));
    assert_non_null(strstr(out, " password=[REDACTED] Authorization=[REDACTED] "));
    assert_non_null(strstr(out, " tunnel_id=t1 keyName=RootManageSharedAccessKey value=plain\n"));
}

static void
test_log_key_is_secret(void **state)
{
    static const char *const secret[] = {"authorization",
                                         "ServiceBusAuthorization",
                                         "sb-hc-token",
                                         "token",
                                         "listener_token",
                                         "api_key",
                                         "apikey",
                                         "APIKey",
                                         "apiKey",
                                         "x-azhexgate-apikey",
                                         "password",
                                         "secret",
                                         "key",
                                         "primary_key",
                                         "primaryKey",
                                         "secondary_key",
                                         "SecondaryKey",
                                         "cookie",
                                         "set-cookie",
                                         "client_secret",
                                         "clientSecret",
                                         "accessToken",
                                         "refresh_token",
                                         "my_token",
                                         "route_key",
                                         "app_secret",
                                         "db_password",
                                         "SharedAccessKey",
                                         "Ocp-Apim-Subscription-Key",
                                         "PASSWORD"};
    static const char *const plain[] = {"tunnel_id",  "req_id", "value",
                                        "keyName",    "skn",    "monkey",
                                        "token_type", "tokens", "passwords_checked",
                                        "sr",         "se",     "SharedAccessKeyName",
                                        "key2",       "",       "status"};
    (void)state;

    for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++) {
        if (!ahg_log_key_is_secret(secret[i]))
            fail_msg("expected secret: %s", secret[i]);
    }
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        if (ahg_log_key_is_secret(plain[i]))
            fail_msg("expected not secret: %s", plain[i]);
    }
    assert_false(ahg_log_key_is_secret(NULL));
}

static void
test_log_redact_header_lines(void **state)
{
    (void)state;
    check_redact("Authorization: Bearer abc.def", "Authorization: [REDACTED]");
    check_redact("GET / HTTP/1.1\r\nHost: x\r\nauthorization: SharedAccessSignature sr=a&sig=b"
                 "\r\nAccept: */*",
                 "GET / HTTP/1.1\r\nHost: x\r\nauthorization: [REDACTED]\r\nAccept: */*");
    check_redact("ServiceBusAuthorization: SharedAccessSignature sr=x&sig=y&se=1&skn=k",
                 "ServiceBusAuthorization: [REDACTED]");
    check_redact("X-AzHexGate-ApiKey: k-123\nnext line",
                 "X-AzHexGate-ApiKey: [REDACTED]\nnext line");
    check_redact("Cookie: session=abc; theme=dark", "Cookie: [REDACTED]");
    check_redact("set-cookie:\tid=1; HttpOnly\nok", "set-cookie:\t[REDACTED]\nok");
    check_redact("Proxy-Authorization: Basic Zm9vOmJhcg==", "Proxy-Authorization: [REDACTED]");
    check_redact("Authorization:", "Authorization:");
    check_redact("Host: example.com", "Host: example.com");
}

static void
test_log_redact_bearer(void **state)
{
    (void)state;
    check_redact("upstream sent Bearer abc123._~+/= and more",
                 "upstream sent Bearer [REDACTED] and more");
    check_redact("bearer  xyz, next", "bearer  [REDACTED], next");
    check_redact("notbearer abc", "notbearer abc");
    check_redact("Bearer", "Bearer");
}

static void
test_log_redact_query_pairs(void **state)
{
    (void)state;
    check_redact("/hc?sb-hc-action=listen&sb-hc-token=SharedAccessSignature%20sr%3Dx%26sig%3Dy"
                 "&sb-hc-id=1",
                 "/hc?sb-hc-action=listen&sb-hc-token=[REDACTED]&sb-hc-id=1");
    check_redact("/cb?code=abc123&state=xyz", "/cb?code=[REDACTED]&state=xyz");
    check_redact("api_key=k1&apikey=k2 access_token=t3\tclient_secret=s4",
                 "api_key=[REDACTED]&apikey=[REDACTED] access_token=[REDACTED]\t"
                 "client_secret=[REDACTED]");
    check_redact("login password=hunter2 user=bob", "login password=[REDACTED] user=bob");
    check_redact("x=\"api_key=abc\" y='password=p'", "x=\"api_key=[REDACTED]\" "
                                                     "y='password=[REDACTED]'");
    check_redact("refresh_token=r&my_secret=q&id=3",
                 "refresh_token=[REDACTED]&my_secret=[REDACTED]&id=3");
    check_redact("errcode=5 statuscode=200 zsig=1 error_code=7 sigx=2",
                 "errcode=5 statuscode=200 zsig=1 error_code=7 sigx=2");
    check_redact("password= empty", "password= empty");
}

static void
test_log_redact_sas_keeps_sr_se_skn(void **state)
{
    (void)state;
    check_redact("SharedAccessSignature sr=https%3A%2F%2Fns.servicebus.windows.net%2Fhc"
                 "&sig=AbC%2B%2Fde%3D&se=1764036460&skn=RootManageSharedAccessKey",
                 "SharedAccessSignature sr=https%3A%2F%2Fns.servicebus.windows.net%2Fhc"
                 "&sig=[REDACTED]&se=1764036460&skn=RootManageSharedAccessKey");
    check_redact("sr=...&sig=abc&se=1&skn=k", "sr=...&sig=[REDACTED]&se=1&skn=k");
}

static void
test_log_redact_sas_percent_encoded(void **state)
{
    (void)state;
    check_redact("https://gw/x?next=SharedAccessSignature%20sr%3Dhttps%253A%252F%252Fns"
                 "%26sig%3DAbC%252Bde%253D%26se%3D1764036460%26skn%3Dlisten&y=1",
                 "https://gw/x?next=SharedAccessSignature%20sr%3Dhttps%253A%252F%252Fns"
                 "%26sig%3D[REDACTED]%26se%3D1764036460%26skn%3Dlisten&y=1");
    check_redact("r=SharedAccessSignature%2520sr%253Dns%2526SIG%253DAbC%25252Bde%2526se%253D17"
                 "%2526skn%253Dk",
                 "r=SharedAccessSignature%2520sr%253Dns%2526SIG%253D[REDACTED]%2526se%253D17"
                 "%2526skn%253Dk");
}

static void
test_log_redact_connection_string(void **state)
{
    (void)state;
    check_redact("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName="
                 "RootManageSharedAccessKey;SharedAccessKey=abc+def/ghi=;EntityPath=hc1",
                 "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName="
                 "RootManageSharedAccessKey;SharedAccessKey=[REDACTED];EntityPath=hc1");
}

static void
test_log_redact_json_members(void **state)
{
    (void)state;
    check_redact("{\"listener_token\":\"abc\",\"value\":\"v\",\"primaryKey\":\"pk\","
                 "\"access_token\":\"at\",\"n\":1}",
                 "{\"listener_token\":\"[REDACTED]\",\"value\":\"v\",\"primaryKey\":"
                 "\"[REDACTED]\",\"access_token\":\"[REDACTED]\",\"n\":1}");
    check_redact("{\"password\": 12345, \"token\": null, \"secret\": \"a\\\"b\", "
                 "\"x\": {\"apiKey\":\"k\"}}",
                 "{\"password\": [REDACTED], \"token\": null, \"secret\": \"[REDACTED]\", "
                 "\"x\": {\"apiKey\":\"[REDACTED]\"}}");
    /* JSON that was itself escaped into a string */
    check_redact("body={\\\"client_secret\\\":\\\"s3cr3t\\\",\\\"grant_type\\\":\\\"x\\\"}",
                 "body={\\\"client_secret\\\":\\\"[REDACTED]\\\",\\\"grant_type\\\":"
                 "\\\"x\\\"}");
    /* a non-secret member can still carry a secret query */
    check_redact("{\"url\":\"https://h/p?sig=zz&se=1\"}",
                 "{\"url\":\"https://h/p?sig=[REDACTED]&se=1\"}");
}

static void
test_log_redact_jwt(void **state)
{
    (void)state;
    check_redact("got eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-_abc ok", "got [REDACTED] ok");
    check_redact("id=eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "id=[REDACTED]");
    check_redact("not a jwt: eyJfoo and xeyJa.b.c", "not a jwt: eyJfoo and xeyJa.b.c");
}

static void
test_log_redact_bounds(void **state)
{
    char out[64];
    (void)state;

    memset(out, 'x', sizeof(out));
    assert_int_equal(ahg_log_redact("password=hunter2", out, 12), 11);
    assert_string_equal(out, "password=[R");
    assert_int_equal(ahg_log_redact("sig=hunter2", out, 5), 4);
    assert_string_equal(out, "sig=");
    assert_int_equal(ahg_log_redact("abc", out, 1), 0);
    assert_string_equal(out, "");
    /* never split a UTF-8 sequence: "ééé" into 3 bytes of room */
    assert_int_equal(ahg_log_redact("\xc3\xa9\xc3\xa9\xc3\xa9", out, 4), 2);
    assert_string_equal(out, "\xc3\xa9");
    assert_int_equal(ahg_log_redact(NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(ahg_log_redact("abc", NULL, 10), 0);
    assert_int_equal(ahg_log_redact("plain text", out, sizeof(out)), 10);
    assert_string_equal(out, "plain text");
}

static void
test_log_redaction_applies_to_message_and_values(void **state)
{
    const struct ahg_log_field fields[] = {
        {"url", "https://ns.servicebus.windows.net/$hc/t1?sb-hc-action=connect&sb-hc-token=tok9"},
        {"hdr", "Authorization: Bearer tok8"},
        {NULL, NULL}};
    const char *out;
    cJSON *j;
    (void)state;

    use(AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_INFO);
    AHG_LOGF(AHG_LOG_LVL_INFO, fields, "calling %s with %s", "/x?sig=tok7&se=1", "Bearer tok6");
    out = drain();
    assert_null(strstr(out, "tok9"));
    assert_null(strstr(out, "tok8"));
    assert_null(strstr(out, "tok7"));
    assert_null(strstr(out, "tok6"));
    j = cJSON_ParseWithLength(out, strlen(out) - 1);
    assert_non_null(j);
    assert_string_equal(jstr(j, "msg"), "calling /x?sig=[REDACTED]&se=1 with Bearer [REDACTED]");
    assert_string_equal(jstr(j, "url"), "https://ns.servicebus.windows.net/$hc/t1?"
                                        "sb-hc-action=connect&sb-hc-token=[REDACTED]");
    assert_string_equal(jstr(j, "hdr"), "Authorization: [REDACTED]");
    cJSON_Delete(j);

    use(AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_INFO);
    AHG_LOGF(AHG_LOG_LVL_INFO, fields, "calling %s", "/x?sig=tok7&se=1");
    out = drain();
    assert_null(strstr(out, "tok9"));
    assert_null(strstr(out, "tok8"));
    assert_null(strstr(out, "tok7"));
    assert_string_equal(out + 24, " INFO  test: calling /x?sig=[REDACTED]&se=1 url=\"https://"
                                  "ns.servicebus.windows.net/$hc/t1?sb-hc-action=connect&"
                                  "sb-hc-token=[REDACTED]\" hdr=\"Authorization: [REDACTED]\"\n");
}

static void
test_log_lws_routing(void **state)
{
    cJSON *j;
    (void)state;

    use(AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_INFO);
    ahg_log_lws_emit(LLL_NOTICE, "[2026/11/25 02:07:40:1234] N: hello lws\n");
    j = one_json_line();
    assert_string_equal(jstr(j, "comp"), "lws");
    assert_string_equal(jstr(j, "level"), "info");
    assert_string_equal(jstr(j, "msg"), "hello lws");
    cJSON_Delete(j);

    ahg_log_lws_emit(LLL_ERR, "[1764036460:1234] E: bad thing\r\n");
    j = one_json_line();
    assert_string_equal(jstr(j, "level"), "error");
    assert_string_equal(jstr(j, "msg"), "bad thing");
    cJSON_Delete(j);

    ahg_log_lws_emit(LLL_WARN, "no prefix [kept] here\n");
    j = one_json_line();
    assert_string_equal(jstr(j, "level"), "warn");
    assert_string_equal(jstr(j, "msg"), "no prefix [kept] here");
    cJSON_Delete(j);

    ahg_log_lws_emit(LLL_INFO, "info is debug\n");
    ahg_log_lws_emit(LLL_NOTICE, "\n");
    ahg_log_lws_emit(LLL_NOTICE, NULL);
    assert_string_equal(drain(), "");
    use(AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_DEBUG);
    ahg_log_lws_emit(LLL_INFO, "info is debug\n");
    j = one_json_line();
    assert_string_equal(jstr(j, "level"), "debug");
    cJSON_Delete(j);

    /* through lws itself (4.1 passes the bare message plus newline) */
    use(AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_INFO);
    lws_set_log_level(LLL_ERR | LLL_WARN | LLL_NOTICE, ahg_log_lws_emit);
    lwsl_notice("via lws %d, sig=secret1&se=2\n", 42);
    lws_set_log_level(LLL_ERR | LLL_WARN, lwsl_emit_stderr);
    j = one_json_line();
    assert_string_equal(jstr(j, "comp"), "lws");
    assert_string_equal(jstr(j, "level"), "info");
    assert_string_equal(jstr(j, "msg"), "via lws 42, sig=[REDACTED]&se=2");
    cJSON_Delete(j);

    AHG_LOG_INFO("own line");
    j = one_json_line();
    assert_string_equal(jstr(j, "comp"), "test");
    cJSON_Delete(j);
}

static void
test_log_request_id(void **state)
{
    char a[AHG_LOG_REQUEST_ID_LEN], b[AHG_LOG_REQUEST_ID_LEN];
    (void)state;

    memset(a, 'Z', sizeof(a));
    ahg_log_new_request_id(a);
    ahg_log_new_request_id(b);
    assert_int_equal(strlen(a), 16);
    assert_int_equal(strlen(b), 16);
    for (size_t i = 0; i < 16; i++) {
        assert_non_null(strchr("0123456789abcdef", a[i]));
        assert_non_null(strchr("0123456789abcdef", b[i]));
    }
    assert_string_not_equal(a, b);
}

static void
test_log_access_json(void **state)
{
    const struct ahg_log_access_rec rec = {
        .req_id = "0123456789abcdef",
        .tunnel_id = NULL,
        .peer = "203.0.113.7",
        .method = "GET",
        .target = "/x?sig=s3cret&a=1",
        .status = 200,
        .bytes_in = 12,
        .bytes_out = UINT64_C(6000000000),
        .duration_ms = 1.25,
        .user_agent = "curl/8.5.0",
    };
    const char *out;
    cJSON *j;
    (void)state;

    use(AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_ERROR); /* access events ignore the level */
    ahg_log_access(&rec);
    out = drain();
    assert_null(strstr(out, "s3cret"));
    assert_non_null(strstr(out, "\"status\":200,\"bytes_in\":12,\"bytes_out\":6000000000,"
                                "\"duration_ms\":1.250,"));
    j = cJSON_ParseWithLength(out, strlen(out) - 1);
    assert_non_null(j);
    assert_ts_shape(jstr(j, "ts"));
    assert_string_equal(jstr(j, "level"), "info");
    assert_string_equal(jstr(j, "comp"), "test");
    assert_string_equal(jstr(j, "type"), "access");
    assert_string_equal(jstr(j, "msg"), "access");
    assert_string_equal(jstr(j, "req_id"), "0123456789abcdef");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "tunnel_id")));
    assert_string_equal(jstr(j, "peer"), "203.0.113.7");
    assert_string_equal(jstr(j, "method"), "GET");
    assert_string_equal(jstr(j, "target"), "/x?sig=[REDACTED]&a=1");
    assert_true(jnum(j, "status") == 200.0);
    assert_true(jnum(j, "bytes_in") == 12.0);
    assert_true(jnum(j, "bytes_out") == 6000000000.0);
    assert_true(jnum(j, "duration_ms") == 1.25);
    assert_string_equal(jstr(j, "user_agent"), "curl/8.5.0");
    assert_int_equal(cJSON_GetArraySize(j), 15);
    cJSON_Delete(j);

    ahg_log_access(NULL);
    assert_string_equal(drain(), "");
}

static void
test_log_access_text(void **state)
{
    struct ahg_log_access_rec rec = {
        .req_id = "0123456789abcdef",
        .tunnel_id = "t1",
        .peer = "203.0.113.7",
        .method = "POST",
        .target = "/up?code=c0de&b=\"q\"",
        .status = 413,
        .bytes_in = 1048576,
        .bytes_out = 0,
        .duration_ms = -3.0,
        .user_agent = "Mozilla/5.0 (X11)",
    };
    const char *out;
    (void)state;

    use(AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_INFO);
    ahg_log_access(&rec);
    out = drain();
    assert_string_equal(out + 24, " INFO  test: access 203.0.113.7 \"POST /up?code=[REDACTED]&b="
                                  "\\\"q\\\"\" 413 in=1048576 out=0 0.000ms "
                                  "req_id=0123456789abcdef tunnel_id=t1 "
                                  "ua=\"Mozilla/5.0 (X11)\"\n");

    rec.peer = NULL;
    rec.method = NULL;
    rec.target = NULL;
    rec.req_id = NULL;
    rec.tunnel_id = NULL;
    rec.user_agent = NULL;
    rec.duration_ms = 0.5;
    ahg_log_access(&rec);
    out = drain();
    assert_string_equal(out + 24, " INFO  test: access - \"- -\" 413 in=1048576 out=0 0.500ms "
                                  "req_id=- tunnel_id=- ua=\"-\"\n");
}

static void
test_log_preserves_errno(void **state)
{
    (void)state;
    use(AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_INFO);
    errno = ENOENT;
    AHG_LOG_INFO("x");
    assert_int_equal(errno, ENOENT);
    ahg_log_lws_emit(LLL_NOTICE, "y\n");
    assert_int_equal(errno, ENOENT);
    (void)drain();
}

#define THREADS    4
#define PER_THREAD 100
#define THREAD_MSG 6000 /* bigger than PIPE_BUF: atomicity comes from the logger */

struct reader {
    int fd;
    char *buf;
    size_t len, cap;
};

static void *
reader_main(void *arg)
{
    struct reader *r = arg;
    for (;;) {
        ssize_t n;
        if (r->len == r->cap)
            return NULL;
        n = read(r->fd, r->buf + r->len, r->cap - r->len);
        if (n <= 0)
            return NULL;
        r->len += (size_t)n;
    }
}

static void *
writer_main(void *arg)
{
    char *msg = malloc(THREAD_MSG + 1);
    char tag = *(const char *)arg;
    if (msg == NULL)
        return NULL;
    memset(msg, tag, THREAD_MSG);
    msg[THREAD_MSG] = '\0';
    for (int i = 0; i < PER_THREAD; i++)
        AHG_LOG_INFO("%s", msg);
    free(msg);
    return NULL;
}

static void
test_log_threads_write_whole_lines(void **state)
{
    int fds[2];
    struct reader r = {0};
    pthread_t rd, wr[THREADS];
    static const char tags[THREADS] = {'A', 'B', 'C', 'D'};
    size_t lines = 0;
    char *p;
    (void)state;

    assert_int_equal(pipe(fds), 0);
    r.fd = fds[0];
    r.cap = (size_t)THREADS * PER_THREAD * (THREAD_MSG + 200);
    r.buf = malloc(r.cap + 1);
    assert_non_null(r.buf);
    assert_int_equal(pthread_create(&rd, NULL, reader_main, &r), 0);
    ahg_log_setup("mt", AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_INFO, fds[1]);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&wr[i], NULL, writer_main, (void *)&tags[i]), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(wr[i], NULL);
    ahg_log_setup("test", AHG_LOG_FORMAT_JSON, AHG_LOG_LVL_INFO, pipe_w);
    close(fds[1]);
    pthread_join(rd, NULL);
    close(fds[0]);
    r.buf[r.len] = '\0';

    for (p = r.buf; *p != '\0';) {
        char *nl = strchr(p, '\n');
        cJSON *j;
        const char *msg;
        assert_non_null(nl);
        j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        assert_non_null(j);
        msg = jstr(j, "msg");
        assert_int_equal(strlen(msg), THREAD_MSG);
        assert_true(msg[0] >= 'A' && msg[0] < 'A' + THREADS);
        assert_int_equal(strspn(msg, (char[]){msg[0], '\0'}), THREAD_MSG);
        cJSON_Delete(j);
        lines++;
        p = nl + 1;
    }
    assert_int_equal(lines, THREADS * PER_THREAD);
    free(r.buf);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_defaults_before_setup),
        cmocka_unit_test(test_log_level_and_format_parse),
        cmocka_unit_test(test_log_json_shape),
        cmocka_unit_test(test_log_json_escaping),
        cmocka_unit_test(test_log_level_filtering),
        cmocka_unit_test(test_log_text_format),
        cmocka_unit_test(test_log_comp_field_and_reserved_keys),
        cmocka_unit_test(test_log_truncation_json),
        cmocka_unit_test(test_log_truncation_text),
        cmocka_unit_test(test_log_truncation_of_field_value),
        cmocka_unit_test(test_log_field_redaction_by_key),
        cmocka_unit_test(test_log_key_is_secret),
        cmocka_unit_test(test_log_redact_header_lines),
        cmocka_unit_test(test_log_redact_bearer),
        cmocka_unit_test(test_log_redact_query_pairs),
        cmocka_unit_test(test_log_redact_sas_keeps_sr_se_skn),
        cmocka_unit_test(test_log_redact_sas_percent_encoded),
        cmocka_unit_test(test_log_redact_connection_string),
        cmocka_unit_test(test_log_redact_json_members),
        cmocka_unit_test(test_log_redact_jwt),
        cmocka_unit_test(test_log_redact_bounds),
        cmocka_unit_test(test_log_redaction_applies_to_message_and_values),
        cmocka_unit_test(test_log_lws_routing),
        cmocka_unit_test(test_log_request_id),
        cmocka_unit_test(test_log_access_json),
        cmocka_unit_test(test_log_access_text),
        cmocka_unit_test(test_log_preserves_errno),
        cmocka_unit_test(test_log_threads_write_whole_lines),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
