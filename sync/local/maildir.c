/* SPDX-License-Identifier: MIT */
/*
 * maildir.c: the Maildir side (see maildir.h and shared/docs/reliability.md
 * §4). Delivery through tmp/ with unique names, scans that notice changes
 * made while they ran, renames for flags that survive a MUA renaming the
 * file under us, and the fsync/syncfs primitives the engine batches.
 *
 * Every file system access is relative to directory fds opened with
 * O_NOFOLLOW below the root, so a symlink planted inside the store never
 * leads a write outside it.
 */
#include "sync/local/maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "sync/flags.h"
#include "sync/log.h"
#include "sync/util.h"

#define TMP_BUFSIZE (64 * 1024)
#define SCAN_ATTEMPTS 8      /* rescans before giving up on a busy folder */
#define UNIQ_MAX 200         /* longest unique part we create or accept */
#define HOST_MAX 64          /* bytes of the host name we use */
#define HOST_ESC_MAX 100     /* bytes of it after escaping (names <= 255) */
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

struct maildir_folder {
    int dirfd; /* the folder itself */
    int curfd, newfd, tmpfd;
    char *path; /* for messages: "<root>/<relpath>" */
    char host[HOST_ESC_MAX + 1]; /* escaped host name for unique names */
    /* What the last scan left out of its list (maildir_scan_left_out()). */
    struct local_msg *left_out;
    size_t nleft_out;
};

struct maildir_tmp {
    struct maildir_folder *folder; /* must outlive the tmp */
    int fd;                        /* -1 once closed */
    bool failed;                   /* a write failed: only discard is useful */
    bool pending_cr;               /* last chunk ended in CR */
    char uniq[UNIQ_MAX + 1];
    char *buf;
    size_t buflen;
    uint64_t size;
};

static const char *const subdirs[3] = {"cur", "new", "tmp"};

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

/* A plain file name we are willing to use below cur/ new/ tmp/. Names come
 * from the state DB and from readdir, so they are checked, not trusted. */
static bool name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > NAME_MAX || name[0] == '.')
        return false;
    return strchr(name, '/') == NULL;
}

/* Open (and with create, make) one directory below dirfd, not following a
 * symlink. Sets errno on failure. */
static int open_subdir(int dirfd, const char *name, bool create)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
        if (mkdirat(dirfd, name, 0700) != 0 && errno != EEXIST)
            return -1;
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    return fd;
}

/* The path a root fd refers to, for messages; "?" if unknown. */
static char *fd_path(int fd)
{
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0)
        return xstrdup("?");
    target[n] = '\0';
    return xstrdup(target);
}

/* The host name for unique names, with '/' and ':' written as \057 and
 * \072 as the Maildir spec asks (neither may appear in a file name part). */
static void escaped_host(char *out, size_t outlen)
{
    char host[HOST_MAX + 1];
    if (gethostname(host, sizeof host) != 0)
        strcpy(host, "localhost");
    host[HOST_MAX] = '\0';
    size_t n = 0;
    if (outlen > HOST_ESC_MAX + 1)
        outlen = HOST_ESC_MAX + 1;
    for (const char *p = host; *p && n + 5 < outlen; p++) {
        if (*p == '/' || *p == ':') {
            n += (size_t)snprintf(out + n, outlen - n, "\\%03o", (unsigned)(unsigned char)*p);
        } else if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            continue; /* no controls or spaces in file names */
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    if (n == 0)
        snprintf(out, outlen, "localhost");
}

/* rename without replacing an existing target. RENAME_NOREPLACE where the
 * kernel and file system support it; else link + unlink (link fails with
 * EEXIST); on file systems without hard links, a check then rename (racy,
 * but the names are unique so only a foreign file could collide). */
static int rename_noreplace(int olddir, const char *oldname, int newdir, const char *newname)
{
#ifdef SYS_renameat2
    if (syscall(SYS_renameat2, olddir, oldname, newdir, newname, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
#endif
    if (linkat(olddir, oldname, newdir, newname, 0) == 0) {
        if (unlinkat(olddir, oldname, 0) != 0 && errno != ENOENT)
            return -1;
        return 0;
    }
    if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS)
        return -1;
    struct stat st;
    if (fstatat(newdir, newname, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        errno = EEXIST;
        return -1;
    }
    return renameat(olddir, oldname, newdir, newname);
}

/* The info part for flags plus extra (unknown) letters: all letters in
 * ASCII order without duplicates. extra is sanitized by flags_from_letters
 * so it cannot smuggle '/' or ',' into a name. */
static void info_letters(unsigned flags, const char *extra, char *out, size_t outlen)
{
    char clean[32] = "";
    if (extra)
        flags |= flags_from_letters(extra, clean, sizeof clean);
    char known[8];
    flags_to_letters(flags & FLAG_ALL, known);
    bool have[256] = {false};
    for (const char *p = known; *p; p++)
        have[(unsigned char)*p] = true;
    for (const char *p = clean; *p; p++)
        have[(unsigned char)*p] = true;
    size_t n = 0;
    for (int c = 1; c < 256 && n + 1 < outlen; c++)
        if (have[c])
            out[n++] = (char)c;
    out[n] = '\0';
}

/* The info of a name starts at its first ":2," (as Dovecot reads it). A
 * tool that appended its own ":2,<letters>" leaves a second one: its
 * letters count too, but the marker is no letter, and neither is any ':'
 * (kept as an unknown letter, the next rename for flags would write a
 * second marker again). */
static void split_name(const char *name, struct local_msg *m)
{
    const char *info = strstr(name, ":2,");
    size_t ulen = info ? (size_t)(info - name) : strlen(name);
    m->uniq = xstrndup(name, ulen);
    m->name = xstrdup(name);
    m->extra[0] = '\0';
    m->flags = 0;
    if (!info)
        return;
    char letters[NAME_MAX + 1];
    size_t n = 0;
    for (const char *p = info + 3; *p && n + 1 < sizeof letters; p++) {
        if (*p == ':') {
            if (p[1] == '2' && p[2] == ',')
                p += 2;
            continue;
        }
        letters[n++] = *p;
    }
    letters[n] = '\0';
    m->flags = flags_from_letters(letters, m->extra, sizeof m->extra);
}

static int subdir_fd(struct maildir_folder *f, bool in_new)
{
    return in_new ? f->newfd : f->curfd;
}

/* ------------------------------------------------------------------ */
/* root and folders                                                    */

int maildir_root_open(const char *path, bool create, int *rootfd, struct ms_error *err)
{
    *rootfd = -1;
    if (!path || !*path)
        return ms_error_set(err, MS_ELOCAL, "Maildir root path is empty");
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        if (!create)
            return ms_error_set(err, MS_ELOCAL, "Maildir root %s does not exist (unmounted disk?)", path);
        if (util_mkdirs(path, 0700, false) != 0)
            return ms_error_errno(err, MS_ELOCAL, errno, "cannot create Maildir root %s", path);
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (fd < 0)
        return ms_error_errno(err, MS_ELOCAL, errno, "cannot open Maildir root %s", path);
    *rootfd = fd;
    return MS_OK;
}

/* Check relpath: no leading '/', no empty, "." or ".." components. */
static bool relpath_ok(const char *relpath)
{
    if (relpath[0] == '\0')
        return true;
    if (relpath[0] == '/')
        return false;
    const char *p = relpath;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || len > NAME_MAX || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        if (!slash)
            return true;
        p = slash + 1;
    }
}

/* Walk relpath below rootfd component by component; returns the folder's
 * directory fd or -1 with errno set. */
static int walk(int rootfd, const char *relpath, bool create)
{
    int fd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || relpath[0] == '\0')
        return fd;
    char *copy = xstrdup(relpath);
    char *save = NULL;
    for (char *comp = strtok_r(copy, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
        int next = open_subdir(fd, comp, create);
        int e = errno;
        close(fd);
        if (next < 0) {
            free(copy);
            errno = e;
            return -1;
        }
        fd = next;
    }
    free(copy);
    return fd;
}

void maildir_folder_close(struct maildir_folder *f)
{
    if (!f)
        return;
    int fds[4] = {f->dirfd, f->curfd, f->newfd, f->tmpfd};
    for (int i = 0; i < 4; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(f->path);
    maildir_msgs_free(f->left_out, f->nleft_out);
    free(f);
}

int maildir_folder_open(int rootfd, const char *relpath, bool create, struct maildir_folder **out,
                        struct ms_error *err)
{
    *out = NULL;
    if (!relpath_ok(relpath))
        return ms_error_set(err, MS_ELOCAL, "refusing unsafe Maildir folder path \"%s\"", relpath);

    struct maildir_folder *f = xcalloc(1, sizeof *f);
    f->dirfd = f->curfd = f->newfd = f->tmpfd = -1;
    char *root = fd_path(rootfd);
    size_t plen = strlen(root) + strlen(relpath) + 2;
    f->path = xmalloc(plen);
    snprintf(f->path, plen, "%s%s%s", root, relpath[0] ? "/" : "", relpath);
    free(root);
    escaped_host(f->host, sizeof f->host);

    f->dirfd = walk(rootfd, relpath, create);
    if (f->dirfd < 0)
        goto fail;
    int *fds[3] = {&f->curfd, &f->newfd, &f->tmpfd};
    for (int i = 0; i < 3; i++) {
        *fds[i] = open_subdir(f->dirfd, subdirs[i], create);
        if (*fds[i] < 0)
            goto fail;
    }
    *out = f;
    return MS_OK;

fail:;
    int e = errno;
    if (e == ENOENT)
        ms_error_set(err, MS_ELOCAL, "Maildir folder %s does not exist", f->path);
    else if (e == ELOOP || e == ENOTDIR)
        ms_error_set(err, MS_ELOCAL, "Maildir folder %s: a path component is a symlink or not a directory",
                     f->path);
    else
        ms_error_errno(err, MS_ELOCAL, e, "cannot open Maildir folder %s", f->path);
    maildir_folder_close(f);
    return MS_ELOCAL;
}

bool maildir_folder_exists(int rootfd, const char *relpath)
{
    if (!relpath_ok(relpath))
        return false;
    int fd = walk(rootfd, relpath, false);
    if (fd < 0)
        return false;
    bool ok = true;
    for (int i = 0; i < 3 && ok; i++) {
        struct stat st;
        ok = fstatat(fd, subdirs[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    }
    close(fd);
    return ok;
}

int maildir_change_stamp(int rootfd, const char *relpath, struct maildir_stamp *out)
{
    memset(out, 0, sizeof *out);
    if (!relpath_ok(relpath))
        return -1;
    int fd = walk(rootfd, relpath, false);
    if (fd < 0)
        return -1;
    struct stat cur, new;
    struct timespec now;
    int rc = fstatat(fd, "cur", &cur, AT_SYMLINK_NOFOLLOW) == 0 && fstatat(fd, "new", &new, AT_SYMLINK_NOFOLLOW) == 0 &&
                     S_ISDIR(cur.st_mode) && S_ISDIR(new.st_mode) && clock_gettime(CLOCK_REALTIME, &now) == 0
                 ? 0
                 : -1;
    close(fd);
    if (rc)
        return -1;
    out->cur_ns = (int64_t)cur.st_mtim.tv_sec * 1000000000 + cur.st_mtim.tv_nsec;
    out->new_ns = (int64_t)new.st_mtim.tv_sec * 1000000000 + new.st_mtim.tv_nsec;
    int64_t now_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    int64_t last = out->cur_ns > out->new_ns ? out->cur_ns : out->new_ns;
    out->settled = now_ns - last > MAILDIR_STAMP_SETTLE_NS;
    return 0;
}

/* Whether directory fd holds cur/, new/ and tmp/ (a Maildir folder). */
static bool holds_maildir(int fd)
{
    for (int i = 0; i < 3; i++) {
        struct stat st;
        if (fstatat(fd, subdirs[i], &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
            return false;
    }
    return true;
}

struct path_vec {
    char **v;
    size_t n, cap;
};

static void path_push(struct path_vec *p, const char *path)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->v = xrealloc(p->v, p->cap * sizeof *p->v);
    }
    p->v[p->n++] = xstrdup(path);
}

/* verbatim: every directory below dirfd (not cur/new/tmp, not dot names,
 * no symlinks) that holds a Maildir, depth-first. */
static void find_nested(int dirfd, const char *prefix, int depth, struct path_vec *out)
{
    if (depth > MAILDIR_FIND_DEPTH)
        return;
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (n[0] == '.' || !strcmp(n, "cur") || !strcmp(n, "new") || !strcmp(n, "tmp"))
            continue;
        if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
            continue;
        int sub = openat(dirfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
            continue;
        size_t len = strlen(prefix) + strlen(n) + 2;
        char *path = xmalloc(len);
        snprintf(path, len, "%s%s%s", prefix, *prefix ? "/" : "", n);
        if (holds_maildir(sub))
            path_push(out, path);
        find_nested(sub, path, depth + 1, out);
        free(path);
        close(sub);
    }
    closedir(d);
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The directories right below the root that hold a Maildir: with dots
 * (maildir++, ".Name") or without (dotted, "Name"; never cur/new/tmp). */
static void find_toplevel(int rootfd, bool dotted, struct path_vec *p)
{
    int fd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d && fd >= 0)
        close(fd);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (!strcmp(n, ".") || !strcmp(n, ".."))
            continue;
        if (dotted ? n[0] == '.' || !strcmp(n, "cur") || !strcmp(n, "new") || !strcmp(n, "tmp") : n[0] != '.')
            continue;
        int sub = openat(rootfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
            continue;
        if (holds_maildir(sub))
            path_push(p, n);
        close(sub);
    }
    if (d)
        closedir(d);
}

int maildir_find_folders(int rootfd, enum maildir_find mode, char ***out, size_t *n)
{
    struct path_vec p = {0};
    switch (mode) {
    case MAILDIR_FIND_NESTED:
        find_nested(rootfd, "", 0, &p);
        break;
    case MAILDIR_FIND_DOTDIRS:
        if (holds_maildir(rootfd))
            path_push(&p, "");
        find_toplevel(rootfd, false, &p);
        break;
    case MAILDIR_FIND_TOPLEVEL:
        find_toplevel(rootfd, true, &p);
        break;
    }
    if (p.n)
        qsort(p.v, p.n, sizeof *p.v, cmp_path);
    *out = p.v;
    *n = p.n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* scanning                                                            */

struct msg_vec {
    struct local_msg *v;
    size_t n, cap;
};

static struct local_msg *vec_push(struct msg_vec *vec)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 64;
        struct local_msg *v = xrealloc(vec->v, cap * sizeof *v);
        vec->v = v;
        vec->cap = cap;
    }
    struct local_msg *m = &vec->v[vec->n++];
    memset(m, 0, sizeof *m);
    return m;
}

/* Take back the last entry (a filter did not keep it). */
static void drop_last(struct msg_vec *vec)
{
    struct local_msg *m = &vec->v[--vec->n];
    free(m->uniq);
    free(m->name);
}

void maildir_msgs_free(struct local_msg *msgs, size_t n)
{
    if (!msgs)
        return;
    for (size_t i = 0; i < n; i++) {
        free(msgs[i].uniq);
        free(msgs[i].name);
    }
    free(msgs);
}

/* A fresh directory stream on dirfd (a new open file description, so its
 * offset is independent of earlier scans). */
static DIR *open_stream(int dirfd)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    DIR *d = fdopendir(fd);
    if (!d)
        close(fd);
    return d;
}

/* What a directory entry is, found without opening it (opening a FIFO
 * would block): 0 a message file: a regular file, or a symlink to one (a
 * dedup tool's link to an identical copy is readable mail wherever it
 * points; it is only ever read through, and renamed or removed as the
 * link itself); 1 anything else (a dangling symlink, a directory, a FIFO,
 * a socket); -1 with errno (ENOENT: renamed meanwhile). *st describes the
 * file (a link's target). */
static int entry_kind(int dirfd, const char *name, struct stat *st)
{
    if (fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) != 0)
        return -1;
    if (S_ISREG(st->st_mode))
        return 0;
    if (S_ISLNK(st->st_mode) && fstatat(dirfd, name, st, 0) == 0 && S_ISREG(st->st_mode))
        return 0;
    return 1;
}

/* Append the messages of one subdirectory to vec, and the entries that
 * are not message files to odd. */
static int list_dir(struct maildir_folder *f, bool in_new, bool sizes, const struct maildir_filter *flt,
                    struct msg_vec *vec, struct msg_vec *odd, struct ms_error *err)
{
    int dirfd = subdir_fd(f, in_new);
    DIR *d = open_stream(dirfd);
    if (!d)
        return ms_error_errno(err, MS_ELOCAL, errno, "cannot read %s/%s", f->path, in_new ? "new" : "cur");
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (!name_ok(de->d_name))
            continue;
        struct stat st;
        if (!sizes && de->d_type == DT_REG) {
            /* the directory says it is a regular file: no stat needed */
            struct local_msg *m = vec_push(vec);
            split_name(de->d_name, m);
            m->in_new = in_new;
            m->size = 0;
            if (flt && !flt->keep(flt->ctx, m))
                drop_last(vec);
            errno = 0;
            continue;
        }
        int kind = entry_kind(dirfd, de->d_name, &st);
        if (kind < 0) {
            if (errno == ENOENT) { /* renamed meanwhile: the mtime check rescans */
                errno = 0;
                continue;
            }
            int e = errno;
            closedir(d);
            return ms_error_errno(err, MS_ELOCAL, e, "cannot stat %s/%s/%s", f->path, in_new ? "new" : "cur",
                                  de->d_name);
        }
        if (kind > 0) {
            /* Not mail, but where a message may have been: left out of
             * the list, yet reported, so that it is not taken for a
             * deletion (see maildir_scan_left_out()). */
            log_msg(LOG_VERBOSE, "%s/%s: skipping %s (not a regular file)", f->path, in_new ? "new" : "cur",
                    log_escape(de->d_name, strlen(de->d_name), 100));
            struct local_msg *m = vec_push(odd);
            split_name(de->d_name, m);
            m->in_new = in_new;
            m->odd = true;
            errno = 0;
            continue;
        }
        struct local_msg *m = vec_push(vec);
        split_name(de->d_name, m);
        m->in_new = in_new;
        m->size = (uint64_t)st.st_size;
        if (flt && !flt->keep(flt->ctx, m))
            drop_last(vec);
        errno = 0;
    }
    int e = errno;
    closedir(d);
    if (e)
        return ms_error_errno(err, MS_ELOCAL, e, "cannot read %s/%s", f->path, in_new ? "new" : "cur");
    return MS_OK;
}

/* Modification times of new/ and cur/. */
static int dir_times(struct maildir_folder *f, struct timespec t[2], struct ms_error *err)
{
    struct stat st;
    for (int i = 0; i < 2; i++) {
        if (fstat(i == 0 ? f->newfd : f->curfd, &st) != 0)
            return ms_error_errno(err, MS_ELOCAL, errno, "cannot stat %s", f->path);
        t[i] = st.st_mtim;
    }
    return MS_OK;
}

static bool ts_equal(struct timespec a, struct timespec b)
{
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* Whether a directory mtime is "now" as far as the file system can tell:
 * a change later in the same clock tick would leave the mtime unchanged,
 * so such an mtime proves nothing. The kernel stamps files with the coarse
 * real-time clock (one tick = tick_ns), or finer; file systems with
 * whole-second stamps (nsec == 0) are compared by the second. An mtime far
 * in the future (clock jumped back, NFS server clock) is not "now": any
 * change would then still set a different mtime. */
static bool ts_is_now(struct timespec t, long tick_ns)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (t.tv_nsec == 0)
        return t.tv_sec == now.tv_sec || t.tv_sec == now.tv_sec + 1;
    int64_t diff = ((int64_t)now.tv_sec - (int64_t)t.tv_sec) * 1000000000 + (now.tv_nsec - t.tv_nsec);
    return diff > -1000000000 && diff <= tick_ns;
}

/* Wait (bounded, about 1.2 s at most) until neither directory's mtime is
 * the current tick, so that any change from now on moves the mtime. */
static int settle(struct maildir_folder *f, struct timespec t[2], struct ms_error *err)
{
    struct timespec res;
    if (clock_getres(CLOCK_REALTIME_COARSE, &res) != 0 || res.tv_sec > 0 || res.tv_nsec == 0)
        res = (struct timespec){0, 4000000};
    long tick_ns = res.tv_nsec + 1000000; /* a margin for the clocks' phase */
    for (long waited_ns = 0; waited_ns < 1200000000L; waited_ns += tick_ns) {
        int rc = dir_times(f, t, err);
        if (rc)
            return rc;
        if (!ts_is_now(t[0], tick_ns) && !ts_is_now(t[1], tick_ns))
            return MS_OK;
        struct timespec nap = {0, tick_ns};
        nanosleep(&nap, NULL);
    }
    return MS_OK;
}

static int cmp_uniq(const void *a, const void *b)
{
    const struct local_msg *x = a, *y = b;
    int c = strcmp(x->uniq, y->uniq);
    if (c)
        return c;
    return strcmp(x->name, y->name);
}

/* Keep the first file of each unique part in vec (sorted by uniq, then
 * name) and move the others to left: one unique part is one message to
 * the state and the planner, whatever a restored backup put next to it. */
static void move_duplicates(struct msg_vec *vec, struct msg_vec *left)
{
    size_t k = 0;
    for (size_t i = 0; i < vec->n; i++) {
        if (k && strcmp(vec->v[i].uniq, vec->v[k - 1].uniq) == 0)
            *vec_push(left) = vec->v[i];
        else
            vec->v[k++] = vec->v[i];
    }
    vec->n = k;
}

static int scan(struct maildir_folder *f, bool sizes, const struct maildir_filter *flt, struct local_msg **out,
                size_t *n, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    for (int attempt = 0; attempt < SCAN_ATTEMPTS; attempt++) {
        struct timespec before[2] = {{0, 0}, {0, 0}}, after[2] = {{0, 0}, {0, 0}};
        int rc = settle(f, before, err);
        if (rc)
            return rc;
        struct msg_vec vec = {0}, left = {0};
        if (flt)
            flt->restart(flt->ctx);
        rc = list_dir(f, true, sizes, flt, &vec, &left, err);
        if (!rc)
            rc = list_dir(f, false, sizes, flt, &vec, &left, err);
        if (!rc)
            rc = dir_times(f, after, err);
        if (rc) {
            maildir_msgs_free(vec.v, vec.n);
            maildir_msgs_free(left.v, left.n);
            return rc;
        }
        if (ts_equal(before[0], after[0]) && ts_equal(before[1], after[1])) {
            if (vec.n)
                qsort(vec.v, vec.n, sizeof *vec.v, cmp_uniq);
            move_duplicates(&vec, &left);
            maildir_msgs_free(f->left_out, f->nleft_out);
            f->left_out = left.v;
            f->nleft_out = left.n;
            *out = vec.v;
            *n = vec.n;
            return MS_OK;
        }
        /* Something was added, renamed or removed while we read: a file
         * renamed mid-readdir may have been missed, so read again. */
        maildir_msgs_free(vec.v, vec.n);
        maildir_msgs_free(left.v, left.n);
    }
    return ms_error_set(err, MS_ELOCAL, "Maildir folder %s kept changing during %d scans; try again later",
                        f->path, SCAN_ATTEMPTS);
}

int maildir_scan(struct maildir_folder *f, struct local_msg **out, size_t *n, struct ms_error *err)
{
    return scan(f, true, NULL, out, n, err);
}

int maildir_scan_names(struct maildir_folder *f, struct local_msg **out, size_t *n, struct ms_error *err)
{
    return scan(f, false, NULL, out, n, err);
}

int maildir_scan_names_filtered(struct maildir_folder *f, const struct maildir_filter *flt, struct local_msg **out,
                                size_t *n, struct ms_error *err)
{
    return scan(f, false, flt, out, n, err);
}

struct local_msg *maildir_scan_left_out(struct maildir_folder *f, size_t *n)
{
    *n = f->nleft_out;
    return f->left_out;
}

/* Search one subdirectory for uniq. 0 found (fills m), 1 not, else error. */
static int find_in(struct maildir_folder *f, bool in_new, const char *uniq, struct local_msg *m,
                   struct ms_error *err)
{
    int dirfd = subdir_fd(f, in_new);
    struct stat st;
    /* The common cases first: the bare name (new/), no directory read. */
    if (entry_kind(dirfd, uniq, &st) == 0) {
        split_name(uniq, m);
        m->in_new = in_new;
        m->size = (uint64_t)st.st_size;
        return 0;
    }
    DIR *d = open_stream(dirfd);
    if (!d)
        return ms_error_errno(err, MS_ELOCAL, errno, "cannot read %s/%s", f->path, in_new ? "new" : "cur");
    size_t ulen = strlen(uniq);
    struct dirent *de;
    int rc = 1;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, uniq, ulen) != 0 || strncmp(de->d_name + ulen, ":2,", 3) != 0)
            continue;
        if (entry_kind(dirfd, de->d_name, &st) != 0)
            continue;
        split_name(de->d_name, m);
        m->in_new = in_new;
        m->size = (uint64_t)st.st_size;
        rc = 0;
        break;
    }
    closedir(d);
    return rc;
}

int maildir_find(struct maildir_folder *f, const char *uniq, struct local_msg *out, struct ms_error *err)
{
    memset(out, 0, sizeof *out);
    if (!name_ok(uniq) || strstr(uniq, ":2,"))
        return 1;
    for (int attempt = 0; attempt < SCAN_ATTEMPTS; attempt++) {
        struct timespec before[2] = {{0, 0}, {0, 0}}, after[2] = {{0, 0}, {0, 0}};
        int rc = settle(f, before, err);
        if (rc)
            return rc;
        /* cur/ first: a MUA moves new/ -> cur/, never back. */
        rc = find_in(f, false, uniq, out, err);
        if (rc == 1)
            rc = find_in(f, true, uniq, out, err);
        if (rc != 1)
            return rc;
        rc = dir_times(f, after, err);
        if (rc)
            return rc;
        if (ts_equal(before[0], after[0]) && ts_equal(before[1], after[1]))
            return 1;
    }
    return 1;
}

int maildir_find_hint(struct maildir_folder *f, const char *uniq, unsigned flags, struct local_msg *out,
                      struct ms_error *err)
{
    memset(out, 0, sizeof *out);
    if (!name_ok(uniq) || strstr(uniq, ":2,"))
        return 1;
    char letters[8], name[NAME_MAX + 1];
    int n = snprintf(name, sizeof name, "%s:2,%s", uniq, flags_to_letters(flags, letters));
    struct stat st;
    if (n > 0 && (size_t)n < sizeof name && entry_kind(f->curfd, name, &st) == 0) {
        split_name(name, out);
        out->size = (uint64_t)st.st_size;
        return 0;
    }
    if (entry_kind(f->newfd, uniq, &st) == 0) {
        split_name(uniq, out);
        out->in_new = true;
        out->size = (uint64_t)st.st_size;
        return 0;
    }
    return maildir_find(f, uniq, out, err);
}

/* ------------------------------------------------------------------ */
/* delivery                                                            */

/* A fresh unique part: time.M<usec>P<pid>R<random>.<host>. */
static void make_uniq(const struct maildir_folder *f, int attempt, char *out, size_t outlen)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = ((uint64_t)tv.tv_usec << 32) ^ (uint64_t)rand() ^ ((uint64_t)attempt << 56);
    snprintf(out, outlen, "%lld.M%ldP%ldR%016llx.%s", (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(),
             (unsigned long long)rnd, f->host);
}

int maildir_tmp_open(struct maildir_folder *f, struct maildir_tmp **out, struct ms_error *err)
{
    *out = NULL;
    struct maildir_tmp *t = xcalloc(1, sizeof *t);
    t->folder = f;
    t->fd = -1;
    t->buf = xmalloc(TMP_BUFSIZE);
    for (int attempt = 0; attempt < 10; attempt++) {
        make_uniq(f, attempt, t->uniq, sizeof t->uniq);
        t->fd = openat(f->tmpfd, t->uniq, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (t->fd >= 0) {
            *out = t;
            return MS_OK;
        }
        if (errno != EEXIST)
            break;
    }
    int e = errno;
    free(t->buf);
    free(t);
    return ms_error_errno(err, MS_ELOCAL, e, "cannot create a file in %s/tmp", f->path);
}

const char *maildir_tmp_uniq(const struct maildir_tmp *t)
{
    return t->uniq;
}

uint64_t maildir_tmp_size(const struct maildir_tmp *t)
{
    return t->size;
}

static int write_error(struct maildir_tmp *t, int e, struct ms_error *err)
{
    t->failed = true;
    return ms_error_errno(err, MS_ELOCAL, e, "cannot write %s/tmp/%s", t->folder->path, t->uniq);
}

static int flush_buf(struct maildir_tmp *t, struct ms_error *err)
{
    size_t off = 0;
    while (off < t->buflen) {
        ssize_t w = write(t->fd, t->buf + off, t->buflen - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return write_error(t, errno, err);
        }
        if (w == 0)
            return write_error(t, ENOSPC, err);
        off += (size_t)w;
    }
    t->buflen = 0;
    return MS_OK;
}

static int emit(struct maildir_tmp *t, const char *data, size_t len, struct ms_error *err)
{
    while (len) {
        size_t room = TMP_BUFSIZE - t->buflen;
        size_t k = len < room ? len : room;
        memcpy(t->buf + t->buflen, data, k);
        t->buflen += k;
        t->size += k;
        data += k;
        len -= k;
        if (t->buflen == TMP_BUFSIZE) {
            int rc = flush_buf(t, err);
            if (rc)
                return rc;
        }
    }
    return MS_OK;
}

int maildir_tmp_write(struct maildir_tmp *t, const char *data, size_t len, struct ms_error *err)
{
    if (t->failed || t->fd < 0)
        return ms_error_set(err, MS_ELOCAL, "%s/tmp/%s: write after failure or close", t->folder->path, t->uniq);
    while (len) {
        if (t->pending_cr) {
            t->pending_cr = false;
            if (data[0] == '\n') { /* CRLF split across chunks */
                int rc = emit(t, "\n", 1, err);
                if (rc)
                    return rc;
                data++;
                len--;
                continue;
            }
            int rc = emit(t, "\r", 1, err); /* a lone CR is content */
            if (rc)
                return rc;
        }
        const char *cr = memchr(data, '\r', len);
        size_t span = cr ? (size_t)(cr - data) : len;
        int rc = emit(t, data, span, err);
        if (rc)
            return rc;
        data += span;
        len -= span;
        if (cr) {
            /* Decide at the next byte (maybe in the next chunk). */
            t->pending_cr = true;
            data++;
            len--;
        }
    }
    return MS_OK;
}

int maildir_tmp_close(struct maildir_tmp *t, time_t mtime, bool fsync_now, struct ms_error *err)
{
    if (t->fd < 0)
        return MS_OK;
    if (t->failed)
        return ms_error_set(err, MS_ELOCAL, "%s/tmp/%s: closing after a write failure", t->folder->path, t->uniq);
    int rc = MS_OK;
    if (t->pending_cr) {
        t->pending_cr = false;
        rc = emit(t, "\r", 1, err);
    }
    if (!rc)
        rc = flush_buf(t, err);
    if (!rc && mtime) {
        struct timespec ts[2] = {{0, UTIME_OMIT}, {mtime, 0}};
        if (futimens(t->fd, ts) != 0)
            rc = write_error(t, errno, err);
    }
    if (!rc && fsync_now && fsync(t->fd) != 0)
        rc = write_error(t, errno, err);
    /* close() can report a deferred write error (NFS): it counts too. */
    if (close(t->fd) != 0 && !rc)
        rc = write_error(t, errno, err);
    t->fd = -1;
    /* A closed message may wait for its batch's commit: it keeps no
     * buffer meanwhile (200 waiting messages would hold 12 MiB). */
    free(t->buf);
    t->buf = NULL;
    return rc;
}

void maildir_tmp_discard(struct maildir_tmp *t)
{
    if (!t)
        return;
    if (t->fd >= 0)
        close(t->fd);
    unlinkat(t->folder->tmpfd, t->uniq, 0);
    free(t->buf);
    free(t);
}

/* Move tmp/<uniq> to new/<uniq> or cur/<uniq>:2,<info>. */
static int commit_name(struct maildir_folder *f, const char *uniq, unsigned flags, const char *extra,
                       struct ms_error *err)
{
    if (!name_ok(uniq) || strchr(uniq, ':'))
        return ms_error_set(err, MS_ELOCAL, "refusing unsafe Maildir file name \"%s\"",
                            log_escape(uniq, strlen(uniq), 100));
    char info[64];
    info_letters(flags, extra, info, sizeof info);
    int dirfd = info[0] ? f->curfd : f->newfd;
    char target[NAME_MAX + 1];
    int n = info[0] ? snprintf(target, sizeof target, "%s:2,%s", uniq, info)
                    : snprintf(target, sizeof target, "%s", uniq);
    if (n < 0 || (size_t)n >= sizeof target)
        return ms_error_set(err, MS_ELOCAL, "Maildir file name too long for %s", uniq);
    if (rename_noreplace(f->tmpfd, uniq, dirfd, target) != 0)
        return ms_error_errno(err, MS_ELOCAL, errno, "cannot move %s/tmp/%s to %s/", f->path, uniq,
                              info[0] ? "cur" : "new");
    return MS_OK;
}

int maildir_tmp_commit(struct maildir_folder *f, struct maildir_tmp *t, unsigned flags, const char *extra,
                       struct ms_error *err)
{
    int rc = MS_OK;
    if (t->fd >= 0) /* not closed by the caller: close without fsync */
        rc = maildir_tmp_close(t, 0, false, err);
    if (!rc && t->failed)
        rc = ms_error_set(err, MS_ELOCAL, "%s/tmp/%s is incomplete", f->path, t->uniq);
    if (rc) {
        /* Incomplete content must never reach new/ or cur/. */
        maildir_tmp_discard(t);
        return rc;
    }
    /* On a failed move the complete file stays in tmp/ (the sweep removes
     * it eventually): losing the only copy would be worse. */
    rc = commit_name(f, t->uniq, flags, extra, err);
    free(t->buf);
    free(t);
    return rc;
}

int maildir_tmp_replace(struct maildir_folder *f, struct maildir_tmp *t, const struct local_msg *m,
                        struct ms_error *err)
{
    int rc = MS_OK;
    if (t->fd >= 0)
        rc = maildir_tmp_close(t, 0, false, err);
    if (!rc && t->failed)
        rc = ms_error_set(err, MS_ELOCAL, "%s/tmp/%s is incomplete", f->path, t->uniq);
    if (!rc && !name_ok(m->name))
        rc = ms_error_set(err, MS_ELOCAL, "%s: a message file name that cannot be replaced", f->path);
    if (rc) {
        maildir_tmp_discard(t);
        return rc;
    }
    /* rename(2) over the old name: a reader sees the old file or the new
     * one, never neither nor both */
    if (renameat(f->tmpfd, t->uniq, m->in_new ? f->newfd : f->curfd, m->name) != 0)
        rc = ms_error_errno(err, MS_ELOCAL, errno, "cannot move %s/tmp/%s over %s/%s/%s", f->path, t->uniq,
                            f->path, m->in_new ? "new" : "cur", m->name);
    if (rc)
        maildir_tmp_discard(t);
    else {
        free(t->buf);
        free(t);
    }
    return rc;
}

int maildir_tmp_commit_name(struct maildir_folder *f, const char *uniq, unsigned flags, const char *extra,
                            struct ms_error *err)
{
    return commit_name(f, uniq, flags, extra, err);
}

bool maildir_tmp_exists(struct maildir_folder *f, const char *uniq)
{
    struct stat st;
    if (!name_ok(uniq))
        return false;
    return fstatat(f->tmpfd, uniq, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

int maildir_syncfs(struct maildir_folder *f, struct ms_error *err)
{
    if (syncfs(f->dirfd) != 0)
        return ms_error_errno(err, MS_ELOCAL, errno, "cannot sync the file system of %s", f->path);
    return MS_OK;
}

int maildir_sync_dirs(struct maildir_folder *f, struct ms_error *err)
{
    if (fsync(f->newfd) != 0)
        return ms_error_errno(err, MS_ELOCAL, errno, "cannot fsync %s/new", f->path);
    if (fsync(f->curfd) != 0)
        return ms_error_errno(err, MS_ELOCAL, errno, "cannot fsync %s/cur", f->path);
    return MS_OK;
}

void maildir_dup_dirs(const struct maildir_folder *f, int *cur, int *newdir)
{
    *cur = fcntl(f->curfd, F_DUPFD_CLOEXEC, 0);
    *newdir = fcntl(f->newfd, F_DUPFD_CLOEXEC, 0);
}

int maildir_dup_tmp(const struct maildir_folder *f)
{
    return fcntl(f->tmpfd, F_DUPFD_CLOEXEC, 0);
}

const char *maildir_folder_path(const struct maildir_folder *f)
{
    return f->path;
}

/* Age is judged by st_ctime, not st_mtime: maildir_tmp_close() sets a
 * delivered file's mtime to the message's INTERNALDATE, which may be years
 * old, while its ctime is when we wrote it. Sweeping by mtime would delete
 * a message being delivered right now. */
int maildir_sweep_tmp(struct maildir_folder *f, time_t max_age, struct ms_error *err)
{
    DIR *d = open_stream(f->tmpfd);
    if (!d)
        return ms_error_errno(err, MS_ELOCAL, errno, "cannot read %s/tmp", f->path);
    time_t now = time(NULL);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        struct stat st;
        if (fstatat(f->tmpfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (st.st_ctime >= now - max_age)
            continue;
        if (unlinkat(f->tmpfd, de->d_name, 0) == 0)
            log_msg(LOG_VERBOSE, "%s/tmp: removed stale %s", f->path,
                    log_escape(de->d_name, strlen(de->d_name), 100));
    }
    closedir(d);
    return MS_OK;
}

/* ------------------------------------------------------------------ */
/* changes to delivered messages                                       */

/* m's file is gone under its known name: look it up by uniq and update m.
 * 0 found, 1 gone, else error. */
static int relocate(struct maildir_folder *f, struct local_msg *m, struct ms_error *err)
{
    struct local_msg found;
    int rc = maildir_find(f, m->uniq, &found, err);
    if (rc)
        return rc;
    free(m->name);
    m->name = found.name;
    free(found.uniq);
    m->in_new = found.in_new;
    m->flags = found.flags;
    memcpy(m->extra, found.extra, sizeof m->extra);
    m->size = found.size;
    return 0;
}

/* Rename m's file from `from` into to's cur/ with the info letters of
 * flags (to == from: a flag change in place). A file a MUA renamed
 * meanwhile is looked for again (gone: 1); 2 when the rename would cross
 * file systems. */
static int rename_into_cur(struct maildir_folder *from, struct local_msg *m, struct maildir_folder *to,
                           unsigned flags, struct ms_error *err)
{
    if (!name_ok(m->name) || !name_ok(m->uniq) || strchr(m->uniq, ':'))
        return ms_error_set(err, MS_ELOCAL, "refusing unsafe Maildir file name \"%s\"",
                            log_escape(m->name, strlen(m->name), 100));
    for (int attempt = 0; attempt < SCAN_ATTEMPTS; attempt++) {
        char info[64], target[NAME_MAX + 1];
        info_letters(flags, m->extra, info, sizeof info);
        int n = snprintf(target, sizeof target, "%s:2,%s", m->uniq, info);
        if (n < 0 || (size_t)n >= sizeof target)
            return ms_error_set(err, MS_ELOCAL, "Maildir file name too long for %s", m->uniq);
        if (to == from && !m->in_new && strcmp(m->name, target) == 0) {
            m->flags = flags & FLAG_ALL;
            return MS_OK; /* already right */
        }
        if (rename_noreplace(subdir_fd(from, m->in_new), m->name, to->curfd, target) == 0) {
            free(m->name);
            m->name = xstrdup(target);
            m->in_new = false;
            m->flags = flags & FLAG_ALL;
            return MS_OK;
        }
        if (errno == EXDEV)
            return 2;
        if (errno != ENOENT)
            return to == from ? ms_error_errno(err, MS_ELOCAL, errno, "cannot rename %s/%s/%s", from->path,
                                               m->in_new ? "new" : "cur", m->name)
                              : ms_error_errno(err, MS_ELOCAL, errno, "cannot move %s/%s/%s to %s/cur",
                                               from->path, m->in_new ? "new" : "cur", m->name, to->path);
        /* Renamed by a MUA meanwhile (ENOENT is a rescan, never a delete). */
        int rc = relocate(from, m, err);
        if (rc)
            return rc;
    }
    return ms_error_set(err, MS_ELOCAL, "%s: message %s keeps being renamed", from->path, m->uniq);
}

int maildir_set_flags(struct maildir_folder *f, struct local_msg *m, unsigned flags, struct ms_error *err)
{
    return rename_into_cur(f, m, f, flags, err);
}

int maildir_move_to(struct maildir_folder *from, struct local_msg *m, struct maildir_folder *to, unsigned flags,
                    struct ms_error *err)
{
    if (!name_ok(m->name) || !name_ok(m->uniq) || strchr(m->uniq, ':'))
        return ms_error_set(err, MS_ELOCAL, "refusing unsafe Maildir file name \"%s\"",
                            log_escape(m->name, strlen(m->name), 100));
    struct stat a, b;
    if (fstat(from->curfd, &a) != 0 || fstat(to->curfd, &b) != 0)
        return ms_error_errno(err, MS_ELOCAL, errno, "cannot stat %s or %s", from->path, to->path);
    if (a.st_dev != b.st_dev)
        return 2; /* a rename cannot cross file systems */
    return rename_into_cur(from, m, to, flags, err);
}

int maildir_remove(struct maildir_folder *f, struct local_msg *m, struct ms_error *err)
{
    if (!name_ok(m->name) || !name_ok(m->uniq))
        return ms_error_set(err, MS_ELOCAL, "refusing unsafe Maildir file name \"%s\"",
                            log_escape(m->name, strlen(m->name), 100));
    for (int attempt = 0; attempt < SCAN_ATTEMPTS; attempt++) {
        if (unlinkat(subdir_fd(f, m->in_new), m->name, 0) == 0)
            return MS_OK;
        if (errno != ENOENT)
            return ms_error_errno(err, MS_ELOCAL, errno, "cannot remove %s/%s/%s", f->path,
                                  m->in_new ? "new" : "cur", m->name);
        int rc = relocate(f, m, err);
        if (rc)
            return rc;
    }
    return ms_error_set(err, MS_ELOCAL, "%s: message %s keeps being renamed", f->path, m->uniq);
}

/* read() until len bytes or the end of the file; -1 on error. */
static ssize_t read_full(int fd, char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* errno of open_for_reading() for an entry that is no message file. */
#define EFTYPE_NOT_REG EINVAL

/* Open a message file read-only: a regular file, or a symlink to one
 * (read through, never written). O_NONBLOCK, so that a FIFO put there
 * meanwhile cannot block the open; anything not a regular file once open
 * is refused with errno EFTYPE_NOT_REG. Returns an fd or -1. */
static int open_for_reading(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 && errno == ELOOP)
        fd = openat(dirfd, name, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    int flags = fcntl(fd, F_GETFL);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        close(fd);
        errno = EFTYPE_NOT_REG;
        return -1;
    }
    return fd;
}

int maildir_open_msg(struct maildir_folder *f, struct local_msg *m, struct ms_error *err)
{
    if (!name_ok(m->name) || !name_ok(m->uniq)) {
        ms_error_set(err, MS_ELOCAL, "refusing unsafe Maildir file name \"%s\"",
                     log_escape(m->name, strlen(m->name), 100));
        return -1;
    }
    for (int attempt = 0; attempt < SCAN_ATTEMPTS; attempt++) {
        int fd = open_for_reading(subdir_fd(f, m->in_new), m->name);
        if (fd >= 0)
            return fd;
        if (errno == EFTYPE_NOT_REG) {
            ms_error_set(err, MS_ELOCAL, "%s/%s/%s is not a regular file", f->path, m->in_new ? "new" : "cur",
                         log_escape(m->name, strlen(m->name), 100));
            return -1;
        }
        if (errno != ENOENT) {
            ms_error_errno(err, MS_ELOCAL, errno, "cannot open %s/%s/%s", f->path, m->in_new ? "new" : "cur",
                           m->name);
            return -1;
        }
        int rc = relocate(f, m, err);
        if (rc == 1)
            ms_error_set(err, MS_ELOCAL, "%s: message %s vanished", f->path, m->uniq);
        if (rc)
            return -1;
    }
    ms_error_set(err, MS_ELOCAL, "%s: message %s keeps being renamed", f->path, m->uniq);
    return -1;
}

int maildir_open_exact(struct maildir_folder *f, const struct local_msg *m, struct ms_error *err)
{
    int fd = name_ok(m->name) ? open_for_reading(subdir_fd(f, m->in_new), m->name) : -1;
    if (fd < 0)
        ms_error_errno(err, MS_ELOCAL, name_ok(m->name) ? errno : EINVAL, "cannot open %s/%s/%s", f->path,
                       m->in_new ? "new" : "cur", log_escape(m->name, strlen(m->name), 100));
    return fd;
}

int maildir_same_content(struct maildir_folder *f, struct local_msg *a, struct local_msg *b, struct ms_error *err)
{
    /* By name, not by uniq: the two share it. */
    int fa = maildir_open_exact(f, a, err), fb = fa >= 0 ? maildir_open_exact(f, b, err) : -1;
    if (fb < 0) {
        if (fa >= 0)
            close(fa);
        return -1;
    }
    char *bufa = xmalloc(2 * TMP_BUFSIZE), *bufb = bufa + TMP_BUFSIZE;
    int same = 1;
    for (;;) {
        ssize_t na = read_full(fa, bufa, TMP_BUFSIZE), nb = read_full(fb, bufb, TMP_BUFSIZE);
        if (na < 0 || nb < 0) {
            ms_error_errno(err, MS_ELOCAL, errno, "cannot read a message file in %s", f->path);
            same = -1;
            break;
        }
        if (na != nb || memcmp(bufa, bufb, (size_t)na) != 0) {
            same = 0;
            break;
        }
        if (na == 0)
            break;
    }
    free(bufa);
    close(fa);
    close(fb);
    return same;
}

int maildir_rename_uniq(struct maildir_folder *f, struct local_msg *m, struct ms_error *err)
{
    if (!name_ok(m->name))
        return ms_error_set(err, MS_ELOCAL, "refusing unsafe Maildir file name \"%s\"",
                            log_escape(m->name, strlen(m->name), 100));
    int dirfd = subdir_fd(f, m->in_new);
    bool info = strstr(m->name, ":2,") != NULL;
    for (int attempt = 0; attempt < 10; attempt++) {
        char uniq[UNIQ_MAX + 1], letters[64], target[NAME_MAX + 1];
        make_uniq(f, attempt, uniq, sizeof uniq);
        info_letters(m->flags, m->extra, letters, sizeof letters);
        int n = info ? snprintf(target, sizeof target, "%s:2,%s", uniq, letters)
                     : snprintf(target, sizeof target, "%s", uniq);
        if (n < 0 || (size_t)n >= sizeof target)
            return ms_error_set(err, MS_ELOCAL, "Maildir file name too long for %s", uniq);
        if (rename_noreplace(dirfd, m->name, dirfd, target) == 0) {
            free(m->name);
            free(m->uniq);
            m->name = xstrdup(target);
            m->uniq = xstrdup(uniq);
            return MS_OK;
        }
        if (errno != EEXIST)
            return ms_error_errno(err, MS_ELOCAL, errno, "cannot rename %s/%s/%s", f->path, m->in_new ? "new" : "cur",
                                  log_escape(m->name, strlen(m->name), 100));
    }
    return ms_error_set(err, MS_ELOCAL, "%s: no free unique name for %s", f->path,
                        log_escape(m->name, strlen(m->name), 100));
}

/* ------------------------------------------------------------------ */
/* renaming a folder                                                   */

/* The directory holding the last component of relpath (walked, created
 * with create), and that component in *leaf (points into relpath). */
static int parent_of(int rootfd, const char *relpath, bool create, const char **leaf)
{
    const char *slash = strrchr(relpath, '/');
    *leaf = slash ? slash + 1 : relpath;
    if (!slash)
        return openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char *dir = xstrndup(relpath, (size_t)(slash - relpath));
    int fd = walk(rootfd, dir, create);
    free(dir);
    return fd;
}

int maildir_rename_folder(int rootfd, const char *from, const char *to, struct ms_error *err)
{
    if (!relpath_ok(from) || !relpath_ok(to) || !*from || !*to)
        return ms_error_set(err, MS_ELOCAL, "cannot rename folder %s to %s: not a folder path", from, to);
    const char *fleaf, *tleaf;
    int fd_from = parent_of(rootfd, from, false, &fleaf);
    int fd_to = fd_from >= 0 ? parent_of(rootfd, to, true, &tleaf) : -1;
    int rc = MS_OK;
    struct stat st;
    if (fd_from < 0 || fd_to < 0)
        rc = ms_error_errno(err, MS_ELOCAL, errno, "cannot rename folder %s to %s", from, to);
    else if (fstatat(fd_to, tleaf, &st, AT_SYMLINK_NOFOLLOW) == 0)
        rc = ms_error_set(err, MS_ELOCAL, "cannot rename folder %s to %s: that exists", from, to);
    else if (renameat(fd_from, fleaf, fd_to, tleaf) != 0)
        rc = ms_error_errno(err, MS_ELOCAL, errno, "cannot rename folder %s to %s", from, to);
    /* durable before anything is recorded under the new name */
    else if (fsync(fd_to) != 0 || fsync(fd_from) != 0)
        rc = ms_error_errno(err, MS_ELOCAL, errno, "cannot fsync after renaming folder %s to %s", from, to);
    if (fd_from >= 0)
        close(fd_from);
    if (fd_to >= 0)
        close(fd_to);
    return rc;
}

/* ------------------------------------------------------------------ */
/* one message in two folders (Gmail labels)                           */

/* Copy the bytes of fd (a message file, already stored the Maildir way)
 * into t's file unchanged, with fd's mtime. */
static int copy_into_tmp(struct maildir_tmp *t, int fd, struct ms_error *err)
{
    char buf[65536];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return ms_error_errno(err, MS_ELOCAL, errno, "cannot read a message to copy into %s", t->folder->path);
        if (r == 0)
            break;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(t->fd, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return write_error(t, w < 0 ? errno : ENOSPC, err);
            off += w;
            t->size += (uint64_t)w;
        }
    }
    struct stat st;
    if (fstat(fd, &st) == 0) {
        struct timespec ts[2] = {{0, UTIME_OMIT}, st.st_mtim};
        if (futimens(t->fd, ts) != 0)
            return write_error(t, errno, err);
    }
    return MS_OK;
}

/* The EXDEV fallback of maildir_tmp_link, also for a message file that
 * is a symlink (a hard link to the symlink would point elsewhere). */
static int tmp_copy_of(struct maildir_folder *to, struct maildir_folder *from, struct local_msg *m,
                       struct maildir_tmp **out, struct ms_error *err)
{
    int fd = maildir_open_msg(from, m, err);
    if (fd < 0)
        return MS_ELOCAL;
    struct maildir_tmp *t;
    int rc = maildir_tmp_open(to, &t, err);
    if (rc == MS_OK) {
        rc = copy_into_tmp(t, fd, err);
        free(t->buf);
        t->buf = NULL;
        if (close(t->fd) != 0 && rc == MS_OK)
            rc = write_error(t, errno, err);
        t->fd = -1;
        if (rc)
            maildir_tmp_discard(t);
        else
            *out = t;
    }
    close(fd);
    return rc;
}

int maildir_tmp_link(struct maildir_folder *to, struct maildir_folder *from, struct local_msg *m,
                     struct maildir_tmp **out, bool *linked, struct ms_error *err)
{
    *out = NULL;
    *linked = false;
    if (!name_ok(m->name) || !name_ok(m->uniq))
        return ms_error_set(err, MS_ELOCAL, "refusing unsafe Maildir file name \"%s\"",
                            log_escape(m->name, strlen(m->name), 100));
    struct maildir_tmp *t = xcalloc(1, sizeof *t);
    t->folder = to;
    t->fd = -1;
    int rc = MS_OK;
    for (int attempt = 0; attempt < SCAN_ATTEMPTS; attempt++) {
        struct stat st;
        if (fstatat(subdir_fd(from, m->in_new), m->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode))
            break; /* a symlink: copied below */
        make_uniq(to, attempt, t->uniq, sizeof t->uniq);
        int forced = maildir_link_hook ? maildir_link_hook() : 0;
        if (forced) {
            errno = forced;
        } else if (linkat(subdir_fd(from, m->in_new), m->name, to->tmpfd, t->uniq, 0) == 0) {
            t->size = fstatat(to->tmpfd, t->uniq, &st, 0) == 0 ? (uint64_t)st.st_size : 0;
            *out = t;
            *linked = true;
            return MS_OK;
        }
        if (errno == EEXIST)
            continue;
        if (errno == EXDEV || errno == EPERM || errno == EMLINK)
            break; /* another file system, or one without hard links: a copy */
        if (errno != ENOENT) {
            rc = ms_error_errno(err, MS_ELOCAL, errno, "cannot link %s/%s/%s into %s/tmp", from->path,
                                m->in_new ? "new" : "cur", m->name, to->path);
            break;
        }
        if ((rc = relocate(from, m, err)) != 0)
            break; /* 1: gone */
    }
    free(t);
    if (rc)
        return rc;
    return tmp_copy_of(to, from, m, out, err);
}

int (*maildir_link_hook)(void);
