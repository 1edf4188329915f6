/* SPDX-License-Identifier: MIT */
/*
 * test_imap_objectid.c: the FETCH items that carry the server's id of a
 * message (sync/remote/imap_objectid.c): EMAILID (RFC 8474), parsed by us,
 * and X-GM-MSGID, parsed by libetpan. The grammar (1-255 of ALPHA DIGIT
 * "_" "-" in parentheses) is checked byte by byte; anything else is not an
 * id, and through libetpan's extension hook a parse error (the response
 * fails, no half-read id is kept).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sync/remote/imap_int.h"

static size_t parse(const char *text, char *out)
{
    return imap_emailid_parse(text, strlen(text), out);
}

static void emailid_grammar(void **state)
{
    (void)state;
    char id[IMAP_OBJID_MAX + 1];
    assert_int_equal(parse("EMAILID (M6d99ac3275bb4e) UID 4)", id), strlen("EMAILID (M6d99ac3275bb4e)"));
    assert_string_equal(id, "M6d99ac3275bb4e");
    assert_int_equal(parse("emailid (a_B-9)", id), 15); /* the keyword in any case */
    assert_string_equal(id, "a_B-9");

    /* not an id: nothing taken, out empty */
    static const char *const bad[] = {
        "EMAILID ()",         "EMAILID (a b)",  "EMAILID (a",   "EMAILID a",      "EMAILID(a)",
        "EMAILIDX (a)",       "EMAILID  (a)",   "EMAILID (a.b)", "EMAILID (\"a\")", "EMAILID NIL",
        "EMAILID ({1}\r\na)", "EMAILID (\xc3\xa9)", "THREADID (T1)", "",            "EMAILID (",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        strcpy(id, "x");
        assert_int_equal(parse(bad[i], id), 0);
        assert_string_equal(id, "");
    }
    /* a NUL inside, and a length that cuts the item short */
    assert_int_equal(imap_emailid_parse("EMAILID (a\0b)", 14, id), 0);
    assert_int_equal(imap_emailid_parse("EMAILID (abc)", 12, id), 0);
}

static void emailid_length(void **state)
{
    (void)state;
    char text[300], id[IMAP_OBJID_MAX + 1];
    memcpy(text, "EMAILID (", 9);
    memset(text + 9, 'z', 255);
    strcpy(text + 9 + 255, ")");
    assert_int_equal(parse(text, id), 9 + 255 + 1);
    assert_int_equal(strlen(id), 255);
    memset(text + 9, 'z', 256); /* one too many */
    strcpy(text + 9 + 256, ")");
    assert_int_equal(parse(text, id), 0);
}

/* Through libetpan's extension hook, as a FETCH response's item reaches
 * it: the parsed item gives the id, a bad one is a parse error. */
static int hook_parse(const char *text, size_t *indx, char *out)
{
    struct mailimap_parser_context ctx;
    memset(&ctx, 0, sizeof ctx);
    MMAPString *buf = mmap_string_new(text);
    assert_non_null(buf);
    struct mailimap_extension_data *ext = NULL;
    *indx = 0;
    int r = mailimap_extension_data_parse(MAILIMAP_EXTENDED_PARSER_FETCH_DATA, NULL, buf, &ctx, indx, &ext, 0, NULL);
    out[0] = '\0';
    if (r == MAILIMAP_NO_ERROR) {
        struct mailimap_msg_att_item *item = mailimap_msg_att_item_new(MAILIMAP_MSG_ATT_ITEM_EXTENSION, NULL, NULL, ext);
        assert_non_null(item);
        if (!imap_objid_of_item(item, out))
            strcpy(out, "(not an id)");
        mailimap_msg_att_item_free(item);
    }
    mmap_string_free(buf);
    return r;
}

static void through_libetpan(void **state)
{
    (void)state;
    imap_objectid_register();
    imap_objectid_register(); /* once per process, however often asked */
    char id[IMAP_OBJID_MAX + 1];
    size_t at;
    assert_int_equal(hook_parse("EMAILID (Mabc-1) UID 3)\r\n", &at, id), MAILIMAP_NO_ERROR);
    assert_string_equal(id, "Mabc-1");
    assert_int_equal(at, strlen("EMAILID (Mabc-1)"));
    /* libetpan's own X-GM-MSGID, kept apart from any EMAILID by "gm:" */
    assert_int_equal(hook_parse("X-GM-MSGID 1278455344230334865)\r\n", &at, id), MAILIMAP_NO_ERROR);
    assert_string_equal(id, "gm:1278455344230334865");
    /* hostile values: a parse error, never an id */
    assert_int_equal(hook_parse("EMAILID (a b))\r\n", &at, id), MAILIMAP_ERROR_PARSE);
    assert_int_equal(hook_parse("EMAILID ())\r\n", &at, id), MAILIMAP_ERROR_PARSE);
    assert_int_equal(hook_parse("EMAILID {3}\r\nabc)\r\n", &at, id), MAILIMAP_ERROR_PARSE);
    assert_int_equal(hook_parse("X-GM-MSGID NIL)\r\n", &at, id), MAILIMAP_ERROR_PARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(emailid_grammar),
        cmocka_unit_test(emailid_length),
        cmocka_unit_test(through_libetpan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
