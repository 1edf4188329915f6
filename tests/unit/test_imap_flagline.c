/* SPDX-License-Identifier: MIT */
/*
 * test_imap_flagline.c: the reader of a flag listing's lines that bypasses
 * libetpan's parser (sync/remote/imap_flagline.c). What it takes it reads
 * as the FETCH handler reads libetpan's tree (system flags in any case,
 * $Forwarded as its flag, other keywords kept as sent, \Recent and
 * extension flags dropped, MODSEQ ignored); every line it should leave to
 * libetpan (another item or response, a quoted flag, an extra space, a
 * number out of range, "\Seenx", which libetpan itself reads differently)
 * comes back IMAP_FLAGLINE_OTHER with nothing allocated.
 * tests/fuzz/fuzz_flagline.c checks any line against libetpan itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sync/flags.h"
#include "sync/remote/imap_int.h"

static int parse(const char *line, struct imap_flagline *out)
{
    return imap_flagline_parse(line, strlen(line), out);
}

static void plain_reports(void **state)
{
    (void)state;
    struct imap_flagline x;
    assert_int_equal(parse("* 1 FETCH (UID 4 FLAGS (\\Seen))\r\n", &x), IMAP_FLAGLINE_OK);
    assert_true(x.has_uid && x.has_flags);
    assert_int_equal(x.m.uid, 4);
    assert_int_equal(x.m.flags, FLAG_SEEN);
    assert_null(x.m.keywords);
    assert_int_equal(x.m.size, 0);

    /* any order, names in any case, every system flag, a size */
    assert_int_equal(parse("* 12 FETCH (flags (\\ANSWERED \\flagged \\Deleted \\seen \\Draft) "
                           "RFC822.SIZE 5678 uid 4294967295)\r\n",
                           &x),
                     IMAP_FLAGLINE_OK);
    assert_int_equal(x.m.uid, 4294967295u);
    assert_int_equal(x.m.flags, FLAG_ANSWERED | FLAG_FLAGGED | FLAG_DELETED | FLAG_SEEN | FLAG_DRAFT);
    assert_int_equal(x.m.size, 5678);

    /* no flags at all; a MODSEQ (CONDSTORE) read and dropped */
    assert_int_equal(parse("* 3 FETCH (UID 9 FLAGS () MODSEQ (12345678901234))\r\n", &x), IMAP_FLAGLINE_OK);
    assert_int_equal(x.m.uid, 9);
    assert_int_equal(x.m.flags, 0);
    assert_true(x.has_flags);

    /* an unsolicited update without UID or FLAGS: taken, placed by the caller */
    assert_int_equal(parse("* 6 FETCH (MODSEQ (4))\r\n", &x), IMAP_FLAGLINE_OK);
    assert_false(x.has_uid);
    assert_false(x.has_flags);
    assert_int_equal(parse("* 6 FETCH (UID 6)\r\n", &x), IMAP_FLAGLINE_OK);
    assert_true(x.has_uid);
    assert_false(x.has_flags);
}

static void keywords(void **state)
{
    (void)state;
    struct imap_flagline x;
    assert_int_equal(parse("* 1 FETCH (UID 4 FLAGS ($forwarded $Junk \\Recent NonJunk \\X-Ext $label1))\r\n", &x),
                     IMAP_FLAGLINE_OK);
    assert_int_equal(x.m.flags, FLAG_FORWARDED);
    assert_string_equal(x.m.keywords, "$Junk NonJunk $label1");
    free(x.m.keywords);

    /* a keyword over 200 characters is dropped, as the libetpan path drops it */
    char line[512];
    char kw[202];
    memset(kw, 'k', 201);
    kw[201] = '\0';
    snprintf(line, sizeof line, "* 1 FETCH (UID 4 FLAGS (%s \\Seen ok))\r\n", kw);
    assert_int_equal(parse(line, &x), IMAP_FLAGLINE_OK);
    assert_int_equal(x.m.flags, FLAG_SEEN);
    assert_string_equal(x.m.keywords, "ok");
    free(x.m.keywords);
}

static void left_to_libetpan(void **state)
{
    (void)state;
    static const char *const other[] = {
        "* 8 EXISTS\r\n",
        "A12 OK done\r\n",
        "* OK [HIGHESTMODSEQ 5] x\r\n",
        "* 1 FETCH (UID 4 FLAGS (\\Seen))",         /* no CRLF */
        "* 1 FETCH (UID 4 FLAGS (\\Seen))\n",       /* bare LF */
        "* 1 FETCH (UID 4 FLAGS (\\Seen))\r\n\r\n", /* more than a line */
        "* 1 FETCH (UID 4 FLAGS (\\Seen)) \r\n",    /* trailing space */
        "* 1 FETCH (UID 4  FLAGS (\\Seen))\r\n",    /* double space */
        "*  1 FETCH (UID 4 FLAGS (\\Seen))\r\n",
        "* 1 FETCH (UID 4 FLAGS ( \\Seen))\r\n",
        "* 1 FETCH (UID 4 FLAGS (\\Seen ))\r\n",
        "* 1 FETCH (UID 4 FLAGS (\"\\Flagged\" \\Seen))\r\n", /* quoted: libetpan's astring */
        "* 1 FETCH (UID 4 FLAGS ({3}\r\n",                    /* a literal */
        "* 1 FETCH (UID 4 FLAGS (\\Seenx))\r\n",              /* libetpan: \Seen, then fails */
        "* 1 FETCH (UID 4 FLAGS (\\Recently))\r\n",
        "* 1 FETCH (UID 4 FLAGS (\\*))\r\n",
        "* 1 FETCH (UID 4 FLAGS (a]b))\r\n",
        "* 1 FETCH (UID 4 FLAGS (\\))\r\n",
        "* 1 FETCH (UID 4 INTERNALDATE \"01-Jan-2020 00:00:00 +0000\")\r\n",
        "* 1 FETCH (UID 4 X-GM-MSGID 123)\r\n",
        "* 1 FETCH (UID 4 UID 5)\r\n", /* an item twice */
        "* 1 FETCH (FLAGS (\\Seen) FLAGS (\\Seen) UID 4)\r\n",
        "* 1 FETCH (UID 0 FLAGS ())\r\n", /* UID 0 */
        "* 0 FETCH (UID 4 FLAGS ())\r\n",
        "* 1 FETCH (UID 04 FLAGS ())\r\n",         /* a leading zero */
        "* 1 FETCH (UID 4294967296 FLAGS ())\r\n", /* over 32 bits */
        "* 1 FETCH (UID 4 RFC822.SIZE 99999999999)\r\n",
        "* 1 FETCH (UID 4 MODSEQ (99999999999999999999))\r\n",
        "* 1 FETCH (UID 4 MODSEQ 5)\r\n",
        "* 1 FETCH (UID 4 FLAGS \\Seen)\r\n",
        "* 1 FETCH ()\r\n",
        "* 1 FETCH UID 4\r\n",
        "* 1 FETCHX (UID 4)\r\n",
        "",
    };
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        struct imap_flagline x;
        memset(&x, 0x5a, sizeof x);
        assert_int_equal(parse(other[i], &x), IMAP_FLAGLINE_OTHER);
        assert_false(x.has_uid || x.has_flags);
        assert_int_equal(x.m.uid, 0);
        assert_int_equal(x.m.flags, 0);
        assert_null(x.m.keywords);
    }
    /* declined after a keyword was taken: nothing left allocated (ASan) */
    struct imap_flagline x;
    assert_int_equal(parse("* 1 FETCH (UID 4 FLAGS ($Junk \"q\"))\r\n", &x), IMAP_FLAGLINE_OTHER);
    assert_null(x.m.keywords);
    /* a NUL inside, and a length that cuts the line short */
    assert_int_equal(imap_flagline_parse("* 1 FETCH (UID 4\0 FLAGS ())\r\n", 29, &x), IMAP_FLAGLINE_OTHER);
    assert_int_equal(imap_flagline_parse("* 1 FETCH (UID 4 FLAGS ())\r\n", 27, &x), IMAP_FLAGLINE_OTHER);
}

/* The compact stash of a QRESYNC EXAMINE's changes past its window
 * (imap_qresync.c): sorted by UID, the later of two reports of a UID
 * counts (its keywords or none), ranges taken as listings, and new mail
 * (from known_uidnext up) never served from it. */
static void stash_of_changes(void **state)
{
    (void)state;
    struct imap_stash *st = calloc(1, sizeof *st);
    assert_non_null(st);
    *st = (struct imap_stash){.ok = true, .modseq = 7, .known_uidnext = 100};
    struct {
        uint32_t uid;
        unsigned flags;
        const char *kw;
    } in[] = {{30, FLAG_SEEN, NULL}, {10, FLAG_FLAGGED, "$Label1"}, {20, 0, "a b"}, {10, FLAG_SEEN, NULL},
              {20, FLAG_SEEN, "c"}, {40, FLAG_DRAFT, NULL}};
    for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
        struct remote_msg m = {.uid = in[i].uid, .flags = in[i].flags, .keywords = in[i].kw ? strdup(in[i].kw) : NULL};
        assert_true(imap_stash_add(st, &m));
        assert_null(m.keywords); /* taken */
    }
    struct remote_msg bad = {.uid = 50, .flags = FLAGS_MISSING};
    assert_false(imap_stash_add(st, &bad)); /* a report without FLAGS cannot be held */
    imap_stash_seal(st);
    struct remote_msg *m = NULL;
    size_t n = 0;
    assert_true(imap_stash_serves(st, 1, 35, 7));
    assert_false(imap_stash_serves(st, 1, 35, 6)); /* other changes */
    assert_true(imap_stash_take(st, 1, 35, &m, &n));
    assert_int_equal(n, 3);
    assert_int_equal(m[0].uid, 10);
    assert_int_equal(m[0].flags, FLAG_SEEN); /* the later report */
    assert_null(m[0].keywords);              /* ...which had none */
    assert_int_equal(m[1].uid, 20);
    assert_int_equal(m[1].flags, FLAG_SEEN);
    assert_string_equal(m[1].keywords, "c");
    assert_int_equal(m[2].uid, 30);
    assert_int_equal(m[2].size, 0);
    remote_msgs_free(m, n);
    assert_true(imap_stash_take(st, 31, 39, &m, &n));
    assert_int_equal(n, 0);
    remote_msgs_free(m, n);
    /* what vanished is no change */
    const uint32_t gone[] = {5, 20, 40};
    imap_stash_drop(st, gone, 3);
    assert_true(imap_stash_take(st, 1, 100, &m, &n));
    assert_int_equal(n, 2);
    assert_int_equal(m[0].uid, 10);
    assert_int_equal(m[1].uid, 30);
    remote_msgs_free(m, n);
    /* new mail is not in it with its size: a range holding it is not served */
    struct remote_msg fresh = {.uid = 120, .flags = 0};
    st->ok = true;
    assert_true(imap_stash_add(st, &fresh));
    imap_stash_seal(st);
    assert_true(imap_stash_serves(st, 31, 99, 7));
    assert_false(imap_stash_serves(st, 31, 130, 7));
    assert_false(imap_stash_serves(st, 101, UINT32_MAX, 7));
    imap_stash_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_reports),
        cmocka_unit_test(keywords),
        cmocka_unit_test(left_to_libetpan),
        cmocka_unit_test(stash_of_changes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
