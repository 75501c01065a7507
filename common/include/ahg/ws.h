/*
 * ahg/ws.h - RFC 6455 WebSocket codec: a streaming frame parser, frame and close-payload
 * writers, handshake key helpers and a UTF-8 validator. No sockets: bytes in, callbacks and
 * bytes out, so it serves both roles (relay emulator = server; gateway and CLI = client).
 *
 * Parser model (struct ahg_ws_parser, opaque):
 * - The caller feeds whatever bytes arrived (any split, down to one byte at a time); the parser
 *   reports frames through three callbacks: frame_begin (header), frame_data (unmasked payload
 *   pieces) and frame_end. Data frames (text, binary, continuation) are streamed: their payload
 *   is never buffered, so frames up to 2^63-1 bytes need no memory. Control frames (close, ping,
 *   pong; at most 125 bytes) are collected in a fixed internal buffer and delivered only once
 *   complete and valid: frame_begin, one frame_data with the whole payload (when non-empty) and
 *   frame_end, back to back.
 * - Backpressure: a callback that returns a positive value (AHG_WS_PAUSE) has accepted what it
 *   was given; the parser stops right after it and ahg_ws_parser_feed() returns AHG_OK with
 *   *consumed < len (or == len if the pause came on the last byte). Feed the unconsumed rest
 *   later; pending callbacks that need no more input (e.g. a frame_end) are delivered first,
 *   also by a feed with len == 0.
 * - Memory: one allocation at ahg_ws_parser_new() of fixed size (header, 125-byte control
 *   buffer, AHG_WS_SCRATCH bytes used to unmask client payloads). Nothing grows.
 *
 * Thread-safety: a parser has no internal locking; it belongs to one thread at a time. All other
 * functions are pure or use only OpenSSL's thread-safe RNG and may be called from any thread.
 *
 * Errors: int functions return AHG_OK or a negative enum ahg_err (ahg/err.h).
 */
#ifndef AHG_WS_H
#define AHG_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ahg_ws_opcode {
    AHG_WS_CONT = 0x0,
    AHG_WS_TEXT = 0x1,
    AHG_WS_BINARY = 0x2,
    AHG_WS_CLOSE = 0x8,
    AHG_WS_PING = 0x9,
    AHG_WS_PONG = 0xA,
};

/* Close status codes (RFC 6455 section 7.4.1 and the IANA registry). */
enum ahg_ws_close_code {
    AHG_WS_CLOSE_NORMAL = 1000,
    AHG_WS_CLOSE_GOING_AWAY = 1001,
    AHG_WS_CLOSE_PROTOCOL_ERROR = 1002,
    AHG_WS_CLOSE_UNSUPPORTED = 1003,
    AHG_WS_CLOSE_NO_STATUS = 1005, /* never sent: "the close frame had no code" */
    AHG_WS_CLOSE_ABNORMAL = 1006,  /* never sent: "closed without a close frame" */
    AHG_WS_CLOSE_INVALID_DATA = 1007,
    AHG_WS_CLOSE_POLICY = 1008,
    AHG_WS_CLOSE_TOO_BIG = 1009,
    AHG_WS_CLOSE_MANDATORY_EXT = 1010,
    AHG_WS_CLOSE_INTERNAL_ERROR = 1011,
    AHG_WS_CLOSE_SERVICE_RESTART = 1012,
    AHG_WS_CLOSE_TRY_AGAIN_LATER = 1013,
    AHG_WS_CLOSE_BAD_GATEWAY = 1014,
};

#define AHG_WS_MAX_HEADER            14  /* largest frame header: 2 + 8 length + 4 mask key */
#define AHG_WS_MAX_CONTROL           125 /* largest control frame payload */
#define AHG_WS_MAX_CLOSE_REASON      123 /* largest close reason (control payload - 2-byte code) */
#define AHG_WS_MAX_PAYLOAD           UINT64_C(0x7fffffffffffffff) /* 64-bit length MSB must be 0 */
#define AHG_WS_SCRATCH               4096 /* server role: masked payload is unmasked in pieces <= this */
#define AHG_WS_KEY_LEN               24 /* strlen of a Sec-WebSocket-Key */
#define AHG_WS_ACCEPT_LEN            28 /* strlen of a Sec-WebSocket-Accept */
#define AHG_WS_GUID                  "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define AHG_WS_PAUSE                 1 /* callback return: accepted, stop feeding for now */
#define AHG_WS_OPCODE_IS_CONTROL(op) (((unsigned)(op)&0x8u) != 0)

/* ---------------------------------------------------------------------------------------------
 * Streaming parser
 */

/* What frame_begin is told about a frame. */
struct ahg_ws_frame {
    enum ahg_ws_opcode op;     /* opcode on the wire (AHG_WS_CONT for continuation frames) */
    enum ahg_ws_opcode msg_op; /* data frames: TEXT or BINARY of the message this frame belongs
                                  to (also for continuations); control frames: same as op */
    bool fin;                  /* last frame of its message (always true for control frames) */
    uint64_t len;              /* payload length in bytes */
};

/*
 * Callbacks; each may be NULL (treated as returning 0). Return 0 to continue, AHG_WS_PAUSE (any
 * positive value) to stop feeding after this event, or a negative enum ahg_err to abort: the
 * parser then fails for good and ahg_ws_parser_feed() returns that value. Callbacks must not
 * call ahg_ws_parser_feed() or ahg_ws_parser_free() on the same parser.
 * Pointers passed to callbacks are valid only during the call.
 */
struct ahg_ws_parser_cb {
    /* A frame starts (header complete and valid). */
    int (*frame_begin)(void *ud, const struct ahg_ws_frame *f);
    /* Next n > 0 unmasked payload bytes of the current frame. The pieces of one frame add up to
     * exactly f->len bytes; their sizes depend on how input arrived. */
    int (*frame_data)(void *ud, const unsigned char *p, size_t n);
    /* The current frame is complete. After a close frame's frame_end the parser is closed. */
    int (*frame_end)(void *ud);
};

struct ahg_ws_parser_opts {
    /* true: we are the server; frames must be masked (unmasked frames fail with 1002).
     * false: we are the client; frames must not be masked (masked frames fail with 1002). */
    bool server_role;
    /* A data frame longer than this fails with 1009 before any of it is delivered.
     * 0 means no limit besides AHG_WS_MAX_PAYLOAD (payloads are streamed, never buffered). */
    uint64_t max_frame_payload;
    /* The sum of the frame lengths of one data message may not exceed this (1009).
     * 0 means no limit. */
    uint64_t max_message_payload;
    /* true: text messages must be valid UTF-8 (checked incrementally across frames; failure is
     * 1007 and the invalid piece is not delivered). Close reasons are always checked. */
    bool validate_utf8;
};

struct ahg_ws_parser; /* opaque */

/*
 * Create a parser. opts and cb are copied (they need not outlive the call); ud is passed to every
 * callback and is borrowed. Returns NULL on error and sets *err (err may be NULL) to AHG_EINVAL
 * (opts or cb NULL) or AHG_ENOMEM. The caller owns the parser: ahg_ws_parser_free().
 */
struct ahg_ws_parser *ahg_ws_parser_new(const struct ahg_ws_parser_opts *opts,
                                        const struct ahg_ws_parser_cb *cb, void *ud, int *err);

/* Free p. NULL is a no-op. Must not be called from one of p's callbacks. */
void ahg_ws_parser_free(struct ahg_ws_parser *p);

/*
 * Parse data[0..len) (borrowed; data may be NULL when len is 0) and run the callbacks.
 * *consumed (required) is set to the number of bytes processed.
 * Returns:
 * - AHG_OK: *consumed == len, or a callback paused (*consumed may be < len: feed the rest later),
 *   or a close frame ended (the bytes after it are not consumed: nothing may follow a close).
 * - AHG_EPROTO: the peer broke the protocol; ahg_ws_parser_close_code() gives the code to send:
 *   1002 for a reserved opcode, RSV bits set (no extension is supported), a fragmented or
 *   > 125-byte control frame, wrong masking for the role, a continuation without a message, a
 *   new data message inside an unfinished one, a 64-bit length with its MSB set, or a close
 *   payload of 1 byte or with an invalid code; 1007 for invalid UTF-8 (close reason, or text when
 *   validate_utf8); 1009 for a frame or message over the configured maximum.
 *   Non-minimal length encodings are accepted (RFC 6455 requires minimal only of senders).
 * - a negative value a callback returned (close code 1011).
 * - AHG_ECLOSED: a close frame was already completed before this call; nothing is consumed.
 * - AHG_EINVAL: p or consumed NULL, or data NULL with len > 0.
 * After an error every later call returns the same error with *consumed = 0. On the failing call
 * *consumed counts the bytes read before the parser stopped: through the header byte (or the
 * complete header, for length errors) that revealed the error, through the end of an invalid
 * close frame, up to but excluding a text piece that failed UTF-8 validation, and including the
 * bytes a failing callback was given.
 */
int ahg_ws_parser_feed(struct ahg_ws_parser *p, const unsigned char *data, size_t len,
                       size_t *consumed);

/* The close code to send because parsing failed (1002, 1007, 1009, 1011), or 0 if the parser has
 * not failed. p NULL gives 0. */
uint16_t ahg_ws_parser_close_code(const struct ahg_ws_parser *p);

/* True once a close frame has been completely delivered (frame_end returned). */
bool ahg_ws_parser_closed(const struct ahg_ws_parser *p);

/* ---------------------------------------------------------------------------------------------
 * Writing frames
 */

/*
 * Write the header of one frame into out and return its length (2 to 14), or 0 when the frame
 * would be invalid: unknown opcode, len > AHG_WS_MAX_PAYLOAD, or a control frame that is not fin
 * or longer than 125 bytes. mask_key NULL writes an unmasked frame (server role); a client passes
 * a fresh key from ahg_ws_mask_key() and masks the payload with ahg_ws_mask(). The length is
 * always encoded minimally. RSV bits are 0.
 */
size_t ahg_ws_frame_header(unsigned char out[AHG_WS_MAX_HEADER], enum ahg_ws_opcode op, bool fin,
                           uint64_t len, const unsigned char *mask_key);

/*
 * XOR p[0..n) in place with key, as if p started at byte `offset` of the frame payload, so a
 * payload masked piece by piece (offset = bytes of the payload before this piece) equals the
 * payload masked in one go. Masking twice unmasks. p may be NULL when n is 0.
 */
void ahg_ws_mask(unsigned char *p, size_t n, const unsigned char key[4], uint64_t offset);

/* Fill key with 4 bytes from OpenSSL's CSPRNG (RAND_bytes). Errors: AHG_EINVAL (key NULL),
 * AHG_EIO (RNG failure). */
int ahg_ws_mask_key(unsigned char key[4]);

/*
 * Build a whole frame (header + payload) into out[0..outsz) and set *len to its size.
 * payload[0..n) is copied (payload may be NULL when n is 0). client_role true masks it with a
 * fresh random key; false writes it unmasked. Meant for control frames and small messages.
 * Errors: AHG_EINVAL (NULL pointers, invalid frame as for ahg_ws_frame_header()),
 * AHG_ELIMIT (outsz too small; out is untouched), AHG_EIO (RNG failure).
 */
int ahg_ws_frame_write(unsigned char *out, size_t outsz, enum ahg_ws_opcode op, bool fin,
                       const unsigned char *payload, size_t n, bool client_role, size_t *len);

/* ---------------------------------------------------------------------------------------------
 * Close payloads
 */

/* True for codes an endpoint may put in a close frame: 1000-1003, 1007-1014, 3000-4999. */
bool ahg_ws_close_code_is_valid(uint16_t code);

/*
 * Build a close frame payload into out[0..outsz): 2-byte big-endian code then reason. reason (a
 * NUL-terminated UTF-8 string; NULL = "") is truncated at a UTF-8 character boundary to fit both
 * 123 bytes and outsz - 2. code 0 builds the empty payload ("no status"; reason must be empty).
 * *len gets the payload length (0 to 125).
 * Errors: AHG_EINVAL (out or len NULL, code neither 0 nor valid, reason not valid UTF-8 or
 * non-empty with code 0), AHG_ELIMIT (outsz < 2 while a code is to be written).
 */
int ahg_ws_close_payload(unsigned char *out, size_t outsz, uint16_t code, const char *reason,
                         size_t *len);

/*
 * Parse a received close payload p[0..n). 0 bytes gives *code = 1005 (no status) and an empty
 * reason. Otherwise *code is the big-endian code and the reason (not NUL-terminated) is
 * p[2..n), returned as *reason pointing into p (borrowed) and *reason_len.
 * Errors: AHG_EINVAL (code, reason or reason_len NULL, or p NULL with n > 0),
 * AHG_EPROTO (1 byte, more than 125 bytes, an invalid code, or a reason that is not UTF-8); then
 * *code is the code to close with (1002, or 1007 for a reason that is not UTF-8), *reason NULL
 * and *reason_len 0.
 */
int ahg_ws_close_parse(const unsigned char *p, size_t n, uint16_t *code, const char **reason,
                       size_t *reason_len);

/* ---------------------------------------------------------------------------------------------
 * Handshake keys
 */

/* True when key is a valid Sec-WebSocket-Key: exactly 24 characters of standard base64 (22 from
 * the alphabet then "==") that decode to 16 bytes. No surrounding whitespace. NULL is false. */
bool ahg_ws_key_is_valid(const char *key);

/* out = base64(SHA-1(key + AHG_WS_GUID)), the Sec-WebSocket-Accept value (28 chars + NUL).
 * Errors: AHG_EINVAL (NULL pointer or !ahg_ws_key_is_valid(key); out is then ""), AHG_EIO. */
int ahg_ws_accept_key(const char *sec_websocket_key, char out[AHG_WS_ACCEPT_LEN + 1]);

/* out = base64 of 16 random bytes (RAND_bytes), a fresh Sec-WebSocket-Key (24 chars + NUL).
 * Errors: AHG_EINVAL (out NULL), AHG_EIO (RNG failure; out is then ""). */
int ahg_ws_client_key(char out[AHG_WS_KEY_LEN + 1]);

/* ---------------------------------------------------------------------------------------------
 * UTF-8 validation (RFC 3629: rejects overlong forms, surrogates U+D800-DFFF, code points above
 * U+10FFFF, stray continuation bytes and truncated sequences)
 */

/* True when p[0..n) is complete, valid UTF-8. p may be NULL when n is 0. */
bool ahg_ws_utf8_valid(const unsigned char *p, size_t n);

/* Incremental validator for text split across pieces and frames. Embeddable; the fields are
 * private to this API. Zero-initialised (or ahg_ws_utf8_init()) = start of a message. */
struct ahg_ws_utf8 {
    unsigned char need; /* continuation bytes still expected; 0xff = invalid input seen */
    unsigned char lo;   /* allowed range of the next continuation byte */
    unsigned char hi;
};

/* Reset u to the start of a message. */
void ahg_ws_utf8_init(struct ahg_ws_utf8 *u);

/* Validate the next piece. Returns false as soon as the input so far cannot be a prefix of valid
 * UTF-8 (and for every later call); true otherwise. A sequence may span pieces. */
bool ahg_ws_utf8_feed(struct ahg_ws_utf8 *u, const unsigned char *p, size_t n);

/* True when everything fed so far is complete, valid UTF-8 (no sequence cut off at the end). */
bool ahg_ws_utf8_done(const struct ahg_ws_utf8 *u);

#endif /* AHG_WS_H */
