/* SPDX-License-Identifier: MIT */
/*
 * fuzz_names.c: libFuzzer target for sync/names.c, the code that turns
 * hostile server folder names into paths below the Maildir root.
 *
 * Input: two strings separated by the first NUL byte, A and B (B may be
 * missing). Properties checked (names.h is the contract):
 *  - modified UTF-7: decode(A), when it succeeds, is valid UTF-8 and
 *    re-encodes to exactly A (names.c promises a strict, canonical decoder:
 *    the one-to-one mapping depends on it); encode(A) succeeds iff A is
 *    valid UTF-8, is printable ASCII, and decodes back to A.
 *  - names_folder_path, both layouts, several delimiters: a returned path
 *    never has "." / ".." / empty components, never starts with '/', has no
 *    control characters, no cur/new/tmp component (verbatim), fits the
 *    length caps, and NULL always comes with a reason. Distinct names map
 *    to distinct paths (A vs B, INBOX aside, which is case-insensitive).
 *  - names_folder_selected(A, lines of B) agrees with a simple memoised
 *    reference matcher written from the header's description.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_util.h"
#include "sync/names.h"

/* ---- modified UTF-7 round trips -------------------------------------- */

static bool printable_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

static void check_codec(const char *s)
{
    char *d = names_mutf7_decode(s);
    if (d) {
        CHECK(fuzz_valid_utf8((const unsigned char *)d, strlen(d)), "decode gave invalid UTF-8 for \"%s\"", s);
        char *e = names_mutf7_encode(d);
        CHECK(e != NULL, "decode result does not encode, input \"%s\"", s);
        CHECK(strcmp(e, s) == 0, "encode(decode(x)) != x: x=\"%s\" got \"%s\"", s, e);
        free(e);
    }

    char *e = names_mutf7_encode(s);
    bool valid = fuzz_valid_utf8((const unsigned char *)s, strlen(s));
    CHECK((e != NULL) == valid, "encode %s valid UTF-8 input (valid=%d)", e ? "accepted in" : "refused", valid);
    if (e) {
        CHECK(printable_ascii(e), "encode produced non-printable output \"%s\"", e);
        char *back = names_mutf7_decode(e);
        CHECK(back != NULL, "decode(encode(y)) failed: encoded \"%s\"", e);
        CHECK(strcmp(back, s) == 0, "decode(encode(y)) != y: encoded \"%s\"", e);
        free(back);
    }

    char *disp = names_display(s);
    CHECK(disp != NULL, "names_display returned NULL");
    CHECK(strcmp(disp, d ? d : s) == 0, "names_display is neither the decoded nor the raw name");
    free(disp);
    free(e);
    free(d);
}

/* ---- folder paths ---------------------------------------------------- */

static const char delims[] = {'/', '.', '\0', '&', '-', '\\', '%'};
#define NDELIMS (sizeof delims / sizeof delims[0])

static bool is_inbox(const char *raw)
{
    return strcasecmp(raw, "INBOX") == 0;
}

/* One component c[0..n) of a returned path. */
static void check_component(const char *raw, const char *path, const char *c, size_t n, bool verbatim)
{
    if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) {
        fuzz_dump("raw", raw, strlen(raw));
        fuzz_dump("path", path, strlen(path));
        CHECK(0, "empty, \".\" or \"..\" component");
    }
    if (verbatim) {
        CHECK(n <= 255, "component of %zu bytes", n);
        bool reserved = n == 3 && (!memcmp(c, "cur", 3) || !memcmp(c, "new", 3) || !memcmp(c, "tmp", 3));
        CHECK(!reserved, "component collides with a Maildir subdirectory: \"%s\"", path);
    }
}

static void check_path(const char *raw, char delim, enum folder_layout layout, const char *path, const char *why)
{
    if (!path) {
        CHECK(why != NULL && *why, "NULL path without a reason");
        return;
    }
    CHECK(why == NULL, "path returned together with reason \"%s\"", why);
    size_t len = strlen(path);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c < 0x20 || c == 0x7f) {
            fuzz_dump("raw", raw, strlen(raw));
            fuzz_dump("path", path, len);
            CHECK(0, "control character in path (delim 0x%02x)", (unsigned char)delim);
        }
    }
    CHECK(len <= 1000, "path of %zu bytes", len);
    CHECK(fuzz_valid_utf8((const unsigned char *)path, len), "path is not valid UTF-8");
    if (layout == LAYOUT_VERBATIM) {
        if (is_inbox(raw)) {
            CHECK(strcmp(path, "INBOX") == 0, "INBOX maps to \"%s\"", path);
            return;
        }
        CHECK(path[0] != '/', "absolute path \"%s\"", path);
        const char *c = path;
        for (;;) {
            const char *slash = strchr(c, '/');
            size_t n = slash ? (size_t)(slash - c) : strlen(c);
            check_component(raw, path, c, n, true);
            if (!slash)
                break;
            c = slash + 1;
        }
    } else {
        if (is_inbox(raw)) {
            CHECK(path[0] == '\0', "maildir++ INBOX maps to \"%s\"", path);
            return;
        }
        CHECK(path[0] == '.', "maildir++ path without the leading dot: \"%s\"", path);
        CHECK(strchr(path, '/') == NULL, "maildir++ path with '/': \"%s\"", path);
        CHECK(len <= 255, "maildir++ directory name of %zu bytes", len);
        /* The folder levels after the leading dot. */
        const char *c = path + 1;
        for (;;) {
            const char *dot = strchr(c, '.');
            size_t n = dot ? (size_t)(dot - c) : strlen(c);
            check_component(raw, path, c, n, false);
            if (!dot)
                break;
            c = dot + 1;
        }
    }
}

static void check_paths(const char *a, const char *b, bool have_b)
{
    static const enum folder_layout layouts[] = {LAYOUT_VERBATIM, LAYOUT_MAILDIRPP};
    for (size_t l = 0; l < 2; l++) {
        for (size_t d = 0; d < NDELIMS; d++) {
            const char *why = NULL;
            char *pa = names_folder_path(a, delims[d], layouts[l], &why);
            check_path(a, delims[d], layouts[l], pa, why);
            if (have_b) {
                const char *whyb = NULL;
                char *pb = names_folder_path(b, delims[d], layouts[l], &whyb);
                check_path(b, delims[d], layouts[l], pb, whyb);
                bool same_name = strcmp(a, b) == 0 || (is_inbox(a) && is_inbox(b));
                if (pa && pb && !same_name && strcmp(pa, pb) == 0) {
                    fuzz_dump("name A", a, strlen(a));
                    fuzz_dump("name B", b, strlen(b));
                    fuzz_dump("path", pa, strlen(pa));
                    CHECK(0, "two names map to one path (layout %zu, delim 0x%02x)", l, (unsigned char)delims[d]);
                }
                free(pb);
            }
            free(pa);
        }
    }
    /* why may be NULL. */
    free(names_folder_path(a, '/', LAYOUT_VERBATIM, NULL));
}

/* ---- folder patterns: a reference matcher ----------------------------- */

#define REF_MAX 200

/* Bytes of the character at s: a valid UTF-8 sequence, else 1. */
static size_t ref_char_len(const unsigned char *s, size_t left)
{
    size_t k = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 1;
    if (k > left || !fuzz_valid_utf8(s, k))
        return 1;
    return k;
}

struct ref {
    const unsigned char *p, *s;
    size_t np, ns;
    signed char memo[REF_MAX + 1][REF_MAX + 1];
};

static bool ref_match(struct ref *r, size_t i, size_t j)
{
    if (r->memo[i][j] >= 0)
        return r->memo[i][j];
    bool m;
    if (i == r->np) {
        m = j == r->ns;
    } else if (r->p[i] == '*' || r->p[i] == '%') {
        m = ref_match(r, i + 1, j);
        for (size_t k = j; !m && k < r->ns; k++) {
            if (r->p[i] == '%' && r->s[k] == '/')
                break;
            m = ref_match(r, i + 1, k + 1);
        }
    } else if (r->p[i] == '?') {
        m = j < r->ns && ref_match(r, i + 1, j + ref_char_len(r->s + j, r->ns - j));
    } else {
        m = j < r->ns && r->s[j] == r->p[i] && ref_match(r, i + 1, j + 1);
    }
    r->memo[i][j] = m;
    return m;
}

/* A leading "INBOX" component, any case, counts as "INBOX". */
static char *ref_inbox(const char *s)
{
    char *c = strdup(s);
    if (!c)
        abort();
    if (strncasecmp(c, "INBOX", 5) == 0 && (c[5] == '\0' || c[5] == '/'))
        memcpy(c, "INBOX", 5);
    return c;
}

static bool ref_selected(const char *name, char *const *pats, size_t n)
{
    static struct ref r;
    char *nn = ref_inbox(name);
    bool sel = false;
    for (size_t i = 0; i < n; i++) {
        bool neg = pats[i][0] == '!';
        if (names_role_bit(pats[i] + neg, false))
            continue; /* a role pattern: this folder (roles 0) has none */
        char *np = ref_inbox(pats[i] + neg);
        memset(r.memo, -1, sizeof r.memo);
        r.p = (const unsigned char *)np, r.np = strlen(np);
        r.s = (const unsigned char *)nn, r.ns = strlen(nn);
        if (ref_match(&r, 0, 0))
            sel = !neg;
        free(np);
    }
    free(nn);
    return sel;
}

static void check_selected(const char *name, const char *patterns)
{
    /* Patterns: the lines of B. */
    char *copy = strdup(patterns);
    if (!copy)
        abort();
    char *pats[16];
    size_t n = 0;
    bool small = strlen(name) <= REF_MAX;
    for (char *save = NULL, *t = strtok_r(copy, "\n", &save); t && n < 16; t = strtok_r(NULL, "\n", &save)) {
        pats[n++] = t;
        if (strlen(t) > REF_MAX)
            small = false;
    }
    bool got = names_folder_selected(name, 0, pats, n);
    if (small) {
        bool want = ref_selected(name, pats, n);
        if (got != want) {
            fuzz_dump("name", name, strlen(name));
            for (size_t i = 0; i < n; i++)
                fuzz_dump("pattern", pats[i], strlen(pats[i]));
            CHECK(0, "names_folder_selected says %d, reference says %d", got, want);
        }
    }
    /* A NULL entry is skipped; a NULL name is not selected. */
    char *with_null[2] = {NULL, (char *)"*"};
    CHECK(names_folder_selected(name, 0, with_null, 2), "\"*\" must select every name");
    CHECK(!names_folder_selected(NULL, 0, with_null, 2), "a NULL name must not be selected");
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *a = fuzz_strndup(data, size);
    size_t alen = strlen(a);
    bool have_b = alen < size;
    char *b = have_b ? fuzz_strndup(data + alen + 1, size - alen - 1) : NULL;

    check_codec(a);
    if (have_b)
        check_codec(b);
    check_paths(a, b, have_b);
    check_selected(a, have_b ? b : "*");

    free(a);
    free(b);
    return 0;
}
