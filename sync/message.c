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

int message_identity_fd(int fd, char **message_id, uint64_t *crlf_size)
{
    char *head = malloc(HEADER_WINDOW);
    char buf[65536];
    size_t nhead = 0;
    uint64_t size = 0;
    char prev = '\0';
    *message_id = NULL;
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
        for (ssize_t i = 0; i < r; i++) {
            /* a LF not preceded by CR becomes CRLF on the server */
            if (buf[i] == '\n' && prev != '\r')
                size++;
            prev = buf[i];
        }
        size += (uint64_t)r;
        size_t take = (size_t)r < HEADER_WINDOW - nhead ? (size_t)r : HEADER_WINDOW - nhead;
        memcpy(head + nhead, buf, take);
        nhead += take;
    }
    *message_id = message_header(head, nhead, "Message-ID");
    *crlf_size = size;
    free(head);
    return 0;
}

/* ---- content hash ---------------------------------------------------- */

struct message_hash {
    EVP_MD_CTX *md;
    bool cr_pending; /* a CR ended the last chunk: dropped if LF follows */
};

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
}

void message_hash_add(struct message_hash *h, const char *data, size_t len)
{
    size_t start = 0;
    if (h->cr_pending && len) {
        if (data[0] != '\n')
            EVP_DigestUpdate(h->md, "\r", 1);
        h->cr_pending = false;
    }
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\r')
            continue;
        if (i + 1 == len) { /* decide with the next chunk */
            EVP_DigestUpdate(h->md, data + start, i - start);
            h->cr_pending = true;
            return;
        }
        if (data[i + 1] == '\n') {
            EVP_DigestUpdate(h->md, data + start, i - start);
            start = i + 1;
        }
    }
    EVP_DigestUpdate(h->md, data + start, len - start);
}

bool message_hash_end(struct message_hash *h, unsigned char out[32])
{
    if (h->cr_pending)
        EVP_DigestUpdate(h->md, "\r", 1);
    h->cr_pending = false;
    return EVP_DigestFinal_ex(h->md, out, NULL) == 1;
}

void message_hash_free(struct message_hash *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->md);
    free(h);
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
