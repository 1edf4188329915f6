/* SPDX-License-Identifier: MIT */
/*
 * imap_flagline.c: the lines of a flag listing read without libetpan's
 * parser.
 *
 * A resync without CONDSTORE lists every message's flags: at 200,000
 * messages that is 200,000 lines of `* 12 FETCH (UID 34 FLAGS (\Seen))`,
 * and libetpan's parser spent about half of the run's CPU on them (it
 * matches every item and flag by case-insensitive comparison against each
 * alternative of the grammar and its extensions', and allocates a tree per
 * line). imap_flagline_parse() reads such a line straight from the line
 * buffer: the items UID, FLAGS, RFC822.SIZE and MODSEQ (ignored, as the
 * FETCH handler ignores it), each at most once, in any order, every token
 * as RFC 3501 spells it. Anything else (another item, a quoted or literal
 * flag, an extra space, a number out of range, another response) is not
 * ours: IMAP_FLAGLINE_OTHER, and libetpan's parser reads the line as
 * before. So the fast path only ever accepts lines whose meaning is plain;
 * tests/fuzz/fuzz_flagline.c checks it against libetpan's reading of the
 * same line.
 */
#include "sync/remote/imap.h"
#include "sync/remote/imap_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sync/flags.h"

#define KEYWORDS_MAX 4096

void imap_add_keyword(char **kws, const char *kw, size_t len)
{
    if (!kw || !len || len > 200)
        return;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)kw[i] <= 0x20 || (unsigned char)kw[i] >= 0x7f)
            return; /* not an atom: not something we could store back */
    size_t old = *kws ? strlen(*kws) : 0;
    if (old + len + 2 > KEYWORDS_MAX)
        return;
    char *n = realloc(*kws, old + len + 2);
    if (!n)
        return;
    if (old)
        n[old++] = ' ';
    memcpy(n + old, kw, len);
    n[old + len] = '\0';
    *kws = n;
}

struct cursor {
    const char *p, *end;
};

static bool take(struct cursor *c, char ch)
{
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* The ASCII word w (upper case), matched without regard to case. */
static bool take_word(struct cursor *c, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = c->p[i];
        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        if (ch != w[i])
            return false;
    }
    c->p += n;
    return true;
}

/* number = 1*DIGIT, at most max; a leading zero only alone. */
static bool take_number(struct cursor *c, uint64_t max, uint64_t *out)
{
    const char *start = c->p;
    uint64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (v > (max - (uint64_t)(*c->p - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(*c->p - '0');
        c->p++;
    }
    if (c->p == start || (*start == '0' && c->p - start > 1))
        return false;
    *out = v;
    return true;
}

/* ATOM-CHAR of RFC 3501: any CHAR but atom-specials. */
static bool atom_char(unsigned char ch)
{
    if (ch <= 0x20 || ch >= 0x7f)
        return false;
    return !strchr("(){%*\"\\]", ch);
}

/* One flag of the list: "\" atom (a system flag, \Recent or an extension)
 * or a keyword atom; its meaning ORed into m. */
static bool take_flag(struct cursor *c, struct remote_msg *m)
{
    bool system = take(c, '\\');
    const char *w = c->p;
    while (c->p < c->end && atom_char((unsigned char)*c->p))
        c->p++;
    size_t n = (size_t)(c->p - w);
    if (!n)
        return false;
    if (system) {
        static const struct {
            const char *name;
            unsigned bit;
        } sys[] = {{"Answered", FLAG_ANSWERED},
                   {"Flagged", FLAG_FLAGGED},
                   {"Deleted", FLAG_DELETED},
                   {"Seen", FLAG_SEEN},
                   {"Draft", FLAG_DRAFT}};
        for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++) {
            size_t k = strlen(sys[i].name);
            if (n >= k && strncasecmp(w, sys[i].name, k) == 0) {
                if (n != k)
                    return false; /* "\Seenx": libetpan takes "\Seen" and fails on "x" */
                m->flags |= sys[i].bit;
            }
        }
        /* \Recent and extensions: not ours to keep ("\Recentx" as "\Seenx") */
        return !(n > 6 && strncasecmp(w, "Recent", 6) == 0);
    }
    char kw[201];
    if (n >= sizeof kw)
        return true; /* imap_add_keyword drops it too */
    memcpy(kw, w, n);
    kw[n] = '\0';
    unsigned bit = flags_from_imap_name(kw);
    if (bit)
        m->flags |= bit;
    else
        imap_add_keyword(&m->keywords, kw, n);
    return true;
}

static bool take_flags(struct cursor *c, struct remote_msg *m)
{
    if (!take(c, '('))
        return false;
    if (take(c, ')'))
        return true;
    do {
        if (!take_flag(c, m))
            return false;
    } while (take(c, ' '));
    return take(c, ')');
}

int imap_flagline_parse(const char *line, size_t len, struct imap_flagline *out)
{
    memset(out, 0, sizeof *out);
    struct cursor c = {line, line + len};
    uint64_t v;
    bool size_seen = false, modseq_seen = false;
    if (!take(&c, '*') || !take(&c, ' ') || !take_number(&c, UINT32_MAX, &v) || v == 0 || !take(&c, ' ') ||
        !take_word(&c, "FETCH") || !take(&c, ' ') || !take(&c, '('))
        return IMAP_FLAGLINE_OTHER;
    do {
        bool ok;
        if (take_word(&c, "UID ")) {
            ok = !out->has_uid && take_number(&c, UINT32_MAX, &v) && v != 0;
            out->m.uid = (uint32_t)v;
            out->has_uid = true;
        } else if (take_word(&c, "FLAGS ")) {
            ok = !out->has_flags && take_flags(&c, &out->m);
            out->has_flags = true;
        } else if (take_word(&c, "RFC822.SIZE ")) {
            ok = !size_seen && take_number(&c, UINT32_MAX, &v);
            out->m.size = v;
            size_seen = true;
        } else if (take_word(&c, "MODSEQ (")) {
            ok = !modseq_seen && take_number(&c, INT64_MAX, &v) && take(&c, ')');
            modseq_seen = true;
        } else {
            ok = false;
        }
        if (!ok) {
            free(out->m.keywords);
            memset(out, 0, sizeof *out);
            return IMAP_FLAGLINE_OTHER;
        }
    } while (take(&c, ' '));
    if (!take(&c, ')') || !take(&c, '\r') || !take(&c, '\n') || c.p != c.end) {
        free(out->m.keywords);
        memset(out, 0, sizeof *out);
        return IMAP_FLAGLINE_OTHER;
    }
    return IMAP_FLAGLINE_OK;
}
