/* SPDX-License-Identifier: MIT */
/*
 * names.c: folder names (see names.h).
 *
 * Three jobs:
 *  1. A strict modified UTF-7 codec (RFC 3501 5.1.3). Strict matters for
 *     safety: a lenient decoder lets a server spell "/" or ".." in a way a
 *     naive check on the raw name does not see (isync CVE-2021-20247), and
 *     it matters for the one-to-one mapping: every valid input must be the
 *     one canonical encoding of what it decodes to, so two distinct server
 *     names never decode to the same text. The decoder therefore checks its
 *     result by re-encoding it and comparing.
 *  2. The mapping of a server name to a relative path below the Maildir
 *     root, checked component by component after decoding and escaping.
 *  3. The `folders =` pattern filter.
 */
#include "sync/names.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sync/util.h"

/* Limits of the path mapping: one file name on Linux file systems, and a
 * whole relative path (isync caps names at 1000 bytes as well). */
#define NAME_MAX_COMPONENT 255
#define NAME_MAX_PATH 1000

/* ---- a tiny growable byte buffer ------------------------------------ */

struct buf {
    char *data;
    size_t len, cap;
};

static void buf_put(struct buf *b, const void *src, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = xrealloc(b->data, cap);
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_putc(struct buf *b, char c)
{
    buf_put(b, &c, 1);
}

/* Returns the NUL-terminated contents (never NULL), giving up ownership. */
static char *buf_take(struct buf *b)
{
    if (!b->data)
        buf_put(b, "", 0);
    char *s = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

static void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- modified UTF-7 -------------------------------------------------- */

/* RFC 3501 modified base64: the alphabet of RFC 2045 with ',' for '/'. */
static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == ',')
        return 63;
    return -1;
}

/* Printable US-ASCII represents itself in modified UTF-7; everything else
 * (controls, DEL, non-ASCII) must be base64 encoded. */
static bool mutf7_direct(uint32_t c)
{
    return c >= 0x20 && c <= 0x7e;
}

/* Append code point cp as UTF-8. */
static void put_utf8(struct buf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    buf_put(b, u, n);
}

/* Read one strictly valid UTF-8 sequence (no overlongs, no surrogates, at
 * most U+10FFFF) from s[0..len). Returns its length and sets *cp, or 0 if
 * the bytes are not valid UTF-8. */
size_t names_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    if (len == 0)
        return 0;
    unsigned char c = s[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        n = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

/* Flush a run of UTF-16 units as "&<base64>-". */
static void put_b64_run(struct buf *b, const uint16_t *units, size_t n)
{
    buf_putc(b, '&');
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 16) | units[i];
        bits += 16;
        while (bits >= 6) {
            bits -= 6;
            buf_putc(b, b64_alphabet[(acc >> bits) & 0x3f]);
        }
    }
    if (bits > 0)
        buf_putc(b, b64_alphabet[(acc << (6 - bits)) & 0x3f]);
    buf_putc(b, '-');
}

/* Encode len bytes of UTF-8 (NUL allowed inside: it is a control
 * character and gets encoded). Returns false if not valid UTF-8. */
static bool mutf7_encode_n(const char *in, size_t len, struct buf *out)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        if (s[i] == '&') {
            buf_put(out, "&-", 2);
            i++;
            continue;
        }
        if (mutf7_direct(s[i])) {
            buf_putc(out, (char)s[i]);
            i++;
            continue;
        }
        /* A run of characters that must be encoded, as UTF-16 units.
         * Each code point gives at most 2 units: the run is at most 2x the
         * bytes left. */
        uint16_t *units = xmalloc((len - i) * 2 * sizeof *units);
        size_t n = 0;
        while (i < len && !mutf7_direct(s[i])) {
            size_t k = names_utf8_decode(s + i, len - i, &cp);
            if (k == 0) {
                free(units);
                return false;
            }
            i += k;
            if (cp >= 0x10000) {
                cp -= 0x10000;
                units[n++] = (uint16_t)(0xd800 | (cp >> 10));
                units[n++] = (uint16_t)(0xdc00 | (cp & 0x3ff));
            } else {
                units[n++] = (uint16_t)cp;
            }
        }
        put_b64_run(out, units, n);
        free(units);
    }
    return true;
}

/* Decode one base64 run s[0..n) (between '&' and '-', n >= 1) to UTF-8.
 * Rejects leftover bits that are not zero, a wasted sextet, broken
 * surrogate pairs and encoded printable ASCII. */
static bool decode_b64_run(const unsigned char *s, size_t n, struct buf *out)
{
    uint32_t acc = 0;
    int bits = 0;
    uint32_t high = 0; /* pending high surrogate, 0 = none */
    size_t units = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(s[i]);
        if (v < 0)
            return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits < 16)
            continue;
        bits -= 16;
        uint32_t u = (acc >> bits) & 0xffff;
        acc &= (1u << bits) - 1;
        units++;
        if (high) {
            if (u < 0xdc00 || u > 0xdfff)
                return false;
            put_utf8(out, 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00));
            high = 0;
        } else if (u >= 0xd800 && u <= 0xdbff) {
            high = u;
        } else if (u >= 0xdc00 && u <= 0xdfff) {
            return false;
        } else if (mutf7_direct(u)) {
            return false;
        } else {
            put_utf8(out, u);
        }
    }
    /* Padding: fewer than 6 bits, all zero; and a pair must not be split
     * across runs. */
    return units > 0 && bits < 6 && acc == 0 && !high;
}

/* Decode modified UTF-7 to UTF-8 into out (which may then hold NUL bytes,
 * from "&AAA-"; out->len tells the length). Returns false if invalid. */
static bool mutf7_decode_n(const char *in, struct buf *out)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0;
    while (s[i]) {
        if (s[i] != '&') {
            if (!mutf7_direct(s[i]))
                return false;
            buf_putc(out, (char)s[i++]);
            continue;
        }
        size_t start = ++i;
        while (s[i] && s[i] != '-')
            i++;
        if (s[i] != '-')
            return false; /* unterminated */
        if (i == start) {
            buf_putc(out, '&'); /* "&-" */
        } else if (!decode_b64_run(s + start, i - start, out)) {
            return false;
        }
        i++;
    }
    /* Canonical form check: the decoder above already refuses most
     * non-canonical spellings; re-encoding catches the rest (two adjacent
     * runs "&AOQ-&APY-" for "&AOQA9g-"), which keeps decoding one-to-one. */
    struct buf again = {0};
    bool same = mutf7_encode_n(out->data ? out->data : "", out->len, &again) &&
                again.len == (size_t)(i) && memcmp(again.data ? again.data : "", in, i) == 0;
    buf_free(&again);
    return same;
}

char *names_mutf7_decode(const char *mutf7)
{
    struct buf out = {0};
    if (!mutf7 || !mutf7_decode_n(mutf7, &out) || memchr(out.data ? out.data : "", '\0', out.len)) {
        /* A decoded NUL cannot be returned in a C string: invalid here. */
        buf_free(&out);
        return NULL;
    }
    return buf_take(&out);
}

char *names_mutf7_encode(const char *utf8)
{
    struct buf out = {0};
    if (!utf8 || !mutf7_encode_n(utf8, strlen(utf8), &out)) {
        buf_free(&out);
        return NULL;
    }
    return buf_take(&out);
}

char *names_display(const char *raw)
{
    char *s = names_mutf7_decode(raw);
    if (s)
        return s;
    s = xstrdup(raw ? raw : "");
    return s;
}

/* ---- server name -> relative path ----------------------------------------
 *
 * The name is split on the delimiter first (outside "&...-" runs, so a
 * delimiter that is also a base64 character cannot cut a run in two), then
 * each component is decoded and escaped on its own:
 *
 *  - A component that decodes is used as UTF-8. Escaped as "%XX" (upper
 *    case hex): '%' itself, '/', control characters 0x01-0x1f and 0x7f; in
 *    maildir++ also '.'; in verbatim a leading '.' and the first letter of
 *    a component that is exactly "cur", "new" or "tmp" (it would collide
 *    with the Maildir's own subdirectories). A decoded NUL, "." or "..",
 *    or an empty component makes the folder skipped.
 *  - A component that does not decode (a server sending raw 8-bit or bad
 *    base64) is used as raw bytes with the same escapes, and in addition
 *    '&' and every byte >= 0x80 escaped. Such a component therefore always
 *    contains "%26" or "%80".."%FF", which a decoded component never does:
 *    the two cases cannot collide. The one undecodable case that would
 *    contain neither, raw control characters in otherwise plain ASCII
 *    ("a\x01b" vs the valid "a&AAE-b"), is skipped instead.
 *
 * Every escape is of a byte that otherwise cannot appear and '%' is always
 * escaped, so component -> escaped component is one-to-one; components
 * never contain the joining character ('/' verbatim, '.' maildir++), so
 * the joined path is one-to-one too.
 *
 * INBOX (the whole name, any case, as IMAP says) is "INBOX" in verbatim
 * and dotted, and "" (the root) in maildir++. Children of INBOX keep their
 * first component as sent: "INBOX/x" -> "INBOX/x" (verbatim, a folder
 * inside the INBOX Maildir, which is why cur/new/tmp are escaped),
 * ".INBOX.x" (maildir++) and "INBOX.x" (dotted). Dropping the "INBOX."
 * prefix, as some tools do, would make "INBOX/x" and a top-level "x"
 * collide (OfflineIMAP #693).
 *
 * dotted is OfflineIMAP's default local naming (its Maildir `sep = .`):
 * the components joined with '.' into one directory name at the root, no
 * leading dot. OfflineIMAP itself writes a '.' inside a component as is,
 * which makes "a.b" and "a/b" the same directory; here it is escaped as in
 * maildir++ ("Sent.2024" -> "Sent%2E2024"), so the mapping stays
 * one-to-one (an OfflineIMAP directory for such a folder is not adopted).
 * Since '.' is always escaped the name never starts with a dot, and only a
 * whole name "cur", "new" or "tmp" gets its first letter escaped.
 */

struct component {
    const char *raw;
    size_t len;
};

static bool is_hex_escape_needed(unsigned char c, bool raw_case, bool maildirpp)
{
    if (c == '%' || c == '/' || c < 0x20 || c == 0x7f)
        return true;
    if (maildirpp && c == '.')
        return true;
    if (raw_case && (c == '&' || c >= 0x80))
        return true;
    return false;
}

static void put_escape(struct buf *b, unsigned char c)
{
    char e[4];
    snprintf(e, sizeof e, "%%%02X", c);
    buf_put(b, e, 3);
}

static bool is_reserved_subdir(const char *s, size_t n)
{
    return n == 3 && (!memcmp(s, "cur", 3) || !memcmp(s, "new", 3) || !memcmp(s, "tmp", 3));
}

/* Escape one (decoded or raw) component text[0..n) onto out. Returns a
 * skip reason, or NULL on success. */
static const char *escape_component(const char *text, size_t n, bool raw_case,
                                    enum folder_layout layout, struct buf *out)
{
    /* In maildir++ and dotted, '.' is the separator and so always escaped
     * (which also rules out a leading dot); verbatim escapes only a
     * leading one. */
    bool pp = layout != LAYOUT_VERBATIM;
    if (n == 0)
        return "empty name component";
    if (memchr(text, '\0', n))
        return "name contains a NUL character";
    if ((n == 1 && text[0] == '.') || (n == 2 && text[0] == '.' && text[1] == '.'))
        return "name component is \".\" or \"..\"";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        bool first_special = i == 0 && !pp && (c == '.' || is_reserved_subdir(text, n));
        if (first_special || is_hex_escape_needed(c, raw_case, pp))
            put_escape(out, c);
        else
            buf_putc(out, (char)c);
    }
    return NULL;
}

static bool has_raw_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return true;
    return false;
}

/* Map one raw component onto out; see the comment block above. */
static const char *map_component(struct component c, enum folder_layout layout, struct buf *out)
{
    char *tmp = xmalloc(c.len + 1);
    memcpy(tmp, c.raw, c.len);
    tmp[c.len] = '\0';
    struct buf dec = {0};
    const char *why;
    if (mutf7_decode_n(tmp, &dec)) {
        why = escape_component(dec.data ? dec.data : "", dec.len, false, layout, out);
    } else if (has_raw_control(tmp, c.len)) {
        why = "name contains raw control characters";
    } else {
        why = escape_component(tmp, c.len, true, layout, out);
    }
    buf_free(&dec);
    free(tmp);
    return why;
}

/* Split raw on delim, outside "&...-" runs. Returns the number of
 * components written to comps (which has room for strlen(raw) + 1). */
static size_t split_name(const char *raw, char delim, struct component *comps)
{
    size_t n = 0;
    const char *start = raw;
    bool in_run = false;
    for (const char *p = raw;; p++) {
        if (*p == '\0' || (!in_run && delim != '\0' && *p == delim)) {
            comps[n].raw = start;
            comps[n].len = (size_t)(p - start);
            n++;
            if (*p == '\0')
                break;
            start = p + 1;
            continue;
        }
        if (delim != '&' && *p == '&')
            in_run = true;
        else if (*p == '-')
            in_run = false;
    }
    return n;
}

char *names_folder_path(const char *raw, char delim, enum folder_layout layout, const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    if (!raw || !*raw) {
        *why = "empty folder name";
        return NULL;
    }
    if (strcasecmp(raw, "INBOX") == 0) {
        char *p = xstrdup(layout == LAYOUT_MAILDIRPP ? "" : "INBOX");
        return p;
    }
    bool one_dir = layout != LAYOUT_VERBATIM; /* the whole path is one directory name */
    size_t rawlen = strlen(raw);
    if (rawlen > NAME_MAX_PATH * 4) {
        /* Cheap early exit: decoding and escaping never shrink a name to
         * less than 0.4 of its raw length ("&AIA-", 5 bytes, is 2 bytes of
         * UTF-8), so this is over NAME_MAX_PATH either way. */
        *why = "name too long";
        return NULL;
    }
    struct component *comps = xmalloc((rawlen + 1) * sizeof *comps);
    size_t ncomps = split_name(raw, delim, comps);
    struct buf out = {0};
    if (layout == LAYOUT_MAILDIRPP)
        buf_putc(&out, '.');
    for (size_t i = 0; i < ncomps && !*why; i++) {
        if (i > 0)
            buf_putc(&out, one_dir ? '.' : '/');
        size_t start = out.len;
        *why = map_component(comps[i], layout, &out);
        if (!*why && layout == LAYOUT_VERBATIM && out.len - start > NAME_MAX_COMPONENT)
            *why = "name component too long";
    }
    free(comps);
    /* dotted: a top-level "cur", "new" or "tmp" next to INBOX and the
     * others is harmless, but the escape keeps it out of any Maildir's
     * own subdirectory names (as in verbatim). "%" is always escaped in
     * a component, so "%63ur" cannot come from anything else. */
    if (!*why && layout == LAYOUT_DOTTED && is_reserved_subdir(out.data, out.len)) {
        char first = out.data[0];
        struct buf esc = {0};
        put_escape(&esc, (unsigned char)first);
        buf_put(&esc, out.data + 1, out.len - 1);
        buf_free(&out);
        out = esc;
    }
    if (!*why && one_dir && out.len > NAME_MAX_COMPONENT)
        *why = "name too long";
    if (!*why && out.len > NAME_MAX_PATH)
        *why = "name too long";
    if (*why) {
        buf_free(&out);
        return NULL;
    }
    return buf_take(&out);
}

/* ---- relative path -> server name -----------------------------------------
 *
 * The inverse of names_folder_path, for folders that exist only locally:
 * the path is cut at the layout's separator, each component has its %XX
 * escapes undone and is then, if it is a component that names_folder_path
 * would have used as raw bytes (it holds an escaped '&' or 8-bit byte),
 * taken as it is, else encoded as modified UTF-7. The result is checked by
 * mapping it forward again: a path that is not exactly what some server
 * name maps to (lower-case escapes, a literal "..", "inbox") has none. */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1; /* only the upper-case escapes names_folder_path writes */
}

/* Undo the %XX escapes of s[0..n) onto out. Returns whether one of them
 * was '&' or a byte >= 0x80, the marks of a raw (undecodable) component. */
static bool unescape_component(const char *s, size_t n, struct buf *out)
{
    bool raw_case = false;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = hex_digit(s[i + 1])) >= 0 && (lo = hex_digit(s[i + 2])) >= 0) {
            unsigned char c = (unsigned char)(hi * 16 + lo);
            raw_case = raw_case || c == '&' || c >= 0x80;
            buf_putc(out, (char)c);
            i += 2;
        } else {
            buf_putc(out, s[i]);
        }
    }
    return raw_case;
}

char *names_folder_raw(const char *path, char delim, enum folder_layout layout)
{
    if (!path)
        return NULL;
    const char *whole = path;
    if (layout == LAYOUT_MAILDIRPP) {
        if (!*path)
            return xstrdup("INBOX");
        if (path[0] != '.')
            return NULL;
        path++;
    }
    char sep = layout == LAYOUT_VERBATIM ? '/' : '.';
    struct buf raw = {0};
    bool ok = *path != '\0';
    for (const char *p = path; ok;) {
        const char *end = strchr(p, sep);
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (p != path) {
            if (!delim) {
                ok = false; /* nested, but the server is flat */
                break;
            }
            buf_putc(&raw, delim);
        }
        struct buf text = {0};
        if (unescape_component(p, n, &text)) {
            buf_put(&raw, text.data, text.len);
        } else {
            char *enc = NULL;
            if (text.len == strlen(text.data ? text.data : ""))
                enc = names_mutf7_encode(text.data ? text.data : "");
            if (enc)
                buf_put(&raw, enc, strlen(enc));
            ok = enc != NULL;
            free(enc);
        }
        buf_free(&text);
        if (!end)
            break;
        p = end + 1;
    }
    char *name = buf_take(&raw);
    char *back = ok ? names_folder_path(name, delim, layout, NULL) : NULL;
    if (!back || strcmp(back, whole) != 0) {
        free(name);
        name = NULL;
    }
    free(back);
    return name;
}

/* A component as a tool that keeps raw names writes it: safe only if it
 * is a plain directory name (not empty, ".", "..", cur/new/tmp, no '/',
 * no control character; verbatim: not hidden; maildir++ and dotted: no
 * '.', the separator there). */
static bool raw_component_ok(struct component c, enum folder_layout layout)
{
    if (c.len == 0 || c.len > NAME_MAX_COMPONENT || (c.len == 1 && c.raw[0] == '.') ||
        (c.len == 2 && c.raw[0] == '.' && c.raw[1] == '.'))
        return false;
    if (layout == LAYOUT_VERBATIM && c.raw[0] == '.')
        return false;
    static const char *const reserved[] = {"cur", "new", "tmp"};
    for (size_t i = 0; i < 3; i++)
        if (c.len == 3 && strncasecmp(c.raw, reserved[i], 3) == 0)
            return false;
    for (size_t i = 0; i < c.len; i++) {
        unsigned char ch = (unsigned char)c.raw[i];
        if (ch == '/' || ch < 0x20 || ch == 0x7f || (layout != LAYOUT_VERBATIM && ch == '.'))
            return false;
    }
    return true;
}

char *names_raw_path(const char *raw, char delim, enum folder_layout layout)
{
    if (!raw || !*raw || strcasecmp(raw, "INBOX") == 0 || !strchr(raw, '&'))
        return NULL;
    size_t rawlen = strlen(raw);
    struct component *comps = xmalloc((rawlen + 1) * sizeof *comps);
    size_t ncomps = split_name(raw, delim, comps);
    struct buf out = {0};
    bool ok = true;
    if (layout == LAYOUT_MAILDIRPP)
        buf_putc(&out, '.');
    for (size_t i = 0; i < ncomps && ok; i++) {
        ok = raw_component_ok(comps[i], layout);
        if (i > 0)
            buf_putc(&out, layout == LAYOUT_VERBATIM ? '/' : '.');
        for (size_t k = 0; ok && k < comps[i].len; k++)
            buf_putc(&out, comps[i].raw[k]);
    }
    free(comps);
    /* maildir++ and dotted: the whole path is one directory name */
    size_t max = layout == LAYOUT_VERBATIM ? NAME_MAX_PATH : NAME_MAX_COMPONENT;
    char *path = ok && out.len <= max ? buf_take(&out) : NULL;
    if (!path)
        buf_free(&out);
    char *own = path ? names_folder_path(raw, delim, layout, NULL) : NULL;
    if (path && (!own || strcmp(own, path) == 0)) { /* no other name to look for */
        free(path);
        path = NULL;
    }
    free(own);
    return path;
}

/* ---- folder patterns ------------------------------------------------------ */

/* Length of the UTF-8 character at s (1 for a stray byte). */
static size_t char_len(const unsigned char *s, size_t left)
{
    uint32_t cp;
    size_t k = names_utf8_decode(s, left, &cp);
    return k ? k : 1;
}

/* Whether name matches pattern. A set of reachable name positions is
 * carried through the pattern (O(len(name) * len(pattern)), no
 * exponential backtracking on patterns like "*a*a*a*b"). */
static bool glob_match(const char *pattern, const char *name)
{
    size_t n = strlen(name);
    bool *cur = xmalloc(n + 1), *next = xmalloc(n + 1);
    memset(cur, 0, n + 1);
    cur[0] = true;
    const unsigned char *s = (const unsigned char *)name;
    for (const unsigned char *p = (const unsigned char *)pattern; *p; p++) {
        memset(next, 0, n + 1);
        if (*p == '*' || *p == '%') {
            bool reach = false;
            for (size_t j = 0; j <= n; j++) {
                if (cur[j])
                    reach = true;
                next[j] = reach;
                if (*p == '%' && j < n && s[j] == '/')
                    reach = false;
            }
        } else if (*p == '?') {
            for (size_t j = 0; j < n; j++)
                if (cur[j])
                    next[j + char_len(s + j, n - j)] = true;
        } else {
            for (size_t j = 0; j < n; j++)
                if (cur[j] && s[j] == *p)
                    next[j + 1] = true;
        }
        bool *t = cur;
        cur = next;
        next = t;
    }
    bool ok = cur[n];
    free(cur);
    free(next);
    return ok;
}

/* A copy of s where a leading "INBOX" component (any case) is upper case,
 * since IMAP treats the name INBOX case-insensitively. */
static char *inbox_normalised(const char *s)
{
    char *c = xstrdup(s);
    if (strncasecmp(c, "INBOX", 5) == 0 && (c[5] == '\0' || c[5] == '/'))
        memcpy(c, "INBOX", 5);
    return c;
}

static const struct {
    unsigned bit;
    const char *name;
} role_names[] = {
    {FOLDER_ROLE_ALL, "\\All"},     {FOLDER_ROLE_ARCHIVE, "\\Archive"}, {FOLDER_ROLE_DRAFTS, "\\Drafts"},
    {FOLDER_ROLE_FLAGGED, "\\Flagged"}, {FOLDER_ROLE_JUNK, "\\Junk"},       {FOLDER_ROLE_SENT, "\\Sent"},
    {FOLDER_ROLE_TRASH, "\\Trash"},
};

unsigned names_role_bit(const char *name, bool bare)
{
    if (!name)
        return 0;
    if (*name == '\\')
        name++;
    else if (!bare)
        return 0;
    for (size_t i = 0; i < sizeof role_names / sizeof *role_names; i++)
        if (strcasecmp(name, role_names[i].name + 1) == 0)
            return role_names[i].bit;
    return 0;
}

const char *names_roles_text(unsigned roles, char *buf, size_t len)
{
    size_t at = 0;
    if (len)
        buf[0] = '\0';
    for (size_t i = 0; i < sizeof role_names / sizeof *role_names; i++) {
        if (!(roles & role_names[i].bit))
            continue;
        int k = snprintf(buf + at, len > at ? len - at : 0, "%s%s", at ? " " : "", role_names[i].name);
        if (k < 0 || (size_t)k >= (len > at ? len - at : 0)) {
            if (at < len)
                buf[at] = '\0'; /* whole names only */
            break;
        }
        at += (size_t)k;
    }
    return buf;
}

bool names_folder_selected(const char *name, unsigned roles, char *const *patterns, size_t npatterns)
{
    if (!name)
        return false;
    char *nname = inbox_normalised(name);
    bool selected = false;
    for (size_t i = 0; i < npatterns; i++) {
        const char *pat = patterns[i];
        if (!pat)
            continue;
        bool negate = pat[0] == '!';
        unsigned role = names_role_bit(negate ? pat + 1 : pat, false);
        if (role) {
            if (roles & role)
                selected = !negate;
            continue;
        }
        char *npat = inbox_normalised(negate ? pat + 1 : pat);
        if (glob_match(npat, nname))
            selected = !negate;
        free(npat);
    }
    free(nname);
    return selected;
}
