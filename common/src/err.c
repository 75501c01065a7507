#include "ahg/err.h"

#include <stddef.h>

struct err_info {
    const char *name;
    const char *text;
    int http_status;
    int exit_code;
};

/* Indexed by -err. */
static const struct err_info err_table[] = {
    [0] = {"OK", "success", 200, AHG_EXIT_OK},
    [-AHG_EINVAL] = {"EINVAL", "invalid argument", 400, AHG_EXIT_FAILURE},
    [-AHG_ENOMEM] = {"ENOMEM", "out of memory", 503, AHG_EXIT_FAILURE},
    [-AHG_EAGAIN] = {"EAGAIN", "resource temporarily unavailable", 503, AHG_EXIT_FAILURE},
    [-AHG_EIO] = {"EIO", "input/output error", 502, AHG_EXIT_FAILURE},
    [-AHG_ETIMEDOUT] = {"ETIMEDOUT", "timed out", 504, AHG_EXIT_FAILURE},
    [-AHG_ECLOSED] = {"ECLOSED", "connection closed", 502, AHG_EXIT_FAILURE},
    [-AHG_ELIMIT] = {"ELIMIT", "size limit exceeded", 413, AHG_EXIT_FAILURE},
    [-AHG_EPROTO] = {"EPROTO", "protocol error", 400, AHG_EXIT_FAILURE},
    [-AHG_ETLS] = {"ETLS", "TLS error", 502, AHG_EXIT_FAILURE},
    [-AHG_ECONFIG] = {"ECONFIG", "invalid configuration", 500, AHG_EXIT_CONFIG},
    [-AHG_ENOTFOUND] = {"ENOTFOUND", "not found", 404, AHG_EXIT_FAILURE},
    [-AHG_EAUTH] = {"EAUTH", "authentication required or invalid", 401, AHG_EXIT_FAILURE},
    [-AHG_EFORBIDDEN] = {"EFORBIDDEN", "forbidden", 403, AHG_EXIT_FAILURE},
    [-AHG_EEXIST] = {"EEXIST", "already exists", 409, AHG_EXIT_FAILURE},
    [-AHG_EUNAVAIL] = {"EUNAVAIL", "service unavailable", 503, AHG_EXIT_FAILURE},
    [-AHG_EUPSTREAM] = {"EUPSTREAM", "bad response from upstream", 502, AHG_EXIT_FAILURE},
    [-AHG_EHDRSIZE] = {"EHDRSIZE", "header fields too large", 431, AHG_EXIT_FAILURE},
    [-AHG_EURISIZE] = {"EURISIZE", "request-target too long", 414, AHG_EXIT_FAILURE},
    [-AHG_ENOTIMPL] = {"ENOTIMPL", "not implemented", 501, AHG_EXIT_FAILURE},
    [-AHG_EEXPIRED] = {"EEXPIRED", "expired", 401, AHG_EXIT_FAILURE},
    [-AHG_ERATE] = {"ERATE", "too many requests", 429, AHG_EXIT_FAILURE},
    [-AHG_EUSAGE] = {"EUSAGE", "invalid usage", 400, AHG_EXIT_USAGE},
};

static const struct err_info *
lookup(int err)
{
    if (err > 0 || err < AHG_ERR_MIN)
        return NULL;
    return &err_table[-err];
}

const char *
ahg_strerror(int err)
{
    const struct err_info *e = lookup(err);
    return e ? e->text : "unknown error";
}

const char *
ahg_err_name(int err)
{
    const struct err_info *e = lookup(err);
    return e ? e->name : "EUNKNOWN";
}

int
ahg_err_http_status(int err)
{
    const struct err_info *e = lookup(err);
    return e ? e->http_status : 500;
}

int
ahg_err_exit_code(int err)
{
    const struct err_info *e = lookup(err);
    return e ? e->exit_code : AHG_EXIT_FAILURE;
}

const char *
ahg_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}
