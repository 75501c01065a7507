/*
 * ahg/sas.h - Azure Relay Shared Access Signature tokens (hc-protocol.md section 6):
 *
 *   SharedAccessSignature sr=<enc resource>&sig=<enc base64 HMAC>&se=<unix s>&skn=<key name>
 *
 * The signature is base64(HMAC-SHA256(key, sr + "\n" + se)) where sr is the resource
 * exactly as it appears in the token (still percent-encoded) and the key is the ASCII
 * key string as shown in the portal (its base64 text is NOT decoded).
 *
 * Ownership: nothing is allocated; outputs go to caller memory. Inputs are borrowed.
 * Thread-safety: every function may be called from any thread at the same time.
 * Errors: AHG_OK or a negative enum ahg_err (ahg/err.h). Never log a token or a key.
 */
#ifndef AHG_SAS_H
#define AHG_SAS_H

#include <stdbool.h>
#include <stddef.h>

#define AHG_SAS_MAX         2048 /* max token length in chars (without the NUL) */
#define AHG_SAS_KEYNAME_MAX 256  /* max key name length (as .NET) */
#define AHG_SAS_KEY_MAX     256  /* max key length (as .NET) */
#define AHG_SAS_SR_MAX      1024 /* size of ahg_sas.sr_raw and .resource (with the NUL) */
#define AHG_SAS_SIG_MAX     128  /* size of ahg_sas.sig (with the NUL) */

/* A parsed token; all strings NUL-terminated and bounded. sr_raw is sr exactly as it
 * appeared (still percent-encoded): it is what the HMAC covers. */
struct ahg_sas {
    char sr_raw[AHG_SAS_SR_MAX];       /* raw sr */
    char resource[AHG_SAS_SR_MAX];     /* sr percent-decoded once */
    char sig[AHG_SAS_SIG_MAX];         /* base64 signature, percent-decoded */
    long long se;                      /* expiry, unix seconds, >= 0 */
    char skn[AHG_SAS_KEYNAME_MAX + 1]; /* key name, percent-decoded, 1..256 chars */
};

/* Build a token for resource_uri, signed with key (rule key_name), expiring at expiry
 * (unix seconds, >= 0), into out (NUL-terminated). resource_uri is used as given (the
 * caller normalises it, e.g. with ahg_sas_normalize_audience()); sr = encodeURIComponent(
 * resource_uri) with upper-case escapes; sig = base64(HMAC-SHA256(key as ASCII bytes,
 * sr + "\n" + se)), URL-encoded; skn is URL-encoded too (a no-op for usual names). Pair
 * order is sr, sig, se, skn, as the SDKs emit.
 * Errors: AHG_EINVAL (NULL pointer, empty resource/key/key name, key name or key longer
 * than 256, expiry < 0), AHG_ELIMIT (encoded sr longer than 1023 chars, token longer than
 * AHG_SAS_MAX, or out too small), AHG_EIO (OpenSSL failure). out is "" on error. */
int ahg_sas_create(const char *resource_uri, const char *key_name, const char *key,
                   long long expiry, char *out, size_t outsz);

/* Parse token (NUL-terminated, e.g. a ServiceBusAuthorization header value or the
 * URL-decoded sb-hc-token query value) into *out. Accepted form: optional spaces/tabs,
 * "SharedAccessSignature" (ASCII case-insensitive), one or more spaces/tabs, then
 * '&'-separated key=value pairs (no whitespace inside), optional trailing spaces/tabs.
 * Keys are case-insensitive and may come in any order; sr, sig, se and skn are all
 * required and must be non-empty; unknown keys are ignored; a repeated known key is an
 * error; an empty pair or a pair without '=' is an error. Values are percent-decoded
 * ('+' stays '+') except sr, which is stored raw in sr_raw and decoded once into
 * resource. se must be a canonical non-negative decimal (no sign, no leading zeros)
 * below 2^63, so the string that was signed is exactly its decimal form. Decoded values
 * must not contain NUL bytes. *out is zeroed on error.
 * Errors: AHG_EINVAL (NULL pointer, malformed token, missing/duplicate field, bad escape,
 * bad se, key name longer than 256), AHG_ELIMIT (token longer than AHG_SAS_MAX, sr longer
 * than 1023 chars raw, sig longer than 127 chars decoded). */
int ahg_sas_parse(const char *token, struct ahg_sas *out);

/* Check tok's signature with key (ASCII key string) and its expiry. The HMAC is computed
 * over tok->sr_raw exactly as received + "\n" + decimal se, and compared in constant time
 * with the strictly base64-decoded tok->sig. The signature is checked first, so a
 * tampered se is AHG_EAUTH even when it is also in the past. Expired means
 * now > se + grace_seconds (computed without overflow).
 * Errors: AHG_EINVAL (NULL pointer, empty key or key longer than 256, grace_seconds < 0),
 * AHG_EAUTH (signature malformed or not matching), AHG_EEXPIRED (valid but expired),
 * AHG_EIO (OpenSSL failure). */
int ahg_sas_verify(const struct ahg_sas *tok, const char *key, long long now,
                   long long grace_seconds);

/* The .NET audience normalisation (TokenProvider.NormalizeAudience): scheme becomes
 * "http", host lower-cased, port, query and fragment dropped, a leading "$hc" path
 * segment (ASCII case-insensitive) removed, and a trailing '/' added when missing; the
 * rest of the path is kept as written. IPv6 hosts keep their brackets.
 * "sb://Contoso.servicebus.windows.net/hyco" -> "http://contoso.servicebus.windows.net/hyco/".
 * Errors: AHG_EINVAL (NULL pointer, uri not parsable by ahg_url_parse()), AHG_ELIMIT (a
 * component too long, or out too small). out is "" on error. */
int ahg_sas_normalize_audience(const char *uri, char *out, size_t outsz);

/* The emulator's audience check (hc-protocol.md 6.2 "Derived validation algorithm"):
 * true when the token resource (the DECODED sr, i.e. struct ahg_sas.resource) grants
 * access to entity_path on this namespace.
 * - resource must parse as an absolute URL with scheme http, https, sb, ws or wss;
 * - its host must equal namespace_host or request_host (ASCII case-insensitive; either may
 *   be NULL; both may carry a ":port", which is ignored, as is the resource's port;
 *   IPv6 hosts may be given with or without brackets);
 * - its path is percent-decoded once ("My%20HC" compares as "My HC"), a leading "$hc"
 *   segment is removed, and leading/trailing '/' are ignored;
 * - an empty path (or "/") covers the whole namespace; otherwise the path must equal
 *   entity_path or be a '/'-segment prefix of it ("a" covers "a" and "a/b", not "ab"),
 *   compared ASCII case-insensitively.
 * entity_path is the hybrid connection name, optionally followed by a sub-path, in
 * DECODED form; a leading and a trailing '/' are optional ("hyco", "/hyco/x"). Query and
 * fragment of the resource are ignored. Returns false on any NULL/invalid input. */
bool ahg_sas_covers(const char *resource, const char *namespace_host, const char *request_host,
                    const char *entity_path);

#endif /* AHG_SAS_H */
