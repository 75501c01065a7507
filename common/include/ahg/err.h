/*
 * ahg/err.h - the one error enum of AzHexGate, its strings, and the single place
 * where errors map to HTTP statuses and process exit codes.
 *
 * Every int-returning function in the project returns AHG_OK (0) or a negative
 * enum ahg_err. All functions here are pure and may be called from any thread.
 */
#ifndef AHG_ERR_H
#define AHG_ERR_H

enum ahg_err {
    AHG_OK = 0,
    AHG_EINVAL = -1,      /* invalid argument or malformed input */
    AHG_ENOMEM = -2,      /* allocation failed */
    AHG_EAGAIN = -3,      /* try again later (would block, need more input) */
    AHG_EIO = -4,         /* I/O error */
    AHG_ETIMEDOUT = -5,   /* a deadline passed */
    AHG_ECLOSED = -6,     /* peer or object closed */
    AHG_ELIMIT = -7,      /* a configured bound was reached (body, buffer, quota) */
    AHG_EPROTO = -8,      /* protocol violation by the peer */
    AHG_ETLS = -9,        /* TLS failure */
    AHG_ECONFIG = -10,    /* invalid configuration */
    AHG_ENOTFOUND = -11,  /* no such object (tunnel, route, file) */
    AHG_EAUTH = -12,      /* missing or invalid credentials */
    AHG_EFORBIDDEN = -13, /* valid credentials, not allowed */
    AHG_EEXIST = -14,     /* already exists (conflict) */
    AHG_EUNAVAIL = -15,   /* dependency unavailable (Redis, relay, ARM) */
    AHG_EUPSTREAM = -16,  /* upstream answered badly or not at all */
    AHG_EHDRSIZE = -17,   /* header block too large */
    AHG_EURISIZE = -18,   /* request line / URI too long */
    AHG_ENOTIMPL = -19,   /* not implemented (e.g. unknown transfer coding) */
    AHG_EEXPIRED = -20,   /* token or session expired */
    AHG_ERATE = -21,      /* rate limited */
    AHG_EUSAGE = -22,     /* bad command-line usage */
};

#define AHG_ERR_MIN AHG_EUSAGE

/* Process exit codes (sysexits.h values). */
#define AHG_EXIT_OK      0
#define AHG_EXIT_FAILURE 1
#define AHG_EXIT_USAGE   64
#define AHG_EXIT_CONFIG  78

/* Short human-readable text for err; never NULL ("unknown error" if unknown). */
const char *ahg_strerror(int err);

/* Stable symbolic code ("EINVAL", ...) for JSON error bodies and logs; never NULL. */
const char *ahg_err_name(int err);

/* The HTTP status a client should see when err stops a request (AHG_OK -> 200). */
int ahg_err_http_status(int err);

/* The exit code a process returns when err stops it (AHG_OK -> 0). */
int ahg_err_exit_code(int err);

/* Reason phrase for an HTTP status code ("Not Found"); "Unknown" for unknown codes. */
const char *ahg_http_reason(int status);

#endif /* AHG_ERR_H */
