/*
 * ahg/cidr.h - CIDR allow-lists (IPv4 and IPv6) for the management API and tunnel policies.
 *
 * "203.0.113.0/24", "2001:db8::/32", or a bare address (a /32 or /128). Host bits set below
 * the prefix are an error ("10.0.0.1/8" is rejected: it is almost always a typo). Addresses
 * are compared in binary; an IPv4-mapped IPv6 address (::ffff:1.2.3.4) matches IPv4 entries.
 */
#ifndef AHG_CIDR_H
#define AHG_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ahg_cidr {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* network address (4 bytes used for AF_INET) */
    unsigned prefix;  /* 0..32 or 0..128 */
};

/* AHG_OK or AHG_EINVAL. */
int ahg_cidr_parse(const char *s, struct ahg_cidr *out);
/* Writes the canonical text ("10.0.0.0/8") into out; returns out. */
char *ahg_cidr_format(const struct ahg_cidr *c, char *out, size_t outsz);
/* True when the textual address addr (v4, v6, v4-mapped v6) is inside c. */
bool ahg_cidr_match(const struct ahg_cidr *c, const char *addr);

struct ahg_cidr_list {
    struct ahg_cidr *v;
    size_t n;
};

/*
 * Parses a list separated by commas and/or whitespace ("10.0.0.0/8, ::1"). On AHG_EINVAL,
 * *bad (when non-NULL) points at the offending entry inside s. An empty string gives n = 0.
 */
int ahg_cidr_list_parse(const char *s, struct ahg_cidr_list *out, const char **bad);
/* Appends one entry (parsed from s). */
int ahg_cidr_list_add(struct ahg_cidr_list *l, const char *s);
/* True when addr is inside any entry; false for an empty list. */
bool ahg_cidr_list_match(const struct ahg_cidr_list *l, const char *addr);
void ahg_cidr_list_free(struct ahg_cidr_list *l);

#endif /* AHG_CIDR_H */
