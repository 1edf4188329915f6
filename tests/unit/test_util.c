/* SPDX-License-Identifier: MIT */
/* test_util.c: the small shared helpers of sync/util.h that everything
 * else leans on: the one mkdir -p (the Maildir root, the state DB's
 * directory, the lock's), the allocation wrappers and the one binary
 * search by UID. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sync/util.h"

static char base[64];

static int make_base(void **unused)
{
    (void)unused;
    snprintf(base, sizeof base, "/tmp/test_util.XXXXXX");
    return mkdtemp(base) ? 0 : -1;
}

static int remove_base(void **unused)
{
    (void)unused;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

static bool is_dir(const char *rel, mode_t mode)
{
    char p[256];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", base, rel);
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == mode;
}

static bool exists(const char *rel)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", base, rel);
    return access(p, F_OK) == 0;
}

static int mkdirs(const char *rel, bool parent_only)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", base, rel);
    return util_mkdirs(p, 0700, parent_only);
}

static void mkdirs_whole_path(void **unused)
{
    (void)unused;
    mode_t old = umask(022);
    assert_int_equal(mkdirs("a/b/c", false), 0);
    assert_true(is_dir("a", 0700) && is_dir("a/b", 0700) && is_dir("a/b/c", 0700));
    /* again: all there, nothing to do */
    assert_int_equal(mkdirs("a/b/c", false), 0);
    /* a trailing slash, a doubled one */
    assert_int_equal(mkdirs("t//u/", false), 0);
    assert_true(is_dir("t/u", 0700));
    umask(old);
}

static void mkdirs_parents_only(void **unused)
{
    (void)unused;
    assert_int_equal(mkdirs("p/q/state.sqlite", true), 0);
    assert_true(is_dir("p/q", 0700));
    assert_false(exists("p/q/state.sqlite"));
    /* no directory part at all: nothing to make */
    assert_int_equal(util_mkdirs("state.sqlite", 0700, true), 0);
    assert_false(access("state.sqlite", F_OK) == 0);
    /* "/x": its directory is the root */
    assert_int_equal(util_mkdirs("/x-test-util-never-made", 0700, true), 0);
}

static void mkdirs_fails_with_errno(void **unused)
{
    (void)unused;
    char p[256];
    snprintf(p, sizeof p, "%s/file", base);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    errno = 0;
    assert_int_equal(mkdirs("file/sub", false), -1);
    assert_int_equal(errno, ENOTDIR);
    errno = 0;
    assert_int_equal(mkdirs("file/sub/x", true), -1);
    assert_int_equal(errno, ENOTDIR);
}

/* The allocation wrappers: never NULL, a size of 0 is 1 byte. */
static void allocation_wrappers(void **unused)
{
    (void)unused;
    char *p = xstrndup("abcdef", 3);
    assert_string_equal(p, "abc");
    free(p);
    p = xstrndup("ab", 10);
    assert_string_equal(p, "ab");
    free(p);
    p = xstrdup("");
    assert_string_equal(p, "");
    free(p);
    void *z = xmalloc(0);
    assert_non_null(z);
    z = xrealloc(z, 0);
    assert_non_null(z);
    free(z);
    int *c = xcalloc(4, sizeof *c);
    assert_true(c[0] == 0 && c[3] == 0);
    free(c);
}

/* util_find_uid against a linear search, on arrays of every size up to
 * 40 with gaps, for UIDs below, between, on and above the entries. */
static void find_uid_agrees_with_a_scan(void **unused)
{
    (void)unused;
    uint32_t v[40];
    for (size_t n = 0; n <= 40; n++) {
        for (size_t i = 0; i < n; i++)
            v[i] = (uint32_t)(3 * i + 2 + (i > 20 ? 1000 : 0));
        for (uint32_t uid = 0; uid < 3 * 40 + 1010; uid++) {
            const uint32_t *want = NULL;
            for (size_t i = 0; i < n; i++)
                if (v[i] == uid)
                    want = &v[i];
            assert_ptr_equal(util_uid_find(v, n, uid), want);
        }
    }
    assert_null(util_uid_find(NULL, 0, 1));
    uint32_t top[] = {1, 0xfffffffeu, 0xffffffffu};
    assert_ptr_equal(util_uid_find(top, 3, 0xffffffffu), &top[2]);
    assert_null(util_uid_find(top, 3, 0));
}

/* By a member of a struct: the element comes back, of its own type. */
static void find_uid_by_member(void **unused)
{
    (void)unused;
    struct row {
        const char *name;
        uint64_t size;
        uint32_t uid;
    } rows[] = {{"a", 1, 5}, {"b", 2, 9}, {"c", 3, 10}, {"d", 4, 4000000000u}};
    const struct row *r = UTIL_FIND_UID(rows, 4, uid, 10);
    assert_non_null(r);
    assert_string_equal(r->name, "c");
    assert_ptr_equal(UTIL_FIND_UID(rows, 4, uid, 4000000000u), &rows[3]);
    assert_ptr_equal(UTIL_FIND_UID(rows, 4, uid, 5), &rows[0]);
    assert_null(UTIL_FIND_UID(rows, 4, uid, 6));
    assert_null(UTIL_FIND_UID(rows, 0, uid, 5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mkdirs_whole_path),
        cmocka_unit_test(mkdirs_parents_only),
        cmocka_unit_test(mkdirs_fails_with_errno),
        cmocka_unit_test(allocation_wrappers),
        cmocka_unit_test(find_uid_agrees_with_a_scan),
        cmocka_unit_test(find_uid_by_member),
    };
    return cmocka_run_group_tests(tests, make_base, remove_base);
}
