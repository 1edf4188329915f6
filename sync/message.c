/* SPDX-License-Identifier: MIT */
/* message.c: header lookup and local message identity (message.h). */
#include "sync/message.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>

#define MAX_VALUE 998
/* How much of a file we keep to find its header block. */
#define HEADER_WINDOW (64 * 1024)

/* Length of the line starting at p (without its LF / CRLF), and where the
 * next one starts. */
static size_t line_at(const char *p, const char *end, const char **next)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *stop = nl ? nl : end;
    *next = nl ? nl + 1 : end;
    size_t n = (size_t)(stop - p);
    if (n && p[n - 1] == '\r')
        n--;
    return n;
}

static char *append_trimmed(char *val, size_t *vlen, const char *s, size_t n, bool *bad)
{
    while (n && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    size_t blank = *vlen && n ? 1 : 0; /* the fold's white space, as one space */
    if (memchr(s, '\0', n) || *vlen + blank + n > MAX_VALUE) {
        *bad = true;
        return val;
    }
    if (blank)
        val[(*vlen)++] = ' ';
    memcpy(val + *vlen, s, n);
    *vlen += n;
    val[*vlen] = '\0';
    return val;
}

char *message_header(const char *buf, size_t len, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *next;
        size_t n = line_at(p, end, &next);
        if (n == 0)
            return NULL; /* end of the header block */
        if (n > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
            char *val = malloc(MAX_VALUE + 1);
            if (!val)
                return NULL;
            size_t vlen = 0;
            bool bad = false;
            val[0] = '\0';
            append_trimmed(val, &vlen, p + nlen + 1, n - nlen - 1, &bad);
            /* continuation lines start with white space */
            while (!bad && next < end && (*next == ' ' || *next == '\t')) {
                p = next;
                n = line_at(p, end, &next);
                append_trimmed(val, &vlen, p, n, &bad);
            }
            if (bad || vlen == 0) {
                free(val);
                return NULL;
            }
            return val;
        }
        p = next;
    }
    return NULL;
}

/* ---- fields other tools add ----------------------------------------- */

/* Where each comes from:
 *  - X-TUID: isync/mbsync (sync.c, copy_msg_convert) writes "X-TUID: "
 *    and 12 characters into every message it copies either way, in place
 *    of the first X-TUID field or at the end of the header; it finds its
 *    uploads by it when the server has no UIDPLUS.
 *  - X-OfflineIMAP: OfflineIMAP (folder/IMAP.py, savemessage) adds it
 *    with add_header (so at the end of the header) to what it uploads to
 *    a server without UIDPLUS.
 *  - Return-Path, Delivered-To, Received: getmail (message.py, flatten)
 *    removes the message's Return-Path fields and writes Return-Path,
 *    Delivered-To and Received on top; fetchmail writes one Received on
 *    top; X-Original-To comes with Delivered-To from Postfix's delivery.
 *    A server's own delivery writes the same fields at the same place. */
enum tool_field { FIELD_KEPT, FIELD_TOOL, FIELD_LEADING };

static bool name_is(const char *p, size_t n, const char *name)
{
    return n == strlen(name) && strncasecmp(p, name, n) == 0;
}

/* What the field whose name is p[0..n) is (the name without its colon). */
static enum tool_field classify_field(const char *p, size_t n)
{
    if (name_is(p, n, "X-TUID") || name_is(p, n, "X-OfflineIMAP"))
        return FIELD_TOOL;
    if (name_is(p, n, "Return-Path") || name_is(p, n, "Delivered-To") || name_is(p, n, "Received") ||
        name_is(p, n, "X-Original-To"))
        return FIELD_LEADING;
    return FIELD_KEPT;
}

/* The field of the header line at p[0..n) (no line end), by its name. */
static enum tool_field field_of_line(const char *p, size_t n)
{
    const char *colon = memchr(p, ':', n);
    if (!colon)
        return FIELD_KEPT;
    size_t k = (size_t)(colon - p);
    while (k && (p[k - 1] == ' ' || p[k - 1] == '\t'))
        k--;
    return classify_field(p, k);
}

/* The sizes of struct message_identity from the header block in
 * head[0..len) (LF or CRLF line ends) of a message of CRLF size size. */
static void alt_sizes(const char *head, size_t len, uint64_t size, struct message_identity *id)
{
    const char *p = head, *end = head + len;
    uint64_t tool = 0, lead[MESSAGE_ALT_SIZES];
    unsigned nlead = 0;
    bool leading = true;
    while (p < end) {
        const char *next;
        size_t n = line_at(p, end, &next);
        if (n == 0)
            break; /* the end of the header */
        enum tool_field f = field_of_line(p, n);
        uint64_t flen = n + 2; /* CRLF on the server */
        while (next < end && (*next == ' ' || *next == '\t')) {
            p = next;
            flen += line_at(p, end, &next) + 2;
        }
        if (f == FIELD_TOOL)
            tool += flen;
        else if (f == FIELD_LEADING && leading && nlead < MESSAGE_ALT_SIZES - 1)
            lead[nlead++] = flen;
        else
            leading = false;
        p = next;
    }
    uint64_t cut = tool;
    for (unsigned j = 0; j <= nlead && cut < size; j++) {
        if (cut && (id->nalt == 0 || id->alt[id->nalt - 1] != size - cut))
            id->alt[id->nalt++] = size - cut;
        if (j < nlead)
            cut += lead[j];
    }
}

int message_identity_read(int fd, struct message_identity *id)
{
    memset(id, 0, sizeof *id);
    char *head = malloc(HEADER_WINDOW);
    char buf[65536];
    size_t nhead = 0;
    uint64_t size = 0;
    char prev = '\0';
    if (!head)
        return -1;
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(head);
            return -1;
        }
        if (r == 0)
            break;
        /* a LF not preceded by CR becomes CRLF on the server (memchr:
         * this loop reads every byte of every file to adopt) */
        for (const char *p = buf, *end = buf + r; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
            size += (p > buf ? p[-1] : prev) != '\r';
        prev = buf[r - 1];
        size += (uint64_t)r;
        size_t take = (size_t)r < HEADER_WINDOW - nhead ? (size_t)r : HEADER_WINDOW - nhead;
        memcpy(head + nhead, buf, take);
        nhead += take;
    }
    id->message_id = message_header(head, nhead, "Message-ID");
    id->date = message_header(head, nhead, "Date");
    id->from = message_header(head, nhead, "From");
    id->size = size;
    alt_sizes(head, nhead, size, id);
    id->placeholder = message_is_mbsync_placeholder(head, nhead);
    id->placeholder_marks = id->placeholder || message_has_placeholder_marks(head, nhead);
    id->placeholder_size = id->placeholder_marks ? message_placeholder_size(head, nhead) : 0;
    free(head);
    return 0;
}

int message_identity_fd(int fd, char **message_id, uint64_t *crlf_size)
{
    struct message_identity id;
    int rc = message_identity_read(fd, &id);
    *message_id = rc == 0 ? id.message_id : NULL;
    *crlf_size = id.size;
    if (rc == 0)
        id.message_id = NULL;
    message_identity_free(&id);
    return rc;
}

void message_identity_free(struct message_identity *id)
{
    free(id->message_id);
    free(id->date);
    free(id->from);
    memset(id, 0, sizeof *id);
}

/* ---- mbsync's placeholders ------------------------------------------ */

bool message_is_mbsync_placeholder(const char *buf, size_t len)
{
    static const char note[] = "Having a size of ", limit[] = ", this message is over the MaxSize limit.";
    const char *p = buf, *end = buf + len, *body = NULL;
    while (p < end) { /* the body: after the first empty line */
        const char *next;
        if (line_at(p, end, &next) == 0) {
            body = next;
            break;
        }
        p = next;
    }
    if (!body || (size_t)(end - body) < sizeof note - 1 || memcmp(body, note, sizeof note - 1) != 0)
        return false;
    const char *next;
    size_t n = line_at(body, end, &next);
    bool over = false; /* the note's first line ends with the limit sentence */
    for (const char *q = body; !over && q + (sizeof limit - 1) <= body + n; q++)
        over = memcmp(q, limit, sizeof limit - 1) == 0;
    if (!over)
        return false;
    /* mbsync's X-TUID, or the field mailsync's own placeholders carry */
    char *tuid = message_header(buf, len, "X-TUID"), *subject = message_header(buf, len, "Subject");
    if (!tuid)
        tuid = message_header(buf, len, MESSAGE_PLACEHOLDER_FIELD);
    /* "[placeholder] " before an empty Subject is "[placeholder]" once trimmed */
    bool marked = tuid && subject && strncmp(subject, "[placeholder]", 13) == 0 &&
                  (subject[13] == ' ' || subject[13] == '\0');
    free(tuid);
    free(subject);
    return marked;
}

#define PLACEHOLDER_NOTE_MARK "mailsync stored its header only (max_size = "

bool message_has_placeholder_marks(const char *buf, size_t len)
{
    if (message_is_mbsync_placeholder(buf, len))
        return true;
    char *field = message_header(buf, len, MESSAGE_PLACEHOLDER_FIELD);
    bool yes = field != NULL;
    free(field);
    /* the note's line, at the start of a line */
    for (const char *p = buf, *end = buf + len; !yes && p && p < end;) {
        const char *q = memmem(p, (size_t)(end - p), PLACEHOLDER_NOTE_MARK, sizeof PLACEHOLDER_NOTE_MARK - 1);
        yes = q && (q == buf || q[-1] == '\n');
        p = q ? q + 1 : NULL;
    }
    return yes;
}

uint64_t message_placeholder_size(const char *buf, size_t len)
{
    char *v = message_header(buf, len, MESSAGE_PLACEHOLDER_FIELD);
    uint64_t size = 0;
    bool ok = v && v[0];
    for (const char *p = v; ok && *p; p++) {
        ok = *p >= '0' && *p <= '9' && size <= (UINT64_MAX - 9) / 10;
        size = size * 10 + (uint64_t)(*p - '0');
    }
    free(v);
    return ok ? size : 0;
}

/* The header block as far as it is whole: up to its empty line, or (a
 * block cut short) up to the last line that starts a field. */
static size_t whole_header(const char *h, size_t len, bool *cut)
{
    const char *p = h, *end = h + len, *last_field = h;
    *cut = false;
    while (p < end) {
        const char *next;
        size_t n = line_at(p, end, &next);
        if (n == 0)
            return (size_t)(p - h); /* the empty line: the header ends */
        if (*p != ' ' && *p != '\t')
            last_field = p;
        if (next == end && end[-1] != '\n')
            break; /* a line cut short */
        p = next;
    }
    *cut = true;
    return (size_t)(last_field - h);
}

static void put(char **b, size_t *n, size_t *cap, const char *s, size_t len)
{
    if (*n + len + 1 > *cap) {
        *cap = (*n + len + 1) * 2;
        char *x = realloc(*b, *cap);
        if (!x) {
            free(*b);
            *b = NULL;
            *cap = 0;
        }
        *b = x;
    }
    if (!*b)
        return;
    memcpy(*b + *n, s, len);
    *n += len;
    (*b)[*n] = '\0';
}

char *message_placeholder(const char *header, size_t len, uint64_t size, uint64_t max_size, size_t *out_len)
{
    static const char prefix[] = "[placeholder] ";
    bool cut;
    size_t hlen = whole_header(header, len, &cut);
    char *b = NULL;
    size_t n = 0, cap = 0;
    bool subject = false;
    const char *p = header, *end = header + hlen;
    while (p < end) { /* field by field; the Subject gets the prefix */
        const char *next;
        size_t ln = line_at(p, end, &next);
        if (ln >= 8 && strncasecmp(p, "Subject:", 8) == 0 && !subject) {
            subject = true;
            const char *v = p + 8;
            while (v < p + ln && (*v == ' ' || *v == '\t'))
                v++;
            put(&b, &n, &cap, p, 8);
            put(&b, &n, &cap, " ", 1);
            put(&b, &n, &cap, prefix, sizeof prefix - 1);
            put(&b, &n, &cap, v, (size_t)(next - v));
        } else if (!(ln > sizeof MESSAGE_PLACEHOLDER_FIELD &&
                     strncasecmp(p, MESSAGE_PLACEHOLDER_FIELD ":", sizeof MESSAGE_PLACEHOLDER_FIELD) == 0) &&
                   !(ln >= 7 && strncasecmp(p, "X-TUID:", 7) == 0)) {
            put(&b, &n, &cap, p, (size_t)(next - p));
        }
        if (next == end && (next == p || end[-1] != '\n'))
            put(&b, &n, &cap, "\r\n", 2);
        p = next;
    }
    static const char none[] = "Subject: [placeholder] (No Subject)\r\n";
    char line[512];
    if (!subject)
        put(&b, &n, &cap, none, sizeof none - 1);
    int w = snprintf(line, sizeof line, "%s: %llu\r\n\r\n", MESSAGE_PLACEHOLDER_FIELD, (unsigned long long)size);
    put(&b, &n, &cap, line, (size_t)w);
    char human[32];
    if (size >= (1u << 20))
        snprintf(human, sizeof human, "%.1f MiB", (double)size / (1u << 20));
    else
        snprintf(human, sizeof human, "%.1f KiB", (double)size / 1024);
    w = snprintf(line, sizeof line,
                 "Having a size of %s, this message is over the MaxSize limit.\r\n"
                 PLACEHOLDER_NOTE_MARK "%llu bytes; the message has %llu).\r\n"
                 "Flag it and sync again, or run `mailsync fetch FILE` (or --all), to fetch\r\n"
                 "its real contents; it then replaces this placeholder.\r\n%s",
                 human, (unsigned long long)max_size, (unsigned long long)size,
                 cut ? "(Its header was longer than this one: the rest comes with it.)\r\n" : "");
    put(&b, &n, &cap, line, (size_t)w);
    *out_len = b ? n : 0;
    return b;
}

/* ---- content hash ---------------------------------------------------- */

/* The header filter runs on the bytes after the CR rule, one header line
 * at a time: a line's start is held (line[]) until its field name is
 * known, then it and its continuation lines are hashed or left out. */
#define FIELD_NAME_KEEP 64

struct message_hash {
    EVP_MD_CTX *md;
    bool cr_pending; /* a CR ended the last chunk: dropped if LF follows */
    bool in_body;    /* past the empty line that ends the header */
    bool line_start; /* the next byte starts a header line */
    bool decided;    /* the current field's fate is known */
    bool dropping;   /* ... and it is left out */
    bool leading;    /* no field kept yet: still in the leading run */
    bool stored;     /* message_hash_file: the bytes as stored, CRs kept */
    char line[FIELD_NAME_KEEP];
    size_t nline;
    uint64_t len; /* bytes hashed */
};

static void hash_out(struct message_hash *h, const char *p, size_t n)
{
    if (!n)
        return;
    EVP_DigestUpdate(h->md, p, n);
    h->len += n;
}

/* Decide the fate of the field whose first line starts in h->line. */
static void decide_field(struct message_hash *h)
{
    const char *colon = memchr(h->line, ':', h->nline);
    enum tool_field f = colon ? field_of_line(h->line, (size_t)(colon - h->line) + 1) : FIELD_KEPT;
    h->dropping = f == FIELD_TOOL || (f == FIELD_LEADING && h->leading);
    if (!h->dropping) {
        h->leading = false;
        hash_out(h, h->line, h->nline);
    }
    h->decided = true;
    h->nline = 0;
}

/* One byte of the header (line ends already LF). */
static void header_byte(struct message_hash *h, char c)
{
    if (h->line_start) {
        h->line_start = false;
        if (c == '\n') { /* the empty line: the body follows */
            hash_out(h, "\n", 1);
            h->in_body = true;
            return;
        }
        if (c != ' ' && c != '\t') { /* a new field; else a continuation */
            h->decided = false;
            h->nline = 0;
        }
    }
    if (!h->decided) {
        h->line[h->nline++] = c;
        if (c == ':' || c == '\n' || h->nline == sizeof h->line)
            decide_field(h);
    } else if (!h->dropping) {
        hash_out(h, &c, 1);
    }
    if (c == '\n')
        h->line_start = true;
}

struct message_hash *message_hash_new(void)
{
    struct message_hash *h = calloc(1, sizeof *h);
    if (h && !(h->md = EVP_MD_CTX_new())) {
        free(h);
        return NULL;
    }
    if (h)
        message_hash_start(h);
    return h;
}

void message_hash_start(struct message_hash *h)
{
    EVP_DigestInit_ex(h->md, EVP_sha256(), NULL);
    h->cr_pending = false;
    h->in_body = false;
    h->line_start = true;
    h->decided = true;
    h->dropping = false;
    h->leading = true;
    h->nline = 0;
    h->len = 0;
    h->stored = false;
}

/* The body: a CR right before LF is dropped. */
static void body_add(struct message_hash *h, const char *data, size_t len)
{
    size_t start = 0;
    if (h->cr_pending && len) {
        if (data[0] != '\n')
            hash_out(h, "\r", 1);
        h->cr_pending = false;
    }
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\r')
            continue;
        if (i + 1 == len) { /* decide with the next chunk */
            hash_out(h, data + start, i - start);
            h->cr_pending = true;
            return;
        }
        if (data[i + 1] == '\n') {
            hash_out(h, data + start, i - start);
            start = i + 1;
        }
    }
    hash_out(h, data + start, len - start);
}

void message_hash_add(struct message_hash *h, const char *data, size_t len)
{
    size_t i = 0;
    if (h->stored) { /* the CR rule was applied when the file was written */
        while (i < len && !h->in_body)
            header_byte(h, data[i++]);
        hash_out(h, data + i, len - i);
        return;
    }
    while (i < len && !h->in_body) {
        char c = data[i++];
        if (h->cr_pending) {
            h->cr_pending = false;
            if (c != '\n')
                header_byte(h, '\r');
        }
        if (c == '\r')
            h->cr_pending = true;
        else
            header_byte(h, c);
    }
    if (i < len)
        body_add(h, data + i, len - i);
}

bool message_hash_end(struct message_hash *h, unsigned char out[32], uint64_t *len)
{
    if (h->cr_pending && h->in_body)
        hash_out(h, "\r", 1);
    else if (h->cr_pending)
        header_byte(h, '\r');
    h->cr_pending = false;
    if (!h->in_body && !h->decided && h->nline) /* the file ends in a field's name */
        decide_field(h);
    if (len)
        *len = h->len;
    return EVP_DigestFinal_ex(h->md, out, NULL) == 1;
}

void message_hash_free(struct message_hash *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->md);
    free(h);
}

int message_hash_file(struct message_hash *h, int fd, unsigned char out[32], uint64_t *len)
{
    char buf[65536];
    ssize_t n;
    message_hash_start(h);
    h->stored = true;
    while ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            message_hash_add(h, buf, (size_t)n);
    if (n < 0)
        return -1;
    return message_hash_end(h, out, len) ? 0 : -1;
}

int message_hash_fd(int fd, unsigned char out[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    char buf[65536];
    ssize_t n = 0;
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    while (ok && ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0)
            EVP_DigestUpdate(md, buf, (size_t)n);
    ok = ok && n == 0 && EVP_DigestFinal_ex(md, out, NULL);
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}
