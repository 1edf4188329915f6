/* SPDX-License-Identifier: MIT */
/* test_maildir.c: the Maildir side (sync/local/maildir.c) on a real file system,
 * in a fresh mkdtemp directory per test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_tmp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sync/flags.h"
#include "sync/local/maildir.h"

struct fixture {
    char dir[64];   /* the mkdtemp directory */
    char root[128]; /* dir/Mail: the Maildir root */
    int rootfd;
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    unit_tmpdir(fx->dir, sizeof fx->dir, "test_maildir", false);
    snprintf(fx->root, sizeof fx->root, "%s/Mail", fx->dir);
    struct ms_error err;
    assert_int_equal(maildir_root_open(fx->root, true, &fx->rootfd, &err), MS_OK);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    close(fx->rootfd);
    unit_rmtree(fx->dir);
    free(fx);
    return 0;
}

/* Read a whole small file below the root into buf; returns its length or -1. */
static ssize_t slurp(const struct fixture *fx, const char *rel, char *buf, size_t cap)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fx->root, rel);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap);
    close(fd);
    return n;
}

static void put_file(const char *path, const char *content)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(content, fp);
    fclose(fp);
}

static struct maildir_folder *open_folder(struct fixture *fx, const char *rel)
{
    struct maildir_folder *f = NULL;
    struct ms_error err;
    int rc = maildir_folder_open(fx->rootfd, rel, true, &f, &err);
    if (rc)
        fail_msg("%s", err.msg);
    return f;
}

/* Deliver content in one chunk; returns a malloc'd copy of the uniq. */
static char *deliver(struct maildir_folder *f, const char *content, unsigned flags, const char *extra)
{
    struct maildir_tmp *t;
    struct ms_error err;
    assert_int_equal(maildir_tmp_open(f, &t, &err), MS_OK);
    char *uniq = strdup(maildir_tmp_uniq(t));
    assert_int_equal(maildir_tmp_write(t, content, strlen(content), &err), MS_OK);
    assert_int_equal(maildir_tmp_close(t, 0, false, &err), MS_OK);
    assert_int_equal(maildir_tmp_commit(f, t, flags, extra, &err), MS_OK);
    return uniq;
}

/* ---- delivery ---- */

static void crlf_every_split(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "INBOX");
    static const char in[] = "A: b\r\n\r\nbody\rx\r\n\r\r\nend\r";
    static const char want[] = "A: b\n\nbody\rx\n\r\nend\r";
    size_t len = strlen(in);
    for (size_t i = 0; i <= len; i++) {
        for (size_t j = i; j <= len; j++) {
            struct maildir_tmp *t;
            struct ms_error err;
            assert_int_equal(maildir_tmp_open(f, &t, &err), MS_OK);
            char uniq[256];
            snprintf(uniq, sizeof uniq, "%s", maildir_tmp_uniq(t));
            assert_int_equal(maildir_tmp_write(t, in, i, &err), MS_OK);
            assert_int_equal(maildir_tmp_write(t, in + i, j - i, &err), MS_OK);
            assert_int_equal(maildir_tmp_write(t, in + j, len - j, &err), MS_OK);
            assert_int_equal(maildir_tmp_close(t, 0, false, &err), MS_OK);
            assert_int_equal(maildir_tmp_size(t), strlen(want));
            assert_int_equal(maildir_tmp_commit(f, t, 0, NULL, &err), MS_OK);
            char rel[512], buf[128];
            snprintf(rel, sizeof rel, "INBOX/new/%s", uniq);
            ssize_t n = slurp(fx, rel, buf, sizeof buf);
            assert_int_equal(n, (ssize_t)strlen(want));
            assert_memory_equal(buf, want, strlen(want));
        }
    }
    /* Byte by byte, too. */
    struct maildir_tmp *t;
    struct ms_error err;
    assert_int_equal(maildir_tmp_open(f, &t, &err), MS_OK);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(maildir_tmp_write(t, in + i, 1, &err), MS_OK);
    assert_int_equal(maildir_tmp_close(t, 0, true, &err), MS_OK);
    assert_int_equal(maildir_tmp_size(t), strlen(want));
    maildir_tmp_discard(t);
    maildir_folder_close(f);
}

static void big_message_through_buffer(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "INBOX");
    /* 300 KiB of "line\r\n" written in odd-sized chunks crosses the
     * internal buffer several times. */
    size_t lines = 300 * 1024 / 6;
    size_t inlen = lines * 6;
    char *in = malloc(inlen);
    for (size_t i = 0; i < lines; i++)
        memcpy(in + i * 6, "line\r\n", 6);
    struct maildir_tmp *t;
    struct ms_error err;
    assert_int_equal(maildir_tmp_open(f, &t, &err), MS_OK);
    char uniq[256];
    snprintf(uniq, sizeof uniq, "%s", maildir_tmp_uniq(t));
    for (size_t off = 0; off < inlen; off += 4999) {
        size_t k = inlen - off < 4999 ? inlen - off : 4999;
        assert_int_equal(maildir_tmp_write(t, in + off, k, &err), MS_OK);
    }
    assert_int_equal(maildir_tmp_close(t, 1000000000, false, &err), MS_OK);
    assert_int_equal(maildir_tmp_commit(f, t, FLAG_SEEN, NULL, &err), MS_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/INBOX/cur/%s:2,S", fx->root, uniq);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, (off_t)(lines * 5));
    assert_int_equal(st.st_mtime, 1000000000); /* the INTERNALDATE */
    free(in);
    maildir_folder_close(f);
}

static void commit_new_or_cur_and_modes(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "Archive/2024");
    char *u1 = deliver(f, "a\r\n", 0, NULL);
    char *u2 = deliver(f, "b\r\n", FLAG_SEEN | FLAG_FLAGGED, "a");
    char *u3 = deliver(f, "c\r\n", 0, "zb");
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/Archive/2024/new/%s", fx->root, u1);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    snprintf(path, sizeof path, "%s/Archive/2024/cur/%s:2,FSa", fx->root, u2);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    snprintf(path, sizeof path, "%s/Archive/2024/cur/%s:2,bz", fx->root, u3);
    assert_int_equal(stat(path, &st), 0);
    const char *dirs[] = {"", "/Archive", "/Archive/2024", "/Archive/2024/cur", "/Archive/2024/new",
                          "/Archive/2024/tmp"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(path, sizeof path, "%s%s", fx->root, dirs[i]);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0700);
    }
    /* The unique name has the documented shape. */
    long long sec;
    long usec, pid;
    char rnd[17], host[128];
    assert_int_equal(sscanf(u1, "%lld.M%ldP%ldR%16[0-9a-f].%127s", &sec, &usec, &pid, rnd, host), 5);
    assert_int_equal(pid, (long)getpid());
    assert_true(strchr(u1, '/') == NULL && strchr(u1, ':') == NULL);
    /* tmp/ is empty again. */
    assert_false(maildir_tmp_exists(f, u1));
    free(u1);
    free(u2);
    free(u3);
    maildir_folder_close(f);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_unique(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "INBOX");
    enum { N = 2000 };
    char **names = calloc(N, sizeof *names);
    for (int i = 0; i < N; i++)
        names[i] = deliver(f, "x\n", 0, NULL);
    qsort(names, N, sizeof *names, cmp_str);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(names[i - 1], names[i]);
    struct local_msg *msgs;
    size_t n;
    struct ms_error err;
    assert_int_equal(maildir_scan(f, &msgs, &n, &err), MS_OK);
    assert_int_equal(n, N);
    for (int i = 0; i < N; i++) {
        assert_string_equal(msgs[i].uniq, names[i]); /* sorted by uniq */
        free(names[i]);
    }
    free(names);
    maildir_msgs_free(msgs, n);
    maildir_folder_close(f);
}

static void commit_never_overwrites(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "INBOX");
    char path[512], buf[64];
    struct ms_error err;
    snprintf(path, sizeof path, "%s/INBOX/tmp/victim", fx->root);
    put_file(path, "new content");
    snprintf(path, sizeof path, "%s/INBOX/new/victim", fx->root);
    put_file(path, "precious");
    assert_true(maildir_tmp_exists(f, "victim"));
    assert_int_equal(maildir_tmp_commit_name(f, "victim", 0, NULL, &err), MS_ELOCAL);
    ssize_t n = slurp(fx, "INBOX/new/victim", buf, sizeof buf);
    assert_int_equal(n, 8);
    assert_memory_equal(buf, "precious", 8);
    assert_true(maildir_tmp_exists(f, "victim")); /* nothing lost */

    snprintf(path, sizeof path, "%s/INBOX/cur/victim:2,S", fx->root);
    put_file(path, "precious");
    assert_int_equal(maildir_tmp_commit_name(f, "victim", FLAG_SEEN, "", &err), MS_ELOCAL);
    n = slurp(fx, "INBOX/cur/victim:2,S", buf, sizeof buf);
    assert_memory_equal(buf, "precious", 8);

    /* With other flags the name is free: the leftover goes to cur/. */
    assert_int_equal(maildir_tmp_commit_name(f, "victim", FLAG_SEEN | FLAG_ANSWERED, NULL, &err), MS_OK);
    n = slurp(fx, "INBOX/cur/victim:2,RS", buf, sizeof buf);
    assert_int_equal(n, 11);
    assert_false(maildir_tmp_exists(f, "victim"));

    /* Unsafe names are refused. */
    assert_int_equal(maildir_tmp_commit_name(f, "../x", 0, NULL, &err), MS_ELOCAL);
    assert_int_equal(maildir_tmp_commit_name(f, ".hidden", 0, NULL, &err), MS_ELOCAL);
    assert_int_equal(maildir_tmp_commit_name(f, "", 0, NULL, &err), MS_ELOCAL);
    maildir_folder_close(f);
}

static void discard_removes_tmp(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "INBOX");
    struct maildir_tmp *t;
    struct ms_error err;
    assert_int_equal(maildir_tmp_open(f, &t, &err), MS_OK);
    char uniq[256];
    snprintf(uniq, sizeof uniq, "%s", maildir_tmp_uniq(t));
    assert_int_equal(maildir_tmp_write(t, "partial", 7, &err), MS_OK);
    assert_true(maildir_tmp_exists(f, uniq));
    maildir_tmp_discard(t);
    assert_false(maildir_tmp_exists(f, uniq));
    maildir_folder_close(f);
}

static void write_error_is_elocal(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "INBOX");
    /* A file size limit makes write() fail with EFBIG, like a full disk. */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 100000;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    struct maildir_tmp *t;
    struct ms_error err;
    assert_int_equal(maildir_tmp_open(f, &t, &err), MS_OK);
    char uniq[256];
    snprintf(uniq, sizeof uniq, "%s", maildir_tmp_uniq(t));
    char chunk[8192];
    memset(chunk, 'x', sizeof chunk);
    int rc = MS_OK;
    for (int i = 0; i < 40 && rc == MS_OK; i++)
        rc = maildir_tmp_write(t, chunk, sizeof chunk, &err);
    if (rc == MS_OK)
        rc = maildir_tmp_close(t, 0, false, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, MS_ELOCAL);
    assert_non_null(strstr(err.msg, "cannot write"));
    /* Committing an incomplete file fails and removes it: nothing lands in
     * new/ or cur/. */
    assert_int_equal(maildir_tmp_commit(f, t, 0, NULL, &err), MS_ELOCAL);
    assert_false(maildir_tmp_exists(f, uniq));
    struct local_msg *msgs;
    size_t n;
    assert_int_equal(maildir_scan(f, &msgs, &n, &err), MS_OK);
    assert_int_equal(n, 0);
    maildir_msgs_free(msgs, n);
    maildir_folder_close(f);
}

/* ---- scanning and changes ---- */

static void scan_flags_extra_dotfiles(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "INBOX");
    char path[512];
    snprintf(path, sizeof path, "%s/INBOX/cur/111.abc:2,STz", fx->root);
    put_file(path, "hello\n");
    snprintf(path, sizeof path, "%s/INBOX/cur/222.def:2,", fx->root);
    put_file(path, "x");
    snprintf(path, sizeof path, "%s/INBOX/new/000.new", fx->root);
    put_file(path, "abc");
    snprintf(path, sizeof path, "%s/INBOX/cur/.hidden:2,S", fx->root);
    put_file(path, "ignored");
    snprintf(path, sizeof path, "%s/INBOX/new/.nfs0001", fx->root);
    put_file(path, "ignored");
    snprintf(path, sizeof path, "%s/INBOX/cur/subdir", fx->root);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/INBOX/cur/333.ghi", fx->root);
    put_file(path, "no info");

    struct local_msg *msgs;
    size_t n;
    struct ms_error err;
    assert_int_equal(maildir_scan(f, &msgs, &n, &err), MS_OK);
    assert_int_equal(n, 4);
    assert_string_equal(msgs[0].uniq, "000.new");
    assert_true(msgs[0].in_new);
    assert_int_equal(msgs[0].flags, 0);
    assert_int_equal(msgs[0].size, 3);
    assert_string_equal(msgs[1].uniq, "111.abc");
    assert_string_equal(msgs[1].name, "111.abc:2,STz");
    assert_false(msgs[1].in_new);
    assert_int_equal(msgs[1].flags, FLAG_SEEN | FLAG_DELETED);
    assert_string_equal(msgs[1].extra, "z");
    assert_int_equal(msgs[1].size, 6);
    assert_string_equal(msgs[2].uniq, "222.def");
    assert_int_equal(msgs[2].flags, 0);
    assert_string_equal(msgs[3].uniq, "333.ghi");
    assert_false(msgs[3].in_new);
    maildir_msgs_free(msgs, n);

    struct local_msg m;
    assert_int_equal(maildir_find(f, "111.abc", &m, &err), MS_OK);
    assert_string_equal(m.name, "111.abc:2,STz");
    free(m.uniq);
    free(m.name);
    assert_int_equal(maildir_find(f, "000.new", &m, &err), MS_OK);
    assert_true(m.in_new);
    free(m.uniq);
    free(m.name);
    assert_int_equal(maildir_find(f, "111", &m, &err), 1); /* a prefix is not a match */
    assert_int_equal(maildir_find(f, "nope", &m, &err), 1);
    maildir_folder_close(f);
}

static struct local_msg scan_one(struct maildir_folder *f)
{
    struct local_msg *msgs;
    size_t n;
    struct ms_error err;
    assert_int_equal(maildir_scan(f, &msgs, &n, &err), MS_OK);
    assert_int_equal(n, 1);
    struct local_msg m = msgs[0];
    free(msgs);
    return m;
}

static void set_flags_after_mua_rename(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "INBOX");
    char *uniq = deliver(f, "body\n", 0, NULL);
    struct local_msg m = scan_one(f);
    assert_true(m.in_new);

    /* A MUA reads it: new/X -> cur/X:2,Sa (with a letter of its own). */
    char from[512], to[512];
    snprintf(from, sizeof from, "%s/INBOX/new/%s", fx->root, uniq);
    snprintf(to, sizeof to, "%s/INBOX/cur/%s:2,Sa", fx->root, uniq);
    assert_int_equal(rename(from, to), 0);

    /* Our m is stale; set_flags must find the file by uniq. */
    struct ms_error err;
    assert_int_equal(maildir_set_flags(f, &m, FLAG_SEEN | FLAG_FLAGGED, &err), MS_OK);
    char want[300];
    snprintf(want, sizeof want, "%s:2,FSa", uniq);
    assert_string_equal(m.name, want);
    assert_false(m.in_new);
    assert_int_equal(m.flags, FLAG_SEEN | FLAG_FLAGGED);
    assert_string_equal(m.extra, "a");
    struct local_msg again = scan_one(f);
    assert_string_equal(again.name, want);
    free(again.uniq);
    free(again.name);

    /* The same flags again: nothing to do. */
    assert_int_equal(maildir_set_flags(f, &m, FLAG_SEEN | FLAG_FLAGGED, &err), MS_OK);
    /* Clearing all flags keeps it in cur/ with the extra letter. */
    assert_int_equal(maildir_set_flags(f, &m, 0, &err), MS_OK);
    snprintf(want, sizeof want, "%s:2,a", uniq);
    assert_string_equal(m.name, want);

    /* Reading through a stale name works too. */
    free(m.name);
    m.name = strdup(uniq);
    m.in_new = true;
    int fd = maildir_open_msg(f, &m, &err);
    assert_true(fd >= 0);
    char buf[16];
    assert_int_equal(read(fd, buf, sizeof buf), 5);
    assert_memory_equal(buf, "body\n", 5);
    close(fd);

    /* Gone for real: 1, no error. */
    snprintf(from, sizeof from, "%s/INBOX/cur/%s", fx->root, m.name);
    assert_int_equal(unlink(from), 0);
    assert_int_equal(maildir_set_flags(f, &m, FLAG_SEEN, &err), 1);
    assert_int_equal(maildir_open_msg(f, &m, &err), -1);
    assert_int_equal(err.code, MS_ELOCAL);
    free(m.uniq);
    free(m.name);
    free(uniq);
    maildir_folder_close(f);
}

/* maildir_move_to: another folder's cur/ with the given flags and the
 * file's own extra letters, the same inode, found by uniq after a MUA
 * renamed it, never over a name; 1 once gone. */
static void move_to_other_folder(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *a = open_folder(fx, "A");
    struct maildir_folder *b = open_folder(fx, "Projects/2026");
    char *uniq = deliver(a, "body\n", 0, NULL);
    struct local_msg m = scan_one(a);
    char from[512], to[512];
    snprintf(from, sizeof from, "%s/A/new/%s", fx->root, uniq);
    snprintf(to, sizeof to, "%s/A/cur/%s:2,Sa", fx->root, uniq);
    assert_int_equal(rename(from, to), 0); /* a MUA read it: m is stale */
    struct stat before, after;
    assert_int_equal(stat(to, &before), 0);
    struct ms_error err;
    assert_int_equal(maildir_move_to(a, &m, b, FLAG_SEEN | FLAG_FLAGGED, &err), MS_OK);
    char want[300];
    snprintf(want, sizeof want, "%s:2,FSa", uniq);
    assert_string_equal(m.name, want);
    assert_false(m.in_new);
    snprintf(to, sizeof to, "%s/Projects/2026/cur/%s", fx->root, want);
    assert_int_equal(stat(to, &after), 0);
    assert_true(before.st_ino == after.st_ino);
    struct local_msg *msgs;
    size_t n;
    assert_int_equal(maildir_scan(a, &msgs, &n, &err), MS_OK);
    assert_int_equal(n, 0);
    maildir_msgs_free(msgs, n);
    /* gone from A now: 1, nothing touched */
    assert_int_equal(maildir_move_to(a, &m, b, FLAG_SEEN, &err), 1);
    assert_int_equal(access(to, F_OK), 0);
    free(m.uniq);
    free(m.name);
    free(uniq);
    maildir_folder_close(a);
    maildir_folder_close(b);
}

static int force_exdev(void)
{
    return EXDEV;
}

/* Gmail labels: a message of A linked into B's tmp/ and committed is one
 * inode under two names, each with its own flags; renaming one (a flag
 * change) or removing it leaves the other whole. Across file systems
 * (EXDEV, forced by the hook) a copy of the stored bytes, mtime kept. */
static void link_into_other_folder(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *a = open_folder(fx, "A");
    struct maildir_folder *b = open_folder(fx, "B");
    struct maildir_folder *c = open_folder(fx, "C");
    char *uniq = deliver(a, "Subject: x\r\n\r\nbody\r\n", FLAG_SEEN, NULL);
    struct local_msg m = scan_one(a);
    struct ms_error err;
    struct maildir_tmp *t = NULL;
    bool linked = false;
    assert_int_equal(maildir_tmp_link(b, a, &m, &t, &linked, &err), MS_OK);
    assert_true(linked);
    assert_string_not_equal(maildir_tmp_uniq(t), uniq);
    assert_int_equal(maildir_tmp_size(t), m.size);
    char bu[256];
    snprintf(bu, sizeof bu, "%s", maildir_tmp_uniq(t));
    assert_int_equal(maildir_tmp_commit(b, t, FLAG_FLAGGED, "", &err), MS_OK);
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/A/cur/%s:2,S", fx->root, uniq);
    snprintf(pb, sizeof pb, "%s/B/cur/%s:2,F", fx->root, bu);
    struct stat sa, sb;
    assert_int_equal(stat(pa, &sa), 0);
    assert_int_equal(stat(pb, &sb), 0);
    assert_true(sa.st_ino == sb.st_ino);
    assert_int_equal(sa.st_nlink, 2);
    /* a flag change in A renames A's name only */
    assert_int_equal(maildir_set_flags(a, &m, FLAG_SEEN | FLAG_ANSWERED, &err), MS_OK);
    char buf[64];
    snprintf(pb, sizeof pb, "B/cur/%s:2,F", bu);
    assert_int_equal(slurp(fx, pb, buf, sizeof buf), 17);
    assert_memory_equal(buf, "Subject: x\n\nbody\n", 17);
    /* another file system: a copy, same bytes, same mtime */
    maildir_link_hook = force_exdev;
    assert_int_equal(maildir_tmp_link(c, a, &m, &t, &linked, &err), MS_OK);
    maildir_link_hook = NULL;
    assert_false(linked);
    char cu[256];
    snprintf(cu, sizeof cu, "%s", maildir_tmp_uniq(t));
    assert_int_equal(maildir_tmp_commit(c, t, 0, "", &err), MS_OK);
    char pc[512];
    snprintf(pc, sizeof pc, "C/new/%s", cu);
    assert_int_equal(slurp(fx, pc, buf, sizeof buf), 17);
    assert_memory_equal(buf, "Subject: x\n\nbody\n", 17);
    struct stat sc;
    snprintf(pc, sizeof pc, "%s/C/new/%s", fx->root, cu);
    assert_int_equal(stat(pc, &sc), 0);
    assert_true(sc.st_ino != sa.st_ino);
    assert_true(sc.st_mtime == sa.st_mtime);
    /* removing A's name leaves B's */
    assert_int_equal(maildir_remove(a, &m, &err), MS_OK);
    assert_int_equal(slurp(fx, pb, buf, sizeof buf), 17);
    /* gone: 1, nothing made */
    assert_int_equal(maildir_tmp_link(b, a, &m, &t, &linked, &err), 1);
    assert_null(t);
    free(m.uniq);
    free(m.name);
    free(uniq);
    maildir_folder_close(a);
    maildir_folder_close(b);
    maildir_folder_close(c);
}

static void remove_message(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "INBOX");
    char *uniq = deliver(f, "body\n", FLAG_SEEN, NULL);
    struct local_msg m = scan_one(f);
    /* Renamed by a MUA first. */
    char from[512], to[512];
    snprintf(from, sizeof from, "%s/INBOX/cur/%s:2,S", fx->root, uniq);
    snprintf(to, sizeof to, "%s/INBOX/cur/%s:2,RS", fx->root, uniq);
    assert_int_equal(rename(from, to), 0);
    struct ms_error err;
    assert_int_equal(maildir_remove(f, &m, &err), MS_OK);
    assert_int_equal(access(to, F_OK), -1);
    assert_int_equal(maildir_remove(f, &m, &err), 1);
    struct local_msg *msgs;
    size_t n;
    assert_int_equal(maildir_scan(f, &msgs, &n, &err), MS_OK);
    assert_int_equal(n, 0);
    maildir_msgs_free(msgs, n);
    free(m.uniq);
    free(m.name);
    free(uniq);
    maildir_folder_close(f);
}

/* A renamer thread moves files new/ -> cur/ while the main thread scans:
 * every scan that succeeds must list every message exactly once. */
struct renamer {
    int newfd, curfd;
    char **uniqs;
    int n;
};

static void *renamer_main(void *arg)
{
    struct renamer *r = arg;
    for (int i = 0; i < r->n; i++) {
        char to[300];
        snprintf(to, sizeof to, "%s:2,S", r->uniqs[i]);
        renameat(r->newfd, r->uniqs[i], r->curfd, to);
        if (i % 7 == 0) {
            struct timespec nap = {0, 3000000};
            nanosleep(&nap, NULL);
        }
    }
    return NULL;
}

static void scan_during_renames(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "INBOX");
    enum { N = 400 };
    char *uniqs[N];
    for (int i = 0; i < N; i++)
        uniqs[i] = deliver(f, "m\n", 0, NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/INBOX/new", fx->root);
    struct renamer r = {open(path, O_RDONLY | O_DIRECTORY), -1, uniqs, N};
    snprintf(path, sizeof path, "%s/INBOX/cur", fx->root);
    r.curfd = open(path, O_RDONLY | O_DIRECTORY);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, renamer_main, &r), 0);
    int ok = 0;
    for (int k = 0; k < 30; k++) {
        struct local_msg *msgs;
        size_t n;
        struct ms_error err;
        if (maildir_scan(f, &msgs, &n, &err) != MS_OK)
            continue; /* "kept changing" is allowed; an incomplete list is not */
        ok++;
        assert_int_equal(n, N);
        for (size_t i = 1; i < n; i++)
            assert_string_not_equal(msgs[i - 1].uniq, msgs[i].uniq);
        maildir_msgs_free(msgs, n);
    }
    pthread_join(th, NULL);
    (void)ok; /* how many scans succeeded while the renamer ran depends on timing */
    /* Once quiet, a scan succeeds and sees every message in cur/. */
    struct local_msg *msgs;
    size_t n;
    struct ms_error err;
    assert_int_equal(maildir_scan(f, &msgs, &n, &err), MS_OK);
    assert_int_equal(n, N);
    for (size_t i = 0; i < n; i++) {
        assert_false(msgs[i].in_new);
        assert_int_equal(msgs[i].flags, FLAG_SEEN);
    }
    maildir_msgs_free(msgs, n);
    close(r.newfd);
    close(r.curfd);
    for (int i = 0; i < N; i++)
        free(uniqs[i]);
    maildir_folder_close(f);
}

static void sweep_uses_ctime(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "INBOX");
    struct maildir_tmp *t;
    struct ms_error err;
    assert_int_equal(maildir_tmp_open(f, &t, &err), MS_OK);
    char uniq[256];
    snprintf(uniq, sizeof uniq, "%s", maildir_tmp_uniq(t));
    assert_int_equal(maildir_tmp_write(t, "old mail\r\n", 10, &err), MS_OK);
    /* INTERNALDATE from 2001: the mtime is old, the file is not. */
    assert_int_equal(maildir_tmp_close(t, 1000000000, false, &err), MS_OK);
    assert_int_equal(maildir_sweep_tmp(f, 36 * 3600, &err), MS_OK);
    assert_true(maildir_tmp_exists(f, uniq));
    /* Once its ctime is older than max_age it goes. */
    sleep(2);
    assert_int_equal(maildir_sweep_tmp(f, 1, &err), MS_OK);
    assert_false(maildir_tmp_exists(f, uniq));
    /* t was closed and its file swept: commit now fails, cleanly. */
    assert_int_equal(maildir_tmp_commit(f, t, 0, NULL, &err), MS_ELOCAL);
    maildir_folder_close(f);
}

static void sync_calls_work(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "INBOX");
    char *u = deliver(f, "x\n", 0, NULL);
    struct ms_error err;
    assert_int_equal(maildir_sync_dirs(f, &err), MS_OK);
    assert_int_equal(maildir_syncfs(f, &err), MS_OK);
    free(u);
    maildir_folder_close(f);
}

/* ---- the root and folder paths ---- */

static void missing_root_is_an_error(void **state)
{
    struct fixture *fx = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/unmounted/Mail", fx->dir);
    int fd = 123;
    struct ms_error err;
    assert_int_equal(maildir_root_open(path, false, &fd, &err), MS_ELOCAL);
    assert_int_equal(fd, -1);
    assert_non_null(strstr(err.msg, "does not exist (unmounted disk?)"));
    assert_int_equal(access(path, F_OK), -1);
    /* A missing folder without create is an error too, not "empty". */
    struct maildir_folder *f;
    assert_int_equal(maildir_folder_open(fx->rootfd, "Nope", false, &f, &err), MS_ELOCAL);
    assert_null(f);
    assert_false(maildir_folder_exists(fx->rootfd, "Nope"));
    /* With create the root is made, 0700. */
    assert_int_equal(maildir_root_open(path, true, &fd, &err), MS_OK);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    close(fd);
}

static void folder_exists_and_root_folder(void **state)
{
    struct fixture *fx = *state;
    assert_false(maildir_folder_exists(fx->rootfd, ""));
    struct maildir_folder *f = open_folder(fx, "");
    char *u = deliver(f, "x\n", 0, NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/new/%s", fx->root, u);
    assert_int_equal(access(path, F_OK), 0);
    assert_true(maildir_folder_exists(fx->rootfd, ""));
    assert_false(maildir_folder_exists(fx->rootfd, ".Sent"));
    maildir_folder_close(f);
    f = open_folder(fx, ".Sent");
    assert_true(maildir_folder_exists(fx->rootfd, ".Sent"));
    maildir_folder_close(f);
    /* Half a Maildir (no tmp/) does not count. */
    snprintf(path, sizeof path, "%s/Half", fx->root);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/Half/cur", fx->root);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/Half/new", fx->root);
    mkdir(path, 0700);
    assert_false(maildir_folder_exists(fx->rootfd, "Half"));
    free(u);
}

static void unsafe_relpaths_refused(void **state)
{
    struct fixture *fx = *state;
    const char *bad[] = {"..", "../x", "a/../b", "a/..", ".", "./a", "a/./b", "/etc", "a//b", "a/", "/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct maildir_folder *f = (struct maildir_folder *)1;
        struct ms_error err;
        assert_int_equal(maildir_folder_open(fx->rootfd, bad[i], true, &f, &err), MS_ELOCAL);
        assert_null(f);
        assert_false(maildir_folder_exists(fx->rootfd, bad[i]));
    }
    /* Nothing was created next to the root. */
    char path[256];
    snprintf(path, sizeof path, "%s/x", fx->dir);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof path, "%s/cur", fx->dir);
    assert_int_equal(access(path, F_OK), -1);
}

static void symlinks_refused(void **state)
{
    struct fixture *fx = *state;
    char outside[256], link[512], path[512];
    snprintf(outside, sizeof outside, "%s/outside", fx->dir);
    assert_int_equal(mkdir(outside, 0700), 0);

    /* A symlink as a folder component. */
    snprintf(link, sizeof link, "%s/Evil", fx->root);
    assert_int_equal(symlink(outside, link), 0);
    struct maildir_folder *f;
    struct ms_error err;
    assert_int_equal(maildir_folder_open(fx->rootfd, "Evil", true, &f, &err), MS_ELOCAL);
    assert_non_null(strstr(err.msg, "symlink"));
    assert_int_equal(maildir_folder_open(fx->rootfd, "Evil/Sub", true, &f, &err), MS_ELOCAL);
    assert_false(maildir_folder_exists(fx->rootfd, "Evil"));

    /* A symlink as cur/ of a real folder. */
    snprintf(path, sizeof path, "%s/Real", fx->root);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(link, sizeof link, "%s/Real/cur", fx->root);
    assert_int_equal(symlink(outside, link), 0);
    assert_int_equal(maildir_folder_open(fx->rootfd, "Real", true, &f, &err), MS_ELOCAL);

    /* Nothing was written through either link. */
    DIR *d = opendir(outside);
    assert_non_null(d);
    struct dirent *de;
    int entries = 0;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            entries++;
    closedir(d);
    assert_int_equal(entries, 0);

    /* A symlinked message file (a dedup tool's link to an identical copy,
     * here outside the root) is the message: listed, read through, and
     * renamed for flags as the link itself; its target is never written. */
    f = open_folder(fx, "INBOX");
    snprintf(path, sizeof path, "%s/secret", fx->dir);
    put_file(path, "secret");
    struct stat target_before;
    assert_int_equal(stat(path, &target_before), 0);
    snprintf(link, sizeof link, "%s/INBOX/cur/123.link:2,S", fx->root);
    assert_int_equal(symlink(path, link), 0);
    struct local_msg *msgs;
    size_t n;
    assert_int_equal(maildir_scan(f, &msgs, &n, &err), MS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(msgs[0].uniq, "123.link");
    assert_int_equal(msgs[0].flags, FLAG_SEEN);
    assert_int_equal(msgs[0].size, 6);
    int fd = maildir_open_msg(f, &msgs[0], &err);
    assert_true(fd >= 0);
    char buf[16] = "";
    assert_int_equal(read(fd, buf, sizeof buf), 6);
    assert_memory_equal(buf, "secret", 6);
    close(fd);
    assert_int_equal(maildir_set_flags(f, &msgs[0], FLAG_SEEN | FLAG_FLAGGED, &err), MS_OK);
    assert_string_equal(msgs[0].name, "123.link:2,FS");
    struct stat st, target_after;
    snprintf(link, sizeof link, "%s/INBOX/cur/123.link:2,FS", fx->root);
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(stat(path, &target_after), 0);
    assert_int_equal(target_after.st_ino, target_before.st_ino);
    assert_int_equal(target_after.st_mtim.tv_nsec, target_before.st_mtim.tv_nsec);
    assert_int_equal(target_after.st_nlink, 1);
    assert_int_equal(slurp(fx, "../secret", buf, sizeof buf), 6);
    assert_memory_equal(buf, "secret", 6);
    maildir_msgs_free(msgs, n);
    maildir_folder_close(f);
}

/* Entries that are not message files where messages were (a dangling
 * symlink, a directory, a FIFO, a symlink to a FIFO) are left out of the
 * list but reported, and never opened: nothing here may block. */
static void odd_entries_left_out(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "INBOX");
    char path[512], fifo[512];
    snprintf(path, sizeof path, "%s/INBOX/cur/1.real:2,S", fx->root);
    put_file(path, "real\n");
    snprintf(path, sizeof path, "%s/INBOX/cur/2.dangling:2,S", fx->root);
    assert_int_equal(symlink("/nonexistent/mailsync-test", path), 0);
    snprintf(path, sizeof path, "%s/INBOX/cur/3.dir:2,F", fx->root);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(fifo, sizeof fifo, "%s/INBOX/new/4.fifo", fx->root);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    snprintf(path, sizeof path, "%s/INBOX/cur/5.tofifo:2,", fx->root);
    assert_int_equal(symlink(fifo, path), 0);

    struct local_msg *msgs;
    size_t n, nleft;
    struct ms_error err;
    assert_int_equal(maildir_scan_names(f, &msgs, &n, &err), MS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(msgs[0].uniq, "1.real");
    maildir_msgs_free(msgs, n);
    assert_int_equal(maildir_scan(f, &msgs, &n, &err), MS_OK);
    assert_int_equal(n, 1);
    struct local_msg *left = maildir_scan_left_out(f, &nleft);
    assert_int_equal(nleft, 4);
    unsigned seen = 0;
    for (size_t i = 0; i < nleft; i++) {
        assert_true(left[i].odd);
        if (!strcmp(left[i].uniq, "2.dangling"))
            seen |= 1, assert_int_equal(left[i].flags, FLAG_SEEN);
        if (!strcmp(left[i].uniq, "3.dir"))
            seen |= 2, assert_int_equal(left[i].flags, FLAG_FLAGGED);
        if (!strcmp(left[i].uniq, "4.fifo"))
            seen |= 4, assert_true(left[i].in_new);
        if (!strcmp(left[i].uniq, "5.tofifo"))
            seen |= 8;
        /* refused, not opened for good (a FIFO would block a plain open) */
        assert_int_equal(maildir_open_exact(f, &left[i], &err), -1);
    }
    assert_int_equal(seen, 15);
    struct local_msg m = {.uniq = "4.fifo", .name = "4.fifo", .in_new = true};
    assert_int_equal(maildir_open_msg(f, &m, &err), -1);
    struct local_msg found;
    assert_int_equal(maildir_find(f, "5.tofifo", &found, &err), 1);
    assert_int_equal(maildir_find_hint(f, "3.dir", FLAG_FLAGGED, &found, &err), 1);
    maildir_msgs_free(msgs, n);
    maildir_folder_close(f);
}

/* The info starts at the first ":2,"; a second marker is no letter, and a
 * rename for flags writes one marker only. */
static void double_info_names(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "INBOX");
    char path[512];
    snprintf(path, sizeof path, "%s/INBOX/cur/1700000000.x.host:2,S:2,", fx->root);
    put_file(path, "one\n");
    snprintf(path, sizeof path, "%s/INBOX/cur/1700000001.y.host:2,S:2,Fa", fx->root);
    put_file(path, "two\n");
    snprintf(path, sizeof path, "%s/INBOX/cur/1700000002.z.host:2,R:x", fx->root);
    put_file(path, "three\n");
    struct local_msg *msgs;
    size_t n;
    struct ms_error err;
    assert_int_equal(maildir_scan(f, &msgs, &n, &err), MS_OK);
    assert_int_equal(n, 3);
    assert_string_equal(msgs[0].uniq, "1700000000.x.host");
    assert_int_equal(msgs[0].flags, FLAG_SEEN);
    assert_string_equal(msgs[0].extra, "");
    assert_string_equal(msgs[1].uniq, "1700000001.y.host");
    assert_int_equal(msgs[1].flags, FLAG_SEEN | FLAG_FLAGGED);
    assert_string_equal(msgs[1].extra, "a");
    assert_string_equal(msgs[2].uniq, "1700000002.z.host");
    assert_int_equal(msgs[2].flags, FLAG_ANSWERED);
    assert_string_equal(msgs[2].extra, "x");
    assert_int_equal(maildir_set_flags(f, &msgs[0], FLAG_SEEN | FLAG_FLAGGED, &err), MS_OK);
    assert_string_equal(msgs[0].name, "1700000000.x.host:2,FS");
    assert_int_equal(maildir_set_flags(f, &msgs[1], FLAG_SEEN, &err), MS_OK);
    assert_string_equal(msgs[1].name, "1700000001.y.host:2,Sa");
    assert_int_equal(maildir_set_flags(f, &msgs[2], FLAG_ANSWERED | FLAG_SEEN, &err), MS_OK);
    assert_string_equal(msgs[2].name, "1700000002.z.host:2,RSx");
    char buf[16];
    assert_int_equal(slurp(fx, "INBOX/cur/1700000000.x.host:2,FS", buf, sizeof buf), 4);
    assert_int_equal(slurp(fx, "INBOX/cur/1700000000.x.host:2,S:2,", buf, sizeof buf), -1);
    maildir_msgs_free(msgs, n);
    maildir_folder_close(f);
}

/* Files sharing one unique part (a restored backup): the list has the
 * first by name, the others are left out; their content can be compared,
 * and one can get a unique part of its own (info kept, one marker). */
static void duplicates_left_out(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "INBOX");
    char path[512];
    snprintf(path, sizeof path, "%s/INBOX/cur/77.dup:2,S", fx->root);
    put_file(path, "same\n");
    snprintf(path, sizeof path, "%s/INBOX/cur/77.dup:2,FS", fx->root);
    put_file(path, "same\n");
    snprintf(path, sizeof path, "%s/INBOX/new/77.dup", fx->root);
    put_file(path, "other\n");
    struct local_msg *msgs;
    size_t n, nleft;
    struct ms_error err;
    assert_int_equal(maildir_scan_names(f, &msgs, &n, &err), MS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(msgs[0].name, "77.dup");
    struct local_msg *left = maildir_scan_left_out(f, &nleft);
    assert_int_equal(nleft, 2);
    assert_false(left[0].odd || left[1].odd);
    assert_string_equal(left[0].name, "77.dup:2,FS");
    assert_string_equal(left[1].name, "77.dup:2,S");
    assert_int_equal(maildir_same_content(f, &left[0], &left[1], &err), 1);
    assert_int_equal(maildir_same_content(f, &msgs[0], &left[1], &err), 0);
    assert_int_equal(maildir_rename_uniq(f, &left[0], &err), MS_OK);
    assert_string_not_equal(left[0].uniq, "77.dup");
    assert_non_null(strstr(left[0].name, ":2,FS"));
    assert_null(strstr(strstr(left[0].name, ":2,") + 1, ":2,"));
    char rel[600], buf[16];
    snprintf(rel, sizeof rel, "INBOX/cur/%s", left[0].name);
    assert_int_equal(slurp(fx, rel, buf, sizeof buf), 5);
    assert_int_equal(maildir_rename_uniq(f, &msgs[0], &err), MS_OK);
    assert_null(strstr(msgs[0].name, ":2,"));
    snprintf(rel, sizeof rel, "INBOX/new/%s", msgs[0].name);
    assert_int_equal(slurp(fx, rel, buf, sizeof buf), 6);
    maildir_msgs_free(msgs, n);
    assert_int_equal(maildir_scan_names(f, &msgs, &n, &err), MS_OK);
    assert_int_equal(n, 3);
    maildir_scan_left_out(f, &nleft);
    assert_int_equal(nleft, 0);
    maildir_msgs_free(msgs, n);
    maildir_folder_close(f);
}

/* The filtered scan: only what the filter keeps is listed (and looked at
 * for duplicates); entries that are no message files are left out as by
 * the plain scan, without asking the filter; restart comes before the
 * files of each attempt. */
struct keep_k {
    int restarts, asked;
};

static void keep_k_restart(void *ctx)
{
    struct keep_k *k = ctx;
    k->restarts++;
    k->asked = 0;
}

static bool keep_k_keep(void *ctx, const struct local_msg *m)
{
    struct keep_k *k = ctx;
    k->asked++;
    return m->uniq[0] == 'k';
}

static void filtered_scan_keeps_what_the_filter_keeps(void **state)
{
    struct fixture *fx = *state;
    struct maildir_folder *f = open_folder(fx, "INBOX");
    char path[512];
    const char *files[] = {"cur/k1:2,S", "cur/d1:2,S", "new/k2", "new/d2", "cur/k3:2,", "new/k3", "cur/d3:2,F",
                           "new/d3"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/INBOX/%s", fx->root, files[i]);
        put_file(path, "x\n");
    }
    snprintf(path, sizeof path, "%s/INBOX/cur/k4:2,S", fx->root);
    assert_int_equal(mkdir(path, 0700), 0);
    struct keep_k k = {0, 0};
    struct maildir_filter flt = {.restart = keep_k_restart, .keep = keep_k_keep, .ctx = &k};
    struct local_msg *msgs;
    size_t n, nleft;
    struct ms_error err;
    assert_int_equal(maildir_scan_names_filtered(f, &flt, &msgs, &n, &err), MS_OK);
    assert_int_equal(k.restarts, 1);
    assert_int_equal(k.asked, 8); /* every message file, not the directory */
    assert_int_equal(n, 3);
    assert_string_equal(msgs[0].name, "k1:2,S");
    assert_int_equal(msgs[0].flags, FLAG_SEEN);
    assert_string_equal(msgs[1].name, "k2");
    assert_true(msgs[1].in_new);
    assert_string_equal(msgs[2].uniq, "k3");
    /* left out: the directory, and the second k3 (d3 twice was dropped) */
    struct local_msg *left = maildir_scan_left_out(f, &nleft);
    assert_int_equal(nleft, 2);
    int odd = left[0].odd ? 0 : 1;
    assert_true(left[odd].odd);
    assert_string_equal(left[odd].uniq, "k4");
    assert_false(left[1 - odd].odd);
    assert_string_equal(left[1 - odd].uniq, "k3");
    maildir_msgs_free(msgs, n);
    maildir_folder_close(f);
}

/* Make root/rel a Maildir folder (rel's parents included). */
static void make_maildir(const struct fixture *fx, const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fx->root, rel);
    for (char *p = path + strlen(fx->root) + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        mkdir(path, 0700);
        *p = '/';
    }
    mkdir(path, 0700);
    static const char *const subs[] = {"cur", "new", "tmp"};
    for (int i = 0; i < 3; i++) {
        char sub[1100];
        snprintf(sub, sizeof sub, "%s/%s", path, subs[i]);
        assert_int_equal(mkdir(sub, 0700), 0);
    }
}

static void expect_folders(const struct fixture *fx, enum maildir_find mode, const char *want)
{
    char **paths = NULL;
    size_t n = 0;
    assert_int_equal(maildir_find_folders(fx->rootfd, mode, &paths, &n), 0);
    char got[1024] = "";
    for (size_t i = 0; i < n; i++) {
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s[%s]", i ? " " : "", paths[i]);
        free(paths[i]);
    }
    free(paths);
    if (strcmp(got, want) != 0)
        fail_msg("mode %d found %s, wanted %s", (int)mode, got, want);
}

/* Which directories are folders, per layout: nested (verbatim), ".Name"
 * (maildir++, with the root as INBOX), top-level "Name" (dotted,
 * OfflineIMAP's default). Never through a symlink, never cur/new/tmp. */
static void find_folders_per_layout(void **state)
{
    struct fixture *fx = *state;
    make_maildir(fx, "INBOX");
    make_maildir(fx, "Projects.2026");
    make_maildir(fx, "Projects/2026");
    make_maildir(fx, ".Sent.2024");
    char link[1024], target[1024];
    snprintf(link, sizeof link, "%s/Linked", fx->root);
    snprintf(target, sizeof target, "%s/INBOX", fx->root);
    assert_int_equal(symlink(target, link), 0);
    expect_folders(fx, MAILDIR_FIND_NESTED, "[INBOX] [Projects.2026] [Projects/2026]");
    expect_folders(fx, MAILDIR_FIND_DOTDIRS, "[.Sent.2024]");
    expect_folders(fx, MAILDIR_FIND_TOPLEVEL, "[INBOX] [Projects.2026]");
    /* The root a Maildir itself: INBOX in maildir++, nothing in dotted
     * (and its cur/new/tmp are no folders). */
    make_maildir(fx, "");
    make_maildir(fx, "new"); /* a Maildir inside the root's own new/ */
    expect_folders(fx, MAILDIR_FIND_DOTDIRS, "[] [.Sent.2024]");
    expect_folders(fx, MAILDIR_FIND_TOPLEVEL, "[INBOX] [Projects.2026]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(crlf_every_split, setup, teardown),
        cmocka_unit_test_setup_teardown(big_message_through_buffer, setup, teardown),
        cmocka_unit_test_setup_teardown(commit_new_or_cur_and_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(names_unique, setup, teardown),
        cmocka_unit_test_setup_teardown(commit_never_overwrites, setup, teardown),
        cmocka_unit_test_setup_teardown(discard_removes_tmp, setup, teardown),
        cmocka_unit_test_setup_teardown(write_error_is_elocal, setup, teardown),
        cmocka_unit_test_setup_teardown(scan_flags_extra_dotfiles, setup, teardown),
        cmocka_unit_test_setup_teardown(set_flags_after_mua_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(move_to_other_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(link_into_other_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(remove_message, setup, teardown),
        cmocka_unit_test_setup_teardown(scan_during_renames, setup, teardown),
        cmocka_unit_test_setup_teardown(sweep_uses_ctime, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_calls_work, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_root_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(folder_exists_and_root_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(unsafe_relpaths_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(symlinks_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(odd_entries_left_out, setup, teardown),
        cmocka_unit_test_setup_teardown(double_info_names, setup, teardown),
        cmocka_unit_test_setup_teardown(duplicates_left_out, setup, teardown),
        cmocka_unit_test_setup_teardown(filtered_scan_keeps_what_the_filter_keeps, setup, teardown),
        cmocka_unit_test_setup_teardown(find_folders_per_layout, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
