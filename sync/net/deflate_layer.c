/* SPDX-License-Identifier: MIT */
/*
 * deflate_layer.c: COMPRESS=DEFLATE (RFC 4978) with zlib, see deflate_layer.h.
 *
 * Both directions are raw deflate (windowBits -15). Writes are deflated
 * into a small output buffer handed out piece by piece, so a big APPEND is
 * never copied whole; the last piece of each write ends with Z_SYNC_FLUSH
 * (the server must see each command without waiting for more). Reads go
 * through an input buffer the transport fills; inflate writes only into
 * the caller's buffer.
 */
#include "sync/net/deflate_layer.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZLIB_CONST
#include <zlib.h>

#define IN_BUFFER 65536
#define OUT_BUFFER 16384
#define OUT_SLICE (1u << 30) /* deflate's avail_in is an unsigned int */

struct deflate_layer {
    z_stream in, out;
    bool in_ready, out_ready; /* inflateInit2 / deflateInit2 succeeded */
    /* server -> client */
    unsigned char *inbuf;
    size_t incap;
    bool out_full; /* the last inflate filled the caller's buffer */
    bool ended;    /* the server's stream had a final block */
    bool failed;
    /* client -> server */
    const unsigned char *pending_out; /* input not yet given to deflate */
    size_t pending_len;
    bool flushed; /* the write's sync flush is complete */
    unsigned char obuf[OUT_BUFFER];
    uint64_t raw_in, plain_in, raw_out, plain_out;
    char error[160];
};

static void set_error(struct deflate_layer *z, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct deflate_layer *z, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(z->error, sizeof z->error, fmt, ap);
    va_end(ap);
}

struct deflate_layer *deflate_layer_new(void)
{
    struct deflate_layer *z = calloc(1, sizeof *z);
    if (!z)
        return NULL;
    z->incap = IN_BUFFER;
    z->inbuf = malloc(z->incap);
    if (!z->inbuf)
        goto fail;
    if (inflateInit2(&z->in, -15) != Z_OK)
        goto fail;
    z->in_ready = true;
    if (deflateInit2(&z->out, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        goto fail;
    z->out_ready = true;
    z->flushed = true;
    return z;
fail:
    deflate_layer_free(&z);
    return NULL;
}

void deflate_layer_free(struct deflate_layer **zp)
{
    struct deflate_layer *z = zp ? *zp : NULL;
    if (!z)
        return;
    if (z->in_ready)
        inflateEnd(&z->in);
    if (z->out_ready)
        deflateEnd(&z->out);
    free(z->inbuf);
    free(z);
    *zp = NULL;
}

/* ---- client -> server ------------------------------------------------- */

void deflate_layer_begin_out(struct deflate_layer *z, const void *in, size_t len)
{
    z->pending_out = in;
    z->pending_len = len;
    z->out.avail_in = 0;
    z->flushed = len == 0; /* nothing to send: no empty flush block either */
    z->plain_out += len;
}

ssize_t deflate_layer_next_out(struct deflate_layer *z, const unsigned char **out)
{
    for (;;) {
        if (z->flushed)
            return 0;
        if (z->out.avail_in == 0 && z->pending_len > 0) {
            size_t slice = z->pending_len > OUT_SLICE ? OUT_SLICE : z->pending_len;
            z->out.next_in = z->pending_out;
            z->out.avail_in = (unsigned)slice;
            z->pending_out += slice;
            z->pending_len -= slice;
        }
        bool last = z->pending_len == 0;
        z->out.next_out = z->obuf;
        z->out.avail_out = sizeof z->obuf;
        int r = deflate(&z->out, last ? Z_SYNC_FLUSH : Z_NO_FLUSH);
        if (r != Z_OK && r != Z_BUF_ERROR) {
            set_error(z, "zlib deflate failed (%d)", r);
            return -1;
        }
        size_t produced = sizeof z->obuf - z->out.avail_out;
        /* A sync flush is complete when deflate left output space unused
         * (zlib's rule: with avail_out 0, call again with the same flush). */
        if (last && z->out.avail_in == 0 && z->out.avail_out > 0)
            z->flushed = true;
        z->raw_out += produced;
        if (produced > 0) {
            *out = z->obuf;
            return (ssize_t)produced;
        }
    }
}

/* ---- server -> client ------------------------------------------------- */

unsigned char *deflate_layer_in_space(struct deflate_layer *z, size_t *space)
{
    /* Only called with no input pending: the whole buffer is free. */
    z->in.next_in = z->inbuf;
    z->in.avail_in = 0;
    *space = z->incap;
    return z->inbuf;
}

void deflate_layer_in_added(struct deflate_layer *z, size_t n)
{
    z->in.avail_in = (unsigned)(n > z->incap ? z->incap : n);
}

int deflate_layer_in_push(struct deflate_layer *z, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    size_t have = z->in.avail_in;
    if (have + len > UINT_MAX)
        return -1;
    if (have + len > z->incap) {
        unsigned char *n = malloc(have + len);
        if (!n)
            return -1;
        memcpy(n, z->in.next_in, have);
        free(z->inbuf);
        z->inbuf = n;
        z->incap = have + len;
    } else if (have > 0) {
        memmove(z->inbuf, z->in.next_in, have);
    }
    memcpy(z->inbuf + have, data, len);
    z->in.next_in = z->inbuf;
    z->in.avail_in = (unsigned)(have + len);
    return 0;
}

static ssize_t inflate_fail(struct deflate_layer *z, const char *fmt, const char *detail)
{
    z->failed = true;
    set_error(z, fmt, detail ? detail : "");
    return -1;
}

ssize_t deflate_layer_inflate(struct deflate_layer *z, void *out, size_t count)
{
    if (z->failed)
        return -1;
    if (count == 0)
        return 0;
    if (z->ended)
        return inflate_fail(z, "server ended its COMPRESS=DEFLATE stream%s", "");
    if (z->in.avail_in == 0 && !z->out_full)
        return 0;
    if (count > UINT_MAX)
        count = UINT_MAX;
    z->in.next_out = out;
    z->in.avail_out = (unsigned)count;
    int r;
    do {
        unsigned before = z->in.avail_in;
        r = inflate(&z->in, Z_SYNC_FLUSH);
        z->raw_in += before - z->in.avail_in;
        /* Z_OK with nothing produced and input left cannot repeat forever:
         * each round consumes input. */
    } while (r == Z_OK && z->in.avail_out == count && z->in.avail_in > 0);
    size_t produced = count - z->in.avail_out;
    z->plain_in += produced;
    switch (r) {
    case Z_OK:
    case Z_BUF_ERROR: /* no progress possible: needs input */
        z->out_full = z->in.avail_out == 0;
        return (ssize_t)produced;
    case Z_STREAM_END:
        z->ended = true;
        z->out_full = false;
        if (produced > 0)
            return (ssize_t)produced;
        return inflate_fail(z, "server ended its COMPRESS=DEFLATE stream%s", "");
    case Z_NEED_DICT: return inflate_fail(z, "server sent a COMPRESS=DEFLATE stream that needs a dictionary%s", "");
    case Z_MEM_ERROR: return inflate_fail(z, "out of memory inflating the server's data%s", "");
    case Z_DATA_ERROR:
        return inflate_fail(z, "server sent a corrupt COMPRESS=DEFLATE stream (zlib: %s)",
                            z->in.msg ? z->in.msg : "invalid data");
    default: return inflate_fail(z, "zlib inflate failed%s", "");
    }
}

bool deflate_layer_pending(const struct deflate_layer *z)
{
    return !z->failed && (z->in.avail_in > 0 || z->out_full);
}

const char *deflate_layer_error(const struct deflate_layer *z)
{
    return z->error;
}

void deflate_layer_counts(const struct deflate_layer *z, uint64_t *raw_in, uint64_t *plain_in, uint64_t *raw_out,
                          uint64_t *plain_out)
{
    *raw_in = z->raw_in;
    *plain_in = z->plain_in;
    *raw_out = z->raw_out;
    *plain_out = z->plain_out;
}
