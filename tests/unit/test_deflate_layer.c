/* SPDX-License-Identifier: MIT */
/*
 * test_deflate_layer.c: COMPRESS=DEFLATE, the codec (sync/net/deflate_layer.c)
 * and the transport that uses it (netstream_start_compress), against a peer
 * on a loopback socket that speaks raw deflate through a second layer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sync/net/deflate_layer.h"
#include "sync/net/netstream.h"

/* ---- helpers ----------------------------------------------------------- */

struct bytes {
    unsigned char *p;
    size_t len;
};

static void bytes_add(struct bytes *b, const void *p, size_t n)
{
    b->p = realloc(b->p, b->len + n + 1);
    assert_non_null(b->p);
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
}

/* Everything z makes of one write. */
static struct bytes deflate_all(struct deflate_layer *z, const void *in, size_t len)
{
    struct bytes out = {0};
    deflate_layer_begin_out(z, in, len);
    const unsigned char *piece;
    ssize_t n;
    while ((n = deflate_layer_next_out(z, &piece)) > 0)
        bytes_add(&out, piece, (size_t)n);
    assert_int_equal(n, 0);
    return out;
}

/* Feed raw to z (through in_space, in pieces of at most step) and inflate
 * with an output buffer of outsz bytes; returns all output, *rc the last
 * inflate result (0 = wants more, -1 = failed). */
static struct bytes inflate_all(struct deflate_layer *z, const unsigned char *raw, size_t len, size_t step,
                                size_t outsz, ssize_t *rc)
{
    struct bytes out = {0};
    unsigned char *buf = malloc(outsz);
    assert_non_null(buf);
    size_t off = 0;
    for (;;) {
        ssize_t n = deflate_layer_inflate(z, buf, outsz);
        if (n > 0) {
            bytes_add(&out, buf, (size_t)n);
            continue;
        }
        *rc = n;
        if (n < 0 || off == len)
            break;
        size_t space = 0;
        unsigned char *in = deflate_layer_in_space(z, &space);
        size_t k = len - off < step ? len - off : step;
        if (k > space)
            k = space;
        memcpy(in, raw + off, k);
        deflate_layer_in_added(z, k);
        off += k;
    }
    free(buf);
    return out;
}

static struct bytes text_corpus(size_t n)
{
    struct bytes b = {0};
    char line[128];
    for (size_t i = 0; b.len < n; i++) {
        int k = snprintf(line, sizeof line, "Received: from host%zu.example.org by mx.example.net; line %zu\r\n",
                         i % 97, i);
        bytes_add(&b, line, (size_t)k);
    }
    b.len = n;
    return b;
}

/* ---- the codec ----------------------------------------------------------- */

/* What one side deflates, the other inflates to the same bytes, whatever
 * the pieces it arrives in and the buffer it is read into; text shrinks. */
static void round_trip(void **unused)
{
    (void)unused;
    struct deflate_layer *tx = deflate_layer_new(), *rx = deflate_layer_new();
    assert_non_null(tx);
    assert_non_null(rx);
    struct bytes plain = text_corpus(300000);
    struct bytes all = {0};
    /* three writes of different sizes, the stream continuing across them */
    size_t cuts[] = {0, 7, 100007, 300000};
    for (int i = 0; i < 3; i++) {
        struct bytes z = deflate_all(tx, plain.p + cuts[i], cuts[i + 1] - cuts[i]);
        bytes_add(&all, z.p, z.len);
        free(z.p);
    }
    assert_true(all.len * 4 < plain.len); /* repetitive text: well under a quarter */
    ssize_t rc = 1;
    struct bytes back = inflate_all(rx, all.p, all.len, 1000, 333, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(back.len, plain.len);
    assert_memory_equal(back.p, plain.p, plain.len);
    uint64_t raw_in, plain_in, raw_out, plain_out;
    deflate_layer_counts(tx, &raw_in, &plain_in, &raw_out, &plain_out);
    assert_int_equal(plain_out, plain.len);
    assert_int_equal(raw_out, all.len);
    deflate_layer_counts(rx, &raw_in, &plain_in, &raw_out, &plain_out);
    assert_int_equal(raw_in, all.len);
    assert_int_equal(plain_in, plain.len);
    free(back.p);
    free(all.p);
    free(plain.p);
    deflate_layer_free(&tx);
    deflate_layer_free(&rx);
    assert_null(tx);
    deflate_layer_free(&rx); /* a second free is harmless */
}

/* Each write ends with a sync flush: the peer gets all of a command from
 * the bytes of that write alone (a server must not wait for the next). */
static void each_write_is_flushed(void **unused)
{
    (void)unused;
    struct deflate_layer *tx = deflate_layer_new(), *rx = deflate_layer_new();
    const char *cmds[] = {"1 NOOP\r\n", "2 UID FETCH 1:* (FLAGS)\r\n", "3 LOGOUT\r\n"};
    for (int i = 0; i < 3; i++) {
        struct bytes z = deflate_all(tx, cmds[i], strlen(cmds[i]));
        assert_true(z.len > 0);
        ssize_t rc = 1;
        struct bytes back = inflate_all(rx, z.p, z.len, z.len, 4096, &rc);
        assert_int_equal(rc, 0);
        assert_int_equal(back.len, strlen(cmds[i]));
        assert_memory_equal(back.p, cmds[i], back.len);
        free(back.p);
        free(z.p);
    }
    /* an empty write sends nothing */
    struct bytes z = deflate_all(tx, "", 0);
    assert_int_equal(z.len, 0);
    free(z.p);
    deflate_layer_free(&tx);
    deflate_layer_free(&rx);
}

/* A hostile stream: garbage, a final block (the stream ended), a zlib
 * header (not raw deflate): each is an error with a reason, and stays one. */
static void broken_streams(void **unused)
{
    (void)unused;
    unsigned char out[256];
    /* block type 3 is invalid in deflate */
    static const unsigned char garbage[] = {0xff, 0xff, 0xff, 0xff, 'h', 'e', 'l', 'l', 'o'};
    struct deflate_layer *rx = deflate_layer_new();
    ssize_t rc = 1;
    struct bytes got = inflate_all(rx, garbage, sizeof garbage, sizeof garbage, sizeof out, &rc);
    assert_int_equal(rc, -1);
    assert_int_equal(got.len, 0);
    assert_non_null(strstr(deflate_layer_error(rx), "corrupt COMPRESS=DEFLATE stream"));
    assert_int_equal(deflate_layer_inflate(rx, out, sizeof out), -1);
    assert_false(deflate_layer_pending(rx));
    free(got.p);
    deflate_layer_free(&rx);

    /* a final stored block holding "OK\r\n": the text comes through, the
     * next read is an error (RFC 4978 streams never end) */
    static const unsigned char final[] = {0x01, 0x04, 0x00, 0xfb, 0xff, 'O', 'K', '\r', '\n'};
    rx = deflate_layer_new();
    got = inflate_all(rx, final, sizeof final, sizeof final, sizeof out, &rc);
    assert_int_equal(rc, -1);
    assert_int_equal(got.len, 4);
    assert_memory_equal(got.p, "OK\r\n", 4);
    assert_non_null(strstr(deflate_layer_error(rx), "ended"));
    free(got.p);
    deflate_layer_free(&rx);

    /* a zlib (RFC 1950) header where raw deflate belongs */
    static const unsigned char zlib_hdr[] = {0x78, 0x9c, 0x0b, 0xc9, 0xc8, 0x2c, 0x06, 0x00};
    rx = deflate_layer_new();
    got = inflate_all(rx, zlib_hdr, sizeof zlib_hdr, 1, sizeof out, &rc);
    assert_int_equal(rc, -1);
    assert_true(deflate_layer_error(rx)[0] != '\0');
    free(got.p);
    deflate_layer_free(&rx);
}

/* Bytes queued with in_push (read with the OK) come first; a small output
 * buffer leaves output pending, which pending() reports. */
static void pushed_bytes_and_pending(void **unused)
{
    (void)unused;
    struct deflate_layer *tx = deflate_layer_new(), *rx = deflate_layer_new();
    struct bytes plain = text_corpus(5000);
    struct bytes z = deflate_all(tx, plain.p, plain.len);
    assert_false(deflate_layer_pending(rx));
    assert_int_equal(deflate_layer_in_push(rx, z.p, 10), 0);
    assert_int_equal(deflate_layer_in_push(rx, z.p + 10, z.len - 10), 0);
    assert_true(deflate_layer_pending(rx));
    unsigned char small[64];
    ssize_t n = deflate_layer_inflate(rx, small, sizeof small);
    assert_int_equal(n, (ssize_t)sizeof small);
    assert_memory_equal(small, plain.p, sizeof small);
    assert_true(deflate_layer_pending(rx)); /* output left without more input */
    size_t total = (size_t)n;
    while ((n = deflate_layer_inflate(rx, small, sizeof small)) > 0) {
        assert_memory_equal(small, plain.p + total, (size_t)n);
        total += (size_t)n;
    }
    assert_int_equal(n, 0);
    assert_int_equal(total, plain.len);
    assert_false(deflate_layer_pending(rx));
    free(z.p);
    free(plain.p);
    deflate_layer_free(&tx);
    deflate_layer_free(&rx);
}

/* ---- the transport --------------------------------------------------------- */

struct pair {
    int lfd, peer;
    struct netstream *ns;
    mailstream_low *low;
};

static void pair_open(struct pair *p, int timeout_s)
{
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(p->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(p->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(p->lfd, 1), 0);
    assert_int_equal(getsockname(p->lfd, (struct sockaddr *)&a, &alen), 0);
    struct ms_error err = {0};
    assert_int_equal(netstream_connect("127.0.0.1", ntohs(a.sin_port), timeout_s, &p->ns, &err), MS_OK);
    p->peer = accept(p->lfd, NULL, NULL);
    assert_true(p->peer >= 0);
    p->low = netstream_low(p->ns);
}

static void pair_close(struct pair *p)
{
    netstream_destroy(p->ns);
    close(p->peer);
    close(p->lfd);
}

static void write_all(int fd, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        assert_true(w > 0);
        b += w;
        n -= (size_t)w;
    }
}

/* Read from the transport until want bytes came (or it failed). */
static struct bytes low_read(mailstream_low *low, size_t want)
{
    struct bytes b = {0};
    char buf[4096];
    while (b.len < want) {
        ssize_t n = mailstream_low_read(low, buf, sizeof buf);
        if (n <= 0)
            break;
        bytes_add(&b, buf, (size_t)n);
    }
    return b;
}

/* After COMPRESS: what the server deflates arrives as text (the part read
 * along with the OK handed over first), and what the client writes
 * reaches the server deflated; the counters count wire bytes. */
static void transport_both_directions(void **unused)
{
    (void)unused;
    struct pair p;
    pair_open(&p, 5);
    struct deflate_layer *server = deflate_layer_new();
    const char *resp = "* 1 EXISTS\r\n* OK [UIDNEXT 2] next\r\nA1 OK done\r\n";
    struct bytes z = deflate_all(server, resp, strlen(resp));
    struct ms_error err = {0};
    assert_false(netstream_compressing(p.ns));
    assert_int_equal(netstream_start_compress(p.ns, z.p, 5, &err), MS_OK);
    assert_true(netstream_compressing(p.ns));
    assert_true(netstream_readable_now(p.ns)); /* the handed-over bytes */
    write_all(p.peer, z.p + 5, z.len - 5);
    struct bytes got = low_read(p.low, strlen(resp));
    assert_int_equal(got.len, strlen(resp));
    assert_memory_equal(got.p, resp, got.len);
    assert_int_equal(netstream_bytes_received(p.ns), z.len - 5);
    free(got.p);
    free(z.p);

    const char *cmd = "A2 UID FETCH 1:* (UID FLAGS)\r\n";
    assert_int_equal(mailstream_low_write(p.low, cmd, strlen(cmd)), (ssize_t)strlen(cmd));
    unsigned char raw[4096];
    ssize_t n = read(p.peer, raw, sizeof raw);
    assert_true(n > 0);
    assert_int_equal(netstream_bytes_sent(p.ns), (uint64_t)n);
    assert_true(memmem(raw, (size_t)n, "FETCH", 5) == NULL); /* not sent as text */
    ssize_t rc = 1;
    struct bytes back = inflate_all(server, raw, (size_t)n, (size_t)n, 4096, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(back.len, strlen(cmd));
    assert_memory_equal(back.p, cmd, back.len);
    free(back.p);
    deflate_layer_free(&server);
    pair_close(&p);
}

/* A corrupt stream is a failed read with the reason, never a crash or a
 * wait; later reads fail at once. */
static void transport_corrupt_stream(void **unused)
{
    (void)unused;
    struct pair p;
    pair_open(&p, 5);
    struct ms_error err = {0};
    assert_int_equal(netstream_start_compress(p.ns, NULL, 0, &err), MS_OK);
    write_all(p.peer, "* OK plain text where deflate belongs\r\n", 39);
    char buf[256];
    assert_int_equal(mailstream_low_read(p.low, buf, sizeof buf), -1);
    assert_true(netstream_failed(p.ns));
    assert_non_null(strstr(netstream_reason(p.ns), "corrupt COMPRESS=DEFLATE stream"));
    assert_int_equal(mailstream_low_read(p.low, buf, sizeof buf), -1);
    pair_close(&p);
}

struct trickle {
    int fd;
    int rounds;
};

/* Sends an empty sync-flush block every 100 ms: bytes, but no text. */
static void *trickle_empty_blocks(void *arg)
{
    struct trickle *t = arg;
    static const unsigned char empty[] = {0x00, 0x00, 0x00, 0xff, 0xff};
    for (int i = 0; i < t->rounds; i++) {
        if (write(t->fd, empty, sizeof empty) != (ssize_t)sizeof empty)
            break;
        nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
    }
    return NULL;
}

/* A server that keeps the connection busy with compressed nothing times
 * out like a silent one: only text resets the deadline. */
static void transport_empty_blocks_time_out(void **unused)
{
    (void)unused;
    struct pair p;
    pair_open(&p, 1);
    struct ms_error err = {0};
    assert_int_equal(netstream_start_compress(p.ns, NULL, 0, &err), MS_OK);
    struct trickle t = {.fd = p.peer, .rounds = 40};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, trickle_empty_blocks, &t), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char buf[256];
    assert_int_equal(mailstream_low_read(p.low, buf, sizeof buf), -1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(s < 2.5);
    assert_non_null(strstr(netstream_reason(p.ns), "timed out"));
    shutdown(p.peer, SHUT_RDWR);
    pthread_join(th, NULL);
    pair_close(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(each_write_is_flushed),
        cmocka_unit_test(broken_streams),
        cmocka_unit_test(pushed_bytes_and_pending),
        cmocka_unit_test(transport_both_directions),
        cmocka_unit_test(transport_corrupt_stream),
        cmocka_unit_test(transport_empty_blocks_time_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
