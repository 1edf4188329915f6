/* SPDX-License-Identifier: MIT */
/*
 * localwatch.c: Maildir changes through inotify (localwatch.h).
 *
 * One inotify instance; per watched folder three watches: cur/ and new/
 * (files: created, removed, renamed in or out) and the folder's directory
 * (directories created, removed or renamed: a subfolder), plus one on the
 * root. A watch descriptor maps back to the folder's relative path, so the
 * caller can tell its own changes from the user's. Events are only
 * counted, never acted on one by one: the pass that follows scans.
 */
#include "sync/local/localwatch.h"

#include <stdlib.h>
#include <string.h>

#include "sync/log.h"
#include "sync/util.h"

#ifdef __linux__

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <sys/inotify.h>
#include <unistd.h>

struct watched {
    int wd;
    bool dirs;     /* the folder's (or root's) directory: directory events only */
    char *relpath; /* the folder */
};

struct local_watch {
    int fd;
    char *root;
    struct watched *v;
    size_t n, cap;
};

#define FILE_EVENTS (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)
#define DIR_EVENTS (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF)

static const struct watched *find_wd(const struct local_watch *w, int wd)
{
    for (size_t i = 0; i < w->n; i++)
        if (w->v[i].wd == wd)
            return &w->v[i];
    return NULL;
}

/* Watch root/relpath/sub (sub NULL: the folder's directory). True if it
 * was not watched before. */
static bool add(struct local_watch *w, const char *relpath, const char *sub)
{
    char path[PATH_MAX];
    int len = snprintf(path, sizeof path, "%s%s%s%s%s", w->root, *relpath ? "/" : "", relpath, sub ? "/" : "",
                       sub ? sub : "");
    if (len < 0 || (size_t)len >= sizeof path)
        return false;
    uint32_t mask = (sub ? FILE_EVENTS : DIR_EVENTS) | IN_ONLYDIR | IN_DONT_FOLLOW;
    int wd = inotify_add_watch(w->fd, path, mask);
    if (wd < 0) {
        log_msg(LOG_VERBOSE, "watch: cannot watch %s: %s (its changes wait for the next full pass)", path,
                strerror(errno));
        return false;
    }
    if (find_wd(w, wd)) /* already watched (the kernel gave the same wd) */
        return false;
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 16;
        w->v = xrealloc(w->v, w->cap * sizeof *w->v);
    }
    w->v[w->n++] = (struct watched){.wd = wd, .dirs = !sub, .relpath = xstrdup(relpath)};
    return true;
}

struct local_watch *local_watch_open(const char *root_path)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
        log_msg(LOG_VERBOSE, "watch: no inotify (%s): local changes go up at the full passes", strerror(errno));
        return NULL;
    }
    struct local_watch *w = xcalloc(1, sizeof *w);
    w->fd = fd;
    w->root = xstrdup(root_path);
    add(w, "", NULL);
    if (!w->n) {
        local_watch_free(&w);
        return NULL;
    }
    return w;
}

bool local_watch_folder(struct local_watch *w, const char *relpath)
{
    if (!w || !relpath)
        return false;
    add(w, relpath, NULL);
    bool cur = add(w, relpath, "cur");
    bool new = add(w, relpath, "new");
    return cur || new;
}

int local_watch_fd(const struct local_watch *w)
{
    return w ? w->fd : -1;
}

/* Forget a watch the kernel removed (its directory went). */
static void forget(struct local_watch *w, int wd)
{
    for (size_t i = 0; i < w->n; i++)
        if (w->v[i].wd == wd) {
            free(w->v[i].relpath);
            w->v[i] = w->v[--w->n];
            return;
        }
}

size_t local_watch_drain(struct local_watch *w, local_watch_ours_fn ours, void *ctx)
{
    if (!w)
        return 0;
    size_t theirs = 0;
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t len = read(w->fd, buf, sizeof buf);
        if (len < 0 && errno == EINTR)
            continue;
        if (len <= 0)
            break; /* EAGAIN: nothing more */
        for (char *p = buf; p < buf + len;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                theirs++;
                continue;
            }
            if (ev->mask & IN_IGNORED) {
                forget(w, ev->wd);
                continue;
            }
            const struct watched *at = find_wd(w, ev->wd);
            if (!at)
                continue;
            bool dir_event = at->dirs;
            /* in a folder's directory only directories count (a file
             * there is no message; cur/ new/ tmp/ themselves are) */
            if (dir_event && !(ev->mask & (IN_ISDIR | IN_DELETE_SELF | IN_MOVE_SELF)))
                continue;
            if (ours && ours(ctx, at->relpath, dir_event))
                continue;
            theirs++;
        }
    }
    return theirs;
}

void local_watch_free(struct local_watch **wp)
{
    struct local_watch *w = *wp;
    if (!w)
        return;
    close(w->fd);
    for (size_t i = 0; i < w->n; i++)
        free(w->v[i].relpath);
    free(w->v);
    free(w->root);
    free(w);
    *wp = NULL;
}

#else /* no inotify: nothing is heard */

struct local_watch *local_watch_open(const char *root_path)
{
    (void)root_path;
    return NULL;
}

bool local_watch_folder(struct local_watch *w, const char *relpath)
{
    (void)w, (void)relpath;
    return false;
}

int local_watch_fd(const struct local_watch *w)
{
    (void)w;
    return -1;
}

size_t local_watch_drain(struct local_watch *w, local_watch_ours_fn ours, void *ctx)
{
    (void)w, (void)ours, (void)ctx;
    return 0;
}

void local_watch_free(struct local_watch **w)
{
    *w = NULL;
}

#endif
