/* SPDX-License-Identifier: MIT */
/* test_dirsync.c: directories fsynced, and file systems synced ahead, by a
 * helper thread; the wait reports the first failure, and keeps reporting
 * it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "sync/local/dirsync.h"

static void syncs_and_closes(void **unused)
{
    (void)unused;
    struct dirsync *d = dirsync_new();
    struct ms_error err = {0};
    assert_int_equal(dirsync_wait(d, &err), MS_OK); /* idle: returns at once */
    int fds[20];
    for (int i = 0; i < 20; i++) {
        fds[i] = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fds[i] >= 0);
        dirsync_add(d, fds[i], "/tmp");
    }
    assert_int_equal(dirsync_wait(d, &err), MS_OK);
    for (int i = 0; i < 20; i++) /* taken over and closed */
        assert_int_equal(fcntl(fds[i], F_GETFD), -1);
    dirsync_free(d);
}

static void failure_sticks(void **unused)
{
    (void)unused;
    struct dirsync *d = dirsync_new();
    struct ms_error err = {0};
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[1]);
    dirsync_add(d, p[0], "the pipe"); /* fsync of a pipe: EINVAL */
    int fd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    dirsync_add(d, fd, "/tmp");
    assert_int_equal(dirsync_wait(d, &err), MS_ELOCAL);
    assert_non_null(strstr(err.msg, "cannot fsync the pipe"));
    /* later jobs succeed, but what the failed one covered is not durable:
     * no later commit may go ahead */
    fd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    dirsync_add(d, fd, "/tmp");
    memset(&err, 0, sizeof err);
    assert_int_equal(dirsync_wait(d, &err), MS_ELOCAL);
    assert_non_null(strstr(err.msg, "cannot fsync the pipe"));
    assert_int_equal(dirsync_wait(NULL, &err), MS_OK);
    dirsync_free(d);
    dirsync_free(NULL);
}

static void syncfs_ahead(void **unused)
{
    (void)unused;
    struct dirsync *d = dirsync_new();
    struct ms_error err = {0};
    int fds[50];
    for (int i = 0; i < 50; i++) { /* most are merged into a waiting one */
        fds[i] = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fds[i] >= 0);
        dirsync_syncfs_ahead(d, fds[i], "/tmp");
        if (i % 10 == 0)
            dirsync_add(d, open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC), "/tmp");
    }
    assert_int_equal(dirsync_wait(d, &err), MS_OK);
    for (int i = 0; i < 50; i++) /* run or merged: closed either way */
        assert_int_equal(fcntl(fds[i], F_GETFD), -1);
    /* a descriptor that is not open: syncfs fails with EBADF */
    int bad = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(bad);
    dirsync_syncfs_ahead(d, bad, "/tmp/x");
    assert_int_equal(dirsync_wait(d, &err), MS_ELOCAL);
    assert_non_null(strstr(err.msg, "cannot sync the file system of /tmp/x"));
    dirsync_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(syncs_and_closes),
        cmocka_unit_test(failure_sticks),
        cmocka_unit_test(syncfs_ahead),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
