/* SPDX-License-Identifier: MIT */
/* test_names.c: modified UTF-7, server name -> safe path, folder patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sync/names.h"

/* ---- modified UTF-7 ---- */

static void check_round_trip(const char *utf8, const char *mutf7)
{
    char *e = names_mutf7_encode(utf8);
    assert_non_null(e);
    assert_string_equal(e, mutf7);
    char *d = names_mutf7_decode(mutf7);
    assert_non_null(d);
    assert_string_equal(d, utf8);
    free(e);
    free(d);
}

static void mutf7_round_trips(void **unused)
{
    (void)unused;
    check_round_trip("INBOX", "INBOX");
    check_round_trip("", "");
    check_round_trip("Entwürfe", "Entw&APw-rfe");
    check_round_trip("&", "&-");
    check_round_trip("a&b&&", "a&-b&-&-");
    check_round_trip("Thư đã gửi", "Th&AbA- &AREA4w- g&Hu0-i");
    /* RFC 3501's example. */
    check_round_trip("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
    /* A character outside the BMP: a surrogate pair. */
    check_round_trip("x😀y", "x&2D3eAA-y");
    /* Control characters and DEL are encoded. */
    check_round_trip("a\tb\x7f", "a&AAk-b&AH8-");
    check_round_trip("äöü", "&AOQA9gD8-");
}

static void mutf7_rejects_invalid(void **unused)
{
    (void)unused;
    static const char *const bad[] = {
        "&",           /* unterminated */
        "abc&AOQ",     /* unterminated */
        "&AC8-",       /* encoded printable ASCII '/' */
        "&AC4ALg-",    /* encoded ".." */
        "&ACY-",       /* encoded '&' (must be "&-") */
        "&AGE-",       /* encoded 'a' */
        "&AAA-",       /* NUL: cannot be returned as a C string */
        "&A-",         /* 6 bits: no complete unit */
        "&AOR-",       /* non-zero leftover bits */
        "&AOQA-",      /* a wasted sextet */
        "&AO!-",       /* not base64 */
        "&AO/-",       /* '/' is not in the modified alphabet */
        "&AO=-",       /* no padding in modified base64 */
        "&2D0-",       /* lone high surrogate */
        "&3gA-",       /* lone low surrogate */
        "&2D0-&3gA-",  /* a pair split across two runs */
        "&AOQ-&APY-",  /* two adjacent runs: not canonical */
        "Entw\xc3\xbcrfe", /* raw 8-bit */
        "a\tb",        /* raw control */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *d = names_mutf7_decode(bad[i]);
        if (d)
            fail_msg("decoded invalid \"%s\" to \"%s\"", bad[i], d);
    }
}

static void mutf7_encode_rejects_bad_utf8(void **unused)
{
    (void)unused;
    static const char *const bad[] = {
        "\xff", "a\xc3", "\xc0\xaf", /* overlong '/' */
        "\xe0\x80\xaf",              /* overlong */
        "\xed\xa0\x80",              /* surrogate */
        "\xf4\x90\x80\x80",          /* > U+10FFFF */
        "\x80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_null(names_mutf7_encode(bad[i]));
}

static void display_names(void **unused)
{
    (void)unused;
    char *s = names_display("Entw&APw-rfe");
    assert_string_equal(s, "Entwürfe");
    free(s);
    s = names_display("bad&-&AC8-");
    assert_string_equal(s, "bad&-&AC8-");
    free(s);
}

/* ---- path mapping ---- */

static void expect_path(const char *raw, char delim, enum folder_layout layout, const char *want)
{
    const char *why = NULL;
    char *p = names_folder_path(raw, delim, layout, &why);
    if (!p)
        fail_msg("\"%s\" skipped (%s), wanted \"%s\"", raw, why, want);
    if (strcmp(p, want) != 0)
        fail_msg("\"%s\" -> \"%s\", wanted \"%s\"", raw, p, want);
    free(p);
}

static void expect_skip(const char *raw, char delim, enum folder_layout layout)
{
    const char *why = NULL;
    char *p = names_folder_path(raw, delim, layout, &why);
    if (p)
        fail_msg("\"%s\" mapped to \"%s\", wanted it skipped", raw, p);
    assert_non_null(why);
}

static void path_verbatim(void **unused)
{
    (void)unused;
    const enum folder_layout V = LAYOUT_VERBATIM;
    expect_path("INBOX", '/', V, "INBOX");
    expect_path("inbox", '/', V, "INBOX");
    expect_path("INBOX/x", '/', V, "INBOX/x");
    expect_path("Sent/2024", '/', V, "Sent/2024");
    expect_path("Sent.2024", '.', V, "Sent/2024");
    expect_path("Sent.2024", '/', V, "Sent.2024");
    expect_path("Entw&APw-rfe", '/', V, "Entwürfe");
    expect_path("Th&AbA- &AREA4w- g&Hu0-i", '/', V, "Thư đã gửi");
    expect_path("a&-b", '/', V, "a&b");
    expect_path("100%", '/', V, "100%25");
    expect_path("a/b", '\0', V, "a%2Fb");        /* flat: '/' is a character */
    expect_path("a&AAk-b", '/', V, "a%09b");     /* control char escaped */
    expect_path(".hidden", '/', V, "%2Ehidden"); /* no leading dot */
    expect_path("a/.b", '/', V, "a/%2Eb");
    expect_path("a.b", '/', V, "a.b");
    expect_path("cur", '/', V, "%63ur");
    expect_path("INBOX/new", '/', V, "INBOX/%6Eew");
    expect_path("x/tmp/y", '/', V, "x/%74mp/y");
    expect_path("current", '/', V, "current");
    /* Names that do not decode: raw bytes, '&' and 8-bit escaped. */
    expect_path("&AC8-", '/', V, "%26AC8-");
    expect_path("&AC4ALg-", '/', V, "%26AC4ALg-");
    expect_path("Entw\xc3\xbcrfe", '/', V, "Entw%C3%BCrfe");
    expect_path("a&AOQ", '/', V, "a%26AOQ");
    /* The delimiter is not split inside a base64 run. */
    expect_path("a&AOQ-,b", ',', V, "aä/b");
}

static void path_maildirpp(void **unused)
{
    (void)unused;
    const enum folder_layout P = LAYOUT_MAILDIRPP;
    expect_path("INBOX", '/', P, "");
    expect_path("Inbox", '.', P, "");
    expect_path("INBOX/x", '/', P, ".INBOX.x");
    expect_path("INBOX.x", '.', P, ".INBOX.x");
    expect_path("Sent/2024", '/', P, ".Sent.2024");
    expect_path("Sent.2024", '/', P, ".Sent%2E2024");
    expect_path("Entw&APw-rfe", '/', P, ".Entwürfe");
    expect_path("cur", '/', P, ".cur");
    expect_path(".x", '/', P, ".%2Ex");
    expect_path("a%b", '/', P, ".a%25b");
    expect_path("a&AH8-", '/', P, ".a%7F");
}

/* OfflineIMAP's default local names (sep = .): every folder a directory at
 * the top level, the server's hierarchy joined with '.', INBOX is "INBOX". */
static void path_dotted(void **unused)
{
    (void)unused;
    const enum folder_layout D = LAYOUT_DOTTED;
    expect_path("INBOX", '/', D, "INBOX");
    expect_path("inbox", '.', D, "INBOX");
    expect_path("INBOX/x", '/', D, "INBOX.x");
    expect_path("INBOX.x", '.', D, "INBOX.x");
    expect_path("Projects/2026", '/', D, "Projects.2026");
    expect_path("Projects.2026", '.', D, "Projects.2026");
    expect_path("a/b/c", '/', D, "a.b.c");
    /* A '.' inside a component is a character, not a separator. */
    expect_path("Sent.2024", '/', D, "Sent%2E2024");
    expect_path("a.b/c", '/', D, "a%2Eb.c");
    expect_path(".x", '/', D, "%2Ex"); /* never a dot directory */
    expect_path("Entw&APw-rfe", '/', D, "Entwürfe");
    expect_path("Th&AbA- m&HuU-c", '/', D, "Thư mục");
    expect_path("a%b", '/', D, "a%25b");
    expect_path("a/b", '\0', D, "a%2Fb");
    expect_path("a&AH8-", '/', D, "a%7F");
    /* The whole name is one directory at the root: only a whole cur, new
     * or tmp would be mistaken for the Maildir's own subdirectories. */
    expect_path("cur", '/', D, "%63ur");
    expect_path("new/x", '/', D, "new.x");
    expect_path("x/tmp", '/', D, "x.tmp");
    expect_path("&AC8-", '/', D, "%26AC8-");
}

/* names_folder_raw is the inverse of names_folder_path. */
static void expect_raw(const char *path, char delim, enum folder_layout layout, const char *want)
{
    char *r = names_folder_raw(path, delim, layout);
    if (!want) {
        if (r)
            fail_msg("path \"%s\" -> \"%s\", wanted none", path, r);
        return;
    }
    if (!r)
        fail_msg("path \"%s\" has no server name, wanted \"%s\"", path, want);
    if (strcmp(r, want) != 0)
        fail_msg("path \"%s\" -> \"%s\", wanted \"%s\"", path, r, want);
    free(r);
}

static void raw_from_path(void **unused)
{
    (void)unused;
    const enum folder_layout V = LAYOUT_VERBATIM, P = LAYOUT_MAILDIRPP, D = LAYOUT_DOTTED;
    expect_raw("INBOX", '/', V, "INBOX");
    expect_raw("Sent/2024", '/', V, "Sent/2024");
    expect_raw("Sent/2024", '.', V, "Sent.2024");
    expect_raw("Thư đã gửi", '/', V, "Th&AbA- &AREA4w- g&Hu0-i");
    expect_raw("", '/', P, "INBOX");
    expect_raw(".Sent.2024", '/', P, "Sent/2024");
    expect_raw(".Sent%2E2024", '/', P, "Sent.2024");
    expect_raw("INBOX", '/', D, "INBOX");
    expect_raw("Projects.2026", '/', D, "Projects/2026");
    expect_raw("Projects.2026", '.', D, "Projects.2026");
    expect_raw("a%2Eb.c", '/', D, "a.b/c");
    expect_raw("Thư mục", '/', D, "Th&AbA- m&HuU-c");
    expect_raw("Entw%C3%BCrfe", '/', D, "Entw\xc3\xbcrfe");
    expect_raw("%26AC8-", '/', D, "&AC8-");
    /* Paths no server name maps to. */
    expect_raw("a.b", '\0', D, NULL);       /* nested on a flat server */
    expect_raw("Sent", '/', P, NULL);       /* maildir++ needs the dot */
    expect_raw("inbox", '/', V, NULL);      /* INBOX is "INBOX" */
    expect_raw("a..b", '/', D, NULL);
    expect_raw(".a", '/', D, NULL);
    expect_raw("a%2eb", '/', D, NULL);      /* not our (upper case) escape */
    expect_raw("cur", '/', D, NULL);
    expect_raw("a%2Fb", '/', V, NULL);      /* would be a/b, which is nested */
    expect_raw("\xff", '/', D, NULL);       /* not UTF-8, not escaped */
}

static void path_hostile(void **unused)
{
    (void)unused;
    for (int l = 0; l < 3; l++) {
        enum folder_layout L = l == 2 ? LAYOUT_DOTTED : l ? LAYOUT_MAILDIRPP : LAYOUT_VERBATIM;
        expect_skip("..", '/', L);
        expect_skip(".", '/', L);
        expect_skip("a/../b", '/', L);
        expect_skip("../x", '/', L);
        expect_skip("a/..", '/', L);
        expect_skip("a..b", '.', L);  /* empty component */
        expect_skip("/etc", '/', L);  /* leading delimiter */
        expect_skip("a/", '/', L);    /* trailing delimiter */
        expect_skip("a//b", '/', L);
        expect_skip("", '/', L);
        expect_skip("&AAA-", '/', L);      /* NUL */
        expect_skip("x/a&AAA-b", '/', L);  /* NUL */
        expect_skip("a\x01" "b", '/', L);  /* raw control characters */
        expect_skip("a\nb", '/', L);
        /* Encoded "..": the raw name is invalid, so it is used escaped,
         * never as "..". */
        const char *why = NULL;
        char *p = names_folder_path("&AC4ALg-/x", '/', L, &why);
        assert_non_null(p);
        assert_null(strstr(p, ".."));
        free(p);
    }
}

static void path_lengths(void **unused)
{
    (void)unused;
    char name[2100];
    const char *why;
    /* A component of 255 bytes is fine, 256 is not. */
    memset(name, 'a', 255);
    name[255] = '\0';
    char *p = names_folder_path(name, '/', LAYOUT_VERBATIM, &why);
    assert_non_null(p);
    free(p);
    name[255] = 'a';
    name[256] = '\0';
    expect_skip(name, '/', LAYOUT_VERBATIM);
    /* ... counted after escaping: 100 '%' are 300 bytes. */
    memset(name, '%', 100);
    name[100] = '\0';
    expect_skip(name, '/', LAYOUT_VERBATIM);
    /* maildir++: the whole name is one directory name. */
    memset(name, 'a', 300);
    for (int i = 100; i < 300; i += 100)
        name[i] = '/';
    name[300] = '\0';
    p = names_folder_path(name, '/', LAYOUT_VERBATIM, &why);
    assert_non_null(p);
    free(p);
    expect_skip(name, '/', LAYOUT_MAILDIRPP);
    /* A whole path over 1000 bytes. */
    memset(name, 'a', 1100);
    for (int i = 200; i < 1100; i += 200)
        name[i] = '/';
    name[1100] = '\0';
    expect_skip(name, '/', LAYOUT_VERBATIM);
    /* Very long input is rejected without trouble. */
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    expect_skip(name, '\0', LAYOUT_VERBATIM);
}

/* Paths must be safe: no "." / ".." / empty components, no leading '/',
 * no control characters, no cur/new/tmp component. */
static void assert_safe_path(const char *p, enum folder_layout layout)
{
    assert_true(p[0] != '/');
    for (const unsigned char *c = (const unsigned char *)p; *c; c++)
        assert_true(*c >= 0x20 && *c != 0x7f);
    if (layout == LAYOUT_MAILDIRPP) {
        assert_true(p[0] == '\0' || (p[0] == '.' && p[1] != '\0' && !strchr(p, '/')));
        return;
    }
    if (layout == LAYOUT_DOTTED) {
        assert_true(p[0] != '\0' && p[0] != '.' && !strchr(p, '/'));
        assert_true(strcmp(p, "cur") && strcmp(p, "new") && strcmp(p, "tmp"));
        return;
    }
    char *copy = strdup(p);
    char *save = NULL;
    size_t total = 0;
    for (char *t = strtok_r(copy, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        total += strlen(t) + 1;
        assert_true(t[0] != '.');
        assert_true(strcmp(t, "cur") && strcmp(t, "new") && strcmp(t, "tmp"));
    }
    assert_int_equal(total, strlen(p) + 1); /* no empty components */
    free(copy);
}

static void path_injective(void **unused)
{
    (void)unused;
    static const char *const names[] = {
        "INBOX", "INBOX/x", "INBOX.x", "x", "INBOX/chess.com", "INBOX/chess/com",
        "chess.com", ".x", "%2Ex", "%x", "%25x", "a/b", "a.b", "a%2Fb", "a%2Eb",
        "cur", "%63ur", "cu", "a&-b", "a&b", "a%26b", "&AC8-", "%26AC8-",
        "Entw&APw-rfe", "Entw\xc3\xbcrfe", "Entw%C3%BCrfe", "Entw&APw-rfe/x",
        "a&AAk-b", "a%09b", "a&AH8-", "a%7F", "Th&AbA-", "x/.y", "x/%2Ey", "x.%2Ey",
        "&AOQ-", "&AOQ", "&AOQ-&APY-", "&AOQA9g-", "a b", "a  b", " a", "a ",
        "new/cur", "%6Eew/cur", "tmp.x", "INBOX/INBOX", "inbox/x", "a\\b",
        "x/&2D3eAA-", "x/&2D3-", "a,b", "a-b", "a~b",
    };
    size_t n = sizeof names / sizeof *names;
    static const char delims[] = {'/', '.', '\0'};
    for (int l = 0; l < 3; l++) {
        enum folder_layout L = l == 2 ? LAYOUT_DOTTED : l ? LAYOUT_MAILDIRPP : LAYOUT_VERBATIM;
        for (size_t d = 0; d < sizeof delims; d++) {
            char **paths = calloc(n, sizeof *paths);
            for (size_t i = 0; i < n; i++) {
                const char *why;
                paths[i] = names_folder_path(names[i], delims[d], L, &why);
                if (paths[i]) {
                    assert_safe_path(paths[i], L);
                    expect_raw(paths[i], delims[d], L, strcasecmp(names[i], "INBOX") ? names[i] : "INBOX");
                }
                for (size_t j = 0; paths[i] && j < i; j++) {
                    /* INBOX is case-insensitive: a server has just one. */
                    if (paths[j] && strcmp(paths[i], paths[j]) == 0)
                        fail_msg("layout %d delim '%c': \"%s\" and \"%s\" both map to \"%s\"",
                                 l, delims[d] ? delims[d] : '0', names[j], names[i], paths[i]);
                }
            }
            for (size_t i = 0; i < n; i++)
                free(paths[i]);
            free(paths);
        }
    }
}

/* Random short names over an alphabet rich in troublemakers: whatever
 * comes out is safe, and distinct names never collide. */
static void path_injective_random(void **unused)
{
    (void)unused;
    static const char alphabet[] = "a./%&-AC8Z4g\x01\xc3\xbc" "c";
    enum { N = 4000 };
    char **names = calloc(N, sizeof *names), **paths = calloc(N, sizeof *paths);
    unsigned seed = 12345;
    for (int l = 0; l < 3; l++) {
        enum folder_layout L = l == 2 ? LAYOUT_DOTTED : l ? LAYOUT_MAILDIRPP : LAYOUT_VERBATIM;
        for (size_t i = 0; i < N; i++) {
            size_t len = 1 + (seed = seed * 1103515245 + 12345) % 7;
            names[i] = calloc(len + 1, 1);
            for (size_t k = 0; k < len; k++) {
                seed = seed * 1103515245 + 12345;
                names[i][k] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
            }
            const char *why;
            paths[i] = names_folder_path(names[i], '/', L, &why);
            if (paths[i]) {
                assert_safe_path(paths[i], L);
                expect_raw(paths[i], '/', L, names[i]);
            }
        }
        for (size_t i = 0; i < N; i++)
            for (size_t j = 0; j < i; j++)
                if (paths[i] && paths[j] && strcmp(names[i], names[j]) != 0 &&
                    strcmp(paths[i], paths[j]) == 0)
                    fail_msg("\"%s\" and \"%s\" both map to \"%s\"", names[i], names[j], paths[i]);
        for (size_t i = 0; i < N; i++) {
            free(names[i]);
            free(paths[i]);
        }
    }
    free(names);
    free(paths);
}

/* ---- patterns ---- */

static bool sel(const char *name, const char *p1, const char *p2, const char *p3)
{
    char *pats[3] = {(char *)p1, (char *)p2, (char *)p3};
    size_t n = p3 ? 3 : p2 ? 2 : p1 ? 1 : 0;
    return names_folder_selected(name, 0, pats, n);
}

/* Role patterns ("\\Junk", issue 18): they match the folder's SPECIAL-USE
 * role, never its name. */
static void role_patterns(void **unused)
{
    (void)unused;
    char *excl_junk[] = {(char *)"*", (char *)"!\\Junk"};
    assert_true(names_folder_selected("Spam", 0, excl_junk, 2));
    assert_false(names_folder_selected("Spam", FOLDER_ROLE_JUNK, excl_junk, 2));
    assert_false(names_folder_selected("Spam", FOLDER_ROLE_JUNK | FOLDER_ROLE_TRASH, excl_junk, 2));
    assert_true(names_folder_selected("Junk", FOLDER_ROLE_TRASH, excl_junk, 2));
    /* any case; a folder literally named "\Junk" is not the role */
    char *only_sent[] = {(char *)"\\sEnT"};
    assert_true(names_folder_selected("Gesendet", FOLDER_ROLE_SENT, only_sent, 1));
    assert_false(names_folder_selected("\\sEnT", 0, only_sent, 1));
    /* a pattern that is no role name stays a glob */
    char *glob[] = {(char *)"\\Sent*"};
    assert_true(names_folder_selected("\\Sent items", 0, glob, 1));
    assert_int_equal(names_role_bit("\\Trash", false), FOLDER_ROLE_TRASH);
    assert_int_equal(names_role_bit("trash", false), 0);
    assert_int_equal(names_role_bit("trash", true), FOLDER_ROLE_TRASH);
    assert_int_equal(names_role_bit("\\Bin", true), 0);
    char buf[64];
    assert_string_equal(names_roles_text(FOLDER_ROLE_SENT | FOLDER_ROLE_ALL, buf, sizeof buf), "\\All \\Sent");
    assert_string_equal(names_roles_text(0, buf, sizeof buf), "");
    assert_string_equal(names_roles_text(FOLDER_ROLE_TRASH | FOLDER_ROLE_JUNK, buf, 8), "\\Junk");
}

static void patterns(void **unused)
{
    (void)unused;
    assert_false(sel("INBOX", NULL, NULL, NULL));
    assert_true(sel("INBOX", "*", NULL, NULL));
    assert_true(sel("Sent/2024", "*", NULL, NULL));
    assert_false(sel("Spam", "*", "!Spam", NULL));
    assert_true(sel("Spam", "!Spam", "*", NULL)); /* last match wins */
    assert_true(sel("Spam/x", "*", "!Spam", NULL));
    assert_false(sel("Spam/x", "*", "!Spam*", NULL));
    assert_true(sel("Sent", "%", NULL, NULL));
    assert_false(sel("Sent/2024", "%", NULL, NULL));
    assert_true(sel("Sent/2024", "Sent/%", NULL, NULL));
    assert_false(sel("Sent/2024/x", "Sent/%", NULL, NULL));
    assert_true(sel("Sent/2024/x", "Sent/*", NULL, NULL));
    assert_true(sel("Sent/2024/x", "%/%/%", NULL, NULL));
    assert_true(sel("a", "?", NULL, NULL));
    assert_true(sel("ü", "?", NULL, NULL)); /* one character, not one byte */
    assert_false(sel("ab", "?", NULL, NULL));
    assert_true(sel("Thư đã gửi", "Thư*", NULL, NULL));
    assert_true(sel("Thư đã gửi", "Th? đã g?i", NULL, NULL));
    assert_true(sel("inbox", "INBOX", NULL, NULL));
    assert_true(sel("Inbox/x", "INBOX/*", NULL, NULL));
    assert_false(sel("Sent", "sent", NULL, NULL)); /* other names: exact case */
    assert_true(sel("", "*", NULL, NULL));
    assert_false(sel("Archive", "*", "!Arch*", "!*"));
    assert_true(sel("Archive", "*", "!Arch*", "Archive"));
    /* No exponential blow-up. */
    char name[200];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    assert_false(sel(name, "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", NULL, NULL));
}

/* The raw-name path mbsync 1.4 writes, only where it differs from ours
 * and is a safe path. */
static void raw_paths(void **unused)
{
    (void)unused;
    char *p = names_raw_path("Th&AbA- m&HuU-c", '/', LAYOUT_VERBATIM);
    assert_non_null(p);
    assert_string_equal(p, "Th&AbA- m&HuU-c");
    free(p);
    p = names_raw_path("Projects/Th&AbA-", '/', LAYOUT_VERBATIM);
    assert_string_equal(p, "Projects/Th&AbA-");
    free(p);
    p = names_raw_path("INBOX.Th&AbA-", '.', LAYOUT_VERBATIM);
    assert_string_equal(p, "INBOX/Th&AbA-");
    free(p);
    p = names_raw_path("Projects/Th&AbA-", '/', LAYOUT_MAILDIRPP);
    assert_string_equal(p, ".Projects.Th&AbA-");
    free(p);
    /* the same as ours, or nothing to look for */
    assert_null(names_raw_path("Projects/2026", '/', LAYOUT_VERBATIM));
    assert_null(names_raw_path("INBOX", '/', LAYOUT_VERBATIM));
    /* unsafe as a path */
    assert_null(names_raw_path("&AbA-/..", '/', LAYOUT_VERBATIM));
    assert_null(names_raw_path("&AbA-/cur", '/', LAYOUT_VERBATIM));
    assert_null(names_raw_path(".&AbA-", '/', LAYOUT_VERBATIM));
    assert_null(names_raw_path("a.&AbA-", '/', LAYOUT_MAILDIRPP));
}

/* OfflineIMAP's default (dotted) keeps raw names too: "Projects.Th&AbA-". */
static void raw_paths_dotted(void **unused)
{
    (void)unused;
    const enum folder_layout D = LAYOUT_DOTTED;
    char *p = names_raw_path("Th&AbA- m&HuU-c", '/', D);
    assert_non_null(p);
    assert_string_equal(p, "Th&AbA- m&HuU-c");
    free(p);
    p = names_raw_path("Projects/Th&AbA-", '/', D);
    assert_non_null(p);
    assert_string_equal(p, "Projects.Th&AbA-");
    free(p);
    p = names_raw_path("INBOX.Th&AbA-", '.', D);
    assert_non_null(p);
    assert_string_equal(p, "INBOX.Th&AbA-");
    free(p);
    assert_null(names_raw_path("Projects/2026", '/', D)); /* the same as ours */
    assert_null(names_raw_path("a.&AbA-", '/', D));       /* '.' would read as a separator */
    assert_null(names_raw_path(".&AbA-", '/', D));
    char name[300];                                       /* one directory name: at most 255 */
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    memcpy(name, "&AbA-/", 6);
    name[150] = '/';
    assert_null(names_raw_path(name, '/', D));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mutf7_round_trips),
        cmocka_unit_test(mutf7_rejects_invalid),
        cmocka_unit_test(mutf7_encode_rejects_bad_utf8),
        cmocka_unit_test(display_names),
        cmocka_unit_test(path_verbatim),
        cmocka_unit_test(path_maildirpp),
        cmocka_unit_test(path_dotted),
        cmocka_unit_test(raw_from_path),
        cmocka_unit_test(path_hostile),
        cmocka_unit_test(path_lengths),
        cmocka_unit_test(path_injective),
        cmocka_unit_test(path_injective_random),
        cmocka_unit_test(patterns),
        cmocka_unit_test(role_patterns),
        cmocka_unit_test(raw_paths),
        cmocka_unit_test(raw_paths_dotted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
