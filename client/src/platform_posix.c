/*
 * platform_posix.c - platform.h for POSIX systems (Linux, macOS).
 */
#include "platform.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ahg/err.h"

static cli_interrupt_fn g_fn;
static volatile sig_atomic_t g_count;

static void
on_signal(int sig)
{
    (void)sig;
    if (g_count < 100)
        g_count++;
    if (g_fn)
        g_fn((unsigned)g_count);
}

void
cli_platform_on_interrupt(cli_interrupt_fn fn)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    g_fn = fn;
    g_count = 0;
    sa.sa_handler = fn ? on_signal : SIG_DFL;
    (void)sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGINT, &sa, NULL);
    (void)sigaction(SIGTERM, &sa, NULL);
    (void)signal(SIGPIPE, SIG_IGN);
}

void
cli_platform_exit_now(int code)
{
    _exit(code);
}

char *
cli_platform_config_path(char *buf, size_t n)
{
    const char *x = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    int k;
    if (x && x[0] == '/')
        k = snprintf(buf, n, "%s/azhexgate/config.yaml", x);
    else if (home && home[0])
        k = snprintf(buf, n, "%s/.config/azhexgate/config.yaml", home);
    else
        return NULL;
    return k > 0 && (size_t)k < n ? buf : NULL;
}

int
cli_platform_mkdir_for(const char *path)
{
    char dir[4096];
    int k = snprintf(dir, sizeof(dir), "%s", path);
    if (k <= 0 || (size_t)k >= sizeof(dir))
        return AHG_EINVAL;
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return AHG_OK;
    *slash = 0;
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return AHG_EIO;
        *p = '/';
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return AHG_EIO;
    return AHG_OK;
}

int
cli_platform_write_private(const char *path, const char *data, size_t len)
{
    char tmp[4200];
    int k = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (k <= 0 || (size_t)k >= sizeof(tmp))
        return AHG_EINVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return AHG_EIO;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            (void)close(fd);
            (void)unlink(tmp);
            errno = e;
            return AHG_EIO;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        (void)unlink(tmp);
        errno = e;
        return AHG_EIO;
    }
    return AHG_OK;
}

bool
cli_platform_is_tty(FILE *f)
{
    return f && isatty(fileno(f)) == 1;
}

bool
cli_platform_localtime(time_t t, struct tm *out)
{
    return localtime_r(&t, out) != NULL;
}

long long
cli_platform_wall_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
cli_platform_strncasecmp(const char *a, const char *b, size_t n)
{
    return strncasecmp(a, b, n);
}

bool
cli_platform_is_numeric_addr(const char *s)
{
    unsigned char a[16];
    return s && (inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1);
}
