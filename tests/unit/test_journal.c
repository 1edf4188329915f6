/* SPDX-License-Identifier: MIT */
/* test_journal.c: the delivery journal (sync/engine/journal.c) killed at each of
 * its steps, then recovered.
 *
 * A child process delivers three messages in two batches through the
 * journal into a real Maildir and a real state DB, and dies by SIGKILL at
 * one step (journal_step_hook); the parent then runs journal_recover() as
 * the next run would and checks the result: every message journalled
 * before the kill (the commit of its batch's rows is the durable point) is
 * in the Maildir exactly once with one confirmed row naming its file;
 * every message journalled after is neither in new/ and cur/ nor recorded.
 * The same for rows keyed by IMAP UID and by POP3 UIDL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_tmp.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db/state.h"
#include "sync/engine/engine.h"
#include "sync/flags.h"
#include "sync/engine/journal.h"
#include "sync/local/maildir.h"

#define NMSG 3 /* messages 1 and 2 in the first batch, 3 in the second */
#define ADOPTED_UNIQ "1700000000.adopted.host"

struct fixture {
    char dir[64];   /* the mkdtemp directory */
    char root[128]; /* dir/Mail: the Maildir root */
    char db[128];   /* dir/state.sqlite */
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    unit_tmpdir(fx->dir, sizeof fx->dir, "test_journal", false);
    snprintf(fx->root, sizeof fx->root, "%s/Mail", fx->dir);
    snprintf(fx->db, sizeof fx->db, "%s/state.sqlite", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    unit_rmtree(fx->dir);
    free(fx);
    return 0;
}

/* The body of message k (1-based), as sent and as stored (LF). */
static void body(int k, char *out, size_t cap, bool stored)
{
    snprintf(out, cap, "Subject: message %d%s\nhello %d%s\n", k, stored ? "" : "\r", k, stored ? "" : "\r");
}

static void key_of(int k, char uidl[72])
{
    snprintf(uidl, 72, "uidl-%d-of-the-server", k);
}

/* Open the DB, the folder's row and the Maildir folder INBOX. */
static void open_all(const struct fixture *fx, struct state **st, int64_t *folder_id, int *rootfd,
                     struct maildir_folder **mf)
{
    struct ms_error err;
    assert_int_equal(state_open(fx->db, st, &err), MS_OK);
    struct state_folder sf = {0};
    assert_int_equal(state_folder_get(*st, "INBOX", &sf, &err), MS_OK);
    if (!sf.id) {
        sf.name = strdup("INBOX");
        sf.path = strdup("INBOX");
        assert_int_equal(state_folder_save(*st, &sf, &err), MS_OK);
    }
    *folder_id = sf.id;
    state_folder_free(&sf);
    assert_int_equal(maildir_root_open(fx->root, true, rootfd, &err), MS_OK);
    assert_int_equal(maildir_folder_open(*rootfd, "INBOX", true, mf, &err), MS_OK);
}

/* The step and its occurrence the child dies at. */
static enum journal_step kill_step;
static int kill_at, seen;

static void kill_hook(enum journal_step s)
{
    if (s == kill_step && ++seen == kill_at)
        raise(SIGKILL);
}

/* Stream message k into a new tmp/ file: a journal entry. */
static int download(struct maildir_folder *mf, enum journal_key key, int k, struct journal_entry *e)
{
    struct ms_error err;
    char b[128];
    body(k, b, sizeof b, false);
    memset(e, 0, sizeof *e);
    if (maildir_tmp_open(mf, &e->tmp, &err) || maildir_tmp_write(e->tmp, b, strlen(b), &err) ||
        maildir_tmp_close(e->tmp, 0, false, &err))
        return -1;
    e->uid = (uint32_t)k;
    key_of(k, e->uidl);
    e->flags = key == JOURNAL_UID && k == 1 ? FLAG_SEEN : 0; /* one goes to cur/ */
    e->size = maildir_tmp_size(e->tmp);
    return 0;
}

/* The child: deliver, dying at the hook. Exits 0 if it got to the end. */
static void run_child(const struct fixture *fx, enum journal_key key)
{
    struct state *st;
    int64_t folder_id;
    int rootfd;
    struct maildir_folder *mf;
    struct ms_error err;
    open_all(fx, &st, &folder_id, &rootfd, &mf);
    struct engine_folder_result fres = {0};
    struct journal *j = journal_new(st, mf, folder_id, key, NULL, NULL, &fres);
    journal_step_hook = kill_hook;
    struct journal_entry v[2];
    if (download(mf, key, 1, &v[0]) || download(mf, key, 2, &v[1]) || journal_submit(j, v, 2, &err))
        _exit(2);
    /* The second batch: message 3 and a local file found to be message 4
     * (adopted: its row is recorded confirmed, nothing is moved). */
    if (download(mf, key, 3, &v[0]))
        _exit(2);
    memset(&v[1], 0, sizeof v[1]);
    v[1].uid = 4;
    key_of(4, v[1].uidl);
    v[1].adopted = strdup(ADOPTED_UNIQ);
    if (journal_submit(j, v, 2, &err) || journal_finish(j, &err) || journal_confirm(j, NULL, &err))
        _exit(3);
    _exit(fres.fetched == NMSG ? 0 : 4);
}

/* A local file that a download is found to be (the adoption above). */
static void put_adopted(const struct fixture *fx)
{
    char path[256];
    snprintf(path, sizeof path, "%s/INBOX/cur/%s:2,S", fx->root, ADOPTED_UNIQ);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("Subject: message 4\nhello 4\n", fp);
    fclose(fp);
}

/* A row as the checks need it. */
struct row {
    int k;
    const char *uniq;
    bool pending;
};

static int k_of_uidl(const char *uidl)
{
    int k = 0;
    return sscanf(uidl, "uidl-%d-", &k) == 1 ? k : 0;
}

/* Check the Maildir and the rows after recovery: messages 1..ndelivered
 * (and the adopted one's row when adopted) recorded once, confirmed, each
 * naming a file with its body; no other file in new/ or cur/. */
static void check(const struct fixture *fx, enum journal_key key, int ndelivered, bool adopted)
{
    struct state *st;
    int64_t folder_id;
    int rootfd;
    struct maildir_folder *mf;
    struct ms_error err;
    open_all(fx, &st, &folder_id, &rootfd, &mf);

    struct state_msg *m = NULL;
    struct state_pop3 *p = NULL;
    size_t n = 0;
    struct row rows[8];
    if (key == JOURNAL_UID) {
        assert_int_equal(state_msg_list(st, folder_id, &m, &n, &err), MS_OK);
        assert_true(n <= 8);
        for (size_t i = 0; i < n; i++)
            rows[i] = (struct row){.k = (int)m[i].uid, .uniq = m[i].uniq, .pending = m[i].pending};
    } else {
        assert_int_equal(state_pop3_list(st, folder_id, &p, &n, &err), MS_OK);
        assert_true(n <= 8);
        for (size_t i = 0; i < n; i++)
            rows[i] = (struct row){.k = k_of_uidl(p[i].uidl), .uniq = p[i].uniq, .pending = p[i].pending};
    }
    assert_int_equal(n, (size_t)ndelivered + adopted);
    bool have[8] = {false};
    for (size_t i = 0; i < n; i++) {
        assert_false(rows[i].pending);
        assert_true(rows[i].k >= 1 && rows[i].k <= 4);
        assert_false(have[rows[i].k]);
        have[rows[i].k] = true;
        if (rows[i].k == 4) {
            assert_string_equal(rows[i].uniq, ADOPTED_UNIQ);
            continue;
        }
        assert_true(rows[i].k <= ndelivered);
        struct local_msg l = {0};
        assert_int_equal(maildir_find(mf, rows[i].uniq, &l, &err), MS_OK);
        assert_int_equal(l.in_new, !(key == JOURNAL_UID && rows[i].k == 1));
        int fd = maildir_open_msg(mf, &l, &err);
        assert_true(fd >= 0);
        char got[256] = {0}, want[128];
        assert_true(read(fd, got, sizeof got - 1) > 0);
        close(fd);
        body(rows[i].k, want, sizeof want, true);
        assert_string_equal(got, want);
        free(l.uniq);
        free(l.name);
    }
    /* exactly one file per delivered message, besides the local one */
    struct local_msg *files = NULL;
    size_t nfiles = 0;
    assert_int_equal(maildir_scan(mf, &files, &nfiles, &err), MS_OK);
    assert_int_equal(nfiles, (size_t)ndelivered + 1);
    maildir_msgs_free(files, nfiles);

    state_msgs_free(m, key == JOURNAL_UID ? n : 0);
    state_pop3_free(p, key == JOURNAL_UIDL ? n : 0);
    maildir_folder_close(mf);
    close(rootfd);
    state_close(st);
}

/* Recover as the next run does (twice: a second recovery changes nothing). */
static void recover(const struct fixture *fx, enum journal_key key)
{
    for (int pass = 0; pass < 2; pass++) {
        struct state *st;
        int64_t folder_id;
        int rootfd;
        struct maildir_folder *mf;
        struct ms_error err;
        open_all(fx, &st, &folder_id, &rootfd, &mf);
        assert_int_equal(journal_recover(st, mf, folder_id, key, &err), MS_OK);
        maildir_folder_close(mf);
        close(rootfd);
        state_close(st);
    }
}

/* The folder, its row and a local file exist before the run. */
static void prepare(const struct fixture *fx)
{
    struct state *st;
    int64_t folder_id;
    int rootfd;
    struct maildir_folder *mf;
    open_all(fx, &st, &folder_id, &rootfd, &mf);
    maildir_folder_close(mf);
    close(rootfd);
    state_close(st);
    put_adopted(fx);
}

/* Run the child to the kill point (at 0: no kill, to the end). */
static void run_killed(const struct fixture *fx, enum journal_key key, enum journal_step s, int at)
{
    kill_step = s;
    kill_at = at;
    seen = 0;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        run_child(fx, key);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (at) {
        assert_true(WIFSIGNALED(status)); /* it died at the step, did not fail before */
        assert_int_equal(WTERMSIG(status), SIGKILL);
    } else {
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
}

/* A fresh directory for the next case. */
static void clean(const struct fixture *fx)
{
    unit_rmtree(fx->dir);
    assert_int_equal(mkdir(fx->dir, 0700), 0);
}

/* Where the child dies, and what must be there after recovery. */
struct point {
    enum journal_step step;
    int at;         /* its occurrence (0: no kill) */
    int ndelivered; /* messages 1..n in place and recorded */
    bool adopted;   /* the adopted row recorded */
};

static const struct point points[] = {
    {JOURNAL_STEP_SYNCED, 1, 0, false},   /* batch 1 durable in tmp/, nothing recorded */
    {JOURNAL_STEP_ROWS, 1, 0, false},     /* its rows written, not committed */
    {JOURNAL_STEP_RECORDED, 1, 2, false}, /* committed: the durable point; files still in tmp/ */
    {JOURNAL_STEP_RENAMED, 1, 2, false},  /* one in place, one in tmp/ */
    {JOURNAL_STEP_RENAMED, 2, 2, false},  /* both in place, new/ and cur/ not fsynced */
    {JOURNAL_STEP_PLACED, 1, 2, false},   /* batch 1 in place, its rows pending */
    {JOURNAL_STEP_SYNCED, 2, 2, false},   /* batch 2 durable in tmp/, not recorded */
    {JOURNAL_STEP_ROWS, 2, 2, false},     /* batch 2's rows and batch 1's confirmation uncommitted */
    {JOURNAL_STEP_RECORDED, 2, 3, true},  /* batch 2 recorded, batch 1 confirmed */
    {JOURNAL_STEP_RENAMED, 3, 3, true},   /* message 3 in place */
    {JOURNAL_STEP_PLACED, 2, 3, true},    /* batch 2 in place, pending */
    {JOURNAL_STEP_CONFIRMED, 1, 3, true}, /* all confirmed */
    {JOURNAL_STEP_CONFIRMED, 0, 3, true}, /* no kill */
};

static void each_point(void **state, enum journal_key key)
{
    struct fixture *fx = *state;
    for (size_t i = 0; i < sizeof points / sizeof *points; i++) {
        print_message("%s: killed at step %d (occurrence %d)\n", key == JOURNAL_UID ? "uid" : "uidl",
                      (int)points[i].step, points[i].at);
        prepare(fx);
        run_killed(fx, key, points[i].step, points[i].at);
        recover(fx, key);
        check(fx, key, points[i].ndelivered, points[i].adopted);
        clean(fx);
    }
}

static void kill_each_step_uid(void **state)
{
    each_point(state, JOURNAL_UID);
}

static void kill_each_step_uidl(void **state)
{
    each_point(state, JOURNAL_UIDL);
}

/* Date the folder's journal back by `ago` seconds (as if the killed run
 * was that long ago). */
static void age_journal(const struct fixture *fx, int64_t ago)
{
    struct state *st;
    int64_t folder_id;
    int rootfd;
    struct maildir_folder *mf;
    struct ms_error err;
    char key[64], val[32];
    open_all(fx, &st, &folder_id, &rootfd, &mf);
    snprintf(key, sizeof key, "journal_at:%lld", (long long)folder_id);
    snprintf(val, sizeof val, "%lld", (long long)(time(NULL) - ago));
    assert_int_equal(state_meta_set(st, key, val, &err), MS_OK);
    maildir_folder_close(mf);
    close(rootfd);
    state_close(st);
}

/* Rows journalled whose files are gone from tmp/ too, after the 36 hours
 * when any Maildir program may sweep tmp/: forgotten, so the messages are
 * fetched again. */
static void lost_tmp_files_are_forgotten(void **state)
{
    struct fixture *fx = *state;
    for (int key = JOURNAL_UID; key <= JOURNAL_UIDL; key++) {
        prepare(fx);
        run_killed(fx, (enum journal_key)key, JOURNAL_STEP_RECORDED, 1);
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s/INBOX/tmp", fx->root);
        assert_int_equal(unit_rmtree(tmp), 0);
        assert_int_equal(mkdir(tmp, 0700), 0);
        age_journal(fx, 37 * 3600);
        recover(fx, (enum journal_key)key);
        check(fx, (enum journal_key)key, 0, false);
        clean(fx);
    }
}

/* A batch in place, its rows pending, and the user deletes one of its
 * files before the next run: the row is confirmed without a file (a local
 * deletion the push sends to the server), never forgotten (which would
 * fetch the message again: the deletion undone). The other file's row is
 * confirmed as usual. */
static void deleted_placed_file_stays_deleted(void **state)
{
    struct fixture *fx = *state;
    for (int key = JOURNAL_UID; key <= JOURNAL_UIDL; key++) {
        prepare(fx);
        run_killed(fx, (enum journal_key)key, JOURNAL_STEP_PLACED, 1);
        struct state *st;
        int64_t folder_id;
        int rootfd;
        struct maildir_folder *mf;
        struct ms_error err;
        open_all(fx, &st, &folder_id, &rootfd, &mf);
        /* message 1's file goes (its row names it, still pending) */
        char uniq[128] = {0};
        if (key == JOURNAL_UID) {
            struct state_msg *m = NULL;
            size_t n = 0;
            assert_int_equal(state_msg_list(st, folder_id, &m, &n, &err), MS_OK);
            assert_int_equal(n, 2);
            assert_true(m[0].pending && m[0].uid == 1);
            snprintf(uniq, sizeof uniq, "%s", m[0].uniq);
            state_msgs_free(m, n);
        } else {
            struct state_pop3 *p = NULL;
            size_t n = 0;
            assert_int_equal(state_pop3_list(st, folder_id, &p, &n, &err), MS_OK);
            assert_int_equal(n, 2);
            for (size_t i = 0; i < n; i++)
                if (k_of_uidl(p[i].uidl) == 1) {
                    assert_true(p[i].pending);
                    snprintf(uniq, sizeof uniq, "%s", p[i].uniq);
                }
            state_pop3_free(p, n);
        }
        struct local_msg l = {0};
        assert_int_equal(maildir_find(mf, uniq, &l, &err), MS_OK);
        assert_int_equal(maildir_remove(mf, &l, &err), MS_OK);
        free(l.uniq);
        free(l.name);
        maildir_folder_close(mf);
        close(rootfd);
        state_close(st);

        recover(fx, (enum journal_key)key);

        open_all(fx, &st, &folder_id, &rootfd, &mf);
        size_t n = 0, confirmed = 0;
        bool one = false;
        if (key == JOURNAL_UID) {
            struct state_msg *m = NULL;
            assert_int_equal(state_msg_list(st, folder_id, &m, &n, &err), MS_OK);
            for (size_t i = 0; i < n; i++) {
                confirmed += !m[i].pending;
                one = one || (m[i].uid == 1 && strcmp(m[i].uniq, uniq) == 0);
            }
            state_msgs_free(m, n);
        } else {
            struct state_pop3 *p = NULL;
            assert_int_equal(state_pop3_list(st, folder_id, &p, &n, &err), MS_OK);
            for (size_t i = 0; i < n; i++) {
                confirmed += !p[i].pending;
                one = one || (k_of_uidl(p[i].uidl) == 1 && strcmp(p[i].uniq, uniq) == 0);
            }
            state_pop3_free(p, n);
        }
        assert_int_equal(n, 2);
        assert_int_equal(confirmed, 2);
        assert_true(one); /* message 1 still recorded: not fetched again */
        assert_int_equal(maildir_find(mf, uniq, &l, &err), 1);
        struct local_msg *files = NULL;
        size_t nfiles = 0;
        assert_int_equal(maildir_scan(mf, &files, &nfiles, &err), MS_OK);
        assert_int_equal(nfiles, 2); /* message 2 and the local one */
        maildir_msgs_free(files, nfiles);
        maildir_folder_close(mf);
        close(rootfd);
        state_close(st);
        clean(fx);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(kill_each_step_uid, setup, teardown),
        cmocka_unit_test_setup_teardown(kill_each_step_uidl, setup, teardown),
        cmocka_unit_test_setup_teardown(lost_tmp_files_are_forgotten, setup, teardown),
        cmocka_unit_test_setup_teardown(deleted_placed_file_stays_deleted, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
