/* SPDX-License-Identifier: MIT */
/* test_engine.c: the engine (engine_pull / engine_push / engine_sync) run
 * against the in-memory server (memremote.c), with a real Maildir and a
 * real state DB in a fresh mkdtemp directory per test. Each test takes
 * milliseconds; what a run did on the server is read from the server's
 * operation log, what it did locally from the Maildir and the state DB.
 *
 * The invariant every test ends with: each message of the server is
 * exactly once in its local folder, and the state knows it, confirmed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_tmp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db/state.h"
#include "memremote.h"
#include "sync/engine/engine.h"
#include "sync/flags.h"
#include "sync/log.h"
#include "sync/names.h"
#include "sync/engine/journal.h"
#include "sync/remote/remote.h"


struct fixture {
    char dir[64];
    char maildir[128];
    char state_path[128];
    char *folders[1];
    struct account acct;
    struct engine_options opt;
    struct mem_server *srv;
    struct engine_result res; /* of the last run */
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    /* On tmpfs where there is one: the runs' fsyncs then cost nothing, and
     * each test takes milliseconds, not seconds. */
    unit_tmpdir(fx->dir, sizeof fx->dir, "test_engine", true);
    snprintf(fx->maildir, sizeof fx->maildir, "%s/Mail", fx->dir);
    snprintf(fx->state_path, sizeof fx->state_path, "%s/state/t.sqlite", fx->dir);
    fx->folders[0] = "*";
    /* As cmd/config.c fills it, with its defaults (set field by field, so a
     * field added later starts zeroed). The host is never reached:
     * connect_remote is the in-memory server (a refused loopback port if
     * it ever were not). */
    struct account *a = &fx->acct;
    memset(a, 0, sizeof *a);
    a->name = "t";
    a->config_file = "test";
    a->config_line = 1;
    a->type = ACCOUNT_IMAP;
    a->host = "127.0.0.1";
    a->port = 1;
    a->tls = TLS_NONE;
    a->allow_plaintext = true;
    a->user = "u";
    a->password = "p";
    a->auth = AUTH_AUTO;
    a->maildir = fx->maildir;
    a->state_path = fx->state_path;
    a->folders = fx->folders;
    a->nfolders = 1;
    a->layout = LAYOUT_VERBATIM;
    a->mode = MODE_MIRROR;
    a->expunge = true;
    a->connections = 1;
    a->leave_on_server = true;
    a->max_delete = 50;
    a->timeout = 60;
    memset(&fx->opt, 0, sizeof fx->opt);
    fx->opt.connect_remote = mem_remote_connect;
    fx->srv = mem_server_new();
    mem_install(fx->srv);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    engine_result_free(&fx->res);
    mem_install(NULL);
    mem_server_free(fx->srv);
    unit_rmtree(fx->dir);
    free(fx);
    return 0;
}

/* Print the server's log (when a test is about to fail on it). */
static void dump_log(const struct fixture *fx)
{
    char *t = mem_log_text(fx->srv);
    print_message("server log:\n%s", t);
    free(t);
}

enum run_kind { PULL, PUSH, SYNC };

/* One run; its result stays in fx->res until the next. */
static int run(struct fixture *fx, enum run_kind k)
{
    engine_result_free(&fx->res);
    switch (k) {
    case PULL:
        return engine_pull(&fx->acct, &fx->opt, &fx->res);
    case PUSH:
        return engine_push(&fx->acct, &fx->opt, &fx->res);
    case SYNC:
        return engine_sync(&fx->acct, &fx->opt, &fx->res);
    }
    return -1;
}

/* A run that must succeed, with what went wrong printed if not. */
static void run_ok(struct fixture *fx, enum run_kind k)
{
    int rc = run(fx, k);
    if (rc != MS_OK) {
        print_message("run failed (%d): %s\n", rc, fx->res.error);
        for (size_t i = 0; i < fx->res.nfolders; i++)
            if (fx->res.folders[i].error)
                print_message("  %s: %s\n", fx->res.folders[i].name, fx->res.folders[i].error);
        dump_log(fx);
    }
    assert_int_equal(rc, MS_OK);
}

static const struct engine_folder_result *folder_result(const struct fixture *fx, const char *name)
{
    for (size_t i = 0; i < fx->res.nfolders; i++)
        if (strcmp(fx->res.folders[i].name, name) == 0)
            return &fx->res.folders[i];
    fail_msg("no result for folder %s", name);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* the local side */

/* Calls fn for every message file of the local folder (cur/ and new/). */
static void each_file(const struct fixture *fx, const char *folder,
                      void (*fn)(void *ctx, const char *name, const char *content), void *ctx)
{
    for (int sub = 0; sub < 2; sub++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s/%s", fx->maildir, folder, sub ? "new" : "cur");
        DIR *d = opendir(dir);
        if (!d)
            continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char path[1024], buf[16384];
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            int fd = open(path, O_RDONLY);
            assert_true(fd >= 0);
            ssize_t n = read(fd, buf, sizeof buf - 1);
            close(fd);
            assert_true(n >= 0);
            buf[n] = '\0';
            fn(ctx, de->d_name, buf);
        }
        closedir(d);
    }
}

struct id_count {
    const char *id; /* NULL: every file */
    size_t n;
    char flags[16]; /* the letters of the last match */
};

static void count_id(void *ctx, const char *name, const char *content)
{
    struct id_count *c = ctx;
    char want[2048];
    snprintf(want, sizeof want, "Message-ID: %s\n", c->id ? c->id : "");
    if (c->id && !strstr(content, want))
        return;
    c->n++;
    const char *info = strstr(name, ":2,");
    snprintf(c->flags, sizeof c->flags, "%s", info ? info + 3 : "");
}

/* How many local files of folder carry Message-ID id (NULL: all files). */
static size_t local_count(const struct fixture *fx, const char *folder, const char *id)
{
    struct id_count c = {.id = id, .n = 0, .flags = ""};
    each_file(fx, folder, count_id, &c);
    return c.n;
}

/* The Maildir flag letters of the (one) local file with Message-ID id. */
static const char *local_flags(const struct fixture *fx, const char *folder, const char *id)
{
    static struct id_count c;
    c = (struct id_count){.id = id, .n = 0, .flags = ""};
    each_file(fx, folder, count_id, &c);
    assert_int_equal(c.n, 1);
    return c.flags;
}

/* A message file the user put into the local folder (cur/), as a MUA
 * would: name uniq:2,<letters>. */
static void put_local(const struct fixture *fx, const char *folder, const char *uniq, const char *letters,
                      const char *message_id)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/cur/%s:2,%s", fx->maildir, folder, uniq, letters);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "From: me@example.org\nSubject: written here\nMessage-ID: %s\n\nA local message.\n", message_id);
    fclose(f);
}

/* ------------------------------------------------------------------ */
/* the state DB */

struct state_view {
    size_t rows, pending;
    uint32_t uidvalidity;
    int64_t last_sync;
    uint64_t highestmodseq;
};

static struct state_view state_of(const struct fixture *fx, const char *folder)
{
    struct state *st = NULL;
    struct ms_error err;
    struct state_view v = {0};
    assert_int_equal(state_open(fx->state_path, &st, &err), MS_OK);
    struct state_folder f = {0};
    assert_int_equal(state_folder_get(st, folder, &f, &err), MS_OK);
    if (f.id) {
        struct state_msg *m = NULL;
        size_t n = 0;
        assert_int_equal(state_msg_list(st, f.id, &m, &n, &err), MS_OK);
        v.rows = n;
        for (size_t i = 0; i < n; i++)
            v.pending += m[i].pending;
        state_msgs_free(m, n);
        v.uidvalidity = f.uidvalidity;
        v.last_sync = f.last_sync;
        v.highestmodseq = f.highestmodseq;
    }
    state_folder_free(&f);
    state_close(st);
    return v;
}

/* Every message of the server folder is exactly once locally, and the
 * state knows exactly those, none pending. */
static void assert_in_step(const struct fixture *fx, const char *folder)
{
    struct mem_folder *f = mem_folder_find(fx->srv, folder);
    assert_non_null(f);
    for (size_t i = 0; i < f->n; i++) {
        const char *p = strstr(f->msgs[i].body, "Message-ID: ");
        assert_non_null(p);
        char id[1500];
        size_t len = strcspn(p + 12, "\r\n");
        snprintf(id, sizeof id, "%.*s", (int)len, p + 12);
        size_t n = local_count(fx, folder, id);
        if (n != 1)
            fail_msg("%s: %s is %zu times in the local folder", folder, id, n);
    }
    assert_int_equal(local_count(fx, folder, NULL), f->n);
    struct state_view v = state_of(fx, folder);
    assert_int_equal(v.rows, f->n);
    assert_int_equal(v.pending, 0);
}

/* A message with Message-ID <tag@test> and subject tag. */
static uint32_t add(struct fixture *fx, const char *folder, const char *tag, unsigned flags)
{
    char id[64];
    snprintf(id, sizeof id, "<%s@test>", tag);
    return mem_add_simple(fx->srv, folder, id, tag, flags);
}

/* ------------------------------------------------------------------ */
/* tests */

/* ------------------------------------------------------------------ */
/* watch */

struct lagging_watch {
    struct fixture *fx;
    volatile sig_atomic_t stop;
    int waits;
    size_t late_by_second_wait; /* the late message's local files at the second wait */
};

/* The watch's waits: the first reports new mail whose counters the next
 * listing does not show yet (a server whose LIST-STATUS lags its NOTIFY);
 * the second notes what reached the Maildir and stops the watch. */
static int lagging_wait(void *ctx, bool *changed)
{
    struct lagging_watch *lw = ctx;
    struct mem_server *s = lw->fx->srv;
    if (++lw->waits == 1) {
        s->stale_status = mem_status_now(s, "INBOX");
        snprintf(s->stale_folder, sizeof s->stale_folder, "INBOX");
        mem_add_simple(s, "INBOX", "<late@x>", "late", 0);
        s->stale_answers = 1;
        *changed = true;
        return MS_OK;
    }
    lw->late_by_second_wait = local_count(lw->fx, "INBOX", "<late@x>");
    lw->stop = 1;
    return MS_OK;
}

/* watch: a change the server reported and whose counters lagged is looked
 * for again, so it arrives before the watch waits again (without: only at
 * the next report or the pass interval, an hour by default). */
static void watch_looks_again_when_counters_lag(void **state)
{
    struct fixture *fx = *state;
    mem_add_simple(fx->srv, "INBOX", "<first@x>", "first", 0);
    struct lagging_watch lw = {.fx = fx, .stop = 0, .waits = 0, .late_by_second_wait = 0};
    fx->srv->on_wait = lagging_wait;
    fx->srv->on_wait_ctx = &lw;
    struct engine_watch w = {.interval_s = 3600, .stop = &lw.stop, .pass_done = NULL, .alive = NULL,
                             .alive_ms = 0, .ctx = NULL};
    assert_int_equal(engine_watch(&fx->acct, &fx->opt, &w), MS_OK);
    assert_int_equal(lw.waits, 2);
    assert_int_equal(fx->srv->stale_answers, 0); /* the lagging listing was made */
    assert_int_equal(local_count(fx, "INBOX", "<first@x>"), 1);
    assert_int_equal(lw.late_by_second_wait, 1);
}

/* A first pull of two folders brings every message once, the flags as
 * letters in the names, and records the state; a second pull fetches no
 * body at all. */
static void first_pull_then_noop(void **state)
{
    struct fixture *fx = *state;
    add(fx, "INBOX", "i1", 0);
    add(fx, "INBOX", "i2", FLAG_SEEN);
    add(fx, "INBOX", "i3", FLAG_SEEN | FLAG_FLAGGED | FLAG_ANSWERED);
    add(fx, "Archive", "a1", FLAG_SEEN);
    add(fx, "Archive", "a2", FLAG_DRAFT);
    run_ok(fx, PULL);
    assert_in_step(fx, "INBOX");
    assert_in_step(fx, "Archive");
    assert_string_equal(local_flags(fx, "INBOX", "<i1@test>"), "");
    assert_string_equal(local_flags(fx, "INBOX", "<i2@test>"), "S");
    assert_string_equal(local_flags(fx, "INBOX", "<i3@test>"), "FRS");
    assert_string_equal(local_flags(fx, "Archive", "<a2@test>"), "D");
    assert_int_equal(folder_result(fx, "INBOX")->fetched, 3);
    assert_int_equal(folder_result(fx, "Archive")->fetched, 2);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 5);
    struct state_view v = state_of(fx, "INBOX");
    assert_int_equal(v.uidvalidity, mem_folder(fx->srv, "INBOX")->uidvalidity);
    assert_true(v.last_sync > 0);

    mem_log_clear(fx->srv);
    run_ok(fx, PULL);
    if (mem_log_count(fx->srv, MEM_OP_BODY, NULL) != 0)
        dump_log(fx);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);
    assert_int_equal(folder_result(fx, "INBOX")->fetched, 0);
    assert_in_step(fx, "INBOX");
    assert_in_step(fx, "Archive");
}


/* ------------------------------------------------------------------ */
/* a first pull in windows of UIDs (pull.c: memory bounded by the window) */

/* Ten messages in INBOX (UIDs 1-10, every other one seen), one in Work;
 * windows of 4 UIDs. */
static void ten_in_windows_of_four(struct fixture *fx)
{
    for (int i = 0; i < 10; i++) {
        char tag[8];
        snprintf(tag, sizeof tag, "w%d", i);
        add(fx, "INBOX", tag, i % 2 ? FLAG_SEEN : 0);
    }
    add(fx, "Work", "k0", 0);
    fx->opt.pull_window = 4;
}

/* Each listing of INBOX (the open's and the windows' META) names at most
 * a window of messages; how many listings there were. */
static size_t inbox_listings(const struct fixture *fx, uint32_t window)
{
    size_t n = 0;
    for (size_t i = 0; i < fx->srv->nlog; i++) {
        const struct mem_logentry *e = &fx->srv->log[i];
        if (strcmp(e->folder, "INBOX") != 0 || (e->op != MEM_OP_OPEN && e->op != MEM_OP_META))
            continue;
        if (e->n > window) {
            dump_log(fx);
            fail_msg("a listing of %u messages: more than the window of %u", e->n, window);
        }
        n++;
    }
    return n;
}

/* A first pull of a folder bigger than the window lists, plans and
 * downloads it in windows of UIDs from the top down (newest first, as
 * before), ends with every message once on both sides and the folder
 * complete; a folder within the window is listed once, as before; the
 * next run downloads nothing. */
static void first_pull_in_windows(void **state)
{
    struct fixture *fx = *state;
    ten_in_windows_of_four(fx);
    run_ok(fx, PULL);
    assert_int_equal(inbox_listings(fx, 4), 3); /* 7:10 (the open), 3:6, 1:2 */
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_OPEN, "Work"), 1);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_META, "Work"), 0);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, "INBOX"), 10);
    /* Window by window from the top: every body of a higher window
     * before any of a lower one. */
    uint32_t low_seen = UINT32_MAX;
    for (size_t i = 0; i < fx->srv->nlog; i++) {
        const struct mem_logentry *e = &fx->srv->log[i];
        if (e->op != MEM_OP_BODY || strcmp(e->folder, "INBOX") != 0)
            continue;
        uint32_t w = e->n >= 7 ? 2 : e->n >= 3 ? 1 : 0; /* 7-10, 3-6, 1-2 */
        if (w > low_seen) {
            dump_log(fx);
            fail_msg("UID %u came after a lower window's body", e->n);
        }
        low_seen = w < low_seen ? w : low_seen;
    }
    assert_int_equal(folder_result(fx, "INBOX")->fetched, 10);
    assert_in_step(fx, "INBOX");
    assert_in_step(fx, "Work");
    assert_string_equal(local_flags(fx, "INBOX", "<w1@test>"), "S");
    assert_true(state_of(fx, "INBOX").last_sync > 0);

    mem_log_clear(fx->srv);
    run_ok(fx, PULL);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);
    assert_in_step(fx, "INBOX");
}

/* The session drops in the second window: what the first window and the
 * second's first bodies brought is kept (recorded, not complete); the
 * next run completes the folder without fetching any of it again. */
static void first_pull_in_windows_drop_in_second(void **state)
{
    struct fixture *fx = *state;
    ten_in_windows_of_four(fx);
    fx->srv->faults.drop_after_bodies = 6;
    assert_int_equal(run(fx, PULL), MS_ENET);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_META, "INBOX"), 1); /* it was in the second window */
    assert_int_equal(local_count(fx, "INBOX", NULL), 6);
    struct state_view v = state_of(fx, "INBOX");
    assert_int_equal(v.rows, 6);
    assert_int_equal(v.pending, 0);
    assert_int_equal(v.last_sync, 0); /* the folder is not complete */

    mem_log_clear(fx->srv);
    run_ok(fx, PULL);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, "INBOX"), 4);
    assert_in_step(fx, "INBOX");
    assert_in_step(fx, "Work");
    assert_true(state_of(fx, "INBOX").last_sync > 0);
}

static ino_t local_ino(const struct fixture *fx, const char *folder, const char *id);

/* ten_in_windows_of_four's first pull, the session dropped after 6 of the
 * 10 bodies (in the second window): 6 rows recorded. */
static void first_pull_dropped_after_six(struct fixture *fx)
{
    ten_in_windows_of_four(fx);
    fx->srv->faults.drop_after_bodies = 6;
    assert_int_equal(run(fx, PULL), MS_ENET);
    assert_int_equal(state_of(fx, "INBOX").rows, 6);
}

/* The session drops in the second window; the next run completes the
 * first pull in windows too (no listing of more than a window), fetches
 * only the 4 bodies still missing and keeps the files it has (inodes). */
static void first_pull_resumed_in_windows(void **state)
{
    struct fixture *fx = *state;
    first_pull_dropped_after_six(fx);
    ino_t ino[10];
    size_t had = 0;
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "<w%d@test>", i);
        ino[i] = local_ino(fx, "INBOX", id);
        had += ino[i] != 0;
    }
    assert_int_equal(had, 6);

    mem_log_clear(fx->srv);
    run_ok(fx, PULL);
    assert_int_equal(inbox_listings(fx, 4), 3); /* 7:10 (the open), 3:6, 1:2 */
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, "INBOX"), 4);
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "<w%d@test>", i);
        if (ino[i] && local_ino(fx, "INBOX", id) != ino[i])
            fail_msg("%s: its file was replaced", id);
    }
    assert_in_step(fx, "INBOX");
    assert_in_step(fx, "Work");
    assert_true(state_of(fx, "INBOX").last_sync > 0);
    assert_string_equal(local_flags(fx, "INBOX", "<w1@test>"), "S");
    assert_string_equal(local_flags(fx, "INBOX", "<w0@test>"), "");
}

/* After the first pull of ten_in_windows_of_four: another client flags
 * and reads every message of INBOX ("mark all read"): ten changes, more
 * than the window of 4. */
static void all_changed_elsewhere(struct fixture *fx)
{
    run_ok(fx, PULL);
    assert_in_step(fx, "INBOX");
    struct mem_folder *f = mem_folder_find(fx->srv, "INBOX");
    for (size_t i = 0; i < f->n; i++)
        mem_set_flags(fx->srv, "INBOX", f->msgs[i].uid, FLAG_SEEN | FLAG_FLAGGED);
    mem_log_clear(fx->srv);
}

/* How many of INBOX's local messages have the letters want. */
static size_t inbox_with_flags(const struct fixture *fx, const char *want)
{
    size_t n = 0;
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "<w%d@test>", i);
        n += local_count(fx, "INBOX", id) == 1 && strcmp(local_flags(fx, "INBOX", id), want) == 0;
    }
    return n;
}

/* More changes than a window: listed, applied and recorded a window at a
 * time, top down (the open's changes of 7:10, then CHANGEDSINCE of 3:6 and
 * 1:2), no listing of more than a window, no body; every flag right and
 * the folder's HIGHESTMODSEQ the server's. */
static void changes_in_windows(struct fixture *fx)
{
    all_changed_elsewhere(fx);
    run_ok(fx, PULL);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_OPEN_INC, "INBOX"), 1);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_CHANGES, "INBOX"), 2);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_OPEN, "INBOX"), 0);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_META, "INBOX"), 0);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);
    for (size_t i = 0; i < fx->srv->nlog; i++) {
        const struct mem_logentry *e = &fx->srv->log[i];
        if ((e->op == MEM_OP_OPEN_INC || e->op == MEM_OP_CHANGES) && strcmp(e->folder, "INBOX") == 0 && e->n > 4) {
            dump_log(fx);
            fail_msg("a listing of %u changes: more than the window of 4", e->n);
        }
    }
    assert_int_equal(inbox_with_flags(fx, "FS"), 10);
    assert_int_equal(folder_result(fx, "INBOX")->flagged, 10);
    assert_in_step(fx, "INBOX");
    assert_int_equal(state_of(fx, "INBOX").highestmodseq, mem_status_now(fx->srv, "INBOX").highestmodseq);
    mem_log_clear(fx->srv);
    run_ok(fx, PULL); /* nothing left to do */
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_OPEN_INC, NULL) + mem_log_count(fx->srv, MEM_OP_OPEN, NULL), 0);
}

static void changes_in_windows_qresync(void **state)
{
    struct fixture *fx = *state;
    ten_in_windows_of_four(fx);
    changes_in_windows(fx);
}

static void changes_in_windows_condstore(void **state)
{
    struct fixture *fx = *state;
    fx->srv->incremental_kind = REMOTE_LIST_ALL_UIDS;
    ten_in_windows_of_four(fx);
    changes_in_windows(fx);
}

/* The session drops at the second window's listing (the first window
 * was applied): the folder's HIGHESTMODSEQ stays the old one, so the next
 * run is told every change again and completes them; nothing missed. */
static void drop_at_second_window(void *ctx, const struct mem_logentry *e)
{
    struct fixture *fx = ctx;
    if (e->op == MEM_OP_OPEN_INC && strcmp(e->folder, "INBOX") == 0)
        fx->srv->faults.drop_at_op = 1; /* the next op: the window below */
}

static void changes_in_windows_drop_in_second(void **state)
{
    struct fixture *fx = *state;
    ten_in_windows_of_four(fx);
    all_changed_elsewhere(fx);
    uint64_t before = state_of(fx, "INBOX").highestmodseq;
    assert_true(before > 0);
    fx->srv->on_op = drop_at_second_window;
    fx->srv->on_op_ctx = fx;
    assert_int_equal(run(fx, PULL), MS_ENET);
    fx->srv->on_op = NULL;
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_CHANGES, "INBOX"), 0);
    assert_int_equal(inbox_with_flags(fx, "FS"), 4); /* the top window, 7:10 */
    assert_int_equal(state_of(fx, "INBOX").highestmodseq, before);

    mem_log_clear(fx->srv);
    run_ok(fx, PULL);
    assert_int_equal(inbox_with_flags(fx, "FS"), 10);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);
    assert_in_step(fx, "INBOX");
    assert_int_equal(state_of(fx, "INBOX").highestmodseq, mem_status_now(fx->srv, "INBOX").highestmodseq);
}

/* More changes than a window and a recorded message expunged: the
 * deletion is weighed against the whole folder first (guard, counts),
 * then applied in its window like the flag changes; the end state is
 * right and no listing holds more than a window. */
static void changes_in_windows_with_an_expunge(void **state)
{
    struct fixture *fx = *state;
    ten_in_windows_of_four(fx);
    all_changed_elsewhere(fx);
    mem_expunge(fx->srv, "INBOX", 1);
    run_ok(fx, PULL);
    assert_true(mem_log_count(fx->srv, MEM_OP_CHANGES, "INBOX") >= 2);
    for (size_t i = 0; i < fx->srv->nlog; i++) {
        const struct mem_logentry *e = &fx->srv->log[i];
        if ((e->op == MEM_OP_OPEN_INC || e->op == MEM_OP_CHANGES) && e->n > 4) {
            dump_log(fx);
            fail_msg("a listing of %u changes: more than the window of 4", e->n);
        }
    }
    assert_int_equal(inbox_with_flags(fx, "FS"), 9);
    assert_int_equal(local_count(fx, "INBOX", "<w0@test>"), 0);
    assert_in_step(fx, "INBOX");
    assert_int_equal(state_of(fx, "INBOX").highestmodseq, mem_status_now(fx->srv, "INBOX").highestmodseq);
}

/* The same with the expunged message in the top window: its deletion
 * waits for the second pass, and so does the folder's record (saved with
 * the last window, it told that pass the folder was done: the message
 * stayed local for good). */
static void changes_in_windows_with_an_expunge_on_top(void **state)
{
    struct fixture *fx = *state;
    ten_in_windows_of_four(fx);
    all_changed_elsewhere(fx);
    mem_expunge(fx->srv, "INBOX", 9);
    run_ok(fx, PULL);
    assert_true(mem_log_count(fx->srv, MEM_OP_CHANGES, "INBOX") >= 2);
    assert_int_equal(local_count(fx, "INBOX", "<w8@test>"), 0);
    assert_int_equal(inbox_with_flags(fx, "FS"), 9);
    assert_in_step(fx, "INBOX");
    assert_int_equal(state_of(fx, "INBOX").highestmodseq, mem_status_now(fx->srv, "INBOX").highestmodseq);
}

/* Thirty messages in INBOX (g0-g29), windows of 8 UIDs, pulled once. */
static void thirty_in_windows_of_eight(struct fixture *fx)
{
    for (int i = 0; i < 30; i++) {
        char tag[8];
        snprintf(tag, sizeof tag, "g%d", i);
        add(fx, "INBOX", tag, 0);
    }
    fx->opt.pull_window = 8;
    run_ok(fx, PULL);
}

/* 30 messages, windows of 8, every one changed elsewhere and 16 expunged:
 * more than max_delete (50%) of the folder, though no window loses more
 * than 8 (27%): the guard weighs the whole folder and nothing is deleted. */
static void changes_in_windows_mass_expunge_guarded(void **state)
{
    struct fixture *fx = *state;
    thirty_in_windows_of_eight(fx);
    for (uint32_t uid = 1; uid <= 30; uid++)
        mem_set_flags(fx->srv, "INBOX", uid, FLAG_SEEN);
    for (uint32_t uid = 1; uid <= 16; uid++)
        mem_expunge(fx->srv, "INBOX", uid);
    mem_log_clear(fx->srv);
    assert_int_equal(run(fx, PULL), MS_EPARTIAL);
    assert_int_equal(local_count(fx, "INBOX", NULL), 30);
    assert_int_equal(state_of(fx, "INBOX").rows, 30);
}

/* ------------------------------------------------------------------ */
/* a full listing in windows (a server without modseqs) */

/* Lines logged that hold a text, while counting (log_set_sink). */
static const char *sink_text;
static size_t sink_hits;

static void count_text(enum log_level level, const char *text)
{
    (void)level;
    if (sink_text && strstr(text, sink_text))
        sink_hits++;
}

/* A run, counting the lines it logs (at -vv) that hold text. */
static int run_counting(struct fixture *fx, enum run_kind k, const char *text, size_t *hits)
{
    int verbosity = log_verbosity;
    log_verbosity = LOG_TRACE;
    sink_text = text;
    sink_hits = 0;
    log_set_sink(count_text);
    int rc = run(fx, k);
    log_set_sink(NULL);
    sink_text = NULL;
    log_verbosity = verbosity;
    *hits = sink_hits;
    return rc;
}

static void move_local(const struct fixture *fx, const char *from, const char *id, const char *to,
                       const char *newname, const char *letters);
static struct mem_msg *server_msg(struct fixture *fx, const char *folder, const char *id);

/* ten_in_windows_of_four on a server without modseqs (every resync lists
 * every message), pulled once. */
static void ten_without_modseqs(struct fixture *fx)
{
    fx->srv->caps &= ~(unsigned)REMOTE_CHANGES;
    ten_in_windows_of_four(fx);
    run_ok(fx, PULL);
    assert_in_step(fx, "INBOX");
    mem_log_clear(fx->srv);
}

/* The listing of a resync comes a window at a time (the open's 8:11, then
 * 4:7 and 1:3) and is compared with the rows of each window: a flag
 * changed on the server (on a file a reader renamed meanwhile), an
 * expunge and new mail all land; a second run finds nothing to do. */
static void full_listing_in_windows(void **state)
{
    struct fixture *fx = *state;
    ten_without_modseqs(fx);
    mem_set_flags(fx->srv, "INBOX", 3, FLAG_SEEN);         /* w2 */
    move_local(fx, "INBOX", "<w2@test>", "INBOX", NULL, "F"); /* a reader flags it */
    mem_expunge(fx->srv, "INBOX", 6);                       /* w5 */
    add(fx, "INBOX", "w10", 0);                             /* UID 11 */
    size_t windowed;
    assert_int_equal(run_counting(fx, PULL, "listed in full in windows of 4 UIDs: 2 messages new or changed, 1 of 10 gone",
                                  &windowed),
                     MS_OK);
    assert_int_equal(windowed, 1);
    /* 8:11, 4:7, 1:3; twice: the deletion waits for the second pass */
    assert_int_equal(inbox_listings(fx, 4), 6);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 1);
    assert_string_equal(local_flags(fx, "INBOX", "<w2@test>"), "FS");
    assert_int_equal(local_count(fx, "INBOX", "<w5@test>"), 0);
    assert_int_equal(local_count(fx, "INBOX", "<w10@test>"), 1);
    assert_int_equal(local_count(fx, "INBOX", NULL), 10);
    assert_int_equal(folder_result(fx, "INBOX")->flagged, 1);
    assert_int_equal(folder_result(fx, "INBOX")->deleted, 1);
    assert_int_equal(folder_result(fx, "INBOX")->fetched, 1);
    assert_in_step(fx, "INBOX");
    mem_log_clear(fx->srv);
    assert_int_equal(run_counting(fx, PULL, "0 messages new or changed, 0 of 10 gone", &windowed), MS_OK);
    assert_int_equal(windowed, 1);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);
    assert_int_equal(folder_result(fx, "INBOX")->flagged + folder_result(fx, "INBOX")->deleted, 0);
    assert_in_step(fx, "INBOX");
}

/* Every message of INBOX changed on a server without modseqs: more than
 * a window of differences, so the windows are listed again and applied
 * in turn; each one below the top is asked for ahead (list_ahead) and
 * taken by the listing of that window, none dropped. */
static void full_windows_asked_ahead(void **state)
{
    struct fixture *fx = *state;
    ten_without_modseqs(fx);
    for (uint32_t uid = 1; uid <= 10; uid++)
        mem_set_flags(fx->srv, "INBOX", uid, FLAG_FLAGGED);
    size_t windowed;
    assert_int_equal(run_counting(fx, PULL, "more than a window changed: applied window by window", &windowed),
                     MS_OK);
    assert_int_equal(windowed, 1);
    assert_int_equal(fx->srv->ahead_taken, 2); /* 7:10 applied, 3:6 and 1:2 asked for ahead */
    assert_int_equal(fx->srv->ahead_dropped, 0);
    assert_int_equal(folder_result(fx, "INBOX")->flagged, 10);
    assert_in_step(fx, "INBOX");
}

/* 30 messages on a server without modseqs, windows of 8: four expunges in
 * four windows (13%, under max_delete's 50%) are applied: the guard weighs
 * them against the folder's 30 rows, not against the four rows compared
 * (which would be all of them). Fourteen more (54% of the 26 rows left,
 * never more than eight in a window) trip it: nothing deleted. */
static void full_listing_in_windows_guard(void **state)
{
    struct fixture *fx = *state;
    fx->srv->caps &= ~(unsigned)REMOTE_CHANGES;
    thirty_in_windows_of_eight(fx);
    for (uint32_t uid = 2; uid <= 30; uid += 8)
        mem_expunge(fx->srv, "INBOX", uid);
    run_ok(fx, PULL);
    assert_int_equal(local_count(fx, "INBOX", NULL), 26);
    assert_int_equal(folder_result(fx, "INBOX")->deleted, 4);
    assert_in_step(fx, "INBOX");
    for (uint32_t uid = 11; uid <= 26; uid++)
        mem_expunge(fx->srv, "INBOX", uid);
    assert_int_equal(run(fx, PULL), MS_EPARTIAL);
    assert_int_equal(local_count(fx, "INBOX", NULL), 26);
    assert_int_equal(state_of(fx, "INBOX").rows, 26);
}

/* ten_without_modseqs, then another client flags and reads every message. */
static void ten_all_changed_without_modseqs(struct fixture *fx)
{
    ten_without_modseqs(fx);
    struct mem_folder *f = mem_folder_find(fx->srv, "INBOX");
    for (size_t i = 0; i < f->n; i++)
        mem_set_flags(fx->srv, "INBOX", f->msgs[i].uid, FLAG_SEEN | FLAG_FLAGGED);
}

/* Whether e is the third listing (META) of INBOX since its last open: in
 * ten_all_changed_without_modseqs's pull, the second pass's top window. */
static bool third_inbox_listing(const struct mem_logentry *e)
{
    static int metas;
    if (e->op == MEM_OP_OPEN)
        metas = 0;
    return e->op == MEM_OP_META && strcmp(e->folder, "INBOX") == 0 && ++metas == 3;
}

/* Every message changed elsewhere and one expunged: more differences than
 * a window (4), so the first pass through the windows only counts them
 * (and weighs the expunge against the folder); then each window is listed
 * again, planned and applied in turn: no listing over the window, every
 * flag right, the expunge applied, nothing downloaded. */
static void full_listing_all_changed_in_windows(void **state)
{
    struct fixture *fx = *state;
    ten_all_changed_without_modseqs(fx);
    mem_expunge(fx->srv, "INBOX", 5); /* w4 */
    size_t again;
    assert_int_equal(run_counting(fx, PULL, "9 messages new or changed, 1 of 10 gone; more than a window changed: "
                                            "applied window by window",
                                  &again),
                     MS_OK);
    assert_int_equal(again, 1);
    inbox_listings(fx, 4); /* fails on a listing over the window */
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);
    assert_int_equal(local_count(fx, "INBOX", "<w4@test>"), 0);
    assert_int_equal(inbox_with_flags(fx, "FS"), 9);
    assert_int_equal(folder_result(fx, "INBOX")->deleted, 1);
    assert_in_step(fx, "INBOX");
    mem_log_clear(fx->srv);
    assert_int_equal(run_counting(fx, PULL, "0 messages new or changed, 0 of 9 gone\n", &again), MS_OK);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);
}

/* The same, the session dropped when the second window is listed again
 * (the top window applied): the folder's record is not saved, the next
 * run lists it again and completes it; nothing lost, nothing fetched. */
static void drop_at_second_full_window(void *ctx, const struct mem_logentry *e)
{
    struct fixture *fx = ctx;
    if (third_inbox_listing(e))
        fx->srv->faults.drop_at_op = 1; /* the next op: pass two's second window */
}

static void full_listing_all_changed_drop_in_second(void **state)
{
    struct fixture *fx = *state;
    ten_all_changed_without_modseqs(fx);
    fx->srv->on_op = drop_at_second_full_window;
    fx->srv->on_op_ctx = fx;
    assert_int_equal(run(fx, PULL), MS_ENET);
    fx->srv->on_op = NULL;
    assert_int_equal(inbox_with_flags(fx, "FS"), 4); /* the top window, 7:10 */
    mem_log_clear(fx->srv);
    run_ok(fx, PULL);
    assert_int_equal(inbox_with_flags(fx, "FS"), 10);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);
    assert_in_step(fx, "INBOX");
}

/* A message expunged between the two passes (after the count, while the
 * windows are listed again): the guard never weighed it, so it stays
 * until the next run, which deletes it. */
static void expunge_in_second_pass(void *ctx, const struct mem_logentry *e)
{
    struct fixture *fx = ctx;
    if (third_inbox_listing(e))
        mem_expunge(fx->srv, "INBOX", 2); /* w1, in the last window; the server's lock is held */
}

static void full_listing_all_changed_expunge_between_passes(void **state)
{
    struct fixture *fx = *state;
    ten_all_changed_without_modseqs(fx);
    fx->srv->on_op = expunge_in_second_pass;
    fx->srv->on_op_ctx = fx;
    run_ok(fx, PULL);
    fx->srv->on_op = NULL;
    assert_int_equal(local_count(fx, "INBOX", "<w1@test>"), 1);
    assert_int_equal(inbox_with_flags(fx, "FS"), 9);
    run_ok(fx, PULL);
    assert_int_equal(local_count(fx, "INBOX", "<w1@test>"), 0);
    assert_in_step(fx, "INBOX");
}

/* Another client expunges a message of a lower window after the open
 * counted it: the rows left and the new ones no longer make EXISTS, so
 * the folder is listed again in one piece (as an incremental listing in
 * doubt is); the message goes, nothing else does. */
static void expunge_below_after_the_open(void *ctx, const struct mem_logentry *e)
{
    struct fixture *fx = ctx;
    if (e->op == MEM_OP_OPEN && strcmp(e->folder, "INBOX") == 0)
        mem_expunge(fx->srv, "INBOX", 2); /* the server's lock is held: no call into it */
}

static void full_listing_in_windows_changed_between(void **state)
{
    struct fixture *fx = *state;
    ten_without_modseqs(fx);
    mem_expunge(fx->srv, "INBOX", 10);
    fx->srv->on_op = expunge_below_after_the_open;
    fx->srv->on_op_ctx = fx;
    size_t again;
    int rc = run_counting(fx, PULL, "listed again in one piece", &again);
    fx->srv->on_op = NULL;
    assert_int_equal(rc, MS_OK);
    assert_int_equal(again, 1);
    assert_int_equal(local_count(fx, "INBOX", "<w1@test>"), 0);
    assert_int_equal(local_count(fx, "INBOX", "<w9@test>"), 0);
    assert_int_equal(local_count(fx, "INBOX", NULL), 8);
    assert_in_step(fx, "INBOX");
}

/* A message skipped for max_size has no row though its UID is below the
 * recorded UIDNEXT. Its file reached the Maildir another way (the user
 * saved it); once max_size allows it, the resync compares the folder whole
 * (its files with no row among them), so the file is adopted, not
 * downloaded beside it. */
static void full_listing_in_windows_adopts_below_uidnext(void **state)
{
    struct fixture *fx = *state;
    fx->srv->caps &= ~(unsigned)REMOTE_CHANGES;
    ten_in_windows_of_four(fx);
    char big[4096];
    int n = snprintf(big, sizeof big, "From: a@example.org\nSubject: big\nMessage-ID: <big@test>\n\n");
    memset(big + n, 'x', 3000);
    big[n + 3000] = '\n';
    big[n + 3001] = '\0';
    uint32_t uid = mem_add(fx->srv, "Work", big, FLAG_SEEN, 0);
    for (int i = 0; i < 6; i++) { /* Work: 7 messages, the big one in the lowest window */
        char tag[8];
        snprintf(tag, sizeof tag, "k%d", i + 1);
        add(fx, "Work", tag, 0);
    }
    fx->acct.max_size = 1000;
    run_ok(fx, PULL);
    assert_int_equal(local_count(fx, "Work", "<big@test>"), 0);
    const struct mem_msg *m = server_msg(fx, "Work", "<big@test>");
    assert_int_equal(m->uid, uid);
    char path[512];
    snprintf(path, sizeof path, "%s/Work/cur/1700000000.saved.host:2,S", fx->maildir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < m->len; i++) /* saved with LF line ends, as a reader saves it */
        if (m->body[i] != '\r')
            fputc(m->body[i], f);
    fclose(f);
    fx->acct.max_size = 0;
    mem_log_clear(fx->srv);
    size_t whole;
    assert_int_equal(run_counting(fx, PULL, "compared whole", &whole), MS_OK);
    assert_int_equal(whole, 1);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);
    assert_int_equal(local_count(fx, "Work", "<big@test>"), 1);
    assert_in_step(fx, "Work");
}

/* How many rows of the folder are marked as placeholders. */
static size_t placeholder_rows(const struct fixture *fx, const char *folder)
{
    struct state *st = NULL;
    struct ms_error err;
    assert_int_equal(state_open(fx->state_path, &st, &err), MS_OK);
    struct state_folder f = {0};
    assert_int_equal(state_folder_get(st, folder, &f, &err), MS_OK);
    struct state_placeholder *v = NULL;
    size_t n = 0;
    assert_int_equal(state_placeholder_list(st, f.id, &v, &n, &err), MS_OK);
    state_placeholders_free(v, n);
    state_folder_free(&f);
    state_close(st);
    return n;
}

struct find_ctx {
    const char *needle;
    char name[256];
    size_t n;
};

static void find_content(void *ctx, const char *name, const char *content)
{
    struct find_ctx *c = ctx;
    if (strstr(content, c->needle)) {
        c->n++;
        snprintf(c->name, sizeof c->name, "%s", name);
    }
}

/* placeholders = yes: a message over max_size comes down as its header
 * and a note (no body fetched), recorded and never uploaded; flagged
 * locally, the next sync replaces it by the full message under the same
 * name, \Flagged kept and pushed. */
static struct mem_msg *server_msg(struct fixture *fx, const char *folder, const char *id);

/* A first pull killed midway leaves rows and no folder record, so the
 * next sync's push of the folder waits for its pull. When that pull holds
 * a deletion for the second pass (a delivered message expunged since),
 * the folder's record comes only in the second pass: the local flag
 * change must still go to the server in this run, not the next (found by
 * test_random_kills: "sync skips the push of a folder whose first pull
 * never finished"). */
static void deferred_push_after_a_held_pull(void **state)
{
    struct fixture *fx = *state;
    ten_in_windows_of_four(fx);
    fx->srv->faults.drop_after_bodies = 6;
    assert_int_equal(run(fx, PULL), MS_ENET);
    assert_int_equal(state_of(fx, "INBOX").last_sync, 0);
    assert_int_equal(local_count(fx, "INBOX", "<w9@test>"), 1);
    assert_int_equal(local_count(fx, "INBOX", "<w8@test>"), 1);
    struct find_ctx c = {.needle = "<w9@test>", .name = "", .n = 0};
    each_file(fx, "INBOX", find_content, &c);
    assert_int_equal(c.n, 1);
    char from[512], to[512];
    snprintf(from, sizeof from, "%s/INBOX/cur/%s", fx->maildir, c.name);
    snprintf(to, sizeof to, "%s/INBOX/cur/%.*s:2,FS", fx->maildir, (int)strcspn(c.name, ":"), c.name);
    assert_int_equal(rename(from, to), 0);
    mem_expunge(fx->srv, "INBOX", server_msg(fx, "INBOX", "<w8@test>")->uid);

    run_ok(fx, SYNC);
    assert_true(server_msg(fx, "INBOX", "<w9@test>")->flags & FLAG_FLAGGED);
    assert_int_equal(local_count(fx, "INBOX", "<w8@test>"), 0);
    assert_true(state_of(fx, "INBOX").last_sync > 0);
    assert_in_step(fx, "INBOX");
}

static void placeholder_then_flagged_and_replaced(void **state)
{
    struct fixture *fx = *state;
    fx->acct.max_size = 1000;
    fx->acct.placeholders = true;
    add(fx, "INBOX", "small", 0);
    char big[6000];
    int len = snprintf(big, sizeof big, "From: a@test\nSubject: big one\nMessage-ID: <big@test>\n\n");
    while (len < 5000)
        len += snprintf(big + len, sizeof big - (size_t)len, "the body of the big message, line by line\n");
    uint32_t uid = mem_add(fx->srv, "INBOX", big, FLAG_SEEN, 0);
    run_ok(fx, PULL);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 1); /* the small one */
    assert_int_equal(folder_result(fx, "INBOX")->placeholders, 1);
    struct find_ctx c = {.needle = "Subject: [placeholder] big one", .name = "", .n = 0};
    each_file(fx, "INBOX", find_content, &c);
    assert_int_equal(c.n, 1);
    assert_non_null(strstr(c.name, ":2,S"));
    assert_int_equal(placeholder_rows(fx, "INBOX"), 1);
    assert_int_equal(state_of(fx, "INBOX").rows, 2);

    /* resync: nothing fetched, nothing uploaded */
    mem_log_clear(fx->srv);
    run_ok(fx, SYNC);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);
    assert_int_equal(mem_count_id(fx->srv, "INBOX", "<big@test>"), 1);
    assert_int_equal(local_count(fx, "INBOX", NULL), 2);

    /* flagged locally: replaced by the full message, same name */
    char from[512], to[512];
    snprintf(from, sizeof from, "%s/INBOX/cur/%s", fx->maildir, c.name);
    snprintf(to, sizeof to, "%s/INBOX/cur/%.*s:2,FS", fx->maildir, (int)strcspn(c.name, ":"), c.name);
    assert_int_equal(rename(from, to), 0);
    mem_log_clear(fx->srv);
    run_ok(fx, SYNC);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 1);
    assert_int_equal(folder_result(fx, "INBOX")->replaced, 1);
    struct find_ctx full = {.needle = "the body of the big message", .name = "", .n = 0};
    each_file(fx, "INBOX", find_content, &full);
    assert_int_equal(full.n, 1);
    assert_string_equal(full.name, strrchr(to, '/') + 1);
    assert_int_equal(placeholder_rows(fx, "INBOX"), 0);
    assert_true(mem_msg_find(mem_folder(fx->srv, "INBOX"), uid)->flags & FLAG_FLAGGED);
    assert_in_step(fx, "INBOX");
}

/* The third body of five fails (kind): the others are delivered, the
 * folder is reported failed, and the next run fetches only the missing
 * one. */
static void nth_fetch_fails(struct fixture *fx, enum mem_body_fault kind)
{
    uint32_t uid[5];
    for (int i = 0; i < 5; i++) {
        char tag[8];
        snprintf(tag, sizeof tag, "m%d", i);
        uid[i] = add(fx, "INBOX", tag, 0);
    }
    fx->srv->faults.fail_body = 3;
    fx->srv->faults.body_kind = kind;
    assert_int_equal(run(fx, PULL), MS_EPARTIAL);
    const struct engine_folder_result *r = folder_result(fx, "INBOX");
    assert_int_equal(r->status, MS_EPARTIAL);
    assert_non_null(r->error);
    assert_int_equal(r->failed, 1);
    assert_int_equal(r->fetched, 4);
    assert_int_equal(local_count(fx, "INBOX", NULL), 4);
    assert_int_equal(local_count(fx, "INBOX", "<m2@test>"), 0);
    struct state_view v = state_of(fx, "INBOX");
    assert_int_equal(v.rows, 4);
    assert_int_equal(v.pending, 0);

    mem_log_clear(fx->srv);
    run_ok(fx, PULL);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 1);
    assert_int_equal(fx->srv->log[mem_log_first(fx->srv, MEM_OP_BODY, NULL)].n, uid[2]);
    assert_in_step(fx, "INBOX");
}

static void nth_fetch_fails_with_an_error(void **state)
{
    nth_fetch_fails(*state, MEM_BODY_ERROR);
}

static void nth_fetch_is_missing(void **state)
{
    nth_fetch_fails(*state, MEM_BODY_MISSING);
}

/* The session drops in the middle of the fourth body: the three before
 * are delivered once, the run fails (MS_ENET); the next run brings the
 * rest, fetching none of the three again. */
static void session_drops_mid_folder(void **state)
{
    struct fixture *fx = *state;
    for (int i = 0; i < 6; i++) {
        char tag[8];
        snprintf(tag, sizeof tag, "m%d", i);
        add(fx, "INBOX", tag, i % 2 ? FLAG_SEEN : 0);
    }
    add(fx, "Work", "w0", 0);
    add(fx, "Work", "w1", 0);
    fx->srv->faults.drop_after_bodies = 3;
    assert_int_equal(run(fx, PULL), MS_ENET);
    assert_int_equal(local_count(fx, "INBOX", NULL), 3);
    for (int i = 0; i < 3; i++) {
        char id[32];
        snprintf(id, sizeof id, "<m%d@test>", i);
        assert_int_equal(local_count(fx, "INBOX", id), 1);
    }
    struct state_view v = state_of(fx, "INBOX");
    assert_int_equal(v.rows, 3);
    assert_int_equal(v.pending, 0);
    assert_int_equal(v.last_sync, 0); /* the folder is not complete */

    mem_log_clear(fx->srv);
    run_ok(fx, PULL);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, "INBOX"), 3);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, "Work"), 2);
    assert_in_step(fx, "INBOX");
    assert_in_step(fx, "Work");
    assert_string_equal(local_flags(fx, "INBOX", "<m1@test>"), "S");
}

/* The session drops at the server's Nth operation, for every N a pull
 * of two folders makes: whatever was cut, the next run completes and
 * nothing is doubled or lost. */
static void session_drops_at_every_op(void **state)
{
    struct fixture *fx = *state;
    add(fx, "INBOX", "i0", 0);
    add(fx, "INBOX", "i1", FLAG_SEEN);
    add(fx, "Work", "w0", 0);
    /* how many ops a clean first pull makes, on a copy of the server */
    unsigned nops = 0;
    for (unsigned n = 1;; n++) {
        /* each round from scratch: no Maildir, no state */
        unit_rmtree(fx->maildir);
        char dir[160];
        snprintf(dir, sizeof dir, "%s/state", fx->dir);
        unit_rmtree(dir);
        fx->srv->ops = 0;
        fx->srv->faults.drop_at_op = n;
        int rc = run(fx, PULL);
        bool fired = fx->srv->faults.drop_at_op == 0;
        fx->srv->faults.drop_at_op = 0;
        if (!fired) {
            assert_int_equal(rc, MS_OK);
            nops = n - 1;
            break;
        }
        assert_int_not_equal(rc, MS_OK);
        run_ok(fx, PULL);
        assert_in_step(fx, "INBOX");
        assert_in_step(fx, "Work");
        assert_true(n < 200);
    }
    assert_true(nops >= 4); /* it did try several cut points */
}

/* A push to a server that sends no APPENDUID: the upload is recorded
 * anyway (found again by size and Message-ID), and the next sync neither
 * uploads it again nor downloads a second local copy. */
static void push_without_appenduid_of(struct fixture *fx, const char *message_id)
{
    add(fx, "INBOX", "i0", 0);
    run_ok(fx, PULL); /* a folder is pushed only once a pull completed */
    fx->srv->faults.no_appenduid = true;
    put_local(fx, "INBOX", "1700000000.M1P1.here", "S", message_id);
    mem_log_clear(fx->srv);
    run_ok(fx, SYNC);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, "INBOX"), 1);
    assert_int_equal(mem_count_id(fx->srv, "INBOX", message_id), 1);
    assert_int_equal(folder_result(fx, "INBOX")->uploaded, 1);
    assert_int_equal(mem_folder(fx->srv, "INBOX")->msgs[1].flags, FLAG_SEEN);
    assert_in_step(fx, "INBOX");

    mem_log_clear(fx->srv);
    run_ok(fx, SYNC);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 0);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);
    assert_int_equal(mem_count_id(fx->srv, "INBOX", message_id), 1);
    assert_int_equal(local_count(fx, "INBOX", message_id), 1);
    assert_in_step(fx, "INBOX");
}

static void push_without_appenduid(void **state)
{
    push_without_appenduid_of(*state, "<local@test>");
}

/* The two Message-IDs the old parsers disagreed on (issue 15): one with a
 * tab inside, one over RFC 5322's 998 bytes (no value: matched by size). */
static void push_without_appenduid_tab_in_message_id(void **state)
{
    push_without_appenduid_of(*state, "<lo\tcal@test>");
}

static void push_without_appenduid_long_message_id(void **state)
{
    char id[1100];
    memset(id, 'x', sizeof id - 1);
    id[0] = '<';
    memcpy(id + sizeof id - 7, "@test>", 7);
    push_without_appenduid_of(*state, id);
}

/* The folder's UIDVALIDITY changes between its listing and the fetch of
 * the bodies (after_bodies 0) or in the middle of it, the server ending
 * the session (as Dovecot does) or going on under the new numbering (an
 * old UID names another message): after the next run, nothing is doubled
 * or lost. */
static void uidvalidity_changes_before_fetch(struct fixture *fx, bool goes_on, unsigned after_bodies)
{
    add(fx, "INBOX", "u0", 0);
    add(fx, "INBOX", "u1", FLAG_SEEN);
    add(fx, "INBOX", "u2", FLAG_FLAGGED);
    add(fx, "INBOX", "u3", 0);
    fx->srv->faults.stale_session_goes_on = goes_on;
    fx->srv->faults.uidvalidity_after_bodies = after_bodies;
    snprintf(fx->srv->faults.uidvalidity_after_listing, sizeof fx->srv->faults.uidvalidity_after_listing,
             "INBOX");
    run(fx, PULL);
    assert_int_equal(fx->srv->faults.uidvalidity_after_listing[0], '\0'); /* it fired */
    run_ok(fx, PULL);
    run_ok(fx, PULL);
    assert_in_step(fx, "INBOX");
    assert_string_equal(local_flags(fx, "INBOX", "<u1@test>"), "S");
    assert_string_equal(local_flags(fx, "INBOX", "<u2@test>"), "F");
    struct state_view v = state_of(fx, "INBOX");
    assert_int_equal(v.uidvalidity, mem_folder(fx->srv, "INBOX")->uidvalidity);
}

static void uidvalidity_changes_server_ends_session(void **state)
{
    uidvalidity_changes_before_fetch(*state, false, 0);
}

static void uidvalidity_changes_server_goes_on(void **state)
{
    uidvalidity_changes_before_fetch(*state, true, 0);
}

/* The session ends after two bodies of a first pull, the UIDVALIDITY
 * having changed (Dovecot: "BYE Mailbox UIDVALIDITY changed"; or a drop,
 * and the mailbox recreated before the next run). */
static void uidvalidity_changes_mid_fetch_server_ends_session(void **state)
{
    uidvalidity_changes_before_fetch(*state, false, 2);
}



/* ---- a kill at each step of the delivery journal ---- */

static unsigned kill_at, steps_seen;

static void kill_hook(enum journal_step step)
{
    (void)step;
    if (++steps_seen == kill_at)
        _exit(77);
}

/* A child runs a pull and dies (_exit) at the journal's kth step, for
 * every k the pull goes through; after each, a normal run in the parent
 * finds every message exactly once locally and in the state. */
static void kill_at_each_journal_step(void **state)
{
    struct fixture *fx = *state;
    for (int i = 0; i < 4; i++) {
        char tag[8];
        snprintf(tag, sizeof tag, "k%d", i);
        add(fx, "INBOX", tag, i == 2 ? FLAG_SEEN : 0);
    }
    unsigned k;
    for (k = 1; k < 100; k++) {
        unit_rmtree(fx->maildir);
        char dir[160];
        snprintf(dir, sizeof dir, "%s/state", fx->dir);
        unit_rmtree(dir);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            kill_at = k;
            steps_seen = 0;
            journal_step_hook = kill_hook;
            struct engine_result res;
            int rc = engine_pull(&fx->acct, &fx->opt, &res);
            _exit(rc == MS_OK ? 0 : 1);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 0)
            break; /* the pull went through every step: done */
        assert_int_equal(WEXITSTATUS(status), 77);
        run_ok(fx, PULL);
        assert_in_step(fx, "INBOX");
        assert_string_equal(local_flags(fx, "INBOX", "<k2@test>"), "S");
    }
    /* SYNCED, ROWS, RECORDED, one RENAMED per message, PLACED, CONFIRMED */
    assert_true(k >= 4 + 5);
}

/* ---- a kill at each step of a server move (moves_server.c) ---- */

extern void (*moves_server_step_hook)(int step);
static int move_kill_at;

static void move_kill_hook(int step)
{
    if (step == move_kill_at)
        _exit(77);
}

/* The inode of the local file of folder with Message-ID id (0: none). */
struct find_ino {
    const struct fixture *fx;
    const char *folder, *id;
    ino_t ino;
};

static void find_ino(void *ctx, const char *name, const char *content)
{
    struct find_ino *f = ctx;
    char want[128], path[1024];
    snprintf(want, sizeof want, "Message-ID: %s\n", f->id);
    if (!strstr(content, want))
        return;
    struct stat st;
    for (int sub = 0; sub < 2; sub++) {
        snprintf(path, sizeof path, "%s/%s/%s/%s", f->fx->maildir, f->folder, sub ? "new" : "cur", name);
        if (stat(path, &st) == 0)
            f->ino = st.st_ino;
    }
}

static ino_t local_ino(const struct fixture *fx, const char *folder, const char *id)
{
    struct find_ino f = {fx, folder, id, 0};
    each_file(fx, folder, find_ino, &f);
    return f.ino;
}

/* Another client moves 20 of A's 25 messages to B. A child pulls and dies
 * (_exit) after step k of the move (1 journalled, 2 renamed, 3 recorded;
 * 4: no kill). The next sync finds each message once locally, the moved
 * ones in B in the same files, downloads no body, uploads nothing, and
 * neither the push nor the pull guard sees a deletion (without the move
 * journal's recovery, A's push would take the renamed files for 20 local
 * deletions and stop at the guard). */
static void kill_at_each_server_move_step(void **state)
{
    struct fixture *fx = *state;
    for (int k = 1; k <= 4; k++) {
        mem_install(NULL);
        mem_server_free(fx->srv);
        fx->srv = mem_server_new();
        mem_install(fx->srv);
        unit_rmtree(fx->maildir);
        char dir[160];
        snprintf(dir, sizeof dir, "%s/state", fx->dir);
        unit_rmtree(dir);
        uint32_t uids[25];
        for (int i = 0; i < 25; i++) {
            char tag[8];
            snprintf(tag, sizeof tag, "mv%d", i);
            uids[i] = add(fx, "A", tag, i == 1 ? FLAG_SEEN : 0);
        }
        add(fx, "B", "there", 0);
        run_ok(fx, PULL);
        ino_t i0 = local_ino(fx, "A", "<mv0@test>"), i1 = local_ino(fx, "A", "<mv1@test>");
        assert_true(i0 && i1);
        for (int i = 0; i < 20; i++)
            mem_move(fx->srv, "A", uids[i], "B");
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            move_kill_at = k;
            moves_server_step_hook = move_kill_hook;
            struct engine_result res;
            int rc = engine_pull(&fx->acct, &fx->opt, &res);
            _exit(rc == MS_OK ? 0 : 1);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), k <= 3 ? 77 : 0);
        mem_log_clear(fx->srv);
        run_ok(fx, SYNC);
        if (mem_log_count(fx->srv, MEM_OP_BODY, NULL) || mem_log_count(fx->srv, MEM_OP_APPEND, NULL)) {
            dump_log(fx);
            fail_msg("kill after step %d: the rerun downloaded or uploaded a message", k);
        }
        assert_in_step(fx, "A");
        assert_in_step(fx, "B");
        assert_int_equal(local_count(fx, "A", NULL), 5);
        assert_int_equal(local_count(fx, "B", NULL), 21);
        assert_true(local_ino(fx, "B", "<mv0@test>") == i0);
        assert_true(local_ino(fx, "B", "<mv1@test>") == i1);
        assert_string_equal(local_flags(fx, "B", "<mv1@test>"), "S");
        /* and the state knows them: a further sync changes nothing */
        mem_log_clear(fx->srv);
        run_ok(fx, SYNC);
        assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);
        assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 0);
        assert_int_equal(folder_result(fx, "B")->fetched, 0);
    }
}

/* ---- Gmail labels: one download, one inode per message id ---- */

/* The server gives each message a Gmail id (REMOTE_LABELS); three of A's
 * messages show in B too. A child pulls and dies at the journal's kth
 * step (A's downloads, then B's links), for every k; the parent's rerun
 * leaves each message once in each folder, B's file the same inode as
 * A's, and downloads nothing for B. Without REMOTE_LABELS (last round)
 * B downloads its own copies. */
static void gmail_links_kill_at_each_step(void **state)
{
    struct fixture *fx = *state;
    unsigned k;
    for (k = 1; k < 100; k++) {
        mem_install(NULL);
        mem_server_free(fx->srv);
        fx->srv = mem_server_new();
        fx->srv->caps |= REMOTE_OBJECTID | REMOTE_LABELS;
        mem_install(fx->srv);
        unit_rmtree(fx->maildir);
        char dir[160];
        snprintf(dir, sizeof dir, "%s/state", fx->dir);
        unit_rmtree(dir);
        for (int i = 0; i < 4; i++) {
            char tag[8];
            snprintf(tag, sizeof tag, "g%d", i);
            uint32_t uid = add(fx, "A", tag, i == 1 ? FLAG_SEEN : 0);
            if (i < 3)
                mem_label(fx->srv, "A", uid, "B");
        }
        mem_set_flags(fx->srv, "B", 1, FLAG_FLAGGED);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            kill_at = k;
            steps_seen = 0;
            journal_step_hook = kill_hook;
            struct engine_result res;
            int rc = engine_pull(&fx->acct, &fx->opt, &res);
            _exit(rc == MS_OK ? 0 : 1);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        bool done = WEXITSTATUS(status) == 0;
        if (!done)
            assert_int_equal(WEXITSTATUS(status), 77);
        mem_log_clear(fx->srv);
        run_ok(fx, PULL);
        assert_in_step(fx, "A");
        assert_in_step(fx, "B");
        if (mem_log_count(fx->srv, MEM_OP_BODY, "B")) {
            dump_log(fx);
            fail_msg("kill at step %u: B's messages were downloaded, not linked", k);
        }
        for (int i = 0; i < 3; i++) {
            char id[16];
            snprintf(id, sizeof id, "<g%d@test>", i);
            ino_t a = local_ino(fx, "A", id), b = local_ino(fx, "B", id);
            assert_true(a && a == b);
        }
        assert_string_equal(local_flags(fx, "B", "<g0@test>"), "F");
        assert_string_equal(local_flags(fx, "A", "<g0@test>"), "");
        assert_string_equal(local_flags(fx, "B", "<g1@test>"), "S");
        if (done)
            break;
    }
    /* killed at A's 9 steps (4 downloads) and B's 8 (3 links): the last
     * round ran through */
    assert_int_equal(k, 9 + 8 + 1);
    /* the control: no labels, B's copies are downloaded */
    mem_install(NULL);
    mem_server_free(fx->srv);
    fx->srv = mem_server_new();
    mem_install(fx->srv);
    unit_rmtree(fx->maildir);
    char dir[160];
    snprintf(dir, sizeof dir, "%s/state", fx->dir);
    unit_rmtree(dir);
    uint32_t uid = add(fx, "A", "c0", 0);
    mem_label(fx->srv, "A", uid, "B");
    run_ok(fx, PULL);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, "B"), 1);
    assert_true(local_ino(fx, "A", "<c0@test>") != local_ino(fx, "B", "<c0@test>"));
}

/* Cut a local file of the folder to 10 bytes (a placeholder, a damaged
 * file: not the whole message). */
static void cut_file(void *ctx, const char *name, const char *content)
{
    (void)content;
    const char *dir = ctx;
    char path[1024];
    for (int sub = 0; sub < 2; sub++) {
        snprintf(path, sizeof path, "%s/%s/%s", dir, sub ? "new" : "cur", name);
        if (access(path, F_OK) == 0)
            assert_int_equal(truncate(path, 10), 0);
    }
}

/* A file that cannot be the whole message (shorter than half its size)
 * is never linked: the other folder downloads the message. */
static void gmail_links_not_to_a_short_file(void **state)
{
    struct fixture *fx = *state;
    fx->srv->caps |= REMOTE_OBJECTID | REMOTE_LABELS;
    uint32_t uid = add(fx, "A", "short", 0);
    run_ok(fx, PULL);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/A", fx->maildir);
    each_file(fx, "A", cut_file, dir);
    mem_label(fx->srv, "A", uid, "B");
    mem_log_clear(fx->srv);
    run_ok(fx, PULL);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, "B"), 1);
    assert_in_step(fx, "B");
    assert_true(local_ino(fx, "B", "<short@test>") != local_ino(fx, "A", "<short@test>"));
}

/* ---- account-wide planning ---- */

struct watch_local {
    const struct fixture *fx;
    size_t listings;      /* folder listings seen (OPEN, OPEN_INC) */
    long deleted_before;  /* the log index of the first listing that came
                             after A's local copy was deleted, or -1 */
};

/* At each folder listing: is A's local copy of the moved message still
 * there (no local deletion applied yet)? */
static void on_op(void *ctx, const struct mem_logentry *e)
{
    struct watch_local *w = ctx;
    if (e->op != MEM_OP_OPEN && e->op != MEM_OP_OPEN_INC)
        return;
    w->listings++;
    /* Issue 16: the move itself renames the file from A into B during B's
     * pull; only a copy gone from both is a deletion. */
    if (w->deleted_before < 0 &&
        local_count(w->fx, "A", "<moved@test>") + local_count(w->fx, "B", "<moved@test>") == 0)
        w->deleted_before = (long)w->fx->srv->nlog - 1;
}

/* A message moves on the server from folder A to folder B: in one run,
 * the deletion in A and the arrival in B must be seen together, so every
 * folder's listing comes before any local deletion is applied (then the
 * identity work can take the arrival for the same message). Account-wide
 * planning (issue 15, point 3; main's ef64966, its first step); this test
 * fails on the engine before it. */
static void move_between_folders_in_one_run(struct fixture *fx, bool modseqs)
{
    if (!modseqs)
        fx->srv->caps &= ~(unsigned)REMOTE_CHANGES; /* every listing full, its rows brief */
    uint32_t uid = add(fx, "A", "moved", FLAG_SEEN);
    add(fx, "A", "stays", 0);
    mem_folder(fx->srv, "B");
    run_ok(fx, PULL);
    assert_int_equal(local_count(fx, "A", "<moved@test>"), 1);

    mem_move(fx->srv, "A", uid, "B");
    struct watch_local w = {.fx = fx, .listings = 0, .deleted_before = -1};
    fx->srv->on_op = on_op;
    fx->srv->on_op_ctx = &w;
    mem_log_clear(fx->srv);
    run_ok(fx, PULL);
    fx->srv->on_op = NULL;
    if (w.deleted_before >= 0) {
        dump_log(fx);
        fail_msg("folder A's local deletion was applied before the listing at log entry %ld", w.deleted_before);
    }
    assert_true(w.listings >= 2); /* both folders were listed (A again by the deletions' pass) */
    assert_int_equal(local_count(fx, "A", "<moved@test>"), 0);
    assert_in_step(fx, "A");
    assert_in_step(fx, "B");
    /* renamed, not downloaded again */
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);
    assert_int_equal(local_count(fx, "B", "<moved@test>"), 1);
}

static void move_between_folders_planned_in_one_run(void **state)
{
    move_between_folders_in_one_run(*state, true);
}

/* The same on a server without modseqs (no CONDSTORE: Microsoft 365):
 * the full listing's rows are brief, the vanished row's identity is read
 * by its UID. */
static void move_between_folders_without_modseqs(void **state)
{
    move_between_folders_in_one_run(*state, false);
}

/* ------------------------------------------------------------------ */
/* adoption of a Maildir another tool filled */

/* getmail wrote each message with Return-Path, Delivered-To and Received
 * on top (its own Return-Path dropped): no size of the file is the
 * server's, so tier 1 leaves them; one more FETCH (of Date and From, only
 * for those) pairs them by unique Message-ID. No body moves either way. */
static void adopt_getmail_maildir_by_date_and_from(void **state)
{
    struct fixture *fx = *state;
    static const char *const sub[] = {"", "/INBOX", "/INBOX/cur", "/INBOX/new", "/INBOX/tmp"};
    for (size_t i = 0; i < 5; i++) {
        char dir[256];
        snprintf(dir, sizeof dir, "%s%s", fx->maildir, sub[i]);
        assert_true(mkdir(dir, 0700) == 0 || errno == EEXIST);
    }
    for (int i = 0; i < 3; i++) {
        char body[512], path[512];
        const char *rest = "From: B <b@x>\nDate: Tue, 14 Nov 2023 22:13:1%d +0000\nMessage-ID: <g%d@x>\n"
                           "Subject: s\n\nbody %d\n";
        char lf[256];
        snprintf(lf, sizeof lf, rest, i, i, i);
        /* the server's copy: its own Return-Path on top, CRLF */
        size_t k = (size_t)snprintf(body, sizeof body, "Return-Path: <b@x>\r\n");
        for (const char *p = lf; *p; p++) {
            if (*p == '\n')
                body[k++] = '\r';
            body[k++] = *p;
        }
        body[k] = '\0';
        mem_add(fx->srv, "INBOX", body, FLAG_SEEN, 1700000000 + i);
        snprintf(path, sizeof path, "%s/INBOX/cur/17000000%02d.P%d.host:2,S", fx->maildir, i, i);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fprintf(f, "Return-Path: <b@x>\nDelivered-To: me@x\nReceived: from srv by getmail%s; %d\n%s",
                i ? " msgid:1234" : "", i, lf);
        fclose(f);
    }
    run_ok(fx, SYNC);
    if (mem_log_count(fx->srv, MEM_OP_BODY, NULL) || mem_log_count(fx->srv, MEM_OP_APPEND, NULL))
        dump_log(fx);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 0);
    /* the Message-IDs, then Date and From: two round trips */
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_IDENTITY, "INBOX"), 2);
    assert_int_equal(local_count(fx, "INBOX", NULL), 3);
    assert_int_equal(state_of(fx, "INBOX").rows, 3);
}

/* ------------------------------------------------------------------ */
/* local moves between folders (moves_local.c) */

/* Move the one local file of folder `from` with Message-ID id into folder
 * `to`'s cur/: under its name (newname NULL, as notmuch does) or a new
 * one (as mutt does, written anew: link + unlink), with the info letters
 * `letters`. */
static void move_local_with(const struct fixture *fx, const char *from, const char *want, const char *to,
                            const char *newname, const char *letters)
{
    char found[1024] = "";
    for (int sub = 0; sub < 2 && !found[0]; sub++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s/%s", fx->maildir, from, sub ? "new" : "cur");
        DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d)) && !found[0]) {
            if (de->d_name[0] == '.')
                continue;
            char path[1024], buf[16384];
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            int fd = open(path, O_RDONLY);
            assert_true(fd >= 0);
            ssize_t n = read(fd, buf, sizeof buf - 1);
            close(fd);
            buf[n > 0 ? n : 0] = '\0';
            if (strstr(buf, want))
                snprintf(found, sizeof found, "%s", path);
        }
        if (d)
            closedir(d);
    }
    assert_true(found[0]);
    const char *base = strrchr(found, '/') + 1;
    char uniq[512], to_path[1200];
    snprintf(uniq, sizeof uniq, "%.*s", (int)strcspn(base, ":"), base);
    snprintf(to_path, sizeof to_path, "%s/%s/cur/%s:2,%s", fx->maildir, to, newname ? newname : uniq, letters);
    assert_int_equal(rename(found, to_path), 0);
}

static void move_local(const struct fixture *fx, const char *from, const char *id, const char *to,
                       const char *newname, const char *letters)
{
    char want[256];
    snprintf(want, sizeof want, "Message-ID: %s\n", id);
    move_local_with(fx, from, want, to, newname, letters);
}

/* The server's message with Message-ID id in folder (exactly one). */
static struct mem_msg *server_msg(struct fixture *fx, const char *folder, const char *id)
{
    struct mem_folder *f = mem_folder_find(fx->srv, folder);
    assert_non_null(f);
    assert_int_equal(mem_count_id(fx->srv, folder, id), 1);
    char want[256];
    snprintf(want, sizeof want, "Message-ID: %s\r\n", id);
    for (size_t i = 0; i < f->n; i++)
        if (strstr(f->msgs[i].body, want))
            return &f->msgs[i];
    fail_msg("%s: no %s", folder, id);
    return NULL;
}

/* A message of A with a keyword and its own INTERNALDATE. */
static uint32_t add_dated(struct fixture *fx, const char *folder, const char *tag, unsigned flags, const char *kw)
{
    char body[512];
    snprintf(body, sizeof body, "From: a@example.org\nSubject: %s\nMessage-ID: <%s@test>\n\nThe body of %s.\n", tag,
             tag, tag);
    uint32_t uid = mem_add(fx->srv, folder, body, flags, 1700000000);
    struct mem_msg *m = mem_msg_find(mem_folder_find(fx->srv, folder), uid);
    if (kw)
        m->keywords = strdup(kw);
    return uid;
}

/* A file moved from A to B: one UID MOVE (or COPY + EXPUNGE without
 * MOVE), no upload, the keyword, INTERNALDATE and the new local flag on
 * the server's message in B, each message once on each side. */
static void local_move_is_a_server_move(struct fixture *fx, bool keep_name, bool has_move, enum run_kind k)
{
    if (!has_move)
        fx->srv->caps &= ~(unsigned)REMOTE_MOVE;
    add_dated(fx, "A", "moved", FLAG_SEEN, "$label1");
    add(fx, "A", "stays", 0);
    add(fx, "B", "there", 0);
    run_ok(fx, SYNC);
    move_local(fx, "A", "<moved@test>", "B", keep_name ? NULL : "1790000000.M1P1.mutt", "FS");
    mem_log_clear(fx->srv);
    run_ok(fx, k);
    if (mem_log_count(fx->srv, MEM_OP_APPEND, NULL) != 0)
        dump_log(fx);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 0);
    assert_int_equal(mem_log_count(fx->srv, has_move ? MEM_OP_MOVE : MEM_OP_COPY, "A"), 1);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);
    assert_int_equal(mem_count_id(fx->srv, "A", "<moved@test>"), 0);
    struct mem_msg *m = server_msg(fx, "B", "<moved@test>");
    assert_string_equal(m->keywords, "$label1");
    assert_int_equal(m->internaldate, 1700000000);
    assert_int_equal(m->flags, FLAG_SEEN | FLAG_FLAGGED);
    assert_in_step(fx, "A");
    assert_in_step(fx, "B");
    /* and nothing more to do */
    mem_log_clear(fx->srv);
    run_ok(fx, SYNC);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 0);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_EXPUNGE, NULL), 0);
    assert_in_step(fx, "A");
    assert_in_step(fx, "B");
}

static void local_move_by_name_push(void **state)
{
    local_move_is_a_server_move(*state, true, true, PUSH);
}

static void local_move_by_new_name_sync(void **state)
{
    local_move_is_a_server_move(*state, false, true, SYNC);
}

static void local_move_without_move_push(void **state)
{
    local_move_is_a_server_move(*state, false, false, PUSH);
}

static void local_move_without_move_sync(void **state)
{
    local_move_is_a_server_move(*state, true, false, SYNC);
}

/* A placeholder moved to another folder under a new name, on a server
 * that can neither move nor expunge exactly: the move cannot be done, and
 * the placeholder is not the message: its message stays on the server
 * (not expunged, not flagged \Deleted), nothing is uploaded, at every run. */
static void placeholder_move_held_without_move(void **state)
{
    struct fixture *fx = *state;
    fx->acct.max_size = 1000;
    fx->acct.placeholders = true;
    fx->srv->caps &= ~(unsigned)(REMOTE_MOVE | REMOTE_EXACT);
    char big[6000];
    int len = snprintf(big, sizeof big, "From: a@test\nSubject: big one\nMessage-ID: <big@test>\n\n");
    while (len < 5000)
        len += snprintf(big + len, sizeof big - (size_t)len, "the body of the big message, line by line\n");
    mem_add(fx->srv, "A", big, FLAG_SEEN, 0);
    add(fx, "B", "there", 0);
    run_ok(fx, SYNC);
    assert_int_equal(placeholder_rows(fx, "A"), 1);
    move_local(fx, "A", "<big@test>", "B", "1790000000.M1P1.mutt", "S");
    for (int round = 0; round < 2; round++) {
        mem_log_clear(fx->srv);
        run_ok(fx, SYNC);
        assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 0);
        assert_int_equal(mem_log_count(fx->srv, MEM_OP_EXPUNGE, NULL), 0);
        assert_int_equal(mem_count_id(fx->srv, "A", "<big@test>"), 1);
        assert_false(server_msg(fx, "A", "<big@test>")->flags & FLAG_DELETED); /* nor marked for deletion */
        assert_int_equal(mem_count_id(fx->srv, "B", "<big@test>"), 0);
        assert_int_equal(local_count(fx, "B", NULL), 2);
    }
}

/* Moves are counted where users see them (struct engine_folder_result,
 * shown by the summary and --json): a server move as `moved` in the
 * folder it came into, a local move as `moved_on_server` there; neither
 * is a download, upload or deletion. A dry run counts what it would do. */
static void moves_are_counted(void **state)
{
    struct fixture *fx = *state;
    uint32_t uid = add(fx, "A", "srvmove", FLAG_SEEN);
    add_dated(fx, "A", "locmove", FLAG_SEEN, NULL);
    add(fx, "A", "stays", 0);
    add(fx, "B", "there", 0);
    run_ok(fx, SYNC);

    /* another client moves one message from A to B on the server */
    mem_move(fx->srv, "A", uid, "B");
    for (int dry = 1; dry >= 0; dry--) {
        fx->opt.dry_run = dry;
        run_ok(fx, PULL);
        const struct engine_folder_result *a = folder_result(fx, "A"), *b = folder_result(fx, "B");
        assert_int_equal(b->moved, 1);
        assert_int_equal(b->fetched, 0);
        assert_int_equal(a->moved + a->deleted + a->fetched, 0);
        assert_int_equal(a->moved_on_server + b->moved_on_server, 0);
    }
    run_ok(fx, PULL); /* nothing moves twice */
    assert_int_equal(folder_result(fx, "B")->moved, 0);

    /* a mail reader moves one file from A to B */
    move_local(fx, "A", "<locmove@test>", "B", "1790000000.M1P1.mutt", "S");
    for (int dry = 1; dry >= 0; dry--) {
        fx->opt.dry_run = dry;
        run_ok(fx, SYNC);
        const struct engine_folder_result *a = folder_result(fx, "A"), *b = folder_result(fx, "B");
        assert_int_equal(b->moved_on_server, 1);
        assert_int_equal(b->uploaded, 0);
        assert_int_equal(a->moved_on_server + a->pushed_deleted + a->uploaded, 0);
        assert_int_equal(a->moved + b->moved, 0);
    }
    run_ok(fx, SYNC);
    assert_int_equal(folder_result(fx, "B")->moved_on_server, 0);
    assert_int_equal(mem_count_id(fx->srv, "B", "<locmove@test>"), 1);
    assert_in_step(fx, "A");
    assert_in_step(fx, "B");
}

/* A dry run counts a server expunge in its folder's `deleted`, as the
 * real run does: the engine holds such a deletion for a possible move
 * (moves_server.c) and reports it at the run's end, and the count went
 * with it (the summary said 0 deleted while the plan listed one). */
static void dry_run_counts_expunges(void **state)
{
    struct fixture *fx = *state;
    uint32_t uid = add(fx, "A", "gone", 0);
    add(fx, "A", "stays", 0);
    add(fx, "A", "stays2", 0);
    run_ok(fx, SYNC);
    mem_expunge(fx->srv, "A", uid);
    for (int dry = 1; dry >= 0; dry--) {
        fx->opt.dry_run = dry;
        run_ok(fx, PULL);
        assert_int_equal(folder_result(fx, "A")->deleted, 1);
    }
}

/* Moving 20 of a folder's 25 messages (80%, over max_delete) elsewhere is
 * no mass deletion, also when the source folder's push comes first (A
 * before B); the same share really deleted still trips the guard. */
static void local_moves_do_not_trip_the_guard(void **state)
{
    struct fixture *fx = *state;
    char tag[16], id[32];
    for (int i = 0; i < 25; i++) {
        snprintf(tag, sizeof tag, "m%d", i);
        add(fx, "A", tag, 0);
    }
    mem_folder(fx->srv, "B");
    run_ok(fx, SYNC);
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "<m%d@test>", i);
        move_local(fx, "A", id, "B", NULL, "");
    }
    mem_log_clear(fx->srv);
    run_ok(fx, SYNC);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 0);
    assert_int_equal(mem_folder_find(fx->srv, "A")->n, 5);
    assert_int_equal(mem_folder_find(fx->srv, "B")->n, 20);
    assert_in_step(fx, "A");
    assert_in_step(fx, "B");
}

struct found_name {
    const char *id;
    char name[256];
};

static void find_id(void *ctx, const char *name, const char *content)
{
    struct found_name *f = ctx;
    char want[300];
    snprintf(want, sizeof want, "Message-ID: %s\n", f->id);
    if (strstr(content, want))
        snprintf(f->name, sizeof f->name, "%s", name);
}

/* Delete the local file of folder with Message-ID id, as a reader does. */
static void remove_local(const struct fixture *fx, const char *folder, const char *id)
{
    struct found_name f = {.id = id, .name = ""};
    each_file(fx, folder, find_id, &f);
    assert_true(f.name[0]);
    char path[1024];
    for (int sub = 0; sub < 2; sub++) {
        snprintf(path, sizeof path, "%s/%s/%s/%s", fx->maildir, folder, sub ? "new" : "cur", f.name);
        if (unlink(path) == 0)
            return;
    }
    fail_msg("cannot remove %s", f.name);
}

/* A restored backup's file with a known message's unique part and that
 * message's flags, but other content (the push lists a folder against
 * hashes of its rows, pushdiff.h: the name is listed twice, so the folder
 * is taken whole): uploaded once under a name of its own, the original
 * kept, nothing else sent. */
static void restored_duplicate_with_the_rows_flags_is_uploaded(void **state)
{
    struct fixture *fx = *state;
    add(fx, "INBOX", "i1", FLAG_SEEN);
    add(fx, "INBOX", "i2", FLAG_SEEN);
    add(fx, "INBOX", "i3", FLAG_SEEN);
    run_ok(fx, PULL);
    struct found_name f = {.id = "<i2@test>", .name = ""};
    each_file(fx, "INBOX", find_id, &f);
    assert_non_null(strstr(f.name, ":2,S"));
    /* the same name in new/: the same flags as its row */
    char path[1024];
    snprintf(path, sizeof path, "%s/INBOX/new/%s", fx->maildir, f.name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "From: me@example.org\nSubject: restored\nMessage-ID: <dup@test>\n\nOther bytes.\n");
    fclose(fp);
    mem_log_clear(fx->srv);
    run_ok(fx, PUSH);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, "INBOX"), 1);
    assert_int_equal(mem_folder(fx->srv, "INBOX")->n, 4);
    assert_int_equal(local_count(fx, "INBOX", "<dup@test>"), 1);
    assert_int_equal(local_count(fx, "INBOX", "<i2@test>"), 1);
    assert_int_equal(local_count(fx, "INBOX", NULL), 4);
    mem_log_clear(fx->srv);
    run_ok(fx, PUSH);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 0);
    assert_in_step(fx, "INBOX");
}

/* A push may use the listing its run made when looking for local moves
 * (views_push_keep/take): only if the folder's files and rows did not
 * change since. Two folders, a flag changed in each and left to settle;
 * during the first folder's push (its STORE), a reader flags a message of
 * the other folder. The first folder's push reuses its listing; the
 * other's must not, and pushes both of its changes. */
struct reader_at_store {
    struct fixture *fx;
    char other[8];
    int reused;
};

static void reader_flags_other(void *ctx, const struct mem_logentry *e)
{
    struct reader_at_store *w = ctx;
    if (w->other[0] || e->op != MEM_OP_STORE)
        return;
    snprintf(w->other, sizeof w->other, "%s", strcmp(e->folder, "A") == 0 ? "B" : "A");
    char id[32];
    snprintf(id, sizeof id, "<%c3@test>", w->other[0] == 'A' ? 'a' : 'b');
    move_local(w->fx, w->other, id, w->other, NULL, "F");
}

static struct reader_at_store *reused_sink_ctx;

static void count_reused(enum log_level level, const char *text)
{
    (void)level;
    if (reused_sink_ctx && strstr(text, "still current"))
        reused_sink_ctx->reused++;
}

static void kept_listing_is_checked_before_reuse(void **state)
{
    struct fixture *fx = *state;
    for (int i = 1; i <= 3; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "a%d", i);
        add(fx, "A", tag, 0);
        snprintf(tag, sizeof tag, "b%d", i);
        add(fx, "B", tag, 0);
    }
    run_ok(fx, SYNC);
    move_local(fx, "A", "<a1@test>", "A", NULL, "F");
    move_local(fx, "B", "<b2@test>", "B", NULL, "F");
    usleep(150 * 1000); /* past MAILDIR_STAMP_SETTLE_NS: the stamps settle */
    struct reader_at_store w = {.fx = fx, .other = "", .reused = 0};
    fx->srv->on_op = reader_flags_other;
    fx->srv->on_op_ctx = &w;
    int verbosity = log_verbosity;
    log_verbosity = LOG_TRACE;
    reused_sink_ctx = &w;
    log_set_sink(count_reused);
    run_ok(fx, PUSH);
    log_set_sink(NULL);
    reused_sink_ctx = NULL;
    log_verbosity = verbosity;
    fx->srv->on_op = NULL;
    assert_true(w.other[0]);
    assert_int_equal(w.reused, 1); /* the first folder's, not the other's */
    assert_int_equal(server_msg(fx, "A", "<a1@test>")->flags, FLAG_FLAGGED);
    assert_int_equal(server_msg(fx, "B", "<b2@test>")->flags, FLAG_FLAGGED);
    const char *o = w.other;
    char id3[32];
    snprintf(id3, sizeof id3, "<%c3@test>", o[0] == 'A' ? 'a' : 'b');
    assert_int_equal(server_msg(fx, o, id3)->flags, FLAG_FLAGGED);
    mem_log_clear(fx->srv);
    run_ok(fx, SYNC);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_STORE, NULL), 0);
    assert_in_step(fx, "A");
    assert_in_step(fx, "B");
}

/* SPECIAL-USE roles (issue 18): `folders = * !\Junk` leaves the folder the
 * server marks \Junk out whatever its name; `trash = auto` moves a local
 * deletion into the folder marked \Trash ("Bin", not "Trash"). */
static void trash_auto_and_role_patterns(void **state)
{
    struct fixture *fx = *state;
    char *pats[] = {"*", "!\\Junk"};
    fx->acct.folders = pats;
    fx->acct.nfolders = 2;
    fx->acct.trash = "auto";
    add(fx, "INBOX", "keep", 0);
    add(fx, "INBOX", "gone", 0);
    add(fx, "Spam", "junk", 0);
    mem_folder(fx->srv, "Trash");
    mem_folder(fx->srv, "Bin")->roles = FOLDER_ROLE_TRASH;
    mem_folder(fx->srv, "Spam")->roles = FOLDER_ROLE_JUNK;
    run_ok(fx, SYNC);
    assert_int_equal(local_count(fx, "INBOX", NULL), 2);
    char spam[256];
    snprintf(spam, sizeof spam, "%s/Spam", fx->maildir);
    assert_int_equal(access(spam, F_OK), -1); /* never synced */
    remove_local(fx, "INBOX", "<gone@test>");
    run_ok(fx, SYNC);
    assert_int_equal(mem_count_id(fx->srv, "INBOX", "<gone@test>"), 0);
    assert_int_equal(mem_count_id(fx->srv, "Bin", "<gone@test>"), 1);
    assert_int_equal(mem_folder_find(fx->srv, "Trash")->n, 0);
    assert_int_equal(local_count(fx, "Bin", "<gone@test>"), 1); /* the sync pulls the trash last */
    assert_int_equal(mem_folder_find(fx->srv, "Spam")->n, 1);
    assert_in_step(fx, "INBOX");
    fx->acct.folders = fx->folders;
    fx->acct.nfolders = 1;
    fx->acct.trash = NULL;
}

/* trash = auto on a server that marks no \Trash: a local deletion is held
 * back (the folder fails, the message stays), never expunged; once trash
 * names a folder the next run moves it there. */
static void trash_auto_without_special_use(void **state)
{
    struct fixture *fx = *state;
    fx->acct.trash = "auto";
    add(fx, "INBOX", "keep", 0);
    add(fx, "INBOX", "gone", 0);
    mem_folder(fx->srv, "Trash");
    run_ok(fx, SYNC);
    remove_local(fx, "INBOX", "<gone@test>");
    assert_int_equal(run(fx, SYNC), MS_EPARTIAL);
    const struct engine_folder_result *f = folder_result(fx, "INBOX");
    assert_non_null(f);
    assert_non_null(f->error);
    assert_non_null(strstr(f->error, "marks no folder as \\Trash"));
    assert_int_equal(mem_count_id(fx->srv, "INBOX", "<gone@test>"), 1);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_EXPUNGE, NULL), 0);
    fx->acct.trash = "Trash";
    run_ok(fx, SYNC);
    assert_int_equal(mem_count_id(fx->srv, "INBOX", "<gone@test>"), 0);
    assert_int_equal(mem_count_id(fx->srv, "Trash", "<gone@test>"), 1);
    fx->acct.trash = NULL;
}

/* Two gone messages with the Message-ID and size of the new file: which
 * one moved is not known, so it is an upload and two deletions. */
static void local_move_ambiguous_is_uploaded(void **state)
{
    struct fixture *fx = *state;
    add(fx, "A", "twin", 0);
    add(fx, "C", "twin", 0);
    mem_folder(fx->srv, "B");
    run_ok(fx, SYNC);
    move_local(fx, "A", "<twin@test>", "B", "new1", "");
    char path[512];
    snprintf(path, sizeof path, "%s/Gone", fx->maildir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/Gone/cur", fx->maildir);
    assert_int_equal(mkdir(path, 0700), 0);
    move_local(fx, "C", "<twin@test>", "Gone", "x", ""); /* gone from C too (not a folder: no new/, tmp/) */
    snprintf(path, sizeof path, "%s/Gone/cur/x:2,", fx->maildir);
    assert_int_equal(unlink(path), 0);
    mem_log_clear(fx->srv);
    run_ok(fx, PUSH);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 1);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_MOVE, NULL), 0);
    assert_int_equal(mem_folder_find(fx->srv, "A")->n, 0);
    assert_int_equal(mem_folder_find(fx->srv, "C")->n, 0);
    assert_int_equal(mem_count_id(fx->srv, "B", "<twin@test>"), 1);
}

/* Messages without Message-ID moved keeping their names: one whose size no
 * other such gone message has is moved; two of one size are not (after
 * a UID MOVE their copies could be told apart only by size): uploaded and
 * deleted, each once. */
static void local_move_without_message_id(void **state)
{
    struct fixture *fx = *state;
    mem_add(fx->srv, "A", "Subject: one\n\nThe first body.\n", 0, 1700000000);
    mem_add(fx->srv, "A", "Subject: two\n\nThe other body!\n", 0, 1700000000);
    mem_add(fx->srv, "A", "Subject: three, longer\n\nThe third body.\n", 0, 1700000000);
    mem_folder(fx->srv, "B");
    run_ok(fx, SYNC);
    move_local_with(fx, "A", "Subject: one\n", "B", NULL, "");
    move_local_with(fx, "A", "Subject: two\n", "B", NULL, "");
    move_local_with(fx, "A", "Subject: three, longer\n", "B", NULL, "");
    mem_log_clear(fx->srv);
    run_ok(fx, PUSH);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 2);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_MOVE, "A"), 1);
    assert_int_equal(mem_folder_find(fx->srv, "A")->n, 0);
    assert_int_equal(mem_folder_find(fx->srv, "B")->n, 3);
    assert_in_step(fx, "A");
    run_ok(fx, SYNC);
    assert_int_equal(local_count(fx, "B", NULL), 3);
    assert_int_equal(state_of(fx, "B").rows, 3);
}

/* The session drops at every operation of the push that moves a message
 * (with MOVE and without): the next push completes the move, the message
 * is once in each side's folder B and nowhere else, nothing is uploaded. */
static void local_move_session_drops_at_every_op_of(struct fixture *fx, bool has_move)
{
    unsigned fired_rounds = 0;
    for (unsigned n = 1;; n++) {
        unit_rmtree(fx->maildir);
        char dir[160];
        snprintf(dir, sizeof dir, "%s/state", fx->dir);
        unit_rmtree(dir);
        mem_install(NULL);
        mem_server_free(fx->srv);
        fx->srv = mem_server_new();
        mem_install(fx->srv);
        if (!has_move)
            fx->srv->caps &= ~(unsigned)REMOTE_MOVE;
        add_dated(fx, "A", "moved", FLAG_SEEN, "$label1");
        add(fx, "A", "stays", 0);
        mem_folder(fx->srv, "B");
        run_ok(fx, SYNC);
        move_local(fx, "A", "<moved@test>", "B", n % 2 ? NULL : "newname", "S");
        mem_log_clear(fx->srv);
        fx->srv->ops = 0;
        fx->srv->faults.drop_at_op = n;
        int rc = run(fx, PUSH);
        bool fired = fx->srv->faults.drop_at_op == 0;
        fx->srv->faults.drop_at_op = 0;
        if (!fired) {
            assert_int_equal(rc, MS_OK);
            break;
        }
        fired_rounds++;
        run_ok(fx, PUSH);
        if (mem_log_count(fx->srv, MEM_OP_APPEND, NULL) != 0 || mem_count_id(fx->srv, "B", "<moved@test>") != 1) {
            print_message("cut at op %u\n", n);
            dump_log(fx);
        }
        assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 0);
        assert_int_equal(mem_count_id(fx->srv, "A", "<moved@test>"), 0);
        struct mem_msg *m = server_msg(fx, "B", "<moved@test>");
        assert_string_equal(m->keywords, "$label1");
        assert_in_step(fx, "A");
        assert_in_step(fx, "B");
        assert_true(n < 200);
    }
    assert_true(fired_rounds >= 4);
}

static void local_move_session_drops_at_every_op(void **state)
{
    local_move_session_drops_at_every_op_of(*state, true);
}

static void local_move_session_drops_at_every_op_without_move(void **state)
{
    local_move_session_drops_at_every_op_of(*state, false);
}

/* ------------------------------------------------------------------ */
/* a change a killed run saw, then the message deleted (issue 18 hardening) */

/* A fresh server, Maildir and state DB (for a test that loops). */
static void fresh(struct fixture *fx)
{
    mem_install(NULL);
    mem_server_free(fx->srv);
    fx->srv = mem_server_new();
    mem_install(fx->srv);
    unit_rmtree(fx->maildir);
    char dir[160];
    snprintf(dir, sizeof dir, "%s/state", fx->dir);
    unit_rmtree(dir);
}

/* A child runs k and dies (as with kill -9) before (after = false) or
 * after the server's nth operation from now; the parent then has the
 * server as the dead child left it. Returns whether it died (false: the
 * run ended first). */
static bool killed_run(struct fixture *fx, enum run_kind k, unsigned n, bool after)
{
    char save[160];
    snprintf(save, sizeof save, "%s/server.saved", fx->dir);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fx->srv->faults.exit_at_op = n;
        fx->srv->faults.exit_after = after;
        fx->srv->faults.exit_save = save;
        fx->srv->exit_ops = 0;
        int rc = run(fx, k);
        if (mem_server_save(fx->srv, save) != 0)
            _exit(78);
        _exit(rc == MS_OK ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    int code = WEXITSTATUS(status);
    if (code != 77 && code != 0)
        fail_msg("the killed run's child ended with %d (op %u, %s)", code, n, after ? "after" : "before");
    mem_server_load(fx->srv, save);
    return code == 77;
}

/* What the state DB says of uid's flags in folder: bit 0, a STORE of
 * `flag` is journalled (state_store_put); bit 1, the row records flag. */
static unsigned flag_known(const struct fixture *fx, const char *folder, uint32_t uid, unsigned flag)
{
    struct state *st = NULL;
    struct ms_error err;
    struct state_folder f = {0};
    struct state_store *j = NULL;
    struct state_msg *m = NULL;
    size_t nj = 0, nm = 0;
    unsigned known = 0;
    assert_int_equal(state_open(fx->state_path, &st, &err), MS_OK);
    assert_int_equal(state_folder_get(st, folder, &f, &err), MS_OK);
    assert_true(f.id != 0);
    assert_int_equal(state_store_list(st, f.id, &j, &nj, &err), MS_OK);
    assert_int_equal(state_msg_list(st, f.id, &m, &nm, &err), MS_OK);
    for (size_t i = 0; i < nj; i++)
        if (j[i].uid == uid && (j[i].flags & flag))
            known |= 1;
    for (size_t i = 0; i < nm; i++)
        if (m[i].uid == uid && (m[i].flags & flag))
            known |= 2;
    free(j);
    state_msgs_free(m, nm);
    state_folder_free(&f);
    state_close(st);
    return known;
}

/* A local flag change (+F), then a sync killed at every operation of the
 * server (before it and after it), then the file deleted locally, then a
 * sync with `trash`: the Trash copy carries F whenever the killed run
 * saw the change (journalled its STORE, sent it, recorded it). Only a run
 * that died before journalling leaves nothing that knows of F: the old
 * flags are then all any program could move (the file is gone). */
static void flag_change_seen_then_deleted_to_trash(struct fixture *fx, bool has_move, int others)
{
    size_t unseen = 0, journalled = 0, sent = 0, recorded = 0, rounds = 0;
    for (int after = 0; after < 2; after++)
        for (unsigned n = 1;; n++) {
            fresh(fx);
            if (!has_move)
                fx->srv->caps &= ~(unsigned)REMOTE_MOVE;
            fx->acct.trash = "Trash";
            add(fx, "INBOX", "f", FLAG_SEEN);
            for (int i = 0; i < others; i++) {
                char tag[16];
                snprintf(tag, sizeof tag, "k%d", i);
                add(fx, "INBOX", tag, 0);
            }
            mem_folder(fx->srv, "Trash");
            run_ok(fx, SYNC);
            uint32_t uid = server_msg(fx, "INBOX", "<f@test>")->uid;
            move_local(fx, "INBOX", "<f@test>", "INBOX", NULL, "FS");
            if (!killed_run(fx, SYNC, n, after))
                break;
            rounds++;
            bool on_server = server_msg(fx, "INBOX", "<f@test>")->flags & FLAG_FLAGGED;
            unsigned known = flag_known(fx, "INBOX", uid, FLAG_FLAGGED);
            bool seen = on_server || known;
            unseen += !seen;
            journalled += known == 1 && !on_server;
            sent += on_server && !(known & 2);
            recorded += (known & 2) != 0;
            remove_local(fx, "INBOX", "<f@test>");
            mem_log_clear(fx->srv);
            run_ok(fx, SYNC);
            assert_int_equal(mem_count_id(fx->srv, "INBOX", "<f@test>"), 0);
            unsigned got = server_msg(fx, "Trash", "<f@test>")->flags;
            if (seen && !(got & FLAG_FLAGGED)) {
                dump_log(fx);
                fail_msg("killed %s op %u (%s%s%s): the Trash copy lost the flag change", after ? "after" : "before",
                         n, on_server ? "stored on the server" : "", known & 1 ? " journalled" : "",
                         known & 2 ? " recorded" : "");
            }
            assert_int_equal(got & ~(unsigned)FLAG_FLAGGED, FLAG_SEEN);
            assert_string_equal(local_flags(fx, "Trash", "<f@test>"), got & FLAG_FLAGGED ? "FS" : "S");
            assert_int_equal(local_count(fx, "INBOX", "<f@test>"), 0);
            assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 0);
            assert_in_step(fx, "INBOX");
            assert_in_step(fx, "Trash");
            assert_true(n < 300);
        }
    fx->acct.trash = NULL;
    print_message("%zu kills: %zu before the change was journalled, %zu journalled and not sent, %zu sent and "
                  "not recorded, %zu recorded\n", rounds, unseen, journalled, sent, recorded);
    /* every kind of kill happened (the records are committed with the
     * run's outcome, after its LOGOUT: no killed run gets that far) */
    assert_true(unseen > 0 && journalled > 0 && sent > 0);
}

static void flag_change_seen_then_deleted_to_trash_move(void **state)
{
    flag_change_seen_then_deleted_to_trash(*state, true, 3);
}

/* The same in a folder of 40: a push there reads the few rows it needs
 * (the journalled flag change's among them) one by one, not the folder's
 * rows again (views.c, needed_rows). */
static void flag_change_seen_then_deleted_to_trash_in_40(void **state)
{
    flag_change_seen_then_deleted_to_trash(*state, true, 39);
}

/* A push in a folder of 40 with three local changes: flags, a deletion and
 * a new file, each reaching the server (the rows it needs looked up one
 * by one) and nothing else sent. */
static void few_changes_in_a_bigger_folder(void **state)
{
    struct fixture *fx = *state;
    for (int i = 0; i < 40; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "m%d", i);
        add(fx, "INBOX", tag, 0);
    }
    run_ok(fx, SYNC);
    move_local(fx, "INBOX", "<m7@test>", "INBOX", NULL, "FS");
    remove_local(fx, "INBOX", "<m23@test>");
    put_local(fx, "INBOX", "fresh1", "S", "<fresh@test>");
    mem_log_clear(fx->srv);
    run_ok(fx, PUSH);
    assert_int_equal(server_msg(fx, "INBOX", "<m7@test>")->flags, FLAG_SEEN | FLAG_FLAGGED);
    assert_int_equal(mem_count_id(fx->srv, "INBOX", "<m23@test>"), 0);
    assert_int_equal(mem_count_id(fx->srv, "INBOX", "<fresh@test>"), 1);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 1);
    assert_int_equal(server_msg(fx, "INBOX", "<m8@test>")->flags, 0);
    mem_log_clear(fx->srv);
    run_ok(fx, SYNC);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 0);
    assert_in_step(fx, "INBOX");
}

static void flag_change_seen_then_deleted_to_trash_copy(void **state)
{
    flag_change_seen_then_deleted_to_trash(*state, false, 3);
}

/* A flag change on the server (+F), a run killed before/after each
 * server op (it may have renamed the file and not recorded it), then the
 * server expunges the message (another client), then a sync: the message
 * is gone on both sides, never uploaded back, and nothing goes to Trash
 * (an expunge on the server is no local deletion). */
static void server_flag_change_seen_then_expunged(void **state)
{
    struct fixture *fx = *state;
    size_t renamed = 0, rounds = 0;
    for (int kind = 0; kind < 2; kind++)
        for (int after = 0; after < 2; after++)
            for (unsigned n = 1;; n++) {
                fresh(fx);
                fx->acct.trash = "Trash";
                uint32_t uid = add(fx, "INBOX", "f", FLAG_SEEN);
                for (int i = 0; i < 3; i++) {
                    char tag[8];
                    snprintf(tag, sizeof tag, "k%d", i);
                    add(fx, "INBOX", tag, 0);
                }
                mem_folder(fx->srv, "Trash");
                run_ok(fx, SYNC);
                mem_set_flags(fx->srv, "INBOX", uid, FLAG_SEEN | FLAG_FLAGGED);
                if (!killed_run(fx, kind ? SYNC : PULL, n, after))
                    break;
                rounds++;
                renamed += strcmp(local_flags(fx, "INBOX", "<f@test>"), "FS") == 0 &&
                           !(flag_known(fx, "INBOX", uid, FLAG_FLAGGED) & 2);
                mem_expunge(fx->srv, "INBOX", uid);
                mem_log_clear(fx->srv);
                run_ok(fx, SYNC);
                if (mem_log_count(fx->srv, MEM_OP_APPEND, NULL) || mem_count_id(fx->srv, "Trash", "<f@test>")) {
                    dump_log(fx);
                    fail_msg("killed %s op %u of a %s: the expunged message came back", after ? "after" : "before",
                             n, kind ? "sync" : "pull");
                }
                assert_int_equal(mem_count_id(fx->srv, "INBOX", "<f@test>"), 0);
                assert_int_equal(local_count(fx, "INBOX", "<f@test>"), 0);
                assert_int_equal(local_count(fx, "Trash", NULL), 0);
                assert_in_step(fx, "INBOX");
                assert_in_step(fx, "Trash");
                assert_true(n < 300);
            }
    fx->acct.trash = NULL;
    print_message("%zu kills, %zu with the file renamed and the change not recorded\n", rounds, renamed);
    assert_true(renamed > 0);
}

/* A file moved locally from A to B, a sync killed before/after each
 * server op (it may have moved the message on the server and not
 * recorded it), then the file deleted in B, then a sync: the message is
 * gone from A and B on both sides (in Trash once, with `trash`), never
 * downloaded again into B nor uploaded. */
static void local_move_seen_then_deleted(struct fixture *fx, bool has_move, const char *trash)
{
    size_t moved = 0, rounds = 0;
    for (int after = 0; after < 2; after++)
        for (unsigned n = 1;; n++) {
            fresh(fx);
            if (!has_move)
                fx->srv->caps &= ~(unsigned)REMOTE_MOVE;
            fx->acct.trash = (char *)trash;
            add_dated(fx, "A", "moved", FLAG_SEEN, "$label1");
            for (int i = 0; i < 3; i++) {
                char tag[8];
                snprintf(tag, sizeof tag, "k%d", i);
                add(fx, "A", tag, 0);
            }
            add(fx, "B", "there", 0);
            if (trash)
                mem_folder(fx->srv, trash);
            run_ok(fx, SYNC);
            move_local(fx, "A", "<moved@test>", "B", n % 2 ? NULL : "1790000000.M1P1.mutt", "S");
            if (!killed_run(fx, SYNC, n, after))
                break;
            rounds++;
            moved += mem_count_id(fx->srv, "B", "<moved@test>") == 1;
            remove_local(fx, "B", "<moved@test>");
            mem_log_clear(fx->srv);
            run_ok(fx, SYNC);
            size_t back = local_count(fx, "B", "<moved@test>") + mem_count_id(fx->srv, "B", "<moved@test>") +
                          local_count(fx, "A", "<moved@test>") + mem_count_id(fx->srv, "A", "<moved@test>");
            if (back || mem_log_count(fx->srv, MEM_OP_APPEND, NULL)) {
                dump_log(fx);
                fail_msg("killed %s op %u: the message moved, then deleted, is still (or again) in A or B: %zu "
                         "copies", after ? "after" : "before", n, back);
            }
            if (trash) {
                assert_int_equal(mem_count_id(fx->srv, trash, "<moved@test>"), 1);
                assert_int_equal(local_count(fx, trash, "<moved@test>"), 1);
                assert_in_step(fx, trash);
            }
            assert_in_step(fx, "A");
            assert_in_step(fx, "B");
            assert_true(n < 300);
        }
    fx->acct.trash = NULL;
    print_message("%zu kills, %zu after the message was moved on the server\n", rounds, moved);
    assert_true(moved > 0);
}

static void local_move_seen_then_deleted_move(void **state)
{
    local_move_seen_then_deleted(*state, true, NULL);
}

static void local_move_seen_then_deleted_copy_to_trash(void **state)
{
    local_move_seen_then_deleted(*state, false, "Trash");
}

/* A file moved locally from A into the trash folder (a reader's
 * "delete"), a sync killed before/after each server op, then the file
 * deleted from the local trash too: the message ends nowhere in A, and in
 * the trash on neither side when the killed run had put it there (it was:
 * the journal row looked like a deletion's and the copy came back into
 * the local trash); otherwise it goes there once, as any deletion does
 * with `trash`. Never uploaded. */
static void local_move_to_trash_seen_then_deleted(void **state)
{
    struct fixture *fx = *state;
    size_t moved = 0, rounds = 0;
    /* without MOVE: a killed run may leave the copy beside its original,
     * or the original removed too (what a MOVE leaves); CI time is short */
    for (int after = 2; after < 4; after++)
        for (unsigned n = 1;; n++) {
            fresh(fx);
            if (after >= 2)
                fx->srv->caps &= ~(unsigned)REMOTE_MOVE;
            fx->acct.trash = "Trash";
            add_dated(fx, "A", "moved", FLAG_SEEN, "$label1");
            for (int i = 0; i < 3; i++) {
                char tag[8];
                snprintf(tag, sizeof tag, "k%d", i);
                add(fx, "A", tag, 0);
            }
            add(fx, "Trash", "old", 0);
            run_ok(fx, SYNC);
            move_local(fx, "A", "<moved@test>", "Trash", n % 2 ? NULL : "1790000000.M1P1.mutt", "S");
            if (!killed_run(fx, SYNC, n, after % 2))
                break;
            rounds++;
            bool there = mem_count_id(fx->srv, "Trash", "<moved@test>") == 1;
            moved += there;
            remove_local(fx, "Trash", "<moved@test>");
            mem_log_clear(fx->srv);
            run_ok(fx, SYNC);
            size_t in_a = local_count(fx, "A", "<moved@test>") + mem_count_id(fx->srv, "A", "<moved@test>");
            size_t want = there ? 0 : 1;
            if (in_a || mem_count_id(fx->srv, "Trash", "<moved@test>") != want ||
                local_count(fx, "Trash", "<moved@test>") != want || mem_log_count(fx->srv, MEM_OP_APPEND, NULL)) {
                dump_log(fx);
                fail_msg("killed %s op %u%s (%s): %zu in A, %zu in Trash (server), %zu (local), %zu appends",
                         after % 2 ? "after" : "before", n, after >= 2 ? " (no MOVE)" : "",
                         there ? "in Trash" : "not in Trash", in_a, mem_count_id(fx->srv, "Trash", "<moved@test>"),
                         local_count(fx, "Trash", "<moved@test>"), mem_log_count(fx->srv, MEM_OP_APPEND, NULL));
            }
            assert_in_step(fx, "A");
            assert_in_step(fx, "Trash");
            assert_true(n < 300);
        }
    fx->acct.trash = NULL;
    print_message("%zu kills, %zu after the message was in Trash on the server\n", rounds, moved);
    assert_true(moved > 0);
}

/* A file moved locally from A to B, a sync killed before/after each server
 * op, the file deleted in B, then a sync of A alone (--folder A), then of
 * everything: the copy the killed run made in B is settled by the first
 * (B is not in that run), never downloaded back into B. */
static void local_move_seen_then_deleted_folder_alone(void **state)
{
    struct fixture *fx = *state;
    size_t moved = 0, rounds = 0;
    char *only[] = {"A"};
    for (int after = 0; after < 1; after++) /* killed before each op: also after the one before (CI time) */
        for (unsigned n = 1;; n++) {
            fresh(fx);
            add_dated(fx, "A", "moved", FLAG_SEEN, "$label1");
            for (int i = 0; i < 3; i++) {
                char tag[8];
                snprintf(tag, sizeof tag, "k%d", i);
                add(fx, "A", tag, 0);
            }
            add(fx, "B", "there", 0);
            run_ok(fx, SYNC);
            move_local(fx, "A", "<moved@test>", "B", n % 2 ? NULL : "1790000000.M1P1.mutt", "S");
            if (!killed_run(fx, SYNC, n, after))
                break;
            rounds++;
            moved += mem_count_id(fx->srv, "B", "<moved@test>") == 1;
            remove_local(fx, "B", "<moved@test>");
            mem_log_clear(fx->srv);
            fx->opt.folder_patterns = only;
            fx->opt.nfolder_patterns = 1;
            run_ok(fx, SYNC);
            fx->opt.folder_patterns = NULL;
            fx->opt.nfolder_patterns = 0;
            run_ok(fx, SYNC);
            size_t back = local_count(fx, "B", "<moved@test>") + mem_count_id(fx->srv, "B", "<moved@test>") +
                          local_count(fx, "A", "<moved@test>") + mem_count_id(fx->srv, "A", "<moved@test>");
            if (back || mem_log_count(fx->srv, MEM_OP_APPEND, NULL)) {
                dump_log(fx);
                fail_msg("killed %s op %u: the message moved, then deleted, is still (or again) in A or B: %zu "
                         "copies", after ? "after" : "before", n, back);
            }
            assert_in_step(fx, "A");
            assert_in_step(fx, "B");
            assert_true(n < 300);
        }
    print_message("%zu kills, %zu after the message was moved on the server\n", rounds, moved);
    assert_true(moved > 0);
}

/* A file moved locally from A to B, a sync killed before/after each
 * server op, then the file moved on from B to C (under its name or a new
 * one): the message ends once in C on both sides, nowhere else, and is
 * not uploaded (it was: the copy the killed run made in B came back). */
static void local_move_seen_then_moved_on(void **state)
{
    struct fixture *fx = *state;
    size_t moved = 0, rounds = 0;
    for (int after = 0; after < 4; after++) /* 0, 1: with MOVE; 2, 3: without */
        for (unsigned n = 1;; n++) {
            fresh(fx);
            if (after >= 2)
                fx->srv->caps &= ~(unsigned)REMOTE_MOVE;
            add_dated(fx, "A", "moved", FLAG_SEEN, "$label1");
            for (int i = 0; i < 3; i++) {
                char tag[8];
                snprintf(tag, sizeof tag, "k%d", i);
                add(fx, "A", tag, 0);
            }
            add(fx, "B", "there", 0);
            add(fx, "C", "there2", 0);
            run_ok(fx, SYNC);
            move_local(fx, "A", "<moved@test>", "B", NULL, "S");
            if (!killed_run(fx, SYNC, n, after % 2))
                break;
            rounds++;
            moved += mem_count_id(fx->srv, "B", "<moved@test>") == 1;
            move_local(fx, "B", "<moved@test>", "C", n % 2 ? NULL : "1790000000.M3P3.mutt", "S");
            mem_log_clear(fx->srv);
            run_ok(fx, SYNC);
            size_t elsewhere = local_count(fx, "B", "<moved@test>") + mem_count_id(fx->srv, "B", "<moved@test>") +
                               local_count(fx, "A", "<moved@test>") + mem_count_id(fx->srv, "A", "<moved@test>");
            if (elsewhere || mem_count_id(fx->srv, "C", "<moved@test>") != 1 ||
                local_count(fx, "C", "<moved@test>") != 1 || mem_log_count(fx->srv, MEM_OP_APPEND, NULL)) {
                dump_log(fx);
                fail_msg("killed %s op %u%s: %zu copies in A or B, %zu in C (server), %zu appends",
                         after % 2 ? "after" : "before", n, after >= 2 ? " (no MOVE)" : "", elsewhere, mem_count_id(fx->srv, "C", "<moved@test>"),
                         mem_log_count(fx->srv, MEM_OP_APPEND, NULL));
            }
            assert_in_step(fx, "A");
            assert_in_step(fx, "B");
            assert_in_step(fx, "C");
            assert_true(n < 300);
        }
    print_message("%zu kills, %zu after the message was moved on the server\n", rounds, moved);
    assert_true(moved > 0);
}

/* A new local message, a sync killed before/after each server op (the
 * APPEND may have arrived without its UID recorded), then the file
 * deleted, then a sync: the message is not in INBOX on either side (the
 * upload that arrived is deleted as any synced message would be: into
 * Trash with `trash`), never uploaded again, never downloaded back. */
static void upload_seen_then_deleted(struct fixture *fx, const char *trash, bool appenduid)
{
    size_t arrived = 0, rounds = 0;
    for (int after = 0; after < 2; after++)
        for (unsigned n = 1;; n++) {
            fresh(fx);
            fx->srv->faults.no_appenduid = !appenduid;
            fx->acct.trash = (char *)trash;
            for (int i = 0; i < 3; i++) {
                char tag[8];
                snprintf(tag, sizeof tag, "k%d", i);
                add(fx, "INBOX", tag, 0);
            }
            if (trash)
                mem_folder(fx->srv, trash);
            run_ok(fx, SYNC);
            put_local(fx, "INBOX", "1790000000.M2P2.new", "S", "<up@test>");
            if (!killed_run(fx, SYNC, n, after))
                break;
            rounds++;
            bool there = mem_count_id(fx->srv, "INBOX", "<up@test>") == 1;
            arrived += there;
            remove_local(fx, "INBOX", "<up@test>");
            mem_log_clear(fx->srv);
            run_ok(fx, SYNC);
            if (mem_count_id(fx->srv, "INBOX", "<up@test>") || local_count(fx, "INBOX", "<up@test>") ||
                mem_log_count(fx->srv, MEM_OP_APPEND, NULL)) {
                dump_log(fx);
                fail_msg("killed %s op %u: the upload deleted locally is back in INBOX (server %zu, local %zu)",
                         after ? "after" : "before", n, mem_count_id(fx->srv, "INBOX", "<up@test>"),
                         local_count(fx, "INBOX", "<up@test>"));
            }
            if (trash) {
                assert_int_equal(mem_count_id(fx->srv, trash, "<up@test>"), there);
                assert_int_equal(local_count(fx, trash, "<up@test>"), there);
                assert_in_step(fx, trash);
            }
            assert_in_step(fx, "INBOX");
            assert_true(n < 300);
        }
    fx->acct.trash = NULL;
    print_message("%zu kills, %zu after the upload arrived\n", rounds, arrived);
    assert_true(arrived > 0 && arrived < rounds);
}

static void upload_seen_then_deleted_expunged(void **state)
{
    upload_seen_then_deleted(*state, NULL, true);
}

static void upload_seen_then_deleted_to_trash(void **state)
{
    upload_seen_then_deleted(*state, "Trash", true);
}

/* The same where APPEND gives no UID (found by size and Message-ID). */
static void upload_seen_then_deleted_without_appenduid(void **state)
{
    upload_seen_then_deleted(*state, "Trash", false);
}

/* ------------------------------------------------------------------ */
/* tombstones (sync/engine/tombstones.c) */

/* The folder's tombstones of each reason. */
static void tombstones_of(const struct fixture *fx, const char *folder, int64_t *retired, int64_t *kept)
{
    struct state *st = NULL;
    struct ms_error err;
    struct state_folder f = {0};
    *retired = *kept = 0;
    assert_int_equal(state_open(fx->state_path, &st, &err), MS_OK);
    assert_int_equal(state_folder_get(st, folder, &f, &err), MS_OK);
    if (f.id)
        assert_int_equal(state_tombstone_counts(st, f.id, retired, kept, &err), MS_OK);
    state_folder_free(&f);
    state_close(st);
}

/* Backup keeps what the server deleted, records it, never uploads it;
 * mirror then removes exactly those, and the state ends in step. */
static void backup_kept_then_mirror(void **state)
{
    struct fixture *fx = *state;
    fx->acct.mode = MODE_BACKUP;
    uint32_t u1 = add(fx, "INBOX", "k1", FLAG_SEEN);
    add(fx, "INBOX", "s1", 0);
    uint32_t u2 = add(fx, "INBOX", "k2", 0);
    add(fx, "INBOX", "s2", 0);
    run_ok(fx, PULL);
    mem_expunge(fx->srv, "INBOX", u1);
    mem_expunge(fx->srv, "INBOX", u2);
    run_ok(fx, PULL);
    assert_int_equal(local_count(fx, "INBOX", NULL), 4);
    int64_t retired, kept;
    tombstones_of(fx, "INBOX", &retired, &kept);
    assert_int_equal(kept, 2);
    assert_int_equal(retired, 0);
    assert_int_equal(state_of(fx, "INBOX").rows, 2); /* rows only for what is on both sides */
    mem_log_clear(fx->srv);
    run_ok(fx, SYNC);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 0);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_BODY, NULL), 0);

    fx->acct.mode = MODE_MIRROR;
    run_ok(fx, PULL);
    assert_int_equal(folder_result(fx, "INBOX")->deleted, 2);
    assert_int_equal(local_count(fx, "INBOX", "<k1@test>"), 0);
    assert_int_equal(local_count(fx, "INBOX", "<k2@test>"), 0);
    assert_in_step(fx, "INBOX");
    tombstones_of(fx, "INBOX", &retired, &kept);
    assert_int_equal(kept, 0);
    mem_log_clear(fx->srv);
    run_ok(fx, SYNC);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 0);
    assert_in_step(fx, "INBOX");
}

/* A kept message that comes back to the server (another client copied
 * it back): the incremental listing does not look at unknown local files,
 * so it is downloaded once more beside the kept copy (as before there
 * were tombstones); nothing is uploaded, and the switch to mirror leaves
 * exactly one copy, the synced one. */
static void kept_message_back_on_the_server(void **state)
{
    struct fixture *fx = *state;
    fx->acct.mode = MODE_BACKUP;
    uint32_t u = add(fx, "INBOX", "back", 0);
    add(fx, "INBOX", "other", 0);
    run_ok(fx, PULL);
    mem_expunge(fx->srv, "INBOX", u);
    run_ok(fx, PULL);
    int64_t retired, kept;
    tombstones_of(fx, "INBOX", &retired, &kept);
    assert_int_equal(kept, 1);
    add(fx, "INBOX", "back", 0); /* the same message, a new UID */
    mem_log_clear(fx->srv);
    run_ok(fx, SYNC);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 0);
    fx->acct.mode = MODE_MIRROR;
    run_ok(fx, SYNC);
    assert_int_equal(mem_log_count(fx->srv, MEM_OP_APPEND, NULL), 0);
    assert_int_equal(local_count(fx, "INBOX", "<back@test>"), 1);
    assert_in_step(fx, "INBOX");
    tombstones_of(fx, "INBOX", &retired, &kept);
    assert_int_equal(kept, 0);
}

/* ------------------------------------------------------------------ */
/* progress events */

static char events[4096];

static void event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void event(const char *fmt, ...)
{
    size_t at = strlen(events);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(events + at, sizeof events - at, fmt, ap);
    va_end(ap);
}

static void ev_account_start(void *ctx, const char *account)
{
    (void)ctx;
    event("account %s;", account);
}

static void ev_folder_begin(void *ctx, const char *account, const char *folder, size_t index, size_t n)
{
    (void)ctx;
    (void)account;
    event("begin %s %zu/%zu;", folder, index + 1, n);
}

static void ev_upload_start(void *ctx, const char *account, const char *folder, size_t n)
{
    (void)ctx;
    (void)account;
    event("up %s %zu;", folder, n);
}

static void ev_folder_start(void *ctx, const char *account, const char *folder, size_t n, uint64_t bytes)
{
    (void)ctx;
    (void)account;
    (void)bytes;
    event("down %s %zu;", folder, n);
}

static void ev_message_done(void *ctx, uint64_t bytes)
{
    (void)ctx;
    event("%s;", bytes ? "msg" : "msg of 0 bytes");
}

static void ev_folder_done(void *ctx, const struct engine_folder_result *r)
{
    (void)ctx;
    (void)r;
}

static void ev_account_done(void *ctx, const struct engine_result *res)
{
    (void)ctx;
    event("end %s %d", res->account, res->status);
}

static const struct engine_progress recorder = {.ctx = NULL,
                                                .account_start = ev_account_start,
                                                .folder_begin = ev_folder_begin,
                                                .upload_start = ev_upload_start,
                                                .folder_start = ev_folder_start,
                                                .message_done = ev_message_done,
                                                .folder_done = ev_folder_done,
                                                .planned = NULL,
                                                .account_done = ev_account_done};

/* What a progress display is told: the account, each folder k/N, a
 * push's uploads (as many as it uploads, in the folder they go to) apart
 * from a pull's downloads, and the end. */
static void progress_events_of_a_sync(void **state)
{
    struct fixture *fx = *state;
    add(fx, "Archive", "a1", 0);
    add(fx, "INBOX", "i1", 0);
    run_ok(fx, PULL);
    put_local(fx, "INBOX", "1700000000.l1", "S", "<l1@test>");
    put_local(fx, "INBOX", "1700000000.l2", "", "<l2@test>");
    add(fx, "Archive", "a2", 0);
    add(fx, "Archive", "a3", 0);
    fx->opt.progress = &recorder;
    events[0] = '\0';
    run_ok(fx, SYNC);
    const char *inbox = strstr(events, "begin INBOX ");
    const char *archive = strstr(events, "begin Archive ");
    if (!inbox || !archive || strncmp(events, "account t;begin ", 16) != 0 ||
        !strstr(inbox, "INBOX 1/2;") == !strstr(inbox, "INBOX 2/2;") ||
        !strstr(inbox, "up INBOX 2;msg;msg;") ||
        (strstr(events, "down INBOX ") && !strstr(events, "down INBOX 0;")) || /* what it uploaded */
        !strstr(archive, "down Archive 2;msg;msg;") || strstr(events, "up Archive") ||
        strstr(events, "msg of 0 bytes") || !strstr(events, ";end t 0"))
        fail_msg("events: %s", events);
    assert_int_equal(folder_result(fx, "INBOX")->uploaded, 2);
    assert_int_equal(folder_result(fx, "Archive")->fetched, 2);
    /* a push alone: its uploads, no download */
    put_local(fx, "Archive", "1700000000.l3", "", "<l3@test>");
    events[0] = '\0';
    run_ok(fx, PUSH);
    if (!strstr(events, "up Archive 1;msg;") || strstr(events, "down ") || !strstr(events, ";end t 0"))
        fail_msg("events: %s", events);
    /* a run that cannot connect ends too */
    fx->opt.connect_remote = NULL; /* the real side, to a refused port */
    events[0] = '\0';
    assert_int_not_equal(run(fx, PULL), MS_OK);
    if (strncmp(events, "account t;end t ", 16) != 0 || !strcmp(events + 16, "0"))
        fail_msg("events: %s", events);
    fx->opt.progress = NULL;
}

/* A first pull in windows resumed after a drop (6 of INBOX's 10 messages
 * in): the progress is told the 4 still to come, then 4 downloads; not
 * the top window's count (0: its messages were all in). */
static void progress_of_a_resumed_first_pull(void **state)
{
    struct fixture *fx = *state;
    first_pull_dropped_after_six(fx);
    fx->srv->faults.drop_after_bodies = 0;
    fx->opt.progress = &recorder;
    events[0] = '\0';
    run_ok(fx, PULL);
    fx->opt.progress = NULL;
    const char *down = strstr(events, "down INBOX ");
    if (!down || strncmp(down, "down INBOX 4;msg;msg;msg;msg;", 29) != 0 || strstr(down + 1, "down INBOX "))
        fail_msg("events: %s", events);
    assert_in_step(fx, "INBOX");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(first_pull_then_noop, setup, teardown),
        cmocka_unit_test_setup_teardown(restored_duplicate_with_the_rows_flags_is_uploaded, setup, teardown),
        cmocka_unit_test_setup_teardown(placeholder_then_flagged_and_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(nth_fetch_fails_with_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(nth_fetch_is_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(session_drops_mid_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(first_pull_in_windows, setup, teardown),
        cmocka_unit_test_setup_teardown(first_pull_in_windows_drop_in_second, setup, teardown),
        cmocka_unit_test_setup_teardown(first_pull_resumed_in_windows, setup, teardown),
        cmocka_unit_test_setup_teardown(deferred_push_after_a_held_pull, setup, teardown),
        cmocka_unit_test_setup_teardown(changes_in_windows_qresync, setup, teardown),
        cmocka_unit_test_setup_teardown(changes_in_windows_condstore, setup, teardown),
        cmocka_unit_test_setup_teardown(changes_in_windows_drop_in_second, setup, teardown),
        cmocka_unit_test_setup_teardown(changes_in_windows_with_an_expunge, setup, teardown),
        cmocka_unit_test_setup_teardown(changes_in_windows_with_an_expunge_on_top, setup, teardown),
        cmocka_unit_test_setup_teardown(changes_in_windows_mass_expunge_guarded, setup, teardown),
        cmocka_unit_test_setup_teardown(full_listing_in_windows, setup, teardown),
        cmocka_unit_test_setup_teardown(full_windows_asked_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(full_listing_in_windows_guard, setup, teardown),
        cmocka_unit_test_setup_teardown(full_listing_all_changed_in_windows, setup, teardown),
        cmocka_unit_test_setup_teardown(full_listing_all_changed_drop_in_second, setup, teardown),
        cmocka_unit_test_setup_teardown(full_listing_all_changed_expunge_between_passes, setup, teardown),
        cmocka_unit_test_setup_teardown(full_listing_in_windows_changed_between, setup, teardown),
        cmocka_unit_test_setup_teardown(full_listing_in_windows_adopts_below_uidnext, setup, teardown),
        cmocka_unit_test_setup_teardown(session_drops_at_every_op, setup, teardown),
        cmocka_unit_test_setup_teardown(push_without_appenduid, setup, teardown),
        cmocka_unit_test_setup_teardown(push_without_appenduid_tab_in_message_id, setup, teardown),
        cmocka_unit_test_setup_teardown(push_without_appenduid_long_message_id, setup, teardown),
        cmocka_unit_test_setup_teardown(uidvalidity_changes_server_ends_session, setup, teardown),
        cmocka_unit_test_setup_teardown(uidvalidity_changes_server_goes_on, setup, teardown),
        cmocka_unit_test_setup_teardown(uidvalidity_changes_mid_fetch_server_ends_session, setup, teardown),
        cmocka_unit_test_setup_teardown(kill_at_each_journal_step, setup, teardown),
        cmocka_unit_test_setup_teardown(move_between_folders_planned_in_one_run, setup, teardown),
        cmocka_unit_test_setup_teardown(move_between_folders_without_modseqs, setup, teardown),
        cmocka_unit_test_setup_teardown(kill_at_each_server_move_step, setup, teardown),
        cmocka_unit_test_setup_teardown(gmail_links_kill_at_each_step, setup, teardown),
        cmocka_unit_test_setup_teardown(gmail_links_not_to_a_short_file, setup, teardown),
        cmocka_unit_test_setup_teardown(local_move_by_name_push, setup, teardown),
        cmocka_unit_test_setup_teardown(moves_are_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(dry_run_counts_expunges, setup, teardown),
        cmocka_unit_test_setup_teardown(local_move_by_new_name_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(local_move_without_move_push, setup, teardown),
        cmocka_unit_test_setup_teardown(local_move_without_move_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(placeholder_move_held_without_move, setup, teardown),
        cmocka_unit_test_setup_teardown(local_moves_do_not_trip_the_guard, setup, teardown),
        cmocka_unit_test_setup_teardown(local_move_ambiguous_is_uploaded, setup, teardown),
        cmocka_unit_test_setup_teardown(local_move_without_message_id, setup, teardown),
        cmocka_unit_test_setup_teardown(local_move_session_drops_at_every_op, setup, teardown),
        cmocka_unit_test_setup_teardown(local_move_session_drops_at_every_op_without_move, setup, teardown),
        cmocka_unit_test_setup_teardown(backup_kept_then_mirror, setup, teardown),
        cmocka_unit_test_setup_teardown(kept_message_back_on_the_server, setup, teardown),
        cmocka_unit_test_setup_teardown(adopt_getmail_maildir_by_date_and_from, setup, teardown),
        cmocka_unit_test_setup_teardown(trash_auto_and_role_patterns, setup, teardown),
        cmocka_unit_test_setup_teardown(trash_auto_without_special_use, setup, teardown),
        cmocka_unit_test_setup_teardown(progress_events_of_a_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(progress_of_a_resumed_first_pull, setup, teardown),
        cmocka_unit_test_setup_teardown(flag_change_seen_then_deleted_to_trash_move, setup, teardown),
        cmocka_unit_test_setup_teardown(flag_change_seen_then_deleted_to_trash_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(flag_change_seen_then_deleted_to_trash_in_40, setup, teardown),
        cmocka_unit_test_setup_teardown(few_changes_in_a_bigger_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(kept_listing_is_checked_before_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(server_flag_change_seen_then_expunged, setup, teardown),
        cmocka_unit_test_setup_teardown(local_move_seen_then_deleted_move, setup, teardown),
        cmocka_unit_test_setup_teardown(local_move_seen_then_deleted_copy_to_trash, setup, teardown),
        cmocka_unit_test_setup_teardown(local_move_seen_then_moved_on, setup, teardown),
        cmocka_unit_test_setup_teardown(local_move_to_trash_seen_then_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(local_move_seen_then_deleted_folder_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(upload_seen_then_deleted_expunged, setup, teardown),
        cmocka_unit_test_setup_teardown(upload_seen_then_deleted_to_trash, setup, teardown),
        cmocka_unit_test_setup_teardown(upload_seen_then_deleted_without_appenduid, setup, teardown),
        cmocka_unit_test_setup_teardown(watch_looks_again_when_counters_lag, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
