/* SPDX-License-Identifier: MIT */
/* test_localwatch.c: what `watch` hears of a Maildir (sync/local/localwatch.h):
 * a message added, renamed (flags) or removed in cur/ or new/ of a watched
 * folder, and a new folder, count; reading (a scan), files outside cur/
 * and new/, and changes the caller claims as its own do not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sync/local/localwatch.h"

static char root[64];

static void path_of(char *out, size_t len, const char *rel)
{
    snprintf(out, len, "%s/%s", root, rel);
}

static void mkdir_rel(const char *rel)
{
    char p[256];
    path_of(p, sizeof p, rel);
    assert_int_equal(mkdir(p, 0700), 0);
}

static void write_rel(const char *rel)
{
    char p[256];
    path_of(p, sizeof p, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "Subject: x\n\nx\n", 14), 14);
    close(fd);
}

static void rename_rel(const char *from, const char *to)
{
    char a[256], b[256];
    path_of(a, sizeof a, from);
    path_of(b, sizeof b, to);
    assert_int_equal(rename(a, b), 0);
}

static void make_folder(const char *rel)
{
    char sub[128];
    mkdir_rel(rel);
    for (int i = 0; i < 3; i++) {
        snprintf(sub, sizeof sub, "%s/%s", rel, (const char *[]){"cur", "new", "tmp"}[i]);
        mkdir_rel(sub);
    }
}

static int setup(void **unused)
{
    (void)unused;
    snprintf(root, sizeof root, "/tmp/test_localwatch.XXXXXX");
    if (!mkdtemp(root))
        return -1;
    make_folder("INBOX");
    write_rel("INBOX/cur/1.host:2,S");
    return 0;
}

static int teardown(void **unused)
{
    (void)unused;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *claimed; /* the folder ours() claims */

static bool ours(void *ctx, const char *relpath, bool dir_event)
{
    (void)ctx;
    (void)dir_event;
    return claimed && strcmp(relpath, claimed) == 0;
}

static void changes_count_reading_does_not(void **unused)
{
    (void)unused;
    struct local_watch *w = local_watch_open(root);
    assert_non_null(w);
    assert_true(local_watch_folder(w, "INBOX"));
    assert_false(local_watch_folder(w, "INBOX")); /* twice: already */
    assert_int_equal(local_watch_drain(w, NULL, NULL), 0);

    /* a scan: directories listed, a message read */
    char p[256];
    path_of(p, sizeof p, "INBOX/cur");
    DIR *d = opendir(p);
    assert_non_null(d);
    while (readdir(d))
        ;
    closedir(d);
    path_of(p, sizeof p, "INBOX/cur/1.host:2,S");
    char buf[64];
    int fd = open(p, O_RDONLY);
    assert_true(read(fd, buf, sizeof buf) > 0);
    close(fd);
    assert_int_equal(local_watch_drain(w, NULL, NULL), 0);

    /* a flag change (rename in cur/) */
    rename_rel("INBOX/cur/1.host:2,S", "INBOX/cur/1.host:2,FS");
    assert_true(local_watch_drain(w, NULL, NULL) > 0);
    assert_int_equal(local_watch_drain(w, NULL, NULL), 0); /* drained */

    /* a delivery: written in tmp/ (not heard), renamed into new/ */
    write_rel("INBOX/tmp/2.host");
    assert_int_equal(local_watch_drain(w, NULL, NULL), 0);
    rename_rel("INBOX/tmp/2.host", "INBOX/new/2.host");
    assert_true(local_watch_drain(w, NULL, NULL) > 0);

    /* ... unless the caller claims the folder's changes */
    claimed = "INBOX";
    rename_rel("INBOX/new/2.host", "INBOX/cur/2.host:2,S");
    assert_int_equal(local_watch_drain(w, ours, NULL), 0);
    claimed = NULL;

    /* a file in the folder's own directory is no message */
    write_rel("INBOX/dovecot-uidlist");
    assert_int_equal(local_watch_drain(w, NULL, NULL), 0);

    /* a removal */
    path_of(p, sizeof p, "INBOX/cur/2.host:2,S");
    assert_int_equal(unlink(p), 0);
    assert_true(local_watch_drain(w, NULL, NULL) > 0);

    /* a new folder in the root, and one below a watched folder */
    make_folder("Projects");
    assert_true(local_watch_drain(w, NULL, NULL) > 0);
    make_folder("INBOX/Sub");
    assert_true(local_watch_drain(w, NULL, NULL) > 0);
    /* not watched yet: its messages wait for the pass that finds it */
    write_rel("Projects/cur/3.host:2,");
    assert_int_equal(local_watch_drain(w, NULL, NULL), 0);
    assert_true(local_watch_folder(w, "Projects"));
    write_rel("Projects/cur/4.host:2,");
    assert_true(local_watch_drain(w, NULL, NULL) > 0);

    local_watch_free(&w);
    assert_null(w);
    local_watch_free(&w); /* harmless twice */
}

static void missing_root_or_null_watches_nothing(void **unused)
{
    (void)unused;
    char p[256];
    path_of(p, sizeof p, "no-such-root");
    assert_null(local_watch_open(p));
    assert_false(local_watch_folder(NULL, "INBOX"));
    assert_int_equal(local_watch_fd(NULL), -1);
    assert_int_equal(local_watch_drain(NULL, NULL, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(changes_count_reading_does_not),
        cmocka_unit_test(missing_root_or_null_watches_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
