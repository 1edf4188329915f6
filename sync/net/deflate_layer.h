/* SPDX-License-Identifier: MIT */
/*
 * deflate_layer.h: the codec of IMAP COMPRESS=DEFLATE (RFC 4978), the one
 * place where mailsync deflates and inflates.
 *
 * After a tagged OK to "COMPRESS DEFLATE" both directions of the connection
 * are one raw deflate stream each (RFC 1951, no zlib or gzip header), for
 * the rest of the connection. The transport (sync/net/netstream.c) puts
 * this layer between TLS (or the socket) and its IMAP framer: what the
 * client writes is deflated with a sync flush per write, so every command
 * reaches the server whole; what the server sends is inflated before the
 * framer and libetpan see a byte, so the literal caps and the trace work on
 * the IMAP text as before.
 *
 * The server's deflate stream is hostile input. A corrupt stream, a stream
 * the server ends (a final block: RFC 4978 has none), or a dictionary
 * request are errors with a reason; inflated output is produced only into
 * the caller's buffer (bounded per call, so a "deflate bomb" costs CPU in
 * proportion to what the framer lets through before its caps stop it).
 *
 * Not thread-safe; one layer per connection, owned by its netstream.
 */
#ifndef MAILSYNC_DEFLATE_LAYER_H
#define MAILSYNC_DEFLATE_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct deflate_layer;

/* A new layer (both directions). NULL if out of memory. */
struct deflate_layer *deflate_layer_new(void);

/* Free it and clear the pointer (NULL is fine). */
void deflate_layer_free(struct deflate_layer **z);

/* ---- client -> server ------------------------------------------------- */

/* Start deflating in[0..len) (the buffer must stay valid until
 * deflate_layer_next_out() returned 0 or -1). The output ends with a sync
 * flush: the server can inflate all of it at once. */
void deflate_layer_begin_out(struct deflate_layer *z, const void *in, size_t len);

/* The next piece of compressed output: > 0 bytes at *out (valid until the
 * next call), 0 once all input is consumed and flushed, -1 on a zlib error
 * (deflate_layer_error() says which). */
ssize_t deflate_layer_next_out(struct deflate_layer *z, const unsigned char **out);

/* ---- server -> client ------------------------------------------------- */

/* Where to read raw bytes from the server into, and how many fit (> 0).
 * Only while no input is pending (deflate_layer_inflate returned 0). */
unsigned char *deflate_layer_in_space(struct deflate_layer *z, size_t *space);

/* n bytes were read into the space given by deflate_layer_in_space(). */
void deflate_layer_in_added(struct deflate_layer *z, size_t n);

/* Queue len raw bytes that arrived before the layer existed (read along
 * with the COMPRESS OK). 0, or -1 if out of memory. */
int deflate_layer_in_push(struct deflate_layer *z, const void *data, size_t len);

/* Inflate pending input into out[0..count): > 0 bytes produced; 0: all
 * pending input is used up, read more; -1: the server's stream is broken
 * (deflate_layer_error() says how; every later call fails too). */
ssize_t deflate_layer_inflate(struct deflate_layer *z, void *out, size_t count);

/* Whether deflate_layer_inflate may produce bytes without more input. */
bool deflate_layer_pending(const struct deflate_layer *z);

/* Why the last call failed ("" if none has). */
const char *deflate_layer_error(const struct deflate_layer *z);

/* Bytes before and after compression, for the trace: plain_in is what
 * inflating produced, raw_in the compressed bytes it consumed; plain_out
 * and raw_out the same for what was sent. */
void deflate_layer_counts(const struct deflate_layer *z, uint64_t *raw_in, uint64_t *plain_in, uint64_t *raw_out,
                          uint64_t *plain_out);

#endif
