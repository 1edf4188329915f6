/* SPDX-License-Identifier: MIT */
/* test_views_kept.c: a push reuses the listing its run made when looking
 * for local moves (views_push_keep / views_push_take) only while the
 * folder's files and state rows are as they were when it was made. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db/state.h"
#include "sync/engine/engine_int.h"
#include "sync/flags.h"
#include "sync/local/maildir.h"
#include "unit_tmp.h"

struct fx {
    char dir[64];
    int rootfd;
    struct state *st;
    int64_t fid, other_fid;
    struct maildir_folder *mf;
    struct run r;
};

static void put_file(struct fx *f, const char *sub, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/INBOX/%s/%s", f->dir, sub, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "Subject: %s\n\nbody\n", name);
    fclose(fp);
}

/* cur/ and new/ last changed 10 s ago: their stamp has settled. */
static void age_dirs(struct fx *f)
{
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= 10;
    t[1] = t[0];
    char path[256];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/INBOX/%s", f->dir, i ? "new" : "cur");
        assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
    }
}

static int64_t add_folder(struct fx *f, const char *name)
{
    struct ms_error e = {0};
    struct state_folder sf = {.id = 0, .name = (char *)name, .path = (char *)name, .uidvalidity = 7,
                              .uidnext = 4, .last_sync = 1};
    assert_int_equal(state_folder_save(f->st, &sf, &e), MS_OK);
    return sf.id;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    struct ms_error e = {0};
    unit_tmpdir(f->dir, sizeof f->dir, "test_views_kept", true);
    assert_int_equal(maildir_root_open(f->dir, true, &f->rootfd, &e), MS_OK);
    assert_int_equal(maildir_folder_open(f->rootfd, "INBOX", true, &f->mf, &e), MS_OK);
    assert_int_equal(state_open(":memory:", &f->st, &e), MS_OK);
    f->fid = add_folder(f, "INBOX");
    f->other_fid = add_folder(f, "Other");
    const char *names[] = {"u1", "u2", "u3"};
    for (uint32_t i = 0; i < 3; i++) {
        struct state_msg m = {.uid = i + 1, .uniq = (char *)names[i], .flags = FLAG_SEEN, .size = 20};
        assert_int_equal(state_msg_put(f->st, f->fid, &m, &e), MS_OK);
        assert_int_equal(state_msg_put(f->st, f->other_fid, &m, &e), MS_OK);
    }
    put_file(f, "cur", "u1:2,S");
    put_file(f, "cur", "u2:2,FS"); /* flagged since its row */
    put_file(f, "cur", "u3:2,S");
    f->r.st = f->st;
    f->r.rootfd = f->rootfd;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    views_push_kept_free(&f->r);
    maildir_folder_close(f->mf);
    state_close(f->st);
    close(f->rootfd);
    unit_rmtree(f->dir);
    free(f);
    return 0;
}

/* A reader marks u3 answered (renames its file). */
static void answer_u3(struct fx *f)
{
    char from[256], to[256];
    snprintf(from, sizeof from, "%s/INBOX/cur/u3:2,S", f->dir);
    snprintf(to, sizeof to, "%s/INBOX/cur/u3:2,RS", f->dir);
    assert_int_equal(rename(from, to), 0);
}

/* As the learning pass: the stamp, then the scan, handed to the run. */
static void learn(struct fx *f)
{
    struct ms_error e = {0};
    struct maildir_stamp stamp;
    assert_int_equal(maildir_change_stamp(f->rootfd, "INBOX", &stamp), 0);
    const struct views_push_want none = {.uids = NULL, .nuids = 0, .uniqs = NULL, .nuniqs = 0};
    struct views_push v;
    assert_int_equal(views_push_scan(f->st, f->fid, f->mf, &none, &v, &e), MS_OK);
    views_push_keep(&f->r, f->fid, &stamp, &v);
    assert_null(v.diff); /* taken over (or freed) */
}

/* As the push: the stamp now, then the kept listing if still current. */
static bool take(struct fx *f, struct views_push *out)
{
    struct maildir_stamp now;
    assert_int_equal(maildir_change_stamp(f->rootfd, "INBOX", &now), 0);
    return views_push_take(&f->r, f->fid, &now, out);
}

static void unchanged_is_taken_once(void **state)
{
    struct fx *f = *state;
    age_dirs(f);
    learn(f);
    struct views_push v = {0};
    assert_true(take(f, &v));
    /* what the scan found: u2's file with other flags, and its row */
    assert_int_equal(v.nlocal, 1);
    assert_string_equal(v.local[0].uniq, "u2");
    assert_int_equal(v.nrows, 1);
    assert_int_equal(v.rows[0].uid, 2);
    assert_int_equal(v.nall, 3);
    views_push_free(&v);
    assert_false(take(f, &v)); /* handed over once */
}

static void another_folders_rows_do_not_count(void **state)
{
    struct fx *f = *state;
    struct ms_error e = {0};
    age_dirs(f);
    learn(f);
    assert_int_equal(state_msg_set_flags(f->st, f->other_fid, 1, FLAG_FLAGGED, NULL, &e), MS_OK);
    struct views_push v = {0};
    assert_true(take(f, &v));
    views_push_free(&v);
}

/* Each way the folder's rows can be written since the scan. */
static void written_rows_are_not_taken(void **state)
{
    struct fx *f = *state;
    struct ms_error e = {0};
    for (int how = 0; how < 6; how++) {
        age_dirs(f);
        learn(f);
        struct state_msg m = {.uid = 9, .uniq = "u9", .flags = 0, .size = 20};
        switch (how) {
        case 0: assert_int_equal(state_msg_set_flags(f->st, f->fid, 1, FLAG_FLAGGED, NULL, &e), MS_OK); break;
        case 1: assert_int_equal(state_msg_put(f->st, f->fid, &m, &e), MS_OK); break;
        case 2: assert_int_equal(state_msg_delete(f->st, f->fid, 9, &e), MS_OK); break;
        case 3: assert_int_equal(state_msg_confirm(f->st, f->fid, 1, &e), MS_OK); break;
        case 4: assert_int_equal(state_msg_set_uniq(f->st, f->fid, 3, "u3", &e), MS_OK); break;
        case 5: assert_int_equal(state_msg_set_placeholder(f->st, f->fid, 3, 0, &e), MS_OK); break;
        }
        struct views_push v = {0};
        if (take(f, &v))
            fail_msg("written rows (way %d): the kept listing was taken", how);
    }
}

static void renamed_file_is_not_taken(void **state)
{
    struct fx *f = *state;
    age_dirs(f);
    learn(f);
    answer_u3(f);
    struct views_push v = {0};
    assert_false(take(f, &v));
    age_dirs(f);
    learn(f);
    put_file(f, "new", "u4"); /* a new file in new/ */
    assert_false(take(f, &v));
}

/* A folder learnt twice: the later scan replaces the earlier one. */
static void a_later_scan_replaces_the_earlier(void **state)
{
    struct fx *f = *state;
    age_dirs(f);
    learn(f);
    answer_u3(f);
    age_dirs(f);
    learn(f);
    struct views_push v = {0};
    assert_true(take(f, &v));
    assert_int_equal(v.nlocal, 2); /* u2 and u3 */
    views_push_free(&v);
    assert_false(take(f, &v));
}

/* A stamp taken within MAILDIR_STAMP_SETTLE_NS of the folder's last change
 * may miss a change in the same clock tick: such a scan is not kept. */
static void unsettled_scan_is_not_kept(void **state)
{
    struct fx *f = *state;
    put_file(f, "cur", "u5:2,"); /* cur/ changed just now */
    learn(f);
    struct views_push v = {0};
    assert_false(take(f, &v));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(unchanged_is_taken_once, setup, teardown),
        cmocka_unit_test_setup_teardown(another_folders_rows_do_not_count, setup, teardown),
        cmocka_unit_test_setup_teardown(written_rows_are_not_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(renamed_file_is_not_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(a_later_scan_replaces_the_earlier, setup, teardown),
        cmocka_unit_test_setup_teardown(unsettled_scan_is_not_kept, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
