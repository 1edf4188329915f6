/* SPDX-License-Identifier: MIT */
/* test_message.c: the one header parser (message_header), read the same
 * for a Maildir file (LF) and a server's answer (CRLF), and the identity of
 * a local file (message_identity_fd). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sync/message.h"

/* message_header of h (a C string), checked against want (NULL: none). */
static void header_is(const char *h, const char *want)
{
    char *v = message_header(h, strlen(h), "Message-ID");
    if (!want) {
        assert_null(v);
        return;
    }
    assert_non_null(v);
    assert_string_equal(v, want);
    free(v);
}

/* The same message with CRLF line ends gives the same value. */
static void header_is_both(const char *lf, const char *want)
{
    size_t n = strlen(lf), k = 0;
    char *crlf = malloc(2 * n + 1);
    assert_non_null(crlf);
    for (size_t i = 0; i < n; i++) {
        if (lf[i] == '\n')
            crlf[k++] = '\r';
        crlf[k++] = lf[i];
    }
    crlf[k] = '\0';
    header_is(lf, want);
    header_is(crlf, want);
    free(crlf);
}

/* "Message-ID: <" + fill x n + "@h>" + rest, malloc'd. */
static char *long_id(size_t fill, const char *rest)
{
    size_t len = strlen("Message-ID: <") + fill + strlen("@h>") + strlen(rest);
    char *h = malloc(len + 1);
    assert_non_null(h);
    strcpy(h, "Message-ID: <");
    memset(h + strlen(h), 'x', fill);
    strcpy(h + strlen("Message-ID: <") + fill, "@h>");
    strcat(h, rest);
    return h;
}

/* The cases the IMAP side's own parser (netstream.c's imap_header_value,
 * gone) was tested with, read by the one parser. */
static void former_imap_cases(void **unused)
{
    (void)unused;
    header_is("Subject: x\r\nmessage-id:\r\n  <a@b>  \r\nX: y\r\n\r\nMessage-ID: <body@x>\r\n", "<a@b>");
    header_is("Subject: x\r\n\r\n", NULL);
    header_is("Message-ID:   \r\n", NULL);
    header_is("Message-ID: <lf@x>\nOther: 1\n", "<lf@x>");
    /* "Message-IDX:" is another header */
    header_is("Message-IDX: <no>\r\n", NULL);
    /* a NUL in the value: no value (the IMAP side kept "<a" before; the
     * Maildir side had none: they disagreed) */
    const char nul[] = "Message-ID: <a\0b>\r\n";
    assert_null(message_header(nul, sizeof nul - 1, "Message-ID"));
}

static void line_ends(void **unused)
{
    (void)unused;
    header_is_both("From: a\nMessage-ID: <plain@x>\nSubject: s\n\nbody\n", "<plain@x>");
    /* the last line of a block without any line end */
    header_is("Message-ID: <end@x>", "<end@x>");
    /* a bare CR inside a line is a byte of the value, a CR before LF is not */
    header_is("Message-ID: <c\rr@x>\r\n", "<c\rr@x>");
    /* case of the name does not matter */
    header_is_both("MESSAGE-id: <case@x>\n", "<case@x>");
}

static void folds(void **unused)
{
    (void)unused;
    /* the value on the next line */
    header_is_both("Message-ID:\n <next@x>\n", "<next@x>");
    header_is_both("Message-ID:\n\t<next@x>\n", "<next@x>");
    /* a fold inside the value, whatever its blanks, is one space */
    header_is_both("Message-ID: <a@b\n\tc>\n", "<a@b c>");
    header_is_both("Message-ID: <a@b \n\tc>\n", "<a@b c>");
    header_is_both("Message-ID: <a@b\t\n    c>\n", "<a@b c>");
    /* several folds, an empty continuation line among them */
    header_is_both("Message-ID: <a\n b\n \t \n c@x>\nX: y\n", "<a b c@x>");
    /* a fold ends at the next header or at the end of the block */
    header_is_both("Message-ID: <a@x>\nX-Next: <no>\n", "<a@x>");
    header_is_both("Message-ID: <a@x>\n\n <body>\n", "<a@x>");
}

static void tabs(void **unused)
{
    (void)unused;
    /* a tab inside a line stays a tab (the IMAP side made it a space) */
    header_is_both("Message-ID: <tab\there@x>\n", "<tab\there@x>");
    /* leading and trailing blanks go */
    header_is_both("Message-ID:\t <trim@x> \t\n", "<trim@x>");
}

static void lengths(void **unused)
{
    (void)unused;
    /* "<" + fill + "@h>" is fill + 4 bytes: 998 is a value, 999 none (the
     * IMAP side cut it to 999 bytes, the Maildir side had none) */
    char *h = long_id(994, "\n");
    char *v = message_header(h, strlen(h), "Message-ID");
    assert_non_null(v);
    assert_int_equal(strlen(v), 998);
    free(v);
    free(h);
    h = long_id(995, "\n");
    assert_null(message_header(h, strlen(h), "Message-ID"));
    free(h);
    h = long_id(1100, "\r\n");
    assert_null(message_header(h, strlen(h), "Message-ID"));
    free(h);
    /* the limit is on the unfolded value: 997 bytes and a fold make 999 */
    h = long_id(993, "\n x\n");
    assert_null(message_header(h, strlen(h), "Message-ID"));
    free(h);
    h = long_id(992, "\n x\n");
    v = message_header(h, strlen(h), "Message-ID");
    assert_non_null(v);
    assert_int_equal(strlen(v), 998);
    free(v);
    free(h);
}

static void missing_duplicated_and_bare(void **unused)
{
    (void)unused;
    header_is_both("From: a\nSubject: s\n\nMessage-ID: <in-body@x>\n", NULL);
    header_is("", NULL);
    /* the first header decides, even when it has no value */
    header_is_both("Message-ID: <first@x>\nMessage-ID: <second@x>\n", "<first@x>");
    header_is_both("Message-ID: \nMessage-ID: <second@x>\n", NULL);
    /* no angle brackets: the value as it stands */
    header_is_both("Message-ID: bare@x\n", "bare@x");
    header_is_both("Message-ID: two words\n", "two words");
    /* a space before the colon is another name */
    header_is_both("Message-ID : <no@x>\n", NULL);
    /* another header asked for */
    char *v = message_header("Subject: hi\n", 12, "subject");
    assert_string_equal(v, "hi");
    free(v);
}

/* A local file's identity: the Message-ID message_header reads in the
 * server's CRLF copy, and the size of that copy. */
static void identity_of_a_file(void **unused)
{
    (void)unused;
    const char *lf = "From: a\nMessage-ID: <f@x \n\tfold>\n\nline\r\nlast\n";
    char path[] = "/tmp/test_message.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, lf, strlen(lf)), (ssize_t)strlen(lf));
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    char *id = NULL;
    uint64_t size = 0;
    assert_int_equal(message_identity_fd(fd, &id, &size), 0);
    assert_string_equal(id, "<f@x fold>");
    assert_int_equal(size, strlen(lf) + 5); /* 5 bare LFs become CRLF */
    free(id);
    close(fd);
}

/* A file holding s, positioned at its start (unlinked already). */
static int file_of(const char *s)
{
    char path[] = "/tmp/test_message.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

/* The CRLF size of an LF text. */
static uint64_t crlf_size(const char *lf)
{
    uint64_t n = strlen(lf);
    for (const char *p = lf; *p; p++)
        n += *p == '\n';
    return n;
}

static bool has_alt(const struct message_identity *id, uint64_t size)
{
    for (unsigned i = 0; i < id->nalt; i++)
        if (id->alt[i] == size)
            return true;
    return false;
}

#define SERVER_MSG "Return-Path: <b@x>\nFrom: B <b@x>\nDate: Tue, 14 Nov 2023 22:13:10 +0000\n" \
                   "Message-ID: <m@x>\nSubject: s\n\nbody\n"

/* mbsync's X-TUID (at the end of the header, or in place of one) and
 * OfflineIMAP's X-OfflineIMAP are left out of the size the server may
 * report; the file's own size stays the first choice. */
static void identity_without_tool_fields(void **unused)
{
    (void)unused;
    const char *mbsync = "Return-Path: <b@x>\nFrom: B <b@x>\nDate: Tue, 14 Nov 2023 22:13:10 +0000\n"
                         "Message-ID: <m@x>\nSubject: s\nX-TUID: Hu38kQsvKtT8\n\nbody\n";
    struct message_identity id;
    int fd = file_of(mbsync);
    assert_int_equal(message_identity_read(fd, &id), 0);
    close(fd);
    assert_string_equal(id.message_id, "<m@x>");
    assert_string_equal(id.date, "Tue, 14 Nov 2023 22:13:10 +0000");
    assert_string_equal(id.from, "B <b@x>");
    assert_int_equal(id.size, crlf_size(mbsync));
    assert_true(has_alt(&id, crlf_size(SERVER_MSG)));
    /* the leading Return-Path may be the server's own or a tool's */
    assert_true(has_alt(&id, crlf_size(SERVER_MSG) - strlen("Return-Path: <b@x>\r\n")));
    assert_false(has_alt(&id, id.size));
    message_identity_free(&id);

    /* X-OfflineIMAP, folded, in the middle of the header */
    const char *oimap = "From: B <b@x>\nX-OfflineIMAP: 123-\n 456\nMessage-ID: <m@x>\n\nbody\n";
    fd = file_of(oimap);
    assert_int_equal(message_identity_read(fd, &id), 0);
    close(fd);
    assert_int_equal(id.nalt, 1);
    assert_int_equal(id.alt[0], crlf_size("From: B <b@x>\nMessage-ID: <m@x>\n\nbody\n"));
    message_identity_free(&id);

    /* no tool fields: no other size */
    fd = file_of("From: B <b@x>\nReceived: late\nMessage-ID: <m@x>\n\nbody\n");
    assert_int_equal(message_identity_read(fd, &id), 0);
    close(fd);
    assert_int_equal(id.nalt, 0);
    message_identity_free(&id);
}

/* getmail puts Return-Path, Delivered-To and Received on top (fetchmail
 * one Received): each prefix of that run may be a tool's. */
static void identity_with_leading_fields(void **unused)
{
    (void)unused;
    const char *server = "Received: from mx by srv\nFrom: B <b@x>\nMessage-ID: <g@x>\n\nbody\n";
    const char *top = "Return-Path: <b@x>\nDelivered-To: me@x\nReceived: from pop by getmail\n";
    char file[512];
    snprintf(file, sizeof file, "%s%s", top, server);
    struct message_identity id;
    int fd = file_of(file);
    assert_int_equal(message_identity_read(fd, &id), 0);
    close(fd);
    assert_int_equal(id.size, crlf_size(file));
    assert_true(has_alt(&id, crlf_size(server)));                               /* three added */
    assert_true(has_alt(&id, crlf_size(server) + strlen("Received: from pop by getmail\r\n"))); /* two */
    assert_true(has_alt(&id, crlf_size("From: B <b@x>\nMessage-ID: <g@x>\n\nbody\n"))); /* all four */
    message_identity_free(&id);
}

/* The digest of text fed in chunks of k bytes, and its length. */
static void hash_in_chunks(const char *text, size_t k, unsigned char out[32], uint64_t *len)
{
    struct message_hash *h = message_hash_new();
    assert_non_null(h);
    size_t n = strlen(text);
    for (size_t i = 0; i < n; i += k)
        message_hash_add(h, text + i, n - i < k ? n - i : k);
    assert_true(message_hash_end(h, out, len));
    message_hash_free(h);
}

static char *to_crlf(const char *lf)
{
    char *out = malloc(2 * strlen(lf) + 1), *o = out;
    assert_non_null(out);
    for (const char *p = lf; *p; p++) {
        if (*p == '\n')
            *o++ = '\r';
        *o++ = *p;
    }
    *o = '\0';
    return out;
}

/* A download (CRLF, any chunking) and a local file that differ only by
 * the fields other tools add hash alike, over the same length; other
 * differences, and such fields in the body or below a kept field, count. */
static void hash_leaves_out_tool_fields(void **unused)
{
    (void)unused;
    const char *server = "Received: from mx\n by srv\nFrom: B <b@x>\nSubject: s\n\nX-TUID: in the body\nbody\n";
    const char *local = "Return-Path: <b@x>\nReceived: from pop\n by getmail\nReceived: from mx\n by srv\n"
                        "From: B <b@x>\nSubject: s\nX-TUID: Hu38kQsvKtT8\n\nX-TUID: in the body\nbody\n";
    char *crlf = to_crlf(server);
    unsigned char a[32], b[32], c[32];
    uint64_t la, lb, lc;
    hash_in_chunks(crlf, 1, a, &la);
    hash_in_chunks(crlf, 7, b, &lb);
    assert_memory_equal(a, b, 32);
    assert_int_equal(la, lb);
    assert_int_equal(la, strlen("From: B <b@x>\nSubject: s\n\nX-TUID: in the body\nbody\n"));

    struct message_hash *h = message_hash_new();
    int fd = file_of(local);
    assert_int_equal(message_hash_file(h, fd, c, &lc), 0);
    close(fd);
    message_hash_free(h);
    assert_memory_equal(a, c, 32);
    assert_int_equal(la, lc);

    /* a Received below a kept field is the message's own */
    hash_in_chunks("From: B <b@x>\nReceived: x\n\nbody\n", 5, b, &lb);
    hash_in_chunks("From: B <b@x>\nReceived: y\n\nbody\n", 5, c, &lc);
    assert_memory_not_equal(b, c, 32);
    /* the body counts */
    hash_in_chunks("From: B <b@x>\nX-TUID: 1\n\nbody\n", 3, b, &lb);
    hash_in_chunks("From: B <b@x>\n\nbodY\n", 3, c, &lc);
    assert_memory_not_equal(b, c, 32);
    hash_in_chunks("From: B <b@x>\n\nbody\n", 3, c, &lc);
    assert_memory_equal(b, c, 32);
    /* a download "a CR CR LF" is stored "a CR LF": the file's CR is the
     * message's own, not dropped a second time */
    hash_in_chunks("S: m\r\n\r\na\r\r\nb\r\n", 2, b, &lb);
    h = message_hash_new();
    fd = file_of("S: m\n\na\r\nb\n");
    assert_int_equal(message_hash_file(h, fd, c, &lc), 0);
    close(fd);
    message_hash_free(h);
    assert_memory_equal(b, c, 32);
    assert_int_equal(lb, lc);
    free(crlf);
}

/* A CR at the end of one read and its LF at the start of the next are one
 * CRLF (the size counts no extra CR). */
static void identity_crlf_across_reads(void **unused)
{
    (void)unused;
    size_t n = 65536 + 10;
    char *text = malloc(n + 1);
    assert_non_null(text);
    memset(text, 'x', n);
    memcpy(text, "From: a\n\n", 9);
    text[65535] = '\r';
    text[65536] = '\n';
    text[n - 1] = '\n';
    text[n] = '\0';
    struct message_identity id;
    int fd = file_of(text);
    assert_int_equal(message_identity_read(fd, &id), 0);
    close(fd);
    assert_int_equal(id.size, n + 3); /* three bare LFs */
    message_identity_free(&id);
    free(text);
}

/* mbsync's placeholders (isync 1.5.0 sync_msg_cvt.c, copy_msg_convert;
 * 1.4's sync.c said "Sync mode ReNew"): recognised with LF or CRLF, with
 * the Subject prefixed or added; a file missing any of the three marks
 * (X-TUID, "[placeholder]" Subject, the note) is a message. */
static void mbsync_placeholders(void **state)
{
    (void)state;
    static const char *const yes[] = {
        ("From: a@x\nSubject: [placeholder] hell\nMessage-ID: <p@x>\nX-TUID: abcdefghijkl\n\n"
        "Having a size of 59KiB, this message is over the MaxSize limit.\n"
        "Flag it and sync again (Sync mode Upgrade) to fetch its real contents.\n\n"
        "The original message is flagged as important.\n"),
        ("From: a@x\r\nX-TUID: abcdefghijkl\r\nSubject: [placeholder] (No Subject)\r\n\r\n"
        "Having a size of 2.2MiB, this message is over the MaxSize limit.\r\n"
        "Flag it and sync again (Sync mode ReNew) to fetch its real contents.\r\n"),
        ("Subject: [placeholder] \nX-TUID: abcdefghijkl\n\n"
        "Having a size of 1KiB, this message is over the MaxSize limit.\n"),
    };
    static const char *const no[] = {
        /* no X-TUID */
        "Subject: [placeholder] hell\n\nHaving a size of 59KiB, this message is over the MaxSize limit.\n",
        /* no placeholder Subject */
        "Subject: hell\nX-TUID: abcdefghijkl\n\nHaving a size of 59KiB, this message is over the MaxSize limit.\n",
        ("Subject: [placeholders] x\nX-TUID: abcdefghijkl\n\n"
        "Having a size of 59KiB, this message is over the MaxSize limit.\n"),
        /* no note, or not at the start of the body, or not on its first line */
        "Subject: [placeholder] hell\nX-TUID: abcdefghijkl\n\nHi,\n",
        ("Subject: [placeholder] hell\nX-TUID: abcdefghijkl\n\nHi,\nHaving a size of 59KiB, this message is over "
        "the MaxSize limit.\n"),
        ("Subject: [placeholder] hell\nX-TUID: abcdefghijkl\n\nHaving a size of 59KiB.\n"
        ", this message is over the MaxSize limit.\n"),
        /* the note in the header is no body */
        ("Subject: [placeholder] hell\nX-TUID: abcdefghijkl\n"
        "Having a size of 59KiB, this message is over the MaxSize limit.\n"),
        "",
    };
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        assert_true(message_is_mbsync_placeholder(yes[i], strlen(yes[i])));
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        assert_false(message_is_mbsync_placeholder(no[i], strlen(no[i])));
}

/* A placeholder edited by hand keeps its marks while it has its field or
 * its note's second line; a Subject alone, or mail about placeholders, is
 * none. */
static void placeholder_marks(void **state)
{
    (void)state;
    static const char head[] = "From: a@x\r\nSubject: Q\r\nMessage-ID: <q@x>\r\n\r\n";
    size_t n = 0;
    char *p = message_placeholder(head, sizeof head - 1, 3000000, 1048576, &n);
    assert_true(message_has_placeholder_marks(p, n));
    char *s = strstr(p, "[placeholder] ");
    memmove(s, s + 14, strlen(s + 14) + 1); /* the Subject's mark off */
    assert_false(message_is_mbsync_placeholder(p, strlen(p)));
    assert_true(message_has_placeholder_marks(p, strlen(p)));
    char *f = strstr(p, "X-Mailsync-Placeholder: ");
    f[0] = 'Y'; /* the field off: the note tells */
    assert_true(message_has_placeholder_marks(p, strlen(p)));
    char *note = strstr(p, "mailsync stored");
    note[0] = 'M';
    assert_false(message_has_placeholder_marks(p, strlen(p)));
    free(p);
    static const char *const no[] = {
        "Subject: [placeholder] hi\n\nHi\n",
        "Subject: x\n\nquoting: mailsync stored its header only (max_size = 5 bytes\n",
        "Subject: x\n\nHi\n"};
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        assert_false(message_has_placeholder_marks(no[i], strlen(no[i])));
    static const char yes[] = "Subject: x\nX-Mailsync-Placeholder: 12\n\nHi\n";
    assert_true(message_has_placeholder_marks(yes, sizeof yes - 1));
}

/* mailsync's own placeholders (message_placeholder): the real header with
 * the Subject marked, the size field, the note; recognised as a
 * placeholder; a header cut short keeps whole fields only. */
static void own_placeholders(void **state)
{
    (void)state;
    static const char head[] = "From: a@x\r\nSubject: Quarterly\r\n figures\r\nMessage-ID: <q@x>\r\n"
                               "X-TUID: abcdefghijkl\r\nX-Mailsync-Placeholder: 1\r\n\r\n";
    size_t n = 0;
    char *p = message_placeholder(head, sizeof head - 1, 3000000, 1048576, &n);
    assert_non_null(p);
    assert_int_equal(strlen(p), n);
    assert_true(message_is_mbsync_placeholder(p, n));
    char *v = message_header(p, n, "Subject");
    assert_string_equal(v, "[placeholder] Quarterly figures");
    free(v);
    v = message_header(p, n, "Message-ID");
    assert_string_equal(v, "<q@x>");
    free(v);
    v = message_header(p, n, "X-Mailsync-Placeholder");
    assert_string_equal(v, "3000000"); /* the old one dropped: one field, the size */
    free(v);
    assert_int_equal(message_placeholder_size(p, n), 3000000); /* what pairs it with its message */
    /* a field that is no size: none */
    static const char *const bad[] = {"X-Mailsync-Placeholder: 12x\n\n", "X-Mailsync-Placeholder: -1\n\n",
                                      "X-Mailsync-Placeholder:\n\n", "X-Mailsync-Placeholder: 99999999999999999999\n\n",
                                      "X-Other: 5\n\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(message_placeholder_size(bad[i], strlen(bad[i])), 0);
    assert_null(strstr(p, "X-TUID"));
    assert_non_null(strstr(p, "\r\n\r\nHaving a size of 2.9 MiB, this message is over the MaxSize limit.\r\n"));
    assert_non_null(strstr(p, "mailsync fetch"));
    free(p);

    /* no Subject: one is added; a block cut inside a field: up to the last whole one */
    static const char cut[] = "From: a@x\r\nTo: b@x\r\nReceived: from somewhere\r\n by some";
    p = message_placeholder(cut, sizeof cut - 1, 99999, 1000, &n);
    assert_non_null(p);
    assert_true(message_is_mbsync_placeholder(p, n));
    v = message_header(p, n, "Subject");
    assert_string_equal(v, "[placeholder] (No Subject)");
    free(v);
    assert_null(strstr(p, "Received"));
    assert_non_null(strstr(p, "To: b@x\r\n"));
    assert_non_null(strstr(p, "longer than this one"));
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(own_placeholders),
        cmocka_unit_test(placeholder_marks),
        cmocka_unit_test(former_imap_cases),
        cmocka_unit_test(line_ends),
        cmocka_unit_test(folds),
        cmocka_unit_test(tabs),
        cmocka_unit_test(lengths),
        cmocka_unit_test(missing_duplicated_and_bare),
        cmocka_unit_test(identity_of_a_file),
        cmocka_unit_test(identity_without_tool_fields),
        cmocka_unit_test(identity_with_leading_fields),
        cmocka_unit_test(hash_leaves_out_tool_fields),
        cmocka_unit_test(identity_crlf_across_reads),
        cmocka_unit_test(mbsync_placeholders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
