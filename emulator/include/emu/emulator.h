/*
 * emu/emulator.h - the AzHexGate emulator of Azure Relay Hybrid Connections (data plane, both
 * modes), the Microsoft.Relay ARM subset, the managed-identity token endpoint and Key Vault
 * secrets, as a component that attaches to an ahg_loop. azhexgate-emulator's main.c runs it
 * alone; the all-in-one server composes it with the controller and gateway.
 *
 * Threading: loop thread only.
 */
#ifndef EMU_EMULATOR_H
#define EMU_EMULATOR_H

#include <stddef.h>

#include "ahg/config.h"
#include "ahg/net.h"

struct emu;

/* The emulator's options (names under "emulator."), for composing option tables. */
extern const struct ahg_opt_def emu_opts[];
extern const size_t emu_nopts;

/*
 * Starts the emulator on loop with the options in cfg (which must include emu_opts). Opens the
 * relay, management, identity and admin listeners. NULL with a message in err on failure.
 */
struct emu *emu_new(struct ahg_loop *loop, const struct ahg_config *cfg, char *err, size_t errlen);

/* Frees what the loop does not own. Call after ahg_loop_free(). NULL is a no-op. */
void emu_free(struct emu *e);

/* Bound ports (useful when 0 was configured). */
int emu_relay_port(const struct emu *e);
int emu_mgmt_port(const struct emu *e);
int emu_identity_port(const struct emu *e);
int emu_admin_port(const struct emu *e);

/* For composing the emulator with other components in one process (azhexgate-server):
 * the App Service identity secret (X-IDENTITY-HEADER), the namespace's name, host name,
 * subscription and resource group. Borrowed; valid until emu_free(). */
const char *emu_identity_header(const struct emu *e);
const char *emu_namespace(const struct emu *e);
const char *emu_namespace_host(const struct emu *e);
const char *emu_subscription(const struct emu *e);
const char *emu_resource_group(const struct emu *e);

/* Writes "relay_port=…\nmgmt_port=…\n…\nready=1\n" to path (atomically, via rename). */
int emu_write_ready_file(const struct emu *e, const char *path);

#endif /* EMU_EMULATOR_H */
