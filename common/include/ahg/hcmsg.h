/*
 * ahg/hcmsg.h - Azure Relay Hybrid Connections control-channel messages.
 *
 * Parses and encodes the four JSON text messages of the control channel
 * (hc-protocol.md sections 2.1, 3.2, 3.4, 4 and 14):
 *
 *   {"accept":{"address":..,"id":..,"connectHeaders":{..},"remoteEndpoint":{..}}}
 *   {"request":{"address":..,"id":..,"requestTarget":..,"method":..,
 *               "remoteEndpoint":{..},"requestHeaders":{..},"body":true}}
 *   {"response":{"requestId":..,"statusCode":200,"statusDescription":..,
 *                "responseHeaders":{..},"body":true}}
 *   {"renewToken":{"token":..}}
 *
 * Parsing rules (liberal where the reference peers differ, strict where a
 * difference could be exploited):
 * - The document is one JSON object with exactly one member, whose key names the
 *   message type; any other key, or zero or several members, is AHG_EPROTO.
 * - Key order does not matter (.NET writes keys alphabetically). Unknown keys inside
 *   the message, and inside remoteEndpoint, are ignored. A known key given twice is
 *   AHG_EPROTO (the reference peers would disagree on which one wins).
 * - A known key with JSON null counts as absent. A known key of the wrong JSON type
 *   is AHG_EPROTO (e.g. "body":"yes", "statusCode":{}, headers not an object).
 * - statusCode is a JSON integer or a string of three digits ("200", as in the doc
 *   and some .NET shapes); it must be 100..999.
 * - A header value must be a string, or a JSON integer (hyco-https passes values
 *   given to setHeader() as numbers straight to JSON); an integer is stored as its
 *   decimal text. Any other type is AHG_EPROTO.
 * - Header names must be RFC 9110 tokens; header values and statusDescription may
 *   not contain control characters other than HTAB; method must be a token;
 *   requestTarget may contain neither control characters nor spaces; every other
 *   string may not contain control characters. This keeps CR/LF from a peer out of
 *   any HTTP message built from the result. Violations are AHG_EPROTO.
 * - Required fields (missing or empty is AHG_EPROTO):
 *     accept:     address, id
 *     request:    address; unless it is rendezvous-only (see
 *                 ahg_hcmsg_is_rendezvous_only()) also id, requestTarget, method
 *                 and body (section 14: .NET detects rendezvous-only requests by the
 *                 absence of body, hyco-https by the absence of method, so a request
 *                 with exactly one of the two would be read differently by the two
 *                 reference listeners and is rejected)
 *     response:   requestId, statusCode
 *     renewToken: token
 * - JSON escapes (\/, \u00e9, surrogate pairs) are decoded. Any string containing
 *   NUL (raw or \u0000), raw control bytes inside strings, trailing data after the
 *   object and invalid JSON are AHG_EPROTO.
 * - Bounds: a document longer than AHG_HCMSG_MAX_LEN bytes, more than
 *   AHG_HCMSG_MAX_HEADERS headers, or nesting deeper than AHG_HCMSG_MAX_DEPTH
 *   is AHG_ELIMIT.
 *
 * Thread-safety: all functions are reentrant; a struct ahg_hcmsg must not be used by
 * two threads at once. cJSON's global allocation hooks must not be changed while
 * these functions run.
 */
#ifndef AHG_HCMSG_H
#define AHG_HCMSG_H

#include <stdbool.h>
#include <stddef.h>

/* A control message longer than this (bytes of JSON) is rejected with AHG_ELIMIT,
 * both when parsed and when encoded (the .NET listener reads commands into a fixed
 * 64 KiB buffer, hc-protocol.md section 14). */
#define AHG_HCMSG_MAX_LEN ((size_t)64 * 1024)
/* At most this many headers in one connectHeaders/requestHeaders/responseHeaders. */
#define AHG_HCMSG_MAX_HEADERS 256
/* At most this many nested JSON objects/arrays (the messages themselves need 3). */
#define AHG_HCMSG_MAX_DEPTH 16

enum ahg_hcmsg_type {
    AHG_HCMSG_NONE = 0, /* an empty (initialised or cleared) message */
    AHG_HCMSG_ACCEPT = 1,
    AHG_HCMSG_REQUEST,
    AHG_HCMSG_RESPONSE,
    AHG_HCMSG_RENEW_TOKEN,
};

struct ahg_hcmsg_header {
    char *name;  /* case as received / as given */
    char *value; /* as received; multi-valued headers arrive comma-joined */
};

/*
 * One control message. Every pointer member is owned by the struct (malloc'd) and
 * freed by ahg_hcmsg_clear(). Absent optional strings are NULL; an absent body is
 * -1 and an absent remote port is -1, so initialise a struct with ahg_hcmsg_init()
 * rather than {0} (which would mean "body":false and port 0).
 */
struct ahg_hcmsg {
    enum ahg_hcmsg_type type;
    char *address;                    /* accept, request: rendezvous URL */
    char *id;                         /* accept.id, request.id */
    char *request_target;             /* request.requestTarget */
    char *method;                     /* request.method */
    char *remote_address;             /* accept, request: remoteEndpoint.address, NULL if absent */
    int remote_port;                  /* remoteEndpoint.port 0..65535, -1 if absent */
    struct ahg_hcmsg_header *headers; /* connectHeaders / requestHeaders / responseHeaders */
    size_t nheaders;                  /* in document order, duplicates kept */
    int body;                         /* request, response: 1 true, 0 false, -1 absent */
    char *request_id;                 /* response.requestId */
    int status_code;                  /* response.statusCode, 100..999 */
    char *status_description;         /* response.statusDescription, NULL if absent */
    char *token;                      /* renewToken.token */
};

/*
 * Initialise *m as an empty message of the given type (type may be AHG_HCMSG_NONE):
 * all pointers NULL, nheaders 0, body -1, remote_port -1, status_code 0. Does not
 * free anything *m held before. m must not be NULL.
 */
void ahg_hcmsg_init(struct ahg_hcmsg *m, enum ahg_hcmsg_type type);

/*
 * Free everything *m owns and leave it as ahg_hcmsg_init(m, AHG_HCMSG_NONE) does.
 * ahg_hcmsg_clear(NULL) is a no-op; clearing twice is safe.
 */
void ahg_hcmsg_clear(struct ahg_hcmsg *m);

/*
 * Parse the len bytes at json (no NUL terminator needed) into *out, following the
 * rules at the top of this file. *out is overwritten without freeing what it held;
 * on success the caller owns its contents and must call ahg_hcmsg_clear(out). On
 * failure *out is left as after ahg_hcmsg_init(out, AHG_HCMSG_NONE) and nothing
 * leaks.
 * Errors: AHG_EINVAL (json or out NULL), AHG_ELIMIT (len > AHG_HCMSG_MAX_LEN, too
 * many headers, too deep), AHG_EPROTO (invalid JSON, unknown message, wrong type,
 * missing required field, forbidden characters), AHG_ENOMEM.
 */
int ahg_hcmsg_parse(const char *json, size_t len, struct ahg_hcmsg *out);

/*
 * Encode *m as compact JSON with the documented key order:
 *   accept:     address, id, connectHeaders, remoteEndpoint{address, port}
 *   request:    address, id, requestTarget, method, remoteEndpoint, requestHeaders, body
 *   response:   requestId, statusCode (a number), statusDescription, responseHeaders, body
 *   renewToken: token
 * Absent optional fields (NULL strings, body -1, no headers, no remote endpoint) are
 * omitted. A rendezvous-only request is written as address plus id when id is set;
 * its other fields are ignored.
 * Headers keep their order and case. A JSON object cannot carry a name twice, so
 * headers whose names are equal ignoring case are written once, at the position and
 * with the spelling of the first, with later values appended after ", " (RFC 9110
 * list syntax). Set-Cookie is the exception: cookies cannot be comma-joined, so only
 * the first Set-Cookie is written and later ones are dropped (as hyco-https does).
 * The same field rules as ahg_hcmsg_parse() apply, so parse(encode(m)) reproduces m
 * (up to the header merging above).
 * On success *out is a NUL-terminated malloc'd string the caller frees with free(),
 * and *outlen (if outlen is not NULL) its length without the NUL. On failure *out is
 * NULL.
 * Errors: AHG_EINVAL (NULL arguments, unknown type, missing required field, a field
 * the parser would reject, body not -1/0/1, port out of range, a NULL header name or
 * value), AHG_ELIMIT (more than AHG_HCMSG_MAX_HEADERS headers, result longer than
 * AHG_HCMSG_MAX_LEN), AHG_ENOMEM.
 */
int ahg_hcmsg_encode(const struct ahg_hcmsg *m, char **out, size_t *outlen);

/*
 * True when m is a request that only names a rendezvous address: type
 * AHG_HCMSG_REQUEST, address set, and neither method nor body present (id may be
 * present, section 14). Requiring both to be absent satisfies both reference
 * listeners (.NET checks body, hyco-https checks method). False for NULL.
 */
bool ahg_hcmsg_is_rendezvous_only(const struct ahg_hcmsg *m);

/*
 * The value of the first header of m named name, compared ignoring ASCII case, or
 * NULL if there is none or an argument is NULL. The string is borrowed from m and
 * valid until m is cleared.
 */
const char *ahg_hcmsg_header_get(const struct ahg_hcmsg *m, const char *name);

/*
 * The wire name of a message type ("accept", "request", "response", "renewToken"),
 * or "unknown". Never NULL.
 */
const char *ahg_hcmsg_type_name(enum ahg_hcmsg_type type);

#endif /* AHG_HCMSG_H */
