/* SPDX-License-Identifier: MIT */
/* test_pushdiff.c: a folder's rows held as hashes, its listing streamed
 * past them: what a push must look at, and only that. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/flags.h"
#include "sync/plan/pushdiff.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const uint8_t key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

struct row {
    uint32_t uid;
    const char *uniq;
    unsigned flags;
};

static struct pushdiff *set_of(const struct row *r, size_t n)
{
    struct pushdiff *d = pushdiff_new(key);
    for (size_t i = 0; i < n; i++)
        pushdiff_add_row(d, r[i].uid, r[i].uniq, r[i].flags);
    assert_true(pushdiff_seal(d));
    pushdiff_restart(d);
    return d;
}

/* The needed UIDs as a 0-terminated list compared with want. */
static void assert_needed(const struct pushdiff *d, const uint32_t *want, size_t nwant)
{
    uint32_t *got = NULL;
    size_t n = pushdiff_needed(d, &got);
    assert_int_equal(n, nwant);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i], want[i]);
    free(got);
}

static const struct row rows[] = {
    {3, "1000.M1P1.host", FLAG_SEEN},
    {7, "1001.M2P1.host", 0},
    {9, "1002.M3P1.host", FLAG_SEEN | FLAG_FLAGGED},
    {12, "1003.M4P1.host", FLAG_SEEN},
};

static void siphash_matches_the_reference_vectors(void **unused)
{
    (void)unused;
    /* SipHash-2-4, key 00..0f, messages 00..(n-1): the paper's vectors */
    uint8_t msg[16];
    for (int i = 0; i < 16; i++)
        msg[i] = (uint8_t)i;
    assert_true(pushdiff_siphash(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
    assert_true(pushdiff_siphash(key, msg, 1) == 0x74f839c593dc67fdULL);
    assert_true(pushdiff_siphash(key, msg, 8) == 0x93f5f5799a932462ULL);
    assert_true(pushdiff_siphash(key, msg, 15) == 0xa129ca6149be45e5ULL);
}

static void unchanged_files_are_dropped_and_need_no_row(void **unused)
{
    (void)unused;
    struct pushdiff *d = set_of(rows, N(rows));
    for (size_t i = 0; i < N(rows); i++)
        assert_false(pushdiff_keep_file(d, rows[i].uniq, rows[i].flags));
    assert_false(pushdiff_ambiguous(d));
    assert_needed(d, NULL, 0);
    assert_int_equal(pushdiff_rows(d), 4);
    pushdiff_free(&d);
    assert_null(d);
}

static void renamed_gone_and_new_are_kept(void **unused)
{
    (void)unused;
    struct pushdiff *d = set_of(rows, N(rows));
    /* 3 unchanged; 7 renamed for \Seen; 9 gone; 12 unchanged but moved
     * new/ -> cur/ (the flags are what counts); one new file */
    assert_false(pushdiff_keep_file(d, "1000.M1P1.host", FLAG_SEEN));
    assert_true(pushdiff_keep_file(d, "1001.M2P1.host", FLAG_SEEN));
    assert_false(pushdiff_keep_file(d, "1003.M4P1.host", FLAG_SEEN));
    assert_true(pushdiff_keep_file(d, "2000.M9P2.host", 0));
    assert_false(pushdiff_ambiguous(d));
    assert_needed(d, (const uint32_t[]){7, 9}, 2);
    pushdiff_free(&d);
}

static void flags_outside_flag_all_are_no_change(void **unused)
{
    (void)unused;
    struct pushdiff *d = set_of(rows, N(rows));
    assert_false(pushdiff_keep_file(d, "1000.M1P1.host", FLAG_SEEN | ~FLAG_ALL));
    pushdiff_free(&d);
}

static void a_name_listed_twice_is_ambiguous(void **unused)
{
    (void)unused;
    struct pushdiff *d = set_of(rows, N(rows));
    /* in new/ and in cur/ (or a restored backup): the caller takes the
     * folder whole */
    assert_false(pushdiff_keep_file(d, "1001.M2P1.host", 0));
    assert_true(pushdiff_keep_file(d, "1001.M2P1.host", FLAG_SEEN));
    assert_true(pushdiff_ambiguous(d));
    /* a listing read again forgets it */
    pushdiff_restart(d);
    assert_false(pushdiff_ambiguous(d));
    assert_false(pushdiff_keep_file(d, "1001.M2P1.host", 0));
    assert_false(pushdiff_ambiguous(d));
    assert_needed(d, (const uint32_t[]){3, 9, 12}, 3);
    /* two new files of one name: both kept, nothing ambiguous (the scan
     * keeps one, the other is left out) */
    assert_true(pushdiff_keep_file(d, "3000.new", 0));
    assert_true(pushdiff_keep_file(d, "3000.new", FLAG_SEEN));
    assert_false(pushdiff_ambiguous(d));
    pushdiff_free(&d);
}

static void two_rows_of_one_name_cannot_be_sealed(void **unused)
{
    (void)unused;
    struct pushdiff *d = pushdiff_new(key);
    pushdiff_add_row(d, 1, "a", 0);
    pushdiff_add_row(d, 2, "a", FLAG_SEEN);
    assert_false(pushdiff_seal(d));
    pushdiff_free(&d);
}

static void names_with_odd_bytes_are_told_apart(void **unused)
{
    (void)unused;
    const struct row odd[] = {
        {1, "a b\tc", 0},   {2, "\xff\xfe", 0},       {3, "x:2", 0}, {4, "\xc3\xa9t\xc3\xa9", FLAG_SEEN},
        {5, "12345678", 0}, {6, "123456789", 0},     {7, "", 0},
    };
    struct pushdiff *d = set_of(odd, N(odd));
    for (size_t i = 0; i < N(odd); i++)
        assert_false(pushdiff_keep_file(d, odd[i].uniq, odd[i].flags));
    /* one byte off is another name */
    assert_true(pushdiff_keep_file(d, "a b\tC", 0));
    assert_true(pushdiff_keep_file(d, "\xff", 0));
    assert_true(pushdiff_keep_file(d, "1234567", 0));
    assert_false(pushdiff_ambiguous(d));
    assert_needed(d, NULL, 0);
    pushdiff_free(&d);
}

static void wanted_rows_and_files_are_kept(void **unused)
{
    (void)unused;
    struct pushdiff *d = set_of(rows, N(rows));
    pushdiff_want_uid(d, 3);
    pushdiff_want_uniq(d, "1003.M4P1.host");
    pushdiff_want_uniq(d, "no such row");
    pushdiff_restart(d); /* wants outlive a restart */
    assert_true(pushdiff_keep_file(d, "1000.M1P1.host", FLAG_SEEN));
    assert_false(pushdiff_keep_file(d, "1001.M2P1.host", 0));
    assert_false(pushdiff_keep_file(d, "1002.M3P1.host", FLAG_SEEN | FLAG_FLAGGED));
    assert_true(pushdiff_keep_file(d, "1003.M4P1.host", FLAG_SEEN));
    assert_needed(d, (const uint32_t[]){3, 12}, 2);
    pushdiff_free(&d);
}

static void rows_without_a_name_are_left_alone(void **unused)
{
    (void)unused;
    struct pushdiff *d = pushdiff_new(key);
    pushdiff_add_row(d, 5, NULL, 0);
    pushdiff_add_row(d, 6, "b", 0);
    assert_true(pushdiff_seal(d));
    assert_int_equal(pushdiff_rows(d), 1);
    assert_true(pushdiff_has_uid(d, 6));
    assert_false(pushdiff_has_uid(d, 5));
    assert_false(pushdiff_has_uid(d, 7));
    pushdiff_free(&d);
}

static void a_big_folder_keeps_only_its_changes(void **unused)
{
    (void)unused;
    /* 20,000 rows, added out of UID order; every 100th file renamed,
     * every 1000th gone, 5 new */
    enum { NROWS = 20000 };
    struct pushdiff *d = pushdiff_new(key);
    char name[64];
    for (uint32_t i = NROWS; i >= 1; i--) {
        snprintf(name, sizeof name, "17330%05u.M%uP42R%x.host", i, i * 7, i * 2654435761u);
        pushdiff_add_row(d, i, name, i % 3 ? FLAG_SEEN : 0);
    }
    assert_true(pushdiff_seal(d));
    pushdiff_restart(d);
    size_t kept = 0, want = 0;
    for (uint32_t i = 1; i <= NROWS; i++) {
        if (i % 1000 == 0)
            continue;
        snprintf(name, sizeof name, "17330%05u.M%uP42R%x.host", i, i * 7, i * 2654435761u);
        unsigned f = i % 3 ? FLAG_SEEN : 0;
        kept += pushdiff_keep_file(d, name, i % 100 == 0 ? f ^ FLAG_FLAGGED : f);
    }
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "new-%d", i);
        kept += pushdiff_keep_file(d, name, 0);
    }
    assert_int_equal(kept, NROWS / 100 - NROWS / 1000 + 5);
    uint32_t *got = NULL;
    size_t n = pushdiff_needed(d, &got);
    for (size_t i = 0; i < n; i++)
        want += got[i] % 100 == 0;
    assert_int_equal(n, NROWS / 100);
    assert_int_equal(want, n);
    for (size_t i = 1; i < n; i++)
        assert_true(got[i - 1] < got[i]);
    free(got);
    assert_true(pushdiff_has_uid(d, 1) && pushdiff_has_uid(d, NROWS) && !pushdiff_has_uid(d, NROWS + 1));
    pushdiff_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(siphash_matches_the_reference_vectors),
        cmocka_unit_test(unchanged_files_are_dropped_and_need_no_row),
        cmocka_unit_test(renamed_gone_and_new_are_kept),
        cmocka_unit_test(flags_outside_flag_all_are_no_change),
        cmocka_unit_test(a_name_listed_twice_is_ambiguous),
        cmocka_unit_test(two_rows_of_one_name_cannot_be_sealed),
        cmocka_unit_test(names_with_odd_bytes_are_told_apart),
        cmocka_unit_test(wanted_rows_and_files_are_kept),
        cmocka_unit_test(rows_without_a_name_are_left_alone),
        cmocka_unit_test(a_big_folder_keeps_only_its_changes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
