/* SPDX-License-Identifier: MIT */
/* test_flags.c: the flag bit set <-> Maildir letters <-> IMAP names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "sync/flags.h"

static void letters_sorted(void **unused)
{
    (void)unused;
    char out[8];
    assert_string_equal(flags_to_letters(FLAG_SEEN | FLAG_DRAFT | FLAG_DELETED, out), "DST");
    assert_string_equal(flags_to_letters(FLAG_ALL, out), "DFPRST");
    assert_string_equal(flags_to_letters(0, out), "");
}

static void letters_parse_keeps_unknown(void **unused)
{
    (void)unused;
    char extra[8];
    unsigned f = flags_from_letters("STaFa", extra, sizeof extra);
    assert_int_equal(f, FLAG_SEEN | FLAG_DELETED | FLAG_FLAGGED);
    assert_string_equal(extra, "a");
    f = flags_from_letters("zyRP", extra, sizeof extra);
    assert_int_equal(f, FLAG_ANSWERED | FLAG_FORWARDED);
    assert_string_equal(extra, "yz");
}

/* Every letter flags_to_letters writes is read back as its bit, alone
 * and with others, with nothing left over; and extra stays empty with
 * known letters only (the parser's switch and the table agree). */
static void letters_round_trip(void **unused)
{
    (void)unused;
    char out[8], extra[8];
    for (unsigned f = 0; f <= FLAG_ALL; f++) {
        memset(extra, 'x', sizeof extra);
        assert_int_equal(flags_from_letters(flags_to_letters(f, out), extra, sizeof extra), f);
        assert_string_equal(extra, "");
    }
    assert_int_equal(flags_from_letters("", NULL, 0), 0);
    assert_int_equal(flags_from_letters("s", extra, sizeof extra), 0); /* lower case is not S */
    assert_string_equal(extra, "s");
}

static void imap_names(void **unused)
{
    (void)unused;
    assert_int_equal(flags_from_imap_name("\\seen"), FLAG_SEEN);
    assert_int_equal(flags_from_imap_name("$Forwarded"), FLAG_FORWARDED);
    assert_int_equal(flags_from_imap_name("\\Recent"), 0);
    assert_int_equal(flags_from_imap_name("$Junk"), 0);
    assert_string_equal(flags_imap_name(FLAG_ANSWERED), "\\Answered");
    assert_null(flags_imap_name(FLAG_SEEN | FLAG_DRAFT));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(letters_sorted),
        cmocka_unit_test(letters_parse_keeps_unknown),
        cmocka_unit_test(letters_round_trip),
        cmocka_unit_test(imap_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
