/* SPDX-License-Identifier: MIT */
/* test_progress_line.c: the progress line's text (cmd/progress.c):
 * at every width from 1 to 200 columns no line is wider than asked; a
 * long folder name gives way in its middle before the counts do; the
 * percent reaches 100 only at the end; the ETA only after three seconds
 * and never a silly value. (The terminal side, under a pseudo-terminal,
 * is tests/integration/test_progress.py.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "cmd/progress.h"

static const char long_name[] = "Archives/2024/Projects/a folder with a very long name indeed";
static const char cjk_name[] = "\xe5\xb7\xb2\xe5\x8f\x91\xe9\x80\x81/\xe9\x82\xae\xe4\xbb\xb6\xe5\xbd\x92\xe6\xa1\xa3"
                               "/\xe4\xba\x8c\xe3\x80\x87\xe4\xba\x8c\xe5\x9b\x9b\xe5\xb9\xb4\xe7\x9a\x84\xe9\xa1\xb9"
                               "\xe7\x9b\xae"; /* 已发送/邮件归档/二〇二四年的项目: 2 columns each */
static const char vi_name[] = "Th\xc6\xb0 \xc4\x91\xc3\xa3 g\xe1\xbb\xadi"; /* Thư đã gửi */

static struct progress_view down(const char *folder)
{
    return (struct progress_view){.account = "work",
                                  .account_index = 2,
                                  .naccounts = 3,
                                  .folder = folder,
                                  .folder_index = 12,
                                  .nfolders = 40,
                                  .phase = PROGRESS_DOWN,
                                  .done = 1234,
                                  .total = 4567,
                                  .done_bytes = 123456789,
                                  .total_bytes = 987654321,
                                  .rate = 1234567,
                                  .eta = 4000,
                                  .run_messages = 23456,
                                  .run_bytes = 3456789012ull};
}

/* The widths of every view at every width, and the numbers kept where
 * there is room for them. */
static void never_wider_than_asked(void **unused)
{
    (void)unused;
    const char *names[] = {"INBOX", long_name, cjk_name, vi_name, NULL};
    enum progress_phase phases[] = {PROGRESS_CONNECTING, PROGRESS_FOLDER, PROGRESS_DOWN, PROGRESS_UP};
    for (size_t n = 0; n < sizeof names / sizeof names[0]; n++)
        for (size_t p = 0; p < sizeof phases / sizeof phases[0]; p++)
            for (int width = 1; width <= 200; width++) {
                struct progress_view v = down(names[n]);
                v.phase = phases[p];
                if (v.phase == PROGRESS_UP)
                    v.total_bytes = 0;
                char buf[512];
                struct progress_fit fit = {.level = 0, .folder_cols = 0};
                int w = progress_format(&v, width, &fit, buf, sizeof buf);
                if (w > width || progress_text_width(buf) != w)
                    fail_msg("width %d: \"%s\" is %d columns", width, buf, progress_text_width(buf));
                /* ASCII: the columns are the bytes */
                if ((n == 0 || n == 1) && strlen(buf) > (size_t)width)
                    fail_msg("width %d: \"%s\"", width, buf);
                if (v.phase >= PROGRESS_DOWN && width >= 40 && !strstr(buf, "1234/4567"))
                    fail_msg("width %d: the counts went: \"%s\"", width, buf);
                if (v.phase >= PROGRESS_DOWN && width >= 45 && !strstr(buf, "ETA 1:06:40"))
                    fail_msg("width %d: the ETA went: \"%s\"", width, buf);
            }
}

static void formatted(const struct progress_view *v, int width, char *buf, size_t len)
{
    progress_format(v, width, NULL, buf, len);
}

static void layouts(void **unused)
{
    (void)unused;
    char buf[512];
    struct progress_view v = down("INBOX");
    formatted(&v, 199, buf, sizeof buf);
    assert_string_equal(buf, "work (2/3) [12/40] INBOX: 1234/4567 messages, 117.7 MiB/941.9 MiB, 1.2 MiB/s, 12%, "
                             "ETA 1:06:40 | run: 23456 messages, 3.2 GiB");
    formatted(&v, 49, buf, sizeof buf);
    assert_string_equal(buf, "[12/40] INBOX 1234/4567 118M/942M 12% ETA 1:06:40"); /* 49 columns */
    v.eta = -1;
    v.rate = -1;
    formatted(&v, 199, buf, sizeof buf);
    assert_string_equal(buf, "work (2/3) [12/40] INBOX: 1234/4567 messages, 117.7 MiB/941.9 MiB, 12% | run: 23456 "
                             "messages, 3.2 GiB");
    /* a push's uploads: their total bytes are not known ahead */
    v = down("Sent");
    v.phase = PROGRESS_UP;
    v.total_bytes = 0;
    v.naccounts = 1;
    v.run_messages = v.done;
    formatted(&v, 199, buf, sizeof buf);
    assert_string_equal(buf, "work [12/40] Sent: uploading 1234/4567 messages, 117.7 MiB, 1.2 MiB/s, 27%, ETA 1:06:40");
    formatted(&v, 49, buf, sizeof buf);
    assert_string_equal(buf, "[12/40] Sent up 1234/4567 118M 27% ETA 1:06:40");
    v.phase = PROGRESS_CONNECTING;
    formatted(&v, 49, buf, sizeof buf);
    assert_string_equal(buf, "work: connecting");
    v.phase = PROGRESS_FOLDER; /* between transfers: the run's totals, where they fit */
    formatted(&v, 49, buf, sizeof buf);
    assert_string_equal(buf, "work [12/40] Sent | run: 1234 messages, 3.2 GiB");
    formatted(&v, 40, buf, sizeof buf);
    assert_string_equal(buf, "work [12/40] Sent");
}

/* A long name gives way in its middle (both ends stay), before the counts. */
static void long_names_shortened_in_the_middle(void **unused)
{
    (void)unused;
    char buf[512];
    struct progress_view v = down(long_name);
    v.eta = -1;
    formatted(&v, 79, buf, sizeof buf);
    assert_true(strlen(buf) <= 79);
    assert_non_null(strstr(buf, "1234/4567"));
    assert_non_null(strstr(buf, "[12/40] Archives/"));
    assert_non_null(strstr(buf, "...")); /* shortened, */
    assert_non_null(strstr(buf, "name indeed 1234/4567 118M/942M 12%")); /* its end kept */
    /* wide characters are cut whole */
    v = down(cjk_name);
    formatted(&v, 49, buf, sizeof buf);
    assert_true(progress_text_width(buf) <= 49);
    assert_non_null(strstr(buf, "\xe5\xb7\xb2")); /* its first character */
    assert_non_null(strstr(buf, "\xe7\x9b\xae 1234/4567")); /* its last */
    assert_int_equal(progress_text_width(cjk_name), 2 * 15 + 2);
    assert_int_equal(progress_text_width(vi_name), 10);
    assert_int_equal(progress_text_width("e\xcc\x81"), 1); /* e + combining acute */
}

/* The fit of a phase's first draw holds for the next ones: the line does
 * not jump back to a fuller layout, nor the name to another length. */
static void a_phase_keeps_its_layout(void **unused)
{
    (void)unused;
    char a[512], b[512];
    struct progress_view v = down(long_name);
    v.done = v.total;
    v.done_bytes = v.total_bytes;
    struct progress_fit fit = {.level = 0, .folder_cols = 0};
    progress_format(&v, 60, &fit, a, sizeof a);
    v = down(long_name);
    v.done = 1;
    v.done_bytes = 1;
    v.eta = -1;
    v.rate = -1;
    struct progress_fit kept = fit;
    progress_format(&v, 60, &kept, b, sizeof b);
    assert_int_equal(kept.level, fit.level);
    assert_int_equal(kept.folder_cols, fit.folder_cols);
    /* the same head: account, k/N, the name as short */
    const char *ea = strstr(a, "indeed "), *eb = strstr(b, "indeed ");
    assert_non_null(ea);
    assert_non_null(eb);
    assert_int_equal(ea - a, eb - b);
    assert_memory_equal(a, b, (size_t)(ea - a));
}

static void percent_and_eta(void **unused)
{
    (void)unused;
    char buf[512];
    struct progress_view v = down("INBOX");
    v.naccounts = 1;
    v.eta = -1;
    v.rate = -1;
    v.run_messages = 0;
    v.done = 99;
    v.total = 100;
    v.done_bytes = v.total_bytes; /* the sizes said more than came */
    formatted(&v, 199, buf, sizeof buf);
    assert_non_null(strstr(buf, ", 99%")); /* 100% is for the end */
    v.done = 100;
    formatted(&v, 199, buf, sizeof buf);
    assert_non_null(strstr(buf, ", 100%"));
    /* the ETA: after three seconds, from the bytes where known */
    assert_true(progress_eta(10, 100, 100, 1000, 2.9) < 0);
    assert_int_equal((int)progress_eta(10, 100, 100, 1000, 3.0), 27);
    assert_int_equal((int)progress_eta(50, 100, 0, 0, 10.0), 10);
    assert_true(progress_eta(0, 100, 0, 1000, 60) < 0);   /* nothing yet */
    assert_true(progress_eta(100, 100, 1000, 1000, 60) < 0); /* done */
    assert_true(progress_eta(1, 100, 1, 1000000000, 60) < 0); /* a stall: no "ETA 16666:40:00" */
    assert_true(progress_eta(1, 100, 0, 1000, 60) < 0);    /* no bytes yet of known bytes */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(never_wider_than_asked),
        cmocka_unit_test(layouts),
        cmocka_unit_test(long_names_shortened_in_the_middle),
        cmocka_unit_test(a_phase_keeps_its_layout),
        cmocka_unit_test(percent_and_eta),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
