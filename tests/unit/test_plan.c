/* SPDX-License-Identifier: MIT */
/* test_plan.c: the reconciliation planner, one situation per test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/flags.h"
#include "sync/plan/plan.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static struct plan_input input(const struct plan_state *s, size_t ns, const struct plan_local *l, size_t nl,
                               const struct plan_remote *r, size_t nr)
{
    struct plan_input in = {.state = s, .nstate = ns, .local = l, .nlocal = nl, .remote = r, .nremote = nr,
                            .mode = MODE_MIRROR, .max_delete = 50};
    return in;
}

static void first_pull_fetches_everything_in_uid_order(void **unused)
{
    (void)unused;
    struct plan_remote r[] = {{1, FLAG_SEEN, NULL, 100}, {5, 0, NULL, 200}, {9, FLAG_FLAGGED, "$Junk", 300}};
    struct plan_input in = input(NULL, 0, NULL, 0, r, N(r));
    struct plan p;
    assert_int_equal(plan_pull(&in, &p), 0);
    assert_int_equal(p.n, 3);
    assert_int_equal(p.nfetch, 3);
    assert_int_equal(p.fetch_bytes, 600);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(p.actions[i].op, PLAN_FETCH);
        assert_int_equal(p.actions[i].uid, r[i].uid);
        assert_int_equal(p.actions[i].flags, r[i].flags);
    }
    assert_string_equal(p.actions[2].keywords, "$Junk");
    plan_free(&p);
}

static void unchanged_folder_plans_nothing(void **unused)
{
    (void)unused;
    struct plan_state s[] = {{1, "a", FLAG_SEEN, NULL}, {2, "b", 0, NULL}};
    struct plan_local l[] = {{"a", FLAG_SEEN}, {"b", 0}};
    struct plan_remote r[] = {{1, FLAG_SEEN, NULL, 10}, {2, 0, NULL, 10}};
    struct plan_input in = input(s, N(s), l, N(l), r, N(r));
    struct plan p;
    assert_int_equal(plan_pull(&in, &p), 0);
    assert_int_equal(p.n, 0);
    assert_false(p.guard_tripped);
    plan_free(&p);
}

static void server_flag_change_is_applied_as_a_delta(void **unused)
{
    (void)unused;
    /* Synced as Seen. Locally the user flagged it (not pushed yet); on the
     * server someone marked it Answered and unread. The local Flagged must
     * survive; Seen goes, Answered comes. */
    struct plan_state s[] = {{7, "x", FLAG_SEEN, NULL}};
    struct plan_local l[] = {{"x", FLAG_SEEN | FLAG_FLAGGED}};
    struct plan_remote r[] = {{7, FLAG_ANSWERED, NULL, 10}};
    struct plan_input in = input(s, 1, l, 1, r, 1);
    struct plan p;
    assert_int_equal(plan_pull(&in, &p), 0);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.actions[0].op, PLAN_LOCAL_FLAGS);
    assert_string_equal(p.actions[0].uniq, "x");
    assert_int_equal(p.actions[0].flags, FLAG_ANSWERED | FLAG_FLAGGED);
    assert_int_equal(p.actions[0].state_flags, FLAG_ANSWERED);
    plan_free(&p);
}

static void server_change_already_present_locally_only_updates_state(void **unused)
{
    (void)unused;
    struct plan_state s[] = {{3, "x", 0, NULL}};
    struct plan_local l[] = {{"x", FLAG_SEEN}};
    struct plan_remote r[] = {{3, FLAG_SEEN, NULL, 10}};
    struct plan_input in = input(s, 1, l, 1, r, 1);
    struct plan p;
    assert_int_equal(plan_pull(&in, &p), 0);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.actions[0].op, PLAN_STATE_FLAGS);
    assert_int_equal(p.actions[0].state_flags, FLAG_SEEN);
    plan_free(&p);
}

static void keyword_change_updates_state(void **unused)
{
    (void)unused;
    struct plan_state s[] = {{3, "x", FLAG_SEEN, "$Junk"}};
    struct plan_local l[] = {{"x", FLAG_SEEN}};
    struct plan_remote r[] = {{3, FLAG_SEEN, "$NotJunk", 10}};
    struct plan_input in = input(s, 1, l, 1, r, 1);
    struct plan p;
    assert_int_equal(plan_pull(&in, &p), 0);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.actions[0].op, PLAN_STATE_FLAGS);
    assert_string_equal(p.actions[0].keywords, "$NotJunk");
    plan_free(&p);
}

static void local_file_gone_is_not_refetched_by_pull(void **unused)
{
    (void)unused;
    /* Deleted locally, not pushed yet: a pull must not bring it back. */
    struct plan_state s[] = {{1, "a", 0, NULL}};
    struct plan_remote r[] = {{1, FLAG_SEEN, NULL, 10}};
    struct plan_input in = input(s, 1, NULL, 0, r, 1);
    struct plan p;
    assert_int_equal(plan_pull(&in, &p), 0);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.actions[0].op, PLAN_STATE_FLAGS);
    assert_int_equal(p.nfetch, 0);
    plan_free(&p);
}

static void expunge_mirror_deletes_backup_keeps(void **unused)
{
    (void)unused;
    struct plan_state s[] = {{1, "a", 0, NULL}, {2, "b", 0, NULL}, {3, "c", 0, NULL}};
    struct plan_local l[] = {{"a", 0}, {"c", 0}}; /* b is gone locally too */
    struct plan_remote r[] = {{3, 0, NULL, 10}};
    struct plan_input in = input(s, 3, l, 2, r, 1);
    in.max_delete = 100;
    struct plan p;
    assert_int_equal(plan_pull(&in, &p), 0);
    assert_int_equal(p.n, 2);
    assert_int_equal(p.actions[0].op, PLAN_LOCAL_DELETE);
    assert_int_equal(p.actions[0].uid, 1);
    assert_string_equal(p.actions[0].uniq, "a");
    assert_int_equal(p.actions[1].op, PLAN_FORGET);
    assert_int_equal(p.actions[1].uid, 2);
    plan_free(&p);

    in.mode = MODE_BACKUP;
    assert_int_equal(plan_pull(&in, &p), 0);
    /* The file stays; its row goes, as a kept_by_backup tombstone (issue
     * 16: it used to stay, and a later mirror never removed the file). */
    assert_int_equal(p.n, 2);
    assert_int_equal(p.actions[0].op, PLAN_BACKUP_KEEP);
    assert_int_equal(p.actions[0].uid, 1);
    assert_string_equal(p.actions[0].uniq, "a");
    assert_int_equal(p.actions[1].op, PLAN_FORGET); /* the row whose file is gone anyway */
    assert_int_equal(p.ndelete, 0);
    assert_int_equal(p.nkept, 1);
    plan_free(&p);
}

static void backup_keeps_are_no_deletions_for_the_guard(void **unused)
{
    (void)unused;
    /* The server empties a folder of 30 in backup mode: nothing is
     * deleted locally, so nothing trips; all 30 are kept. */
    struct plan_state s[30];
    struct plan_local l[30];
    char names[30][8];
    for (int i = 0; i < 30; i++) {
        snprintf(names[i], sizeof names[i], "m%02d", i);
        s[i] = (struct plan_state){.uid = (uint32_t)i + 1, .uniq = names[i], .flags = 0, .keywords = NULL};
        l[i] = (struct plan_local){.uniq = names[i], .flags = 0};
    }
    struct plan_input in = input(s, 30, l, 30, NULL, 0);
    in.mode = MODE_BACKUP;
    struct plan p;
    assert_int_equal(plan_pull(&in, &p), 0);
    assert_false(p.guard_tripped);
    assert_int_equal(p.nkept, 30);
    assert_int_equal(p.ndelete, 0);
    plan_free(&p);
}

static void order_is_deletes_then_flags_then_fetches(void **unused)
{
    (void)unused;
    struct plan_state s[] = {{1, "a", 0, NULL}, {2, "b", 0, NULL}};
    struct plan_local l[] = {{"a", 0}, {"b", 0}};
    struct plan_remote r[] = {{2, FLAG_SEEN, NULL, 10}, {3, 0, NULL, 10}};
    struct plan_input in = input(s, 2, l, 2, r, 2);
    in.max_delete = 100;
    struct plan p;
    assert_int_equal(plan_pull(&in, &p), 0);
    assert_int_equal(p.n, 3);
    assert_int_equal(p.actions[0].op, PLAN_LOCAL_DELETE);
    assert_int_equal(p.actions[1].op, PLAN_LOCAL_FLAGS);
    assert_int_equal(p.actions[2].op, PLAN_FETCH);
    plan_free(&p);
}

static void too_big_messages_are_skipped(void **unused)
{
    (void)unused;
    struct plan_remote r[] = {{1, 0, NULL, 1000}, {2, 0, NULL, 1001}};
    struct plan_input in = input(NULL, 0, NULL, 0, r, 2);
    in.max_size = 1000;
    struct plan p;
    assert_int_equal(plan_pull(&in, &p), 0);
    assert_int_equal(p.nfetch, 1);
    assert_int_equal(p.nskip, 1);
    assert_int_equal(p.actions[1].op, PLAN_SKIP_LARGE);
    assert_int_equal(p.actions[1].uid, 2);
    plan_free(&p);
}

/* placeholders = yes: over max_size is a PLAN_PLACEHOLDER (counted apart
 * from the downloads, with the server's flags), not a skip. */
static void too_big_messages_become_placeholders(void **unused)
{
    (void)unused;
    struct plan_remote r[] = {{1, 0, NULL, 1000}, {2, FLAG_SEEN, "$Work", 5000}};
    struct plan_input in = input(NULL, 0, NULL, 0, r, 2);
    in.max_size = 1000;
    in.placeholders = true;
    struct plan p;
    assert_int_equal(plan_pull(&in, &p), 0);
    assert_int_equal(p.nfetch, 1);
    assert_int_equal(p.fetch_bytes, 1000);
    assert_int_equal(p.nskip, 0);
    assert_int_equal(p.nplaceholder, 1);
    assert_int_equal(p.actions[1].op, PLAN_PLACEHOLDER);
    assert_int_equal(p.actions[1].uid, 2);
    assert_int_equal(p.actions[1].flags, FLAG_SEEN);
    assert_int_equal(p.actions[1].size, 5000);
    assert_string_equal(p.actions[1].keywords, "$Work");
    plan_free(&p);
}

/* newest_first: the fetches (placeholders among them) by descending UID,
 * after the other actions, which keep their order. */
static void newest_first_reverses_the_fetches_only(void **unused)
{
    (void)unused;
    struct plan_state s[] = {{2, "b", 0, NULL}, {3, "c", 0, NULL}, {4, "d", 0, NULL}};
    struct plan_local l[] = {{"b", 0}, {"c", 0}, {"d", 0}};
    struct plan_remote r[] = {{1, 0, NULL, 10},         {3, FLAG_SEEN, NULL, 10}, {4, FLAG_SEEN, NULL, 10},
                              {5, 0, NULL, 10},         {7, 0, NULL, 9000},       {9, 0, NULL, 10}};
    struct plan_input in = input(s, N(s), l, N(l), r, N(r));
    in.max_size = 1000;
    in.placeholders = true;
    in.newest_first = true;
    struct plan p;
    assert_int_equal(plan_pull(&in, &p), 0);
    static const struct {
        enum plan_op op;
        uint32_t uid;
    } want[] = {{PLAN_LOCAL_DELETE, 2}, {PLAN_LOCAL_FLAGS, 3}, {PLAN_LOCAL_FLAGS, 4},
                {PLAN_FETCH, 9},        {PLAN_PLACEHOLDER, 7}, {PLAN_FETCH, 5}, {PLAN_FETCH, 1}};
    assert_int_equal(p.n, N(want));
    for (size_t i = 0; i < N(want); i++) {
        assert_int_equal(p.actions[i].op, want[i].op);
        assert_int_equal(p.actions[i].uid, want[i].uid);
    }
    plan_free(&p);
}

/* A folder of n synced messages of which the server still lists `keep`. */
static void guard_case(size_t n, size_t keep, int max_delete, bool force, bool expect_trip)
{
    struct plan_state *s = calloc(n, sizeof *s);
    struct plan_local *l = calloc(n, sizeof *l);
    struct plan_remote *r = calloc(n + 1, sizeof *r);
    char (*names)[24] = calloc(n, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "m%06zu", i);
        s[i] = (struct plan_state){(uint32_t)i + 1, names[i], 0, NULL};
        l[i] = (struct plan_local){names[i], 0};
    }
    for (size_t i = 0; i < keep; i++)
        r[i] = (struct plan_remote){(uint32_t)i + 1, 0, NULL, 10};
    r[keep] = (struct plan_remote){(uint32_t)n + 1, 0, NULL, 10}; /* and one new */
    struct plan_input in = input(s, n, l, n, r, keep + 1);
    in.max_delete = max_delete;
    in.force = force;
    struct plan p;
    assert_int_equal(plan_pull(&in, &p), 0);
    assert_int_equal(p.guard_tripped, expect_trip);
    if (expect_trip) {
        assert_int_equal(p.n, 0); /* the folder is left untouched */
        assert_int_equal(p.guard_deletes, n - keep);
        assert_int_equal(p.guard_total, n);
    } else {
        assert_int_equal(p.ndelete, n - keep);
        assert_int_equal(p.nfetch, 1);
    }
    plan_free(&p);
    free(s), free(l), free(r), free(names);
}

static void mass_deletion_guard(void **unused)
{
    (void)unused;
    guard_case(100, 0, 50, false, true);  /* server lists an empty folder */
    guard_case(100, 49, 50, false, true); /* 51 % */
    guard_case(100, 50, 50, false, false);/* exactly 50 % is allowed */
    guard_case(100, 0, 50, true, false);  /* --force */
    guard_case(19, 1, 50, false, false);  /* under 20: no share rule */
    guard_case(20, 0, 50, false, true);
    guard_case(100, 90, 5, false, true);  /* max_delete = 5 % */
}

/* The floor: whatever its size, a folder is not emptied without --force;
 * the last message of a folder may go (an everyday user action). */
static void guard_floor_on_small_folders(void **unused)
{
    (void)unused;
    guard_case(10, 0, 50, false, true);   /* 10 of 10: emptied */
    guard_case(19, 0, 50, false, true);
    guard_case(2, 0, 50, false, true);    /* two is already "all at once" */
    guard_case(10, 0, 100, false, true);  /* max_delete does not lift it */
    guard_case(10, 0, 50, true, false);   /* --force */
    guard_case(10, 1, 50, false, false);  /* 9 of 10, one stays */
    guard_case(1, 0, 50, false, false);   /* the last message, deleted */
}

/* The rule itself, as both planners and the engine ask it. */
static void guard_rule_table(void **unused)
{
    (void)unused;
    static const struct {
        size_t ndelete, nremoved, total;
        int max_delete;
        bool trips;
    } t[] = {
        {0, 0, 100, 50, false},    /* no deletion, never */
        {0, 5, 5, 50, false},      /* only forgotten rows: nothing deleted */
        {50, 50, 100, 50, false},  /* exactly the share */
        {51, 51, 100, 50, true},
        {100, 100, 100, 50, true}, /* an emptied 100: the QRESYNC race */
        {100, 100, 200, 50, false},/* ...if EXISTS + VANISHED were the total */
        {18, 18, 19, 50, false},   /* small, one stays */
        {19, 19, 19, 50, true},    /* small, emptied */
        {2, 10, 10, 50, true},     /* 2 deleted, 8 already gone locally */
        {1, 10, 10, 50, false},    /* the one file left goes */
        {1, 1, 1, 50, false},
        {2, 2, 2, 100, true},
        {0, 0, 0, 50, false},
        {1, 1, 0, 50, false},      /* total 0 with deletions: the floor decides */
        {2, 2, 0, 50, true},
        {1, 1, 20, 0, true},       /* max_delete 0: any deletion in a big folder */
        {1, 1, 19, 0, false},      /* ...not in a small one */
        {19, 19, 20, 100, false},  /* max_delete 100: only the floor is left */
        {20, 20, 20, 100, true},
        {10, 10, 20, 50, false},   /* exactly 50 % of the smallest watched folder */
        {11, 11, 20, 50, true},
    };
    for (size_t i = 0; i < N(t); i++)
        if (plan_guard_trips(t[i].ndelete, t[i].nremoved, t[i].total, t[i].max_delete) != t[i].trips)
            fail_msg("row %zu: %zu deleted, %zu removed of %zu at %d%%: expected %s", i, t[i].ndelete,
                     t[i].nremoved, t[i].total, t[i].max_delete, t[i].trips ? "a trip" : "none");
}

/* The rule restated for the grid below: no deletion never trips; a folder
 * of 20 or more trips above max_delete percent; any folder trips when two
 * or more deletions leave nothing of it; --force never trips. */
static bool guard_expected(size_t n, size_t ndelete, int max_delete, bool force)
{
    if (force || ndelete == 0)
        return false;
    if (n >= 20 && ndelete * 100 > (size_t)max_delete * n)
        return true;
    return ndelete >= 2 && ndelete >= n;
}

/* Pull and push decide by the one rule: the same folder losing the same
 * messages (gone from the server for a pull, gone locally for a push)
 * trips both planners or neither, and each drops its whole plan. */
static void guard_pull_and_push_agree(void **unused)
{
    (void)unused;
    static const size_t sizes[] = {1, 2, 3, 19, 20, 21, 40, 100};
    static const int shares[] = {0, 5, 50, 100};
    char names[100][8];
    struct plan_state s[100];
    struct plan_local all[100], kept[101];
    struct plan_remote r[101];
    for (size_t i = 0; i < 100; i++) {
        snprintf(names[i], sizeof names[i], "m%03zu", i);
        s[i] = (struct plan_state){(uint32_t)i + 1, names[i], 0, NULL};
        all[i] = (struct plan_local){names[i], 0};
    }
    for (size_t a = 0; a < N(sizes); a++) {
        size_t n = sizes[a];
        size_t keeps[] = {0, 1, n / 2, n - 1, n};
        for (size_t b = 0; b < N(keeps); b++) {
            size_t keep = keeps[b], nr = 0, nk = 0;
            for (size_t i = 0; i < keep; i++) {
                r[nr++] = (struct plan_remote){(uint32_t)i + 1, 0, NULL, 10};
                kept[nk++] = all[i];
            }
            /* and one new message on each side: dropped with the plan */
            r[nr++] = (struct plan_remote){(uint32_t)n + 1, 0, NULL, 10};
            kept[nk++] = (struct plan_local){"zz-new", 0};
            for (size_t c = 0; c < N(shares); c++)
                for (int force = 0; force < 2; force++) {
                    bool want = guard_expected(n, n - keep, shares[c], force);
                    struct plan_input pull_in = input(s, n, all, n, r, nr);
                    pull_in.max_delete = shares[c];
                    pull_in.force = force;
                    struct plan pp;
                    assert_int_equal(plan_pull(&pull_in, &pp), 0);
                    struct plan_input push_in = input(s, n, kept, nk, NULL, 0);
                    push_in.max_delete = shares[c];
                    push_in.force = force;
                    struct push_plan qp;
                    assert_int_equal(plan_push(&push_in, &qp), 0);
                    if (pp.guard_tripped != want || qp.guard_tripped != want)
                        fail_msg("%zu of %zu deleted at %d%%%s: pull %s, push %s, expected %s", n - keep, n,
                                 shares[c], force ? " --force" : "", pp.guard_tripped ? "trips" : "passes",
                                 qp.guard_tripped ? "trips" : "passes", want ? "a trip" : "none");
                    assert_int_equal(want ? pp.n : pp.ndelete, want ? 0 : n - keep);
                    assert_int_equal(want ? qp.n : qp.ndelete, want ? 0 : n - keep);
                    if (want) {
                        assert_int_equal(pp.guard_deletes, n - keep);
                        assert_int_equal(qp.guard_deletes, n - keep);
                        assert_int_equal(pp.guard_total, n);
                        assert_int_equal(qp.guard_total, n);
                    } else {
                        assert_int_equal(pp.nfetch, 1);
                        assert_int_equal(qp.nappend, 1);
                    }
                    plan_free(&pp);
                    push_plan_free(&qp);
                }
        }
    }
}

/* An incremental resync passes only the rows of changed and vanished UIDs;
 * the guard then weighs the deletions against the folder's real size. */
static void guard_with_partial_state(void **unused)
{
    (void)unused;
    struct plan_state s[30];
    struct plan_local l[30];
    char names[30][16];
    for (size_t i = 0; i < 30; i++) {
        snprintf(names[i], sizeof names[i], "v%04zu", i);
        s[i] = (struct plan_state){(uint32_t)(100 + i), names[i], 0, NULL};
        l[i] = (struct plan_local){names[i], 0};
    }
    struct plan_remote none[1];
    struct plan p;
    /* 30 vanished of a 1000-message folder: 3 %, allowed. */
    struct plan_input in = input(s, 30, l, 30, none, 0);
    in.max_delete = 50;
    in.guard_total = 1000;
    assert_int_equal(plan_pull(&in, &p), 0);
    assert_false(p.guard_tripped);
    assert_int_equal(p.ndelete, 30);
    plan_free(&p);
    /* 30 vanished of a 40-message folder: 75 %, held back. */
    in.guard_total = 40;
    assert_int_equal(plan_pull(&in, &p), 0);
    assert_true(p.guard_tripped);
    assert_int_equal(p.guard_total, 40);
    assert_int_equal(p.n, 0);
    plan_free(&p);
    /* All 30 rows the state had vanished, the denominator being the
     * state's count (30): held back, whatever EXISTS said (the engine no
     * longer adds EXISTS to the vanished, which made this 30 of 60). */
    in.guard_total = 30;
    assert_int_equal(plan_pull(&in, &p), 0);
    assert_true(p.guard_tripped);
    assert_int_equal(p.guard_deletes, 30);
    assert_int_equal(p.guard_total, 30);
    plan_free(&p);
    /* The same for a small folder: 5 rows, all vanished. */
    in.nstate = in.nlocal = 5;
    in.guard_total = 5;
    assert_int_equal(plan_pull(&in, &p), 0);
    assert_true(p.guard_tripped);
    assert_int_equal(p.guard_total, 5);
    plan_free(&p);
}

/* A plan_identity without alt sizes or header values. */
#define ID(u, q, m, s)                                                                                               \
    {                                                                                                                \
        .uid = (u), .uniq = (q), .message_id = (m), .size = (s), .alt = {0}, .nalt = 0, .date = NULL, .from = NULL \
    }

static void match_pairs_by_message_id_and_size(void **unused)
{
    (void)unused;
    struct plan_identity remote[] = {
        ID(10, NULL, "<a@x>", 100), ID(11, NULL, "<b@x>", 200), ID(12, NULL, "<b@x>", 200),
        ID(13, NULL, NULL, 300),    ID(14, NULL, "<c@x>", 400), ID(15, NULL, "<d@x>", 500),
    };
    struct plan_identity local[] = {
        ID(0, "L1", "<b@x>", 200), ID(0, "L2", "<a@x>", 100), ID(0, "L3", NULL, 300),
        ID(0, "L4", "<c@x>", 401), /* same id, other size: not the same */
        ID(0, "L5", "<d@x>", 500), ID(0, "L6", "<d@x>", 500), /* one too many */
    };
    struct plan_match *m;
    size_t n;
    assert_int_equal(plan_match(remote, N(remote), local, N(local), &m, &n), 0);
    assert_int_equal(n, 3);
    /* sorted by Message-ID: a, b, d */
    assert_int_equal(m[0].uid, 10);
    assert_string_equal(m[0].uniq, "L2");
    assert_int_equal(m[1].uid, 11);
    assert_string_equal(m[1].uniq, "L1");
    assert_int_equal(m[2].uid, 15);
    assert_string_equal(m[2].uniq, "L5");
    free(m);
}

static void match_with_nothing(void **unused)
{
    (void)unused;
    struct plan_match *m;
    size_t n = 99;
    assert_int_equal(plan_match(NULL, 0, NULL, 0, &m, &n), 0);
    assert_int_equal(n, 0);
    free(m);
}

/* A file with fields a tool added (mbsync's X-TUID) pairs by one of its
 * alt sizes, but a file that is the server's message byte for byte wins
 * over it for that message. */
static void match_by_alt_size(void **unused)
{
    (void)unused;
    struct plan_identity remote[] = {ID(10, NULL, "<a@x>", 100), ID(11, NULL, "<a@x>", 122),
                                     ID(12, NULL, "<b@x>", 300)};
    struct plan_identity local[] = {ID(0, "L1", "<a@x>", 122), ID(0, "L2", "<a@x>", 100),
                                    ID(0, "L3", "<b@x>", 322), ID(0, "L4", "<b@x>", 400)};
    local[0].alt[0] = 100; /* L1: 122 as it is, 100 without its X-TUID */
    local[0].nalt = 1;
    local[2].alt[0] = 300;
    local[2].nalt = 1;
    local[3].alt[0] = 350; /* no size of it is on the server */
    local[3].nalt = 1;
    struct plan_match *m;
    size_t n;
    assert_int_equal(plan_match(remote, N(remote), local, N(local), &m, &n), 0);
    assert_int_equal(n, 3);
    /* own sizes first: 10-L2, 11-L1; then alt: 12-L3 */
    assert_int_equal(m[0].uid, 10);
    assert_string_equal(m[0].uniq, "L2");
    assert_int_equal(m[1].uid, 11);
    assert_string_equal(m[1].uniq, "L1");
    assert_int_equal(m[2].uid, 12);
    assert_string_equal(m[2].uniq, "L3");
    free(m);
}

/* The second tier: unique Message-ID on both sides, Date and From present
 * and equal; nothing else pairs. */
static void match_loose_needs_unique_id_and_equal_headers(void **unused)
{
    (void)unused;
    struct plan_identity remote[] = {ID(1, NULL, "<a@x>", 100), ID(2, NULL, "<b@x>", 200),
                                     ID(3, NULL, "<c@x>", 300), ID(4, NULL, "<c@x>", 301),
                                     ID(5, NULL, "<d@x>", 400), ID(6, NULL, "<e@x>", 500)};
    struct plan_identity local[] = {ID(0, "La", "<a@x>", 150), ID(0, "Lb", "<b@x>", 250),
                                    ID(0, "Lc", "<c@x>", 350), ID(0, "Ld", "<d@x>", 450),
                                    ID(0, "Le", "<e@x>", 550)};
    const char *d1 = "Tue, 14 Nov 2023 22:13:10 +0000", *d2 = "Wed, 15 Nov 2023 22:13:10 +0000";
    for (size_t i = 0; i < N(remote); i++)
        remote[i].date = d1, remote[i].from = "B <b@x>";
    for (size_t i = 0; i < N(local); i++)
        local[i].date = d1, local[i].from = "B <b@x>";
    local[1].date = d2;   /* b: another Date */
    local[3].from = NULL; /* d: no From */
    remote[3].message_id = "<c@x>"; /* c: twice on the server */
    struct plan_match *m;
    size_t n;
    assert_int_equal(plan_match_loose(remote, N(remote), local, N(local), &m, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(m[0].uid, 1);
    assert_string_equal(m[0].uniq, "La");
    assert_int_equal(m[1].uid, 6);
    assert_string_equal(m[1].uniq, "Le");
    free(m);
}

/* --- plan_push --- */

static void push_of_unchanged_folder_is_empty(void **unused)
{
    (void)unused;
    struct plan_state s[] = {{1, "a", FLAG_SEEN, "$Junk"}, {2, "b", 0, NULL}};
    struct plan_local l[] = {{"a", FLAG_SEEN}, {"b", 0}};
    struct plan_input in = input(s, N(s), l, N(l), NULL, 0);
    struct push_plan p;
    assert_int_equal(plan_push(&in, &p), 0);
    assert_int_equal(p.n, 0);
    assert_false(p.guard_tripped);
    push_plan_free(&p);
}

static void push_sends_the_local_flag_delta(void **unused)
{
    (void)unused;
    /* a: marked seen and unflagged locally; b: unchanged; c: replied */
    struct plan_state s[] = {{1, "a", FLAG_FLAGGED, "$Junk"}, {2, "b", FLAG_SEEN, NULL}, {3, "c", FLAG_SEEN, NULL}};
    struct plan_local l[] = {{"a", FLAG_SEEN}, {"b", FLAG_SEEN}, {"c", FLAG_SEEN | FLAG_ANSWERED}};
    struct plan_input in = input(s, N(s), l, N(l), NULL, 0);
    struct push_plan p;
    assert_int_equal(plan_push(&in, &p), 0);
    assert_int_equal(p.n, 2);
    assert_int_equal(p.nflags, 2);
    assert_int_equal(p.actions[0].op, PUSH_FLAGS);
    assert_int_equal(p.actions[0].uid, 1);
    assert_int_equal(p.actions[0].add, FLAG_SEEN);
    assert_int_equal(p.actions[0].remove, FLAG_FLAGGED);
    assert_int_equal(p.actions[0].flags, FLAG_SEEN);
    assert_int_equal(p.actions[1].uid, 3);
    assert_int_equal(p.actions[1].add, FLAG_ANSWERED);
    assert_int_equal(p.actions[1].remove, 0);
    assert_int_equal(p.actions[1].flags, FLAG_SEEN | FLAG_ANSWERED);
    push_plan_free(&p);
}

static void push_deletes_gone_files_and_uploads_unknown_ones(void **unused)
{
    (void)unused;
    /* uid 2's file is gone; "new1" and "new0" are not in the state; a row
     * without a local name (never delivered) is left alone */
    struct plan_state s[] = {{1, "a", 0, NULL}, {2, "b", FLAG_SEEN, NULL}, {3, NULL, 0, NULL}};
    struct plan_local l[] = {{"a", 0}, {"new0", FLAG_DRAFT}, {"new1", 0}};
    struct plan_input in = input(s, N(s), l, N(l), NULL, 0);
    struct push_plan p;
    assert_int_equal(plan_push(&in, &p), 0);
    assert_int_equal(p.n, 3);
    assert_int_equal(p.ndelete, 1);
    assert_int_equal(p.nappend, 2);
    assert_int_equal(p.actions[0].op, PUSH_DELETE);
    assert_int_equal(p.actions[0].uid, 2);
    assert_int_equal(p.actions[1].op, PUSH_APPEND);
    assert_string_equal(p.actions[1].uniq, "new0");
    assert_int_equal(p.actions[1].flags, FLAG_DRAFT);
    assert_string_equal(p.actions[2].uniq, "new1");
    push_plan_free(&p);
}

static void push_in_backup_mode_deletes_nothing(void **unused)
{
    (void)unused;
    struct plan_state s[] = {{1, "a", 0, NULL}, {2, "b", 0, NULL}};
    struct plan_local l[] = {{"a", FLAG_SEEN}};
    struct plan_input in = input(s, N(s), l, N(l), NULL, 0);
    in.mode = MODE_BACKUP;
    struct push_plan p;
    assert_int_equal(plan_push(&in, &p), 0);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.actions[0].op, PUSH_FLAGS);
    assert_int_equal(p.ndelete, 0);
    push_plan_free(&p);
}

static void push_guard_holds_back_mass_deletion(void **unused)
{
    (void)unused;
    /* 30 known messages, 20 files gone (67% > 50%), one flag change and
     * one new file: the whole plan is dropped, the folder left untouched */
    struct plan_state s[30];
    char names[30][8];
    struct plan_local l[12];
    size_t nl = 0;
    for (int i = 0; i < 30; i++) {
        snprintf(names[i], sizeof names[i], "m%02d", i);
        s[i] = (struct plan_state){(uint32_t)i + 1, names[i], 0, NULL};
        if (i >= 20)
            l[nl++] = (struct plan_local){names[i], i == 25 ? FLAG_SEEN : 0};
    }
    l[nl++] = (struct plan_local){"zz-new", 0};
    struct plan_input in = input(s, N(s), l, nl, NULL, 0);
    struct push_plan p;
    assert_int_equal(plan_push(&in, &p), 0);
    assert_true(p.guard_tripped);
    assert_int_equal(p.guard_deletes, 20);
    assert_int_equal(p.guard_total, 30);
    assert_int_equal(p.ndelete, 0);
    assert_int_equal(p.nflags, 0);
    assert_int_equal(p.nappend, 0);
    assert_int_equal(p.n, 0);
    push_plan_free(&p);
    /* --force lets them through */
    in.force = true;
    assert_int_equal(plan_push(&in, &p), 0);
    assert_false(p.guard_tripped);
    assert_int_equal(p.ndelete, 20);
    assert_int_equal(p.n, 22);
    push_plan_free(&p);
}

/* A pushed folder of n known messages of which `keep` files are left. */
static void push_guard_case(size_t n, size_t keep, bool force, bool expect_trip)
{
    struct plan_state *s = calloc(n, sizeof *s);
    struct plan_local *l = calloc(n + 1, sizeof *l);
    char (*names)[24] = calloc(n, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "m%06zu", i);
        s[i] = (struct plan_state){(uint32_t)i + 1, names[i], 0, NULL};
    }
    for (size_t i = 0; i < keep; i++)
        l[i] = (struct plan_local){names[n - keep + i], 0};
    struct plan_input in = input(s, n, l, keep, NULL, 0);
    in.force = force;
    struct push_plan p;
    assert_int_equal(plan_push(&in, &p), 0);
    assert_int_equal(p.guard_tripped, expect_trip);
    if (expect_trip) {
        assert_int_equal(p.n, 0);
        assert_int_equal(p.guard_deletes, n - keep);
        assert_int_equal(p.guard_total, n);
    } else {
        assert_int_equal(p.ndelete, n - keep);
    }
    push_plan_free(&p);
    free(s), free(l), free(names);
}

/* A 10-message INBOX replaced by an empty Maildir must not empty the
 * server's; the last message of a folder may still be deleted. */
static void push_guard_floor_on_small_folders(void **unused)
{
    (void)unused;
    push_guard_case(10, 0, false, true);
    push_guard_case(10, 0, true, false); /* --force */
    push_guard_case(10, 1, false, false);
    push_guard_case(2, 0, false, true);
    push_guard_case(1, 0, false, false);
    push_guard_case(19, 0, false, true);
    push_guard_case(20, 10, false, false); /* exactly 50 % */
    push_guard_case(20, 9, false, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(first_pull_fetches_everything_in_uid_order),
        cmocka_unit_test(unchanged_folder_plans_nothing),
        cmocka_unit_test(server_flag_change_is_applied_as_a_delta),
        cmocka_unit_test(server_change_already_present_locally_only_updates_state),
        cmocka_unit_test(keyword_change_updates_state),
        cmocka_unit_test(local_file_gone_is_not_refetched_by_pull),
        cmocka_unit_test(expunge_mirror_deletes_backup_keeps),
        cmocka_unit_test(backup_keeps_are_no_deletions_for_the_guard),
        cmocka_unit_test(order_is_deletes_then_flags_then_fetches),
        cmocka_unit_test(too_big_messages_are_skipped),
        cmocka_unit_test(too_big_messages_become_placeholders),
        cmocka_unit_test(newest_first_reverses_the_fetches_only),
        cmocka_unit_test(mass_deletion_guard),
        cmocka_unit_test(guard_floor_on_small_folders),
        cmocka_unit_test(guard_rule_table),
        cmocka_unit_test(guard_pull_and_push_agree),
        cmocka_unit_test(guard_with_partial_state),
        cmocka_unit_test(match_pairs_by_message_id_and_size),
        cmocka_unit_test(match_with_nothing),
        cmocka_unit_test(match_by_alt_size),
        cmocka_unit_test(match_loose_needs_unique_id_and_equal_headers),
        cmocka_unit_test(push_of_unchanged_folder_is_empty),
        cmocka_unit_test(push_sends_the_local_flag_delta),
        cmocka_unit_test(push_deletes_gone_files_and_uploads_unknown_ones),
        cmocka_unit_test(push_in_backup_mode_deletes_nothing),
        cmocka_unit_test(push_guard_holds_back_mass_deletion),
        cmocka_unit_test(push_guard_floor_on_small_folders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
