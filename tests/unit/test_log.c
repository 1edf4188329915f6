/* SPDX-License-Identifier: MIT */
/* test_log.c: log_clean(), the escaping of every message line, and the
 * sink that takes the lines (the library itself never prints). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sync/log.h"

static void clean_is(const char *in, const char *want)
{
    char *got = log_clean(in);
    if (strcmp(got, want) != 0)
        fail_msg("log_clean(\"%s\") = \"%s\", want \"%s\"", in, got, want);
    free(got);
}

static void controls_escaped(void **unused)
{
    (void)unused;
    clean_is("", "");
    clean_is("plain text, 100% ok [x] \\Seen", "plain text, 100% ok [x] \\Seen");
    clean_is("a\nb", "a\\nb");
    clean_is("a\r\nb\tc", "a\\r\\nb\\tc");
    clean_is("evil\x1b[2J\nmailsync: error: forged:2,S",
             "evil\\x1b[2J\\nmailsync: error: forged:2,S");
    clean_is("\x1b", "\\x1b");
    clean_is("\x01\x07\x08\x1f\x7f", "\\x01\\x07\\x08\\x1f\\x7f");
    /* C1 controls, UTF-8 encoded (U+009B is a CSI on some terminals). */
    clean_is("a\xc2\x9b" "31m", "a\\xc2\\x9b31m");
    clean_is("\xc2\x85", "\\xc2\\x85");
}

static void utf8_kept(void **unused)
{
    (void)unused;
    clean_is("Th\xc6\xb0 \xc4\x91\xc3\xa3 g\xe1\xbb\xadi", "Th\xc6\xb0 \xc4\x91\xc3\xa3 g\xe1\xbb\xadi");
    clean_is("\xc2\xa0\xe2\x82\xac\xf0\x9f\x93\xa7", "\xc2\xa0\xe2\x82\xac\xf0\x9f\x93\xa7");
    /* Not UTF-8: a lone continuation byte, a truncated sequence, an
     * overlong '/', a surrogate, past U+10FFFF, Latin-1. */
    clean_is("\x80", "\\x80");
    clean_is("a\xe2\x82", "a\\xe2\\x82");
    clean_is("\xc0\xaf", "\\xc0\\xaf");
    clean_is("\xed\xa0\x80", "\\xed\\xa0\\x80");
    clean_is("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80");
    clean_is("caf\xe9!", "caf\\xe9!");
    /* An escape byte inside a broken sequence is not swallowed by it. */
    clean_is("\xe2\x1b[31m", "\\xe2\\x1b[31m");
}

static void utf8_len(void **unused)
{
    (void)unused;
    assert_int_equal(log_utf8_len("a", 1), 1);
    assert_int_equal(log_utf8_len("\xc3\xa3", 2), 2);
    assert_int_equal(log_utf8_len("\xc3\xa3", 1), 0);
    assert_int_equal(log_utf8_len("\xe1\xbb\xad", 3), 3);
    assert_int_equal(log_utf8_len("\xf0\x9f\x93\xa7", 4), 4);
    assert_int_equal(log_utf8_len("\xff", 1), 0);
    assert_int_equal(log_utf8_len("", 0), 0);
}

static struct {
    int calls;
    enum log_level level;
    char text[256];
} got;

static void test_sink(enum log_level level, const char *text)
{
    got.calls++;
    got.level = level;
    snprintf(got.text, sizeof got.text, "%s", text);
}

/* A line reaches the sink formatted and escaped, without prefix or
 * newline, with its level; levels above the verbosity do not. */
static void lines_go_to_the_sink(void **unused)
{
    (void)unused;
    memset(&got, 0, sizeof got);
    log_set_sink(test_sink);
    log_verbosity = 0;
    log_msg(LOG_WARN, "folder %s: %d\n", "evil\x1b[2J", 7);
    assert_int_equal(got.calls, 1);
    assert_int_equal(got.level, LOG_WARN);
    assert_string_equal(got.text, "folder evil\\x1b[2J: 7\\n");
    log_msg(LOG_VERBOSE, "not shown at verbosity 0");
    assert_int_equal(got.calls, 1);
    log_verbosity = -1; /* --quiet: errors still come */
    log_msg(LOG_INFO, "dropped");
    log_msg(LOG_ERROR, "kept");
    assert_int_equal(got.calls, 2);
    assert_int_equal(got.level, LOG_ERROR);
    assert_string_equal(got.text, "kept");
    log_fatal("out of memory"); /* the OOM path: no allocation, always shown */
    assert_int_equal(got.calls, 3);
    assert_int_equal(got.level, LOG_FATAL);
    assert_string_equal(got.text, "out of memory");
    log_verbosity = 0;
    log_set_sink(NULL);
}

/* Without a sink nothing is written anywhere: not to stderr either. */
static void no_sink_writes_nothing(void **unused)
{
    (void)unused;
    char path[] = "/tmp/test_log.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    log_set_sink(NULL);
    log_msg(LOG_ERROR, "an error nobody asked to see");
    log_fatal("out of memory");
    fflush(stderr);
    off_t size = lseek(fd, 0, SEEK_END);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    assert_int_equal(size, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(controls_escaped),
        cmocka_unit_test(utf8_kept),
        cmocka_unit_test(utf8_len),
        cmocka_unit_test(lines_go_to_the_sink),
        cmocka_unit_test(no_sink_writes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
