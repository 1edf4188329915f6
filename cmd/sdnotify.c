/* SPDX-License-Identifier: MIT */
/*
 * sdnotify.c: see sdnotify.h.
 */
#include "cmd/sdnotify.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_un addr;
static socklen_t addr_len; /* 0: systemd does not listen */
static int watchdog_ms;
/* Progress callbacks may come from delivery threads. */
static _Atomic long long last_alive_ms = -1;

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

bool sdnotify_init(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    size_t n = path ? strlen(path) : 0;
    /* A path socket ("/run/...") or an abstract one ("@name"). */
    if (n > 1 && n < sizeof addr.sun_path && (path[0] == '/' || path[0] == '@')) {
        memset(&addr, 0, sizeof addr);
        addr.sun_family = AF_UNIX;
        memcpy(addr.sun_path, path, n);
        if (path[0] == '@')
            addr.sun_path[0] = '\0';
        addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/' ? 1 : 0));
    }
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    if (addr_len && usec && (!pid || strtol(pid, NULL, 10) == (long)getpid())) {
        char *end = NULL;
        unsigned long long v = strtoull(usec, &end, 10);
        if (end && !*end && v >= 1000 && v / 1000 <= 24ULL * 3600 * 1000)
            watchdog_ms = (int)(v / 1000);
    }
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    return addr_len != 0;
}

void sdnotify_send(const char *msg)
{
    if (!addr_len)
        return;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    /* Best effort: systemd gone or busy is no reason to stop syncing. */
    (void)!sendto(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT, (const struct sockaddr *)&addr, addr_len);
    close(fd);
}

int sdnotify_watchdog_ms(void)
{
    return watchdog_ms;
}

void sdnotify_alive(void)
{
    if (!watchdog_ms)
        return;
    long long t = now_ms(), last = atomic_load(&last_alive_ms);
    if (last >= 0 && t - last < watchdog_ms / 4)
        return;
    if (atomic_compare_exchange_strong(&last_alive_ms, &last, t)) /* one thread sends */
        sdnotify_send("WATCHDOG=1");
}
