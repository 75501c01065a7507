/*
 * redis_spawn.h - starts and stops a real redis-server on a free port of 127.0.0.1 for tests
 * (scripts/install-deps.sh installs it). Header-only; include after <cmocka.h>.
 *
 *   struct rs_server s = {0};
 *   rs_start(&s, 0, NULL);          // port 0 = a free one; password may be NULL
 *   ... s.port ...
 *   rs_stop(&s);
 *
 * Servers still running when a test fails midway are killed by rs_kill_leftovers (use it as
 * the group teardown).
 */
#ifndef AHG_TEST_REDIS_SPAWN_H
#define AHG_TEST_REDIS_SPAWN_H

#include <stdbool.h>
#include <stdio.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct rs_server {
    pid_t pid;
    int port;
};

/* Servers still running (at most 8 at a time). */
static pid_t rs_live[8];

static inline int
rs_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    (void)close(fd);
    return ntohs(a.sin_port);
}

static inline bool
rs_port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    (void)close(fd);
    return ok;
}

/* Starts redis-server on port (0 = a free one) and waits until it accepts connections. With
 * tls, the port speaks TLS only (certificates from tests/fixtures/certs, no client certs). */
static inline void
rs_start_ex(struct rs_server *s, int port, const char *password, bool tls)
{
    s->port = port != 0 ? port : rs_free_port();
    char portstr[16];
    (void)snprintf(portstr, sizeof(portstr), "%d", s->port);
    const char *argv[32] = {"redis-server", "--port", portstr,        "--bind", "127.0.0.1",
                            "--save",       "",       "--appendonly", "no"};
    int argc = 9;
    if (password != NULL) {
        argv[argc++] = "--requirepass";
        argv[argc++] = password;
    }
    if (tls) {
        const char *t[] = {"--tls-port",
                           portstr,
                           "--port",
                           "0",
                           "--tls-cert-file",
                           AHG_TEST_FIXTURES "/certs/server.pem",
                           "--tls-key-file",
                           AHG_TEST_FIXTURES "/certs/server.key",
                           "--tls-ca-cert-file",
                           AHG_TEST_FIXTURES "/certs/ca.pem",
                           "--tls-auth-clients",
                           "no"};
        argc = 0;
        argv[argc++] = "redis-server";
        argv[argc++] = "--bind";
        argv[argc++] = "127.0.0.1";
        argv[argc++] = "--save";
        argv[argc++] = "";
        argv[argc++] = "--appendonly";
        argv[argc++] = "no";
        if (password != NULL) {
            argv[argc++] = "--requirepass";
            argv[argc++] = password;
        }
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
            argv[argc++] = t[i];
    }
    argv[argc] = NULL;
    posix_spawn_file_actions_t fa;
    assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
    assert_int_equal(posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0),
                     0);
    assert_int_equal(posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0),
                     0);
    int rc = posix_spawnp(&s->pid, "redis-server", &fa, NULL, (char *const *)argv, environ);
    (void)posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        fail_msg("cannot start redis-server (scripts/install-deps.sh installs it)");
    for (size_t i = 0; i < sizeof(rs_live) / sizeof(rs_live[0]); i++) {
        if (rs_live[i] == 0) {
            rs_live[i] = s->pid;
            break;
        }
    }
    /* polling the port: redis-server gives no readiness signal we could wait on */
    for (int i = 0; i < 400 && !rs_port_open(s->port); i++) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000000L};
        (void)nanosleep(&ts, NULL);
    }
    assert_true(rs_port_open(s->port));
}

static inline void
rs_start(struct rs_server *s, int port, const char *password)
{
    rs_start_ex(s, port, password, false);
}

static inline void
rs_stop(struct rs_server *s)
{
    if (s->pid <= 0)
        return;
    (void)kill(s->pid, SIGKILL);
    int st = 0;
    (void)waitpid(s->pid, &st, 0);
    for (size_t i = 0; i < sizeof(rs_live) / sizeof(rs_live[0]); i++) {
        if (rs_live[i] == s->pid)
            rs_live[i] = 0;
    }
    s->pid = 0;
}

/* Group teardown: kills servers a failed test left running. */
static inline int
rs_kill_leftovers(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rs_live) / sizeof(rs_live[0]); i++) {
        if (rs_live[i] > 0) {
            struct rs_server s = {.pid = rs_live[i]};
            rs_stop(&s);
        }
    }
    return 0;
}

#endif /* AHG_TEST_REDIS_SPAWN_H */
