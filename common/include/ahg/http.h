/*
 * ahg/http.h - strict, streaming HTTP/1.1 message heads and body framing for a
 * reverse proxy (RFC 9110 / RFC 9112), built on http_parser 2.9.4.
 *
 * Two objects:
 *
 *   struct ahg_http_parser  opaque; parses one message head after another from a
 *                           byte stream fed in arbitrary pieces, reports the body
 *                           framing, then decodes the body (chunked included).
 *   struct ahg_http_head    a parsed or hand-built head: start line plus every field
 *                           line in order, with duplicates and the original name
 *                           case; mutable through ahg_http_head_* and serialisable.
 *
 * Strictness (errors are enum ahg_err; the HTTP status a client gets is
 * ahg_err_http_status()):
 *   AHG_EPROTO (400)    bare CR or bare LF as line terminator; obs-fold; invalid
 *                       field names (empty, non-token, whitespace before ':');
 *                       NUL/CTL/DEL in values; bad request line or status line;
 *                       request-target not origin-, absolute- (http/https, no
 *                       userinfo) or asterisk-form (OPTIONS only), or with an
 *                       octet that is not VCHAR, or with '#'; missing Host in
 *                       HTTP/1.1, several Host fields or an invalid/empty Host
 *                       value (reg-name/IP-literal characters only); Content-Length
 *                       together with Transfer-Encoding; differing Content-Length
 *                       values (also "1, 2"); non-numeric, signed, empty or
 *                       overflowing (> INT64_MAX) Content-Length; Transfer-Encoding
 *                       in an HTTP/1.0 message; "chunked" twice or not last; a
 *                       request whose last transfer coding is not chunked;
 *                       transfer codings with parameters; bad chunk sizes,
 *                       chunk-size overflow (> INT64_MAX), chunk lines longer than
 *                       AHG_HTTP_CHUNK_LINE_MAX, CTLs or bare CR/LF in chunk
 *                       extensions, a missing CRLF after chunk data, bad trailer
 *                       lines; HTTP versions other than 1.0 and 1.1 (RFC 9110 wants
 *                       505 here; there is no error code for it yet).
 *   AHG_ENOTIMPL (501)  an unknown transfer coding (known: chunked, gzip, x-gzip,
 *                       deflate, compress, x-compress); a request method that
 *                       http_parser does not know (methods are case-sensitive);
 *                       CONNECT, which AzHexGate does not support (RFC 9110 §9.1:
 *                       501 for a method the server does not implement).
 *   AHG_EURISIZE (414)  request line longer than limits.max_line (CRLF excluded).
 *   AHG_EHDRSIZE (431)  head longer than limits.max_head (from the first byte of the
 *                       start line to the LF of the empty line, inclusive); more
 *                       than limits.max_fields field lines; a status line longer
 *                       than max_line; a trailer section longer than max_head or
 *                       with more than max_fields lines.
 *   AHG_ELIMIT (413)    body longer than limits.max_body (when non-zero).
 * Where http_parser (the second check) disagrees with a head we accepted, the head
 * is rejected: AHG_ENOTIMPL for a method it does not know, else AHG_EPROTO (seen:
 * a Transfer-Encoding field whose list starts with an empty element, ",chunked").
 * Errors from a RESPONSE parser describe a broken upstream; callers answer those
 * with 502, not with ahg_err_http_status().
 *
 * Identical duplicate Content-Length values (several fields, or a list such as
 * "5, 5") are accepted and merged: the first field keeps its place and name case
 * and gets the plain number as value, the others are removed.
 *
 * Up to AHG_HTTP_MAX_LEADING_CRLF empty lines (CRLF only) before a start line are
 * skipped (RFC 9112 §2.2); they count as consumed input of the message that follows.
 *
 * Thread-safety: none of these objects is internally locked. A parser or a head
 * may be used by one thread at a time; distinct objects are independent.
 */
#ifndef AHG_HTTP_H
#define AHG_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AHG_HTTP_DEFAULT_MAX_HEAD   32768u  /* bytes of a head (32 KiB) */
#define AHG_HTTP_DEFAULT_MAX_LINE   8192u   /* bytes of a request line (8 KiB) */
#define AHG_HTTP_DEFAULT_MAX_FIELDS 256u    /* field lines of a head */
#define AHG_HTTP_MAX_HEAD_CEIL      65536u  /* largest accepted limits.max_head (64 KiB) */
#define AHG_HTTP_MAX_FIELDS_CEIL    1024u   /* largest accepted limits.max_fields */
#define AHG_HTTP_HEAD_MAX_FIELDS    2048u   /* hard cap of fields in any head */
#define AHG_HTTP_HEAD_MAX_BYTES     131072u /* hard cap of a serialised head (128 KiB) */
#define AHG_HTTP_MAX_LEADING_CRLF   8u      /* empty lines tolerated before a start line */
#define AHG_HTTP_CHUNK_LINE_MAX     4096u   /* chunk-size line incl. extensions, no CRLF */

/* Flags of ahg_http_head_serialize(). */
#define AHG_HTTP_SER_DROP_HOP 0x1u /* leave out hop-by-hop fields, see below */

enum ahg_http_kind {
    AHG_HTTP_REQUEST = 0,
    AHG_HTTP_RESPONSE = 1,
};

/* How the body of a message is delimited (RFC 9112 §6.3). */
enum ahg_http_framing {
    AHG_HTTP_BODY_NONE = 0, /* no body: the message ends with its head */
    AHG_HTTP_BODY_LENGTH,   /* exactly content_length bytes (content_length > 0) */
    AHG_HTTP_BODY_CHUNKED,  /* chunked transfer coding */
    AHG_HTTP_BODY_CLOSE,    /* until the connection closes (responses only) */
};

/* Caps of one parser. A zero member means "use the default". */
struct ahg_http_limits {
    size_t max_head;   /* default 32 KiB, at most AHG_HTTP_MAX_HEAD_CEIL -> 431 */
    size_t max_line;   /* default min(8 KiB, max_head), at most max_head -> 414 */
    size_t max_fields; /* default 256, at most AHG_HTTP_MAX_FIELDS_CEIL -> 431 */
    uint64_t max_body; /* decoded body bytes; 0 = unlimited -> 413 (AHG_ELIMIT) */
};

/*
 * One field line. All pointers point into one allocation owned by the head; each
 * string is NUL-terminated. `raw` is the line exactly as received (name, ':', the
 * value with its surrounding whitespace; no CRLF) and is what serialisation writes;
 * `value` is the field value without leading/trailing whitespace. Read-only.
 */
struct ahg_http_field {
    char *name;
    size_t name_len;
    char *value;
    size_t value_len;
    char *raw;
    size_t raw_len;
};

/*
 * A message head. Callers read the members directly; strings and fields are owned
 * by the head and change only through ahg_http_head_* functions; the owner may
 * assign version_major/version_minor (0..9) and status (100..599). Members after
 * "informational" are filled by the parser and are NOT used by serialisation; a
 * hand-built head starts with framing NONE, keep_alive true, upgrade false.
 */
struct ahg_http_head {
    enum ahg_http_kind kind;
    char *method; /* requests: e.g. "GET"; NULL for responses */
    char *target; /* requests: request-target as received; NULL for responses */
    int version_major;
    int version_minor;
    int status;   /* responses: 100..599; 0 for requests */
    char *reason; /* responses: reason phrase, possibly ""; NULL for requests */
    struct ahg_http_field *fields;
    size_t nfields;

    /* informational */
    enum ahg_http_framing framing;
    uint64_t content_length; /* framing LENGTH: the length; else 0 */
    bool chunked;            /* framing == AHG_HTTP_BODY_CHUNKED */
    bool keep_alive;         /* connection may carry another message after this one */
    bool upgrade;            /* request: valid upgrade offer; response: status 101 */

    /* private */
    size_t fields_cap;
    size_t bytes; /* serialised size without AHG_HTTP_SER_DROP_HOP */
};

/* ---- limits ------------------------------------------------------------------ */

/* Fill lim with the defaults (32 KiB head, 8 KiB request line, 256 fields, no body
 * limit). Never fails; any thread. */
void ahg_http_limits_default(struct ahg_http_limits *lim);

/* ---- parser ------------------------------------------------------------------ */

struct ahg_http_parser;

/*
 * Body callback: `data`/`len` are decoded body bytes (never len 0) pointing into
 * the caller's input buffer; valid only during the call. Return AHG_OK to go on or
 * a negative enum ahg_err to stop: ahg_http_parser_body() then returns that error
 * and the parser is failed until reset. Must not free or reset the parser.
 */
typedef int (*ahg_http_body_cb)(void *ud, const char *data, size_t len);

/*
 * New parser for requests or responses. lim may be NULL (defaults); it is copied.
 * Returns NULL on failure and, if err is not NULL, stores AHG_EINVAL (bad kind or a
 * limit above its ceiling / max_line > max_head) or AHG_ENOMEM. The caller frees the
 * parser with ahg_http_parser_free(). The head buffer is allocated as bytes arrive
 * and grows up to max_head (reset frees it when it grew beyond 4 KiB); nothing
 * else grows with the input beyond the limits.
 */
struct ahg_http_parser *ahg_http_parser_new(enum ahg_http_kind kind,
                                            const struct ahg_http_limits *lim, int *err);

/* Free the parser and the head it still owns. NULL is a no-op. */
void ahg_http_parser_free(struct ahg_http_parser *p);

/*
 * Response parsers only: the method of the request this response answers, needed
 * for framing (a response to HEAD has no body). Call before the head is complete;
 * ahg_http_parser_reset() clears it (unset means "not HEAD").
 * Returns AHG_OK; AHG_EINVAL for a request parser, a method that is not a token, or
 * a call after the head was completed; AHG_ENOTIMPL for "CONNECT" (not supported).
 */
int ahg_http_parser_set_request_method(struct ahg_http_parser *p, const char *method);

/*
 * Feed bytes of the head. *consumed (required) is set to how many bytes of data
 * were used: the rest belongs to the body or to the next message.
 * Returns AHG_OK once the head is complete (validated; then see
 * ahg_http_parser_head()/_framing()); AHG_EAGAIN when all of data was consumed and
 * more is needed; or a negative error listed at the top of this file (the parser
 * then stays failed and returns the same error until reset). Called again after the
 * head is complete it returns AHG_OK with *consumed = 0. Allocates the head
 * buffer (up to max_head) and, when the head completes, a copy of it as a struct
 * ahg_http_head (bounded by the limits): AHG_ENOMEM.
 */
int ahg_http_parser_feed(struct ahg_http_parser *p, const char *data, size_t len, size_t *consumed);

/*
 * The completed head, owned by the parser and valid until reset/free/_head_take;
 * NULL before the head is complete or after it was taken.
 */
const struct ahg_http_head *ahg_http_parser_head(const struct ahg_http_parser *p);

/*
 * Take ownership of the completed head (the caller frees it with
 * ahg_http_head_free()). The parser keeps its framing state, so the body can still
 * be decoded. NULL if no head is available.
 */
struct ahg_http_head *ahg_http_parser_head_take(struct ahg_http_parser *p);

/* Framing of the current message; AHG_HTTP_BODY_NONE until the head is complete. */
enum ahg_http_framing ahg_http_parser_framing(const struct ahg_http_parser *p);

/*
 * Feed body bytes of the current message (after ahg_http_parser_feed() returned
 * AHG_OK). Decoded body bytes go to cb (may be NULL to only validate/skip, e.g. when
 * the caller forwards the raw bytes itself). *consumed (required) is set to how
 * many bytes of data belong to this message; a caller relaying raw bytes forwards
 * exactly data[0, *consumed) and keeps the rest for the next message (pipelining).
 * Chunked bodies are validated strictly; chunk extensions are checked for
 * characters and then ignored; trailer fields are validated (same rules as head
 * fields, counted against max_head/max_fields) and then DROPPED: they are not
 * stored nor passed to cb (a raw relay forwards them with the raw bytes).
 * Returns AHG_OK when the message is complete (also at once for framing NONE);
 * AHG_EAGAIN when all of data was consumed and the body goes on (always so for
 * framing CLOSE until ahg_http_parser_eof()); AHG_EINVAL if the head is not complete
 * yet; AHG_EPROTO/AHG_EHDRSIZE for bad chunked framing; AHG_ELIMIT beyond max_body;
 * or cb's error. Errors are sticky until reset. cb runs on the caller's thread.
 */
int ahg_http_parser_body(struct ahg_http_parser *p, const char *data, size_t len, size_t *consumed,
                         ahg_http_body_cb cb, void *ud);

/*
 * The peer closed the connection. Returns AHG_OK if the current message is complete
 * (a CLOSE-framed body ends here); AHG_ECLOSED if not a single byte of a new message
 * was received (a clean close between messages); AHG_EPROTO if the message was
 * truncated (partial head, short Content-Length or chunked body); or the parser's
 * sticky error.
 */
int ahg_http_parser_eof(struct ahg_http_parser *p);

/* Decoded body bytes of the current message so far. */
uint64_t ahg_http_parser_body_bytes(const struct ahg_http_parser *p);

/*
 * Forget the current message (complete or not, failed or not) and get ready for the
 * next one on the same connection: frees the head if still owned, clears the
 * request method and any error. Keeps kind and limits. NULL is a no-op.
 */
void ahg_http_parser_reset(struct ahg_http_parser *p);

/* ---- heads ------------------------------------------------------------------- */

/*
 * Build an HTTP/1.1 request head by hand. method must be a token, target 1*VCHAR
 * without '#'. Returns NULL and stores AHG_EINVAL, AHG_ELIMIT (longer than
 * AHG_HTTP_HEAD_MAX_BYTES) or AHG_ENOMEM in *err (if err is not NULL).
 * The caller frees the head with ahg_http_head_free().
 */
struct ahg_http_head *ahg_http_head_new_request(const char *method, const char *target, int *err);

/*
 * Build an HTTP/1.1 response head by hand. status 100..599; reason NULL means
 * ahg_http_reason(status); else *( HTAB / SP / VCHAR / obs-text ).
 * Returns NULL and stores AHG_EINVAL or AHG_ENOMEM in *err (if err is not NULL).
 */
struct ahg_http_head *ahg_http_head_new_response(int status, const char *reason, int *err);

/* Free a head and everything it owns. NULL is a no-op. */
void ahg_http_head_free(struct ahg_http_head *h);

/*
 * Append the field "name: value". name must be a token, value may not contain
 * CTLs other than HTAB nor DEL, and leading/trailing whitespace is not kept.
 * Returns AHG_OK; AHG_EINVAL for a bad name/value; AHG_ELIMIT beyond
 * AHG_HTTP_HEAD_MAX_FIELDS fields or AHG_HTTP_HEAD_MAX_BYTES bytes; AHG_ENOMEM.
 * On error the head is unchanged.
 */
int ahg_http_head_add(struct ahg_http_head *h, const char *name, const char *value);

/*
 * Replace: the first field named name (case-insensitive) gets the new value and
 * keeps its position and name case; further fields of that name are removed; if
 * there was none, the field is appended. Errors as ahg_http_head_add(); on error
 * the head is unchanged.
 */
int ahg_http_head_set(struct ahg_http_head *h, const char *name, const char *value);

/* Remove every field named name (case-insensitive). Returns how many were removed. */
size_t ahg_http_head_remove(struct ahg_http_head *h, const char *name);

/*
 * Iterate the fields named name (case-insensitive) in order: start with *pos = 0;
 * each hit returns the field and moves *pos past it; NULL when there are no more.
 * The field is owned by the head and valid until the head is changed.
 */
const struct ahg_http_field *ahg_http_head_find(const struct ahg_http_head *h, const char *name,
                                                size_t *pos);

/* Value of the first field named name (NUL-terminated, trimmed; length in *len if
 * len is not NULL), or NULL. Owned by the head, valid until the head is changed. */
const char *ahg_http_head_get(const struct ahg_http_head *h, const char *name, size_t *len);

/*
 * True if any field named name carries token in its comma-separated list (both
 * compared case-insensitively, whitespace around elements ignored), e.g.
 * ahg_http_head_has_token(h, "Connection", "upgrade").
 */
bool ahg_http_head_has_token(const struct ahg_http_head *h, const char *name, const char *token);

/*
 * Remove the hop-by-hop fields in place (see ahg_http_head_serialize()). A proxy
 * strips first and adds its own fields afterwards, so that a client cannot make it
 * drop them by listing their names in Connection. *removed (may be NULL) gets how
 * many fields were removed. Returns AHG_OK, AHG_EINVAL for a NULL head or
 * AHG_ENOMEM (head unchanged).
 */
int ahg_http_head_strip_hop_by_hop(struct ahg_http_head *h, size_t *removed);

/*
 * Write the head (start line, field lines, empty line) into out[0, outsz). Field
 * lines are written byte-exact as received (`raw`), in order; the start line is
 * rebuilt from method/target/version or version/status/reason ("SP reason" is
 * always written, so a received "HTTP/1.1 200" without the SP gains one).
 * With AHG_HTTP_SER_DROP_HOP, these fields are left out (RFC 9110 §7.6.1):
 * Connection, Keep-Alive, Proxy-Connection, TE, Transfer-Encoding, Upgrade, Trailer,
 * Proxy-Authenticate, Proxy-Authorization, and every field named by a token of a
 * Connection field, except Host and Content-Length (never dropped, so that a peer
 * cannot strip the routing or the framing). The caller then adds the framing
 * header it forwards the body with and, for an upgrade, Connection/Upgrade again.
 * Returns AHG_OK with *outlen (required) = bytes written (no NUL is added);
 * AHG_ELIMIT if outsz is too small, with *outlen = the size needed (out may be
 * NULL with outsz 0 to ask for the size); AHG_EINVAL for a NULL head; AHG_ENOMEM
 * (AHG_HTTP_SER_DROP_HOP needs a small temporary allocation).
 */
int ahg_http_head_serialize(const struct ahg_http_head *h, unsigned flags, char *out, size_t outsz,
                            size_t *outlen);

#endif /* AHG_HTTP_H */
