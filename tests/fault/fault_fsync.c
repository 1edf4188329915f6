/* SPDX-License-Identifier: MIT */
/* fault_fsync.c: an LD_PRELOAD shim for the integration tests that makes
 * fsync() of a directory fail, the way a dying disk or a lost network
 * file system reports it (EIO), so the error path the engine takes after
 * renames and unlinks runs against the real program.
 *
 *   MAILSYNC_FAULT_DIR_FSYNC=N        let N directory fsyncs through, fail
 *                                     every later one with EIO
 *   MAILSYNC_FAULT_DIR_FSYNC_UNDER=P  only directories whose path starts
 *                                     with P count (default: all)
 *   MAILSYNC_FAULT_SYNCFS=1           every syncfs() fails with EIO
 *   MAILSYNC_FAULT_SYNCFS=helper      only those called by the background
 *                                     syncer (the thread named ms-dirsync:
 *                                     the syncfs a batch starts ahead) fail
 *   MAILSYNC_FAULT_LOCK_SWAP=1        the first flock() of a file named
 *                                     *.lock finds it already replaced at
 *                                     its path by a new file (as if another
 *                                     run had deleted and created it between
 *                                     the open and the flock)
 *
 * Files, and anything not fsync() (SQLite's fdatasync of its own
 * directory), are passed through untouched. Every failure is noted on
 * stderr ("fault_fsync: ..."), so a test can tell the fault was hit, and
 * by which thread (its name: "mailsync" for the main one, "ms-dirsync",
 * "ms-commit", ...). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static atomic_int dirs_seen, syncfs_seen, lock_swapped;

#include <sys/prctl.h>

static const char *thread_name(char buf[16])
{
    if (prctl(PR_GET_NAME, buf) != 0)
        snprintf(buf, 16, "?");
    return buf;
}

static int real_fsync(int fd)
{
    static int (*fn)(int);
    if (!fn)
        fn = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return fn ? fn(fd) : (errno = ENOSYS, -1);
}

int syncfs(int fd)
{
    static int (*fn)(int);
    const char *mode = getenv("MAILSYNC_FAULT_SYNCFS");
    int k = atomic_fetch_add(&syncfs_seen, 1) + 1;
    char name[16];
    thread_name(name);
    if (mode && (strcmp(mode, "helper") != 0 || strcmp(name, "ms-dirsync") == 0)) {
        fprintf(stderr, "fault_fsync: failing syncfs #%d (%s thread)\n", k, name);
        errno = EIO;
        return -1;
    }
    if (!fn)
        fn = (int (*)(int))dlsym(RTLD_NEXT, "syncfs");
    return fn ? fn(fd) : (errno = ENOSYS, -1);
}

static int path_of(int fd, char *buf, size_t size)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, size - 1);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

int fsync(int fd)
{
    const char *budget = getenv("MAILSYNC_FAULT_DIR_FSYNC");
    struct stat st;
    if (!budget || fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode))
        return real_fsync(fd);
    char path[PATH_MAX] = "?";
    const char *under = getenv("MAILSYNC_FAULT_DIR_FSYNC_UNDER");
    if (path_of(fd, path, sizeof path) != 0 && under)
        return real_fsync(fd);
    if (under && strncmp(path, under, strlen(under)) != 0)
        return real_fsync(fd);
    if (atomic_fetch_add(&dirs_seen, 1) < atoi(budget))
        return real_fsync(fd);
    fprintf(stderr, "fault_fsync: failing fsync of directory %s\n", path);
    errno = EIO;
    return -1;
}

int flock(int fd, int op)
{
    static int (*fn)(int, int);
    char path[PATH_MAX], fresh[PATH_MAX + 8];
    size_t n;
    if (getenv("MAILSYNC_FAULT_LOCK_SWAP") && path_of(fd, path, sizeof path) == 0 && (n = strlen(path)) > 5 &&
        strcmp(path + n - 5, ".lock") == 0 && !atomic_exchange(&lock_swapped, 1)) {
        snprintf(fresh, sizeof fresh, "%s.swap", path);
        int nfd = open(fresh, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (nfd >= 0 && close(nfd) == 0 && rename(fresh, path) == 0)
            fprintf(stderr, "fault_fsync: replaced %s before its flock\n", path);
    }
    if (!fn)
        fn = (int (*)(int, int))dlsym(RTLD_NEXT, "flock");
    return fn ? fn(fd, op) : (errno = ENOSYS, -1);
}
