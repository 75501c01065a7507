/*
 * ahg/log.h - structured logging shared by every AzHexGate binary.
 *
 * One event is one line (JSON or text) written with a single write(2) to the
 * configured file descriptor (stderr until ahg_log_setup() says otherwise).
 * Every message and every field value is passed through ahg_log_redact() before
 * it is written, and values of fields whose key names a secret are replaced by
 * "[REDACTED]" (see ahg_log_key_is_secret()).
 *
 * Naming: the level constants are AHG_LOG_LVL_DEBUG ... AHG_LOG_LVL_ERROR; the
 * logging macros are AHG_LOG_DEBUG(...), AHG_LOG_INFO(...), AHG_LOG_WARN(...),
 * AHG_LOG_ERROR(...) (printf-style, no fields) and AHG_LOGF(lvl, fields, ...).
 * The macros test the level first, so their arguments are NOT evaluated when the
 * event is filtered out (do not put side effects you depend on in them).
 *
 * Thread-safety: every function here may be called from any thread. A line is
 * built in per-thread buffers and written under a process-wide mutex, so lines
 * from different threads never interleave. Logging from a signal handler is not
 * supported (a nested call on the same thread is dropped, never corrupted).
 * errno is preserved across all logging calls.
 */
#ifndef AHG_LOG_H
#define AHG_LOG_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Severity, lowest first. Names carry LVL so they do not collide with the macros. */
enum ahg_log_level {
    AHG_LOG_LVL_DEBUG = 0,
    AHG_LOG_LVL_INFO = 1,
    AHG_LOG_LVL_WARN = 2,
    AHG_LOG_LVL_ERROR = 3,
};

/* Output format of every line. */
enum ahg_log_format {
    AHG_LOG_FORMAT_TEXT = 0,
    AHG_LOG_FORMAT_JSON = 1,
};

/* Hard cap of one output line in bytes, newline included; longer events are
 * truncated and carry AHG_LOG_TRUNCATED where the cut happened. */
#define AHG_LOG_LINE_MAX 16384
/* Size of a request id buffer: 16 lowercase hex characters plus NUL. */
#define AHG_LOG_REQUEST_ID_LEN 17
/* Component names longer than AHG_LOG_COMPONENT_MAX - 1 bytes are cut. */
#define AHG_LOG_COMPONENT_MAX 64
/* Text that replaces every secret. */
#define AHG_LOG_REDACTED "[REDACTED]"
/* Marker placed where a line was truncated. */
#define AHG_LOG_TRUNCATED "...[truncated]"

#if defined(__GNUC__) || defined(__clang__)
#define AHG_LOG_PRINTF(fmt_idx, first_arg) __attribute__((format(printf, fmt_idx, first_arg)))
#else
#define AHG_LOG_PRINTF(fmt_idx, first_arg)
#endif

/*
 * A key/value pair attached to an event. Arrays of fields end with an entry whose
 * key is NULL ({NULL, NULL}). Both strings are borrowed for the duration of the
 * call only. A NULL value is written as JSON null (text: null).
 *
 * Reserved keys: "comp" replaces the process component for that one line (it is
 * not written as a separate field; its value is redacted and cut to
 * AHG_LOG_COMPONENT_MAX - 1 bytes); "ts", "level" and "msg" are written as
 * "x_ts", "x_level" and "x_msg" so they cannot shadow the event's own keys.
 * Request ids travel as an ordinary field with key "req_id".
 */
struct ahg_log_field {
    const char *key;
    const char *value;
};

/*
 * One HTTP exchange for the access log (a separate event type: JSON lines carry
 * "type":"access"). All strings are borrowed, may be NULL (written as null, or
 * "-" in text), and are redacted like any other value; target is the request
 * path plus query, whose secret query parameters are redacted.
 */
struct ahg_log_access_rec {
    const char *req_id;
    const char *tunnel_id;
    const char *peer; /* client address, e.g. "203.0.113.7" */
    const char *method;
    const char *target; /* path + query as received */
    int status;
    uint64_t bytes_in;
    uint64_t bytes_out;
    double duration_ms; /* negative or NaN is written as 0 */
    const char *user_agent;
};

/* Internal: current minimum level, read by ahg_log_enabled(). Set it only via
 * ahg_log_setup(). */
extern atomic_int ahg__log_min_level;

/* True when an event of level lvl would be written. Lock-free; any thread. */
static inline bool
ahg_log_enabled(enum ahg_log_level lvl)
{
    return (int)lvl >= atomic_load_explicit(&ahg__log_min_level, memory_order_relaxed);
}

/*
 * Configure the process-wide logger. component (copied; NULL or "" means "ahg")
 * names the binary in every line, fmt and min_level select the format and the
 * lowest level written (invalid values fall back to JSON and info), fd is where
 * lines go (borrowed, never closed; negative means 2). Before the first call the
 * logger writes JSON at info level to fd 2 with component "ahg".
 * Any thread; once this returns, no later line is written to the previous fd.
 */
void ahg_log_setup(const char *component, enum ahg_log_format fmt, enum ahg_log_level min_level,
                   int fd);

/* Parse "debug", "info", "warn"/"warning" or "error" (ASCII case-insensitive)
 * into *out. Returns AHG_OK, or AHG_EINVAL (s or out NULL, unknown name; *out is
 * then untouched). Pure; any thread. */
int ahg_log_level_parse(const char *s, enum ahg_log_level *out);

/* Parse "json" or "text" (ASCII case-insensitive) into *out. Returns AHG_OK or
 * AHG_EINVAL as ahg_log_level_parse(). Pure; any thread. */
int ahg_log_format_parse(const char *s, enum ahg_log_format *out);

/* Lowercase name of lvl ("debug", "info", "warn", "error"), "unknown" for other
 * values. Static storage; any thread. */
const char *ahg_log_level_name(enum ahg_log_level lvl);

/*
 * Write one event: printf-style message (fmt may be NULL for an empty message)
 * plus the optional fields array (NULL or {NULL, NULL}-terminated). Nothing is
 * formatted when lvl is below the minimum level. Output is redacted and bounded
 * to AHG_LOG_LINE_MAX bytes (see the file comment). Write errors are ignored.
 * Prefer the macros below, which skip evaluating their arguments when filtered.
 */
void ahg_log_emit(enum ahg_log_level lvl, const struct ahg_log_field *fields, const char *fmt, ...)
    AHG_LOG_PRINTF(3, 4);

/* ahg_log_emit() with a va_list (consumed; the caller still va_end()s it). */
void ahg_log_vemit(enum ahg_log_level lvl, const struct ahg_log_field *fields, const char *fmt,
                   va_list ap) AHG_LOG_PRINTF(3, 0);

/* Level-checked logging; arguments are evaluated only when the level is on. */
#define AHG_LOGF(lvl, fields, ...)                                                                 \
    do {                                                                                           \
        if (ahg_log_enabled(lvl))                                                                  \
            ahg_log_emit((lvl), (fields), __VA_ARGS__);                                            \
    } while (0)
#define AHG_LOG_DEBUG(...) AHG_LOGF(AHG_LOG_LVL_DEBUG, NULL, __VA_ARGS__)
#define AHG_LOG_INFO(...)  AHG_LOGF(AHG_LOG_LVL_INFO, NULL, __VA_ARGS__)
#define AHG_LOG_WARN(...)  AHG_LOGF(AHG_LOG_LVL_WARN, NULL, __VA_ARGS__)
#define AHG_LOG_ERROR(...) AHG_LOGF(AHG_LOG_LVL_ERROR, NULL, __VA_ARGS__)

/*
 * Write one access-log event for rec (borrowed; NULL is a no-op). Access events
 * are written at info level whatever the minimum level is: whether to keep an
 * access log is the caller's decision. JSON: the usual ts/level/comp keys, then
 * "type":"access","msg":"access", then req_id, tunnel_id, peer, method, target,
 * status, bytes_in, bytes_out, duration_ms (numbers) and user_agent. Text:
 *   <ts> INFO  <comp>: access <peer> "<method> <target>" <status> in=<n> out=<n>
 *   <ms>ms req_id=<id> tunnel_id=<id> ua="<user agent>"   (one line)
 */
void ahg_log_access(const struct ahg_log_access_rec *rec);

/*
 * Fill out with a fresh request id: 16 random lowercase hex characters and a NUL
 * (OpenSSL RAND_bytes; if that fails, a time/counter mix that is still unique
 * within the process). Any thread.
 */
void ahg_log_new_request_id(char out[AHG_LOG_REQUEST_ID_LEN]);

/*
 * Copy the NUL-terminated string in into out (outsz bytes, which must not overlap
 * in) with every secret replaced by AHG_LOG_REDACTED. Recognised, ASCII
 * case-insensitively:
 *  - header lines: the value after "Authorization:" (also ServiceBusAuthorization,
 *    Proxy-Authorization), "Cookie:" (also Set-Cookie), "X-AzHexGate-ApiKey:",
 *    "X-Api-Key:", up to the end of the line;
 *  - "Bearer <token>";
 *  - query/form pairs sb-hc-token, sig, code, api_key, apikey, api-key, token,
 *    access_token, refresh_token, id_token, client_secret, client_assertion,
 *    password, passwd, secret, authorization, x-azhexgate-apikey and any name
 *    ending in _token, -token, _secret, -secret, _password or -password: the value
 *    after "=" up to "&", whitespace, a quote or the end; also when percent-encoded
 *    once or twice ("sig%3D...%26", "sig%253D...%2526") - so in a SAS token only
 *    the sig value goes and sr, se and skn stay;
 *  - "SharedAccessKey=" in connection strings (up to ";");
 *  - JSON members whose key satisfies ahg_log_key_is_secret(), also inside
 *    escaped JSON (\"token\":\"...\"); "null", "true" and "false" are kept;
 *  - JWTs (base64url segments "eyJ....x.y").
 * Returns the number of bytes written (excluding the NUL). out is always
 * NUL-terminated when outsz > 0; output that does not fit is cut (never inside a
 * UTF-8 sequence), and a cut can only lose text, never reveal a secret.
 * Returns 0 and writes nothing when out is NULL or outsz is 0; in == NULL yields "".
 * Pure; any thread. The function is idempotent: redacting twice changes nothing.
 */
size_t ahg_log_redact(const char *in, char *out, size_t outsz);

/*
 * True when a field named key holds a secret whose value must never be logged.
 * ASCII case-insensitive, '-' and '_' are equivalent and camelCase is split
 * ("primaryKey" == "primary_key"). Secret: authorization, proxy_authorization,
 * servicebusauthorization, sb_hc_token, token, listener_token, access_token,
 * refresh_token, id_token, api_key, apikey, x_azhexgate_apikey, x_api_key,
 * password, passwd, secret, client_secret, client_assertion, key, primary_key,
 * secondary_key, shared_access_key, private_key, cookie, set_cookie, sig,
 * signature, sas_token, connection_string, and anything ending in _token, _key,
 * _apikey, _secret or _password. NULL is not secret. Pure; any thread.
 */
bool ahg_log_key_is_secret(const char *key);

/*
 * libwebsockets log sink, for lws_set_log_level(mask, ahg_log_lws_emit). Strips
 * an lws timestamp prefix ("[2026/11/25 02:07:40:1234] N: ") and trailing
 * newlines, maps LLL_ERR to error, LLL_WARN to warn, LLL_NOTICE to info and any
 * other bit to debug, and writes the line with component "lws". Empty lines are
 * dropped. line is borrowed; NULL is ignored. Any thread.
 */
void ahg_log_lws_emit(int lws_level, const char *line);

#endif /* AHG_LOG_H */
