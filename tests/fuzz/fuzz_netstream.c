/* SPDX-License-Identifier: MIT */
/*
 * fuzz_netstream.c: libFuzzer target for the pure parts of the transport
 * (sync/net/netstream.h): the IMAP framer that follows lines and {N} literals
 * and enforces the size caps before libetpan sees a byte, the masking of
 * client lines for the -vv trace, the escaping of server text, and the
 * UID set helpers fed by server-chosen numbers.
 *
 * Input: byte 0 picks the mode, the rest is its data.
 *  mode 0  server -> client framer with limits. The same bytes are fed
 *          whole, byte by byte and in input-chosen chunks: the framer keeps
 *          state across reads (a {N} or a line end may be split anywhere),
 *          so all three must report the same lines, literals and verdict,
 *          and end in the same state. Fed one byte at a time the framer
 *          never takes its path for runs of plain bytes: this compares
 *          that path with the byte-by-byte one. Reported literals respect
 *          the caps; a failure has a reason.
 *  mode 1  client -> server framer, some chunks marked secret; every line
 *          goes through imap_mask_client_line: the output is printable,
 *          NUL-terminated within outlen, a LOGIN line never shows its
 *          arguments, an AUTHENTICATE line never its initial response, and
 *          another secret line is shown as "[secret masked...".
 *          The same chunks and the same bytes one at a time report the
 *          same lines (secret or not) and end in the same state.
 *  mode 2  imap_uid_batch over the data as uint32 UIDs (sorted, as the
 *          contract requires, and unsorted for memory safety): batches are
 *          within every limit, cover exactly the UIDs consumed, and
 *          repeated calls consume everything.
 *  mode 3  imap_uid_list_add_range with (first, last, max_uid) triples:
 *          results within 1..max_uid, never over max_total, endpoints kept.
 *  mode 4  (first byte 0xf8..0xff) COMPRESS=DEFLATE (sync/net/deflate_layer.h):
 *          the data as a hostile server's deflate stream, fed in chunks and
 *          read into buffers of input-chosen sizes: never more output than
 *          asked, every call ends, a failure has a reason and stays one;
 *          and the data deflated by one layer inflates to itself in another.
 * Every mode also runs imap_escape_text on the data.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_util.h"
#include "sync/net/deflate_layer.h"
#include "sync/net/netstream.h"

/* ---- framer: a log of what it reported ------------------------------- */

struct rec {
    char *log;
    size_t len, cap;
};

static void rec_put(struct rec *r, const void *p, size_t n)
{
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 1024;
        while (cap < r->len + n)
            cap *= 2;
        r->log = realloc(r->log, cap);
        if (!r->log)
            abort();
        r->cap = cap;
    }
    memcpy(r->log + r->len, p, n);
    r->len += n;
}

static void on_line_server(void *ctx, const struct imap_framer *f, bool literal, uint64_t literal_len)
{
    struct rec *r = ctx;
    CHECK(f->head_len <= sizeof f->head, "head_len %zu", f->head_len);
    CHECK(f->line_len >= f->head_len, "line_len %llu < head_len %zu", (unsigned long long)f->line_len, f->head_len);
    if (literal && f->check_limits) {
        uint64_t cap = f->brace_body ? MAILSYNC_MAX_LITERAL : MAILSYNC_MAX_SMALL_LITERAL;
        CHECK(literal_len <= cap, "literal of %llu bytes passed (cap %llu)", (unsigned long long)literal_len,
              (unsigned long long)cap);
    }
    CHECK(literal || literal_len == 0, "literal length without a literal");
    uint64_t fields[5] = {f->line_len, literal, literal_len, f->brace_body, f->line_private};
    rec_put(r, fields, sizeof fields);
    rec_put(r, &f->head_len, sizeof f->head_len);
    rec_put(r, f->head, f->head_len);
}

/* Feed data in chunks of the sizes given by seeds (cycled; 0 = 1 byte).
 * Returns the verdict; the log and the final reason are in r / f. */
static int feed_chunked(struct imap_framer *f, struct rec *r, const char *data, size_t len, const uint8_t *seeds,
                        size_t nseeds, bool private_data)
{
    memset(f, 0, sizeof *f);
    f->on_line = on_line_server;
    f->ctx = r;
    imap_framer_init(f, true);
    size_t i = 0, k = 0;
    while (i < len) {
        size_t n = nseeds ? seeds[k++ % nseeds] : len;
        if (n == 0)
            n = 1;
        if (n > len - i)
            n = len - i;
        if (imap_framer_feed(f, data + i, n, private_data) != 0) {
            CHECK(f->reason[0] != '\0', "failure without a reason");
            CHECK(memchr(f->reason, '\0', sizeof f->reason) != NULL, "reason not terminated");
            return -1;
        }
        i += n;
    }
    return 0;
}

/* Everything the framer carries from one read to the next. Fed one byte
 * at a time it never takes its path for runs of plain bytes (runs of 8 or
 * more), so this compares that path with the byte-by-byte one. */
static void same_end_state(const struct imap_framer *a, const struct imap_framer *b, const char *what)
{
    CHECK(a->in_literal == b->in_literal && a->literal_left == b->literal_left && a->line_len == b->line_len &&
              a->response_start == b->response_start && a->response_bytes == b->response_bytes &&
              a->command_bytes == b->command_bytes && a->line_private == b->line_private,
          "end state differs (%s): counters", what);
    CHECK(a->head_len == b->head_len && !memcmp(a->head, b->head, a->head_len) && a->tail_len == b->tail_len &&
              !memcmp(a->tail, b->tail, a->tail_len),
          "end state differs (%s): head or tail", what);
    CHECK(a->brace_state == b->brace_state && a->brace_digits == b->brace_digits &&
              a->brace_value == b->brace_value && a->brace_last == b->brace_last && a->brace_body == b->brace_body &&
              a->brace_ctx_len == b->brace_ctx_len && !memcmp(a->brace_ctx, b->brace_ctx, a->brace_ctx_len),
          "end state differs (%s): literal scanner", what);
    CHECK(a->greeting_seen == b->greeting_seen && a->greeting_code == b->greeting_code &&
              a->perm_state == b->perm_state,
          "end state differs (%s): greeting or PERMANENTFLAGS", what);
}

static void mode_server(const uint8_t *data, size_t size)
{
    /* The first 4 bytes (if any) are chunk sizes for the third feed. */
    size_t nseeds = size < 4 ? size : 4;
    const uint8_t *seeds = data;
    const char *text = (const char *)data + nseeds;
    size_t len = size - nseeds;
    static struct imap_framer a, b, c;
    struct rec ra = {0}, rb = {0}, rc = {0};
    static const uint8_t one[] = {1};
    int va = feed_chunked(&a, &ra, text, len, NULL, 0, false);
    int vb = feed_chunked(&b, &rb, text, len, one, 1, false);
    int vc = feed_chunked(&c, &rc, text, len, seeds, nseeds, false);
    CHECK(va == vb && va == vc, "verdict depends on read sizes: whole %d, bytes %d, chunks %d", va, vb, vc);
    CHECK(ra.len == rb.len && (!ra.len || !memcmp(ra.log, rb.log, ra.len)), "lines differ: whole vs byte by byte");
    CHECK(ra.len == rc.len && (!ra.len || !memcmp(ra.log, rc.log, ra.len)), "lines differ: whole vs chunks");
    if (va != 0) {
        CHECK(strcmp(a.reason, b.reason) == 0 && strcmp(a.reason, c.reason) == 0, "reasons differ: \"%s\" / \"%s\"",
              a.reason, b.reason);
    } else {
        same_end_state(&a, &b, "whole vs byte by byte");
        same_end_state(&a, &c, "whole vs chunks");
    }
    free(ra.log);
    free(rb.log);
    free(rc.log);
}

/* ---- client lines and masking ------------------------------------------- */

static bool all_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

static size_t tok(const char *s, size_t len)
{
    size_t n = 0;
    while (n < len && s[n] != ' ' && s[n] != '\r' && s[n] != '\n')
        n++;
    return n;
}

/* A LOGIN or AUTHENTICATE line may show only a prefix of what is not
 * secret (shown_prefix: tag, command, mechanism), escaped, then one of the
 * fixed notes: whatever else appears could be a credential. */
static void check_masked(const char *out, const char *shown_prefix, size_t prefix_len)
{
    static const char *const notes[] = {"", " [credentials masked]", " [initial response masked]"};
    char pre[1200];
    imap_escape_text(shown_prefix, prefix_len, pre, sizeof pre);
    size_t n = strlen(out);
    for (size_t i = 0; i < sizeof notes / sizeof *notes; i++) {
        size_t k = strlen(notes[i]);
        if (n >= k && strcmp(out + n - k, notes[i]) == 0 && strncmp(out, pre, n - k) == 0 && n - k <= strlen(pre))
            return;
    }
    fuzz_dump("allowed prefix", pre, strlen(pre));
    fuzz_dump("masked line", out, n);
    CHECK(0, "a credential line shows more than its tag, command and mechanism");
}

static void on_line_client(void *ctx, const struct imap_framer *f, bool literal, uint64_t literal_len)
{
    (void)ctx, (void)literal, (void)literal_len;
    static const size_t outlens[] = {1, 5, 64, 2048};
    const char *h = f->head;
    for (size_t i = 0; i < sizeof outlens / sizeof *outlens; i++) {
        size_t outlen = outlens[i];
        char *out = malloc(outlen); /* exact size: overflows are ASan reports */
        if (!out)
            abort();
        imap_mask_client_line(h, f->head_len, f->line_len, f->line_private, out, outlen);
        CHECK(memchr(out, '\0', outlen) != NULL, "output not terminated within %zu", outlen);
        CHECK(all_printable(out), "non-printable output");
        if (outlen == 2048) {
            size_t shown = f->head_len;
            while (shown && (h[shown - 1] == '\n' || h[shown - 1] == '\r'))
                shown--;
            size_t t = tok(h, shown);
            size_t cmd_at = t < shown ? t + 1 : shown;
            size_t cmd = tok(h + cmd_at, shown - cmd_at);
            bool login = cmd == 5 && strncasecmp(h + cmd_at, "LOGIN", 5) == 0;
            bool auth = cmd == 12 && strncasecmp(h + cmd_at, "AUTHENTICATE", 12) == 0;
            size_t args = cmd_at + cmd < shown ? cmd_at + cmd + 1 : shown;
            if (login) {
                /* Everything after "tag LOGIN" is credentials. */
                check_masked(out, h, cmd_at + cmd);
            } else if (auth) {
                /* Everything after "tag AUTHENTICATE MECH" is. */
                check_masked(out, h, args + tok(h + args, shown - args));
            } else if (f->line_private) {
                CHECK(strncmp(out, "[secret masked", 14) == 0, "secret line shown as \"%s\"", out);
            }
        }
        free(out);
    }
}

static void mode_client(const uint8_t *data, size_t size)
{
    /* Chunks of 1..16 bytes; the low bit of each chunk's first byte says
     * whether it is secret (as netstream_set_secret would). */
    static struct imap_framer f, g, h;
    memset(&f, 0, sizeof f);
    f.on_line = on_line_client;
    imap_framer_init(&f, false);
    /* g and h log what they report: g is fed the same chunks, h the same
     * bytes one at a time (the byte-by-byte path, secret as its chunk). */
    struct rec rg = {0}, rh = {0};
    memset(&g, 0, sizeof g);
    memset(&h, 0, sizeof h);
    g.on_line = h.on_line = on_line_server;
    g.ctx = &rg;
    h.ctx = &rh;
    imap_framer_init(&g, false);
    imap_framer_init(&h, false);
    size_t i = 0;
    while (i < size) {
        size_t n = 1 + (data[i] >> 4);
        bool secret = data[i] & 1;
        i++;
        if (n > size - i)
            n = size - i;
        const char *chunk = (const char *)data + i;
        CHECK(imap_framer_feed(&f, chunk, n, secret) == 0, "client framer failed without limits");
        CHECK(imap_framer_feed(&g, chunk, n, secret) == 0, "client framer failed without limits");
        for (size_t j = 0; j < n; j++)
            CHECK(imap_framer_feed(&h, chunk + j, 1, secret) == 0, "client framer failed without limits");
        i += n;
    }
    CHECK(rg.len == rh.len && (!rg.len || !memcmp(rg.log, rh.log, rg.len)), "client lines differ: chunks vs bytes");
    same_end_state(&g, &h, "client: chunks vs bytes");
    free(rg.log);
    free(rh.log);
}

/* ---- UID helpers ---------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static bool contains(const uint32_t *v, size_t n, uint32_t x)
{
    return bsearch(&x, v, n, sizeof *v, cmp_u32) != NULL;
}

static size_t range_text_len(const struct uid_range *r, size_t nr)
{
    size_t len = 0;
    char buf[32];
    for (size_t k = 0; k < nr; k++) {
        len += (size_t)(r[k].first == r[k].last ? snprintf(buf, sizeof buf, "%u", r[k].first)
                                                 : snprintf(buf, sizeof buf, "%u:%u", r[k].first, r[k].last));
        len += k > 0;
    }
    return len;
}

static void mode_uid_batch(const uint8_t *data, size_t size)
{
    if (size < 3)
        return;
    size_t max_uids = data[0], max_chars = (size_t)data[1] * 4, max_ranges = data[2] % 40;
    data += 3, size -= 3;
    size_t n = size / 4;
    uint32_t *uids = malloc((n ? n : 1) * sizeof *uids);
    struct uid_range *ranges = malloc((max_ranges ? max_ranges : 1) * sizeof *ranges);
    if (!uids || !ranges)
        abort();
    memcpy(uids, data, n * 4);

    /* Unsorted: only memory safety and the range count. */
    size_t nr = 0;
    size_t used = imap_uid_batch(uids, n, max_uids, max_chars, ranges, max_ranges, &nr);
    CHECK(used <= n && nr <= max_ranges, "unsorted: used %zu of %zu, %zu ranges", used, n, nr);

    qsort(uids, n, sizeof *uids, cmp_u32);
    size_t off = 0;
    while (off < n) {
        used = imap_uid_batch(uids + off, n - off, max_uids, max_chars, ranges, max_ranges, &nr);
        CHECK(used <= n - off && nr <= max_ranges, "used %zu of %zu, %zu ranges", used, n - off, nr);
        if (max_uids > 0 && max_ranges > 0)
            CHECK(used > 0, "no progress with n=%zu", n - off);
        if (used == 0)
            break;
        size_t count = 0;
        for (size_t k = 0; k < nr; k++) {
            CHECK(ranges[k].first != 0 && ranges[k].first <= ranges[k].last, "bad range %u:%u", ranges[k].first,
                  ranges[k].last);
            CHECK(k == 0 || (uint64_t)ranges[k - 1].last + 1 < ranges[k].first, "ranges overlap or touch");
            for (uint64_t u = ranges[k].first; u <= ranges[k].last; u++) {
                CHECK(contains(uids + off, used, (uint32_t)u), "range has UID %llu not consumed",
                      (unsigned long long)u);
                count++;
            }
        }
        CHECK(count <= max_uids, "%zu UIDs in a batch of at most %zu", count, max_uids);
        size_t text = range_text_len(ranges, nr);
        size_t first_alone = nr ? range_text_len(&(struct uid_range){ranges[0].first, ranges[0].first}, 1) : 0;
        CHECK(text <= max_chars || (nr == 1 && text == first_alone), "set text of %zu chars, max %zu", text,
              max_chars);
        /* Every real UID consumed is in a range. */
        size_t distinct = 0;
        for (size_t i = 0; i < used; i++)
            if (uids[off + i] != 0 && (i == 0 || uids[off + i] != uids[off + i - 1]))
                distinct++;
        CHECK(distinct == count, "%zu distinct UIDs consumed, %zu in ranges", distinct, count);
        off += used;
    }
    free(uids);
    free(ranges);
}

static void mode_uid_list(const uint8_t *data, size_t size)
{
    if (size < 2)
        return;
    size_t max_total = 1 + ((size_t)data[0] << 4 | data[1] >> 4); /* 1..4096 */
    data += 2, size -= 2;
    struct imap_uid_list l = {0};
    uint32_t ends[2 * 64];
    size_t nends = 0;
    for (size_t i = 0; i + 12 <= size && nends < 2 * 64; i += 12) {
        uint32_t t[3];
        memcpy(t, data + i, 12);
        /* Small numbers are more interesting than random 32-bit ones. */
        for (int k = 0; k < 3; k++)
            if (t[k] & 0x80000000u && t[k] != UINT32_MAX)
                t[k] &= 0x3ff;
        int r = imap_uid_list_add_range(&l, t[0], t[1], t[2], max_total);
        CHECK(r == 0 || r == -2, "add_range returned %d", r);
        CHECK(l.n <= max_total, "%zu UIDs, max_total %zu", l.n, max_total);
        uint32_t top = t[2] ? t[2] : UINT32_MAX;
        uint32_t a = t[0] ? t[0] : top, b = t[1] ? t[1] : top;
        if (a > b) {
            uint32_t x = a;
            a = b, b = x;
        }
        if (r == 0 && a <= top) {
            ends[nends++] = a;
            ends[nends++] = b < top ? b : top;
        }
    }
    imap_uid_list_sort_unique(&l);
    for (size_t k = 0; k < l.n; k++) {
        CHECK(l.v[k] != 0, "UID 0 in the list");
        CHECK(k == 0 || l.v[k - 1] < l.v[k], "not sorted and unique");
    }
    for (size_t k = 0; k < nends; k++)
        CHECK(contains(l.v, l.n, ends[k]), "UID %u of an accepted range is missing", ends[k]);
    imap_uid_list_free(&l);
    CHECK(l.v == NULL && l.n == 0, "list not empty after free");
}

/* ---- escaping -------------------------------------------------------------- */

static void check_escape(const char *text, size_t len, size_t outlen)
{
    char *out = malloc(outlen ? outlen : 1);
    if (!out)
        abort();
    out[0] = 'Z';
    imap_escape_text(text, len, out, outlen);
    if (outlen == 0) {
        CHECK(out[0] == 'Z', "wrote into a zero-length buffer");
        free(out);
        return;
    }
    CHECK(memchr(out, '\0', outlen) != NULL, "not terminated within %zu", outlen);
    CHECK(all_printable(out), "escaped text not printable");
    size_t full = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        full += c >= 0x20 && c < 0x7f && c != '\\' ? 1 : 4;
    }
    size_t n = strlen(out);
    bool cut = full >= outlen;
    if (cut && outlen >= 4) {
        CHECK(n >= 3 && strcmp(out + n - 3, "...") == 0, "cut without \"...\"");
        n -= 3;
    }
    /* Unescape out[0..n): it must be the input (a prefix when cut). */
    size_t o = 0, i = 0;
    while (o < n) {
        unsigned v;
        if (out[o] == '\\') {
            CHECK(o + 4 <= n && out[o + 1] == 'x', "broken escape");
            v = 0;
            for (int k = 2; k < 4; k++) {
                char c = out[o + k];
                CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'), "bad hex digit");
                v = v * 16 + (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
            }
            o += 4;
        } else {
            v = (unsigned char)out[o++];
        }
        CHECK(i < len && (unsigned char)text[i] == v, "output differs from the input at byte %zu", i);
        i++;
    }
    CHECK(cut || i == len, "uncut output lost input bytes");
    free(out);
}

/* ---- mode 4: the deflate layer --------------------------------------- */

/* Inflate raw[0..len) fed in pieces of `step` into reads of `outsz`;
 * returns the bytes produced into *out (malloc'd) and the last result. */
static ssize_t inflate_fed(struct deflate_layer *z, const uint8_t *raw, size_t len, size_t step, size_t outsz,
                           unsigned char **out, size_t *outlen)
{
    unsigned char *buf = malloc(outsz);
    CHECK(buf != NULL, "malloc");
    size_t off = 0, total = 0, cap = 0;
    unsigned char *acc = NULL;
    ssize_t n;
    for (;;) {
        n = deflate_layer_inflate(z, buf, outsz);
        CHECK(n <= (ssize_t)outsz, "inflate gave %zd bytes for a buffer of %zu", n, outsz);
        if (n > 0) {
            if (total + (size_t)n > cap) {
                cap = (total + (size_t)n) * 2;
                acc = realloc(acc, cap);
                CHECK(acc != NULL, "realloc");
            }
            memcpy(acc + total, buf, (size_t)n);
            total += (size_t)n;
            CHECK(total <= (size_t)64 << 20, "more than 64 MiB from %zu input bytes", len);
            continue;
        }
        if (n < 0) {
            CHECK(deflate_layer_error(z)[0] != '\0', "a failure without a reason");
            CHECK(deflate_layer_inflate(z, buf, outsz) == -1, "a failed stream recovered");
            CHECK(!deflate_layer_pending(z), "a failed stream has pending data");
            break;
        }
        if (off == len)
            break;
        size_t space = 0;
        unsigned char *in = deflate_layer_in_space(z, &space);
        CHECK(space > 0, "no input space");
        size_t k = len - off < step ? len - off : step;
        if (k > space)
            k = space;
        memcpy(in, raw + off, k);
        deflate_layer_in_added(z, k);
        off += k;
    }
    free(buf);
    *out = acc;
    *outlen = total;
    return n;
}

static void mode_deflate(uint8_t sel, const uint8_t *data, size_t size)
{
    size_t step = (size_t)1 << ((sel & 7) * 2); /* 1 .. 16 Ki */
    size_t outsz = 1 + (size > 0 ? data[0] : 0) * 37; /* 1 .. 9436 */
    struct deflate_layer *z = deflate_layer_new();
    CHECK(z != NULL, "deflate_layer_new");
    unsigned char *out = NULL;
    size_t outlen = 0;
    inflate_fed(z, data, size, step, outsz, &out, &outlen);
    free(out);
    deflate_layer_free(&z);

    /* round trip: the data as a client write, inflated by the peer */
    struct deflate_layer *tx = deflate_layer_new(), *rx = deflate_layer_new();
    CHECK(tx && rx, "deflate_layer_new");
    unsigned char *wire = NULL;
    size_t wlen = 0, wcap = 0;
    deflate_layer_begin_out(tx, data, size);
    const unsigned char *piece;
    ssize_t n;
    while ((n = deflate_layer_next_out(tx, &piece)) > 0) {
        if (wlen + (size_t)n > wcap) {
            wcap = (wlen + (size_t)n) * 2;
            wire = realloc(wire, wcap);
            CHECK(wire != NULL, "realloc");
        }
        memcpy(wire + wlen, piece, (size_t)n);
        wlen += (size_t)n;
    }
    CHECK(n == 0, "deflate failed: %s", deflate_layer_error(tx));
    n = inflate_fed(rx, wire ? wire : (const uint8_t *)"", wlen, step, outsz, &out, &outlen);
    CHECK(n == 0, "our own stream did not inflate: %s", deflate_layer_error(rx));
    CHECK(outlen == size && (size == 0 || memcmp(out, data, size) == 0), "round trip changed %zu bytes to %zu", size,
          outlen);
    free(out);
    free(wire);
    deflate_layer_free(&tx);
    deflate_layer_free(&rx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] >= 0xf8) {
        mode_deflate(data[0], data + 1, size - 1);
        return 0;
    }
    unsigned mode = data[0] % 4;
    size_t outlen = data[0] >> 2; /* 0..63 */
    data++, size--;
    switch (mode) {
    case 0:
        mode_server(data, size);
        break;
    case 1:
        mode_client(data, size);
        break;
    case 2:
        mode_uid_batch(data, size);
        break;
    default:
        mode_uid_list(data, size);
        break;
    }
    check_escape((const char *)data, size, outlen);
    check_escape((const char *)data, size, 4096);
    return 0;
}
