/*
 * options.c - the option table of azhexgate-sidecar and the subdomain derived from the pod.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "ahg/config.h"
#include "ahg/crypto.h"
#include "ahg/err.h"
#include "sc/sidecar.h"

int
sc_label_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > SC_LABEL_MAX || s[0] == '-' || s[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
    }
    return 1;
}

/* Hex digits of the hash suffix. */
#define SC_HASH_HEX 8

int
sc_derive_subdomain(const char *pod, const char *ns, char *out, size_t outsz)
{
    if (!pod || !pod[0] || !out || outsz < SC_LABEL_MAX + 1)
        return AHG_EINVAL;
    char key[600];
    (void)snprintf(key, sizeof(key), "%s/%s", ns ? ns : "", pod);
    char hex[65];
    if (ahg_sha256_hex(key, strlen(key), hex) != AHG_OK)
        return AHG_EINVAL;
    /* the pod name as a label: lower case, anything else one '-' */
    char prefix[SC_LABEL_MAX + 1];
    size_t k = 0, cap = SC_LABEL_MAX - SC_HASH_HEX - 1;
    for (const char *p = pod; *p && k < cap; p++) {
        char c = *p;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            if (k == 0 || prefix[k - 1] == '-')
                continue;
            c = '-';
        }
        prefix[k++] = c;
    }
    while (k > 0 && prefix[k - 1] == '-')
        k--;
    prefix[k] = '\0';
    (void)snprintf(out, outsz, "%s-%.*s", k ? prefix : "pod", SC_HASH_HEX, hex);
    return AHG_OK;
}

static int
validate_label(const char *v, char *err, size_t errlen)
{
    if (sc_label_ok(v))
        return AHG_OK;
    (void)snprintf(err, errlen,
                   "expected a DNS label: 1-63 of a-z, 0-9 and '-', not starting or ending "
                   "with '-'");
    return AHG_ECONFIG;
}

static int
validate_host(const char *v, char *err, size_t errlen)
{
    unsigned char a[16];
    if (!strcmp(v, "localhost") || inet_pton(AF_INET, v, a) == 1 || inet_pton(AF_INET6, v, a) == 1)
        return AHG_OK;
    (void)snprintf(err, errlen, "expected a numeric IPv4/IPv6 address or 'localhost'");
    return AHG_ECONFIG;
}

static int
validate_url(const char *v, char *err, size_t errlen)
{
    if (!strncmp(v, "http://", 7) || !strncmp(v, "https://", 8))
        return AHG_OK;
    (void)snprintf(err, errlen, "expected an http:// or https:// URL");
    return AHG_ECONFIG;
}

static int
validate_basic_auth(const char *v, char *err, size_t errlen)
{
    const char *c = strchr(v, ':');
    if (c && c != v)
        return AHG_OK;
    (void)snprintf(err, errlen, "expected user:password");
    return AHG_ECONFIG;
}

const struct ahg_opt_def sc_opts[] = {
    {.name = "port",
     .flag = "",
     .type = AHG_OPT_INT,
     .min = 1,
     .max = 65535,
     .metavar = "PORT",
     .help = "the app's port in the pod (required)",
     .flags = AHG_OPT_REQUIRED},
    {.name = "local_host",
     .flag = "",
     .type = AHG_OPT_STRING,
     .def = "127.0.0.1",
     .metavar = "ADDR",
     .validate = validate_host,
     .help = "the app's address (numeric, or localhost)"},
    {.name = "api_url",
     .flag = "",
     .type = AHG_OPT_STRING,
     .metavar = "URL",
     .validate = validate_url,
     .help = "the management API, https://api.<domain> (required)",
     .flags = AHG_OPT_REQUIRED},
    {.name = "api_key",
     .flag = "",
     .type = AHG_OPT_STRING,
     .metavar = "KEY",
     .help = "the API key; mount it and set AZHEXGATE_API_KEY_FILE (required)",
     .flags = AHG_OPT_SECRET | AHG_OPT_REQUIRED},
    {.name = "ca_file",
     .flag = "",
     .type = AHG_OPT_STRING,
     .metavar = "FILE",
     .help = "extra CA bundle (PEM) trusted for the management API and the relay"},
    {.name = "subdomain",
     .flag = "",
     .type = AHG_OPT_STRING,
     .metavar = "LABEL",
     .validate = validate_label,
     .help = "the subdomain to ask for; default: derived from the pod name and namespace"},
    {.name = "pod_name",
     .flag = "",
     .type = AHG_OPT_STRING,
     .metavar = "NAME",
     .help = "the pod's name for the derived subdomain (else $POD_NAME, else $HOSTNAME)"},
    {.name = "pod_namespace",
     .flag = "",
     .type = AHG_OPT_STRING,
     .metavar = "NS",
     .help = "the pod's namespace for the derived subdomain (else $POD_NAMESPACE, else the "
             "service account's namespace file)"},
    {.name = "basic_auth",
     .flag = "",
     .type = AHG_OPT_STRING,
     .metavar = "USER:PASS",
     .validate = validate_basic_auth,
     .help = "callers of the public URL must send these Basic credentials",
     .flags = AHG_OPT_SECRET},
    {.name = "allow_cidr",
     .flag = "",
     .type = AHG_OPT_LIST,
     .metavar = "CIDR",
     .help = "only callers from these networks reach the app (comma-separated)"},
    {.name = "admin_address",
     .flag = "",
     .type = AHG_OPT_STRING,
     .def = "127.0.0.1",
     .metavar = "ADDR",
     .validate = validate_host,
     .help = "address of the admin listener (/healthz, /readyz, /metrics); 0.0.0.0 for probes"},
    {.name = "admin_port",
     .flag = "",
     .type = AHG_OPT_INT,
     .def = "9901",
     .min = 0,
     .max = 65535,
     .metavar = "PORT",
     .help = "port of the admin listener (0 = any free port)"},
    {.name = "probe_interval",
     .flag = "",
     .type = AHG_OPT_DURATION,
     .def = "2s",
     .min = 100,
     .max = 600000,
     .help = "how often the app's port is checked with a TCP connect (for /readyz)"},
    {.name = "drain_delay",
     .flag = "",
     .env = "AZHEXGATE_SIDECAR_DRAIN_DELAY",
     .type = AHG_OPT_DURATION,
     .def = "0",
     .min = 0,
     .max = 3600000,
     .help = "after SIGTERM, keep serving this long before draining (classic two-container "
             "pods: lets the endpoints update, like a preStop sleep)"},
    {.name = "drain_timeout",
     .flag = "",
     .type = AHG_OPT_DURATION,
     .def = "20s",
     .min = 0,
     .max = 3600000,
     .help = "how long in-flight requests may finish after SIGTERM before the tunnel is "
             "released"},
    {.name = "retry_max",
     .flag = "",
     .type = AHG_OPT_DURATION,
     .def = "30s",
     .min = 100,
     .max = 3600000,
     .help = "longest wait between management API retries (exponential backoff with jitter)"},
    {.name = "keepalive",
     .flag = "",
     .type = AHG_OPT_DURATION,
     .def = "30s",
     .min = 1000,
     .max = 600000,
     .help = "ping interval on the relay control channel"},
    {.name = "log_format",
     .flag = "",
     .type = AHG_OPT_ENUM,
     .def = "json",
     .choices = "json|text",
     .help = "log line format"},
    {.name = "log_level",
     .flag = "",
     .type = AHG_OPT_ENUM,
     .def = "info",
     .choices = "debug|info|warn|error",
     .help = "lowest level logged"},
};
const size_t sc_nopts = sizeof(sc_opts) / sizeof(sc_opts[0]);
