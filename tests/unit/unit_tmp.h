/* SPDX-License-Identifier: MIT */
/*
 * unit_tmp.h: scratch directories for the unit tests (header only). The
 * test includes it after cmocka.h.
 */
#ifndef MAILSYNC_UNIT_TMP_H
#define MAILSYNC_UNIT_TMP_H

#include <ftw.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static int unit_rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

/* Remove path and everything below it (nothing followed through links).
 * Returns 0, or -1 if something could not be removed. */
static inline int unit_rmtree(const char *path)
{
    return nftw(path, unit_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory /tmp/NAME.XXXXXX in dir (len bytes), or under
 * /dev/shm with on_tmpfs where it is writable (a run's fsyncs then cost
 * nothing). Fails the test if it cannot be made. */
static inline void unit_tmpdir(char *dir, size_t len, const char *name, bool on_tmpfs)
{
    const char *base = on_tmpfs && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    assert_true((size_t)snprintf(dir, len, "%s/%s.XXXXXX", base, name) < len);
    assert_non_null(mkdtemp(dir));
}

#endif
