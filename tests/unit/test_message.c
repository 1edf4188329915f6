/* test_message.c: the one header parser (message_header), read the same
 * for a Maildir file (LF) and a server's answer (CRLF), and the identity of
 * a local file (message_identity_fd). */
#include <setjmp.h>
#include <stdarg.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(former_imap_cases),
        cmocka_unit_test(line_ends),
        cmocka_unit_test(folds),
        cmocka_unit_test(tabs),
        cmocka_unit_test(lengths),
        cmocka_unit_test(missing_duplicated_and_bare),
        cmocka_unit_test(identity_of_a_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
