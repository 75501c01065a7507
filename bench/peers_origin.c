/*
 * peers-origin: the "everything else" origin of bench/run.sh — the client's demo app
 * (cli/demo.h: /bytes/N, /echo, /events, /ws, /status/NNN) on 127.0.0.1:PORT until SIGTERM.
 *   peers-origin PORT
 * Prints "ready PORT" on stdout once it listens (PORT 0 = any free port).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ahg/net.h"
#include "cli/demo.h"

static struct ahg_loop *the_loop;

static void
on_signal(int sig)
{
    (void)sig;
    if (the_loop)
        ahg_loop_stop(the_loop);
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        (void)fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 64;
    }
    char *end = NULL;
    long port = strtol(argv[1], &end, 10);
    if (!end || *end || port < 0 || port > 65535) {
        (void)fprintf(stderr, "%s: bad port '%s'\n", argv[0], argv[1]);
        return 64;
    }
    the_loop = ahg_loop_new(NULL);
    if (!the_loop)
        return 1;
    struct cli_demo_opts o = {.iface = "127.0.0.1", .port = (int)port};
    int err = 0;
    struct cli_demo *d = cli_demo_new(the_loop, &o, &err);
    if (!d) {
        (void)fprintf(stderr, "%s: cannot listen on 127.0.0.1:%ld\n", argv[0], port);
        ahg_loop_free(the_loop);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    (void)printf("ready %d\n", cli_demo_port(d));
    (void)fflush(stdout);
    int rc = ahg_loop_run(the_loop);
    ahg_loop_free(the_loop);
    cli_demo_free(d);
    return rc == 0 ? 0 : 1;
}
