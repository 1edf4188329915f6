/* SPDX-License-Identifier: MIT */
/*
 * fuzz_pop3.c: libFuzzer target for the POP3 client (sync/remote/pop3.c), which
 * reads what a hostile server sends: status lines, the UIDL and LIST
 * listings, and message bodies (dot-stuffed, of any length).
 *
 * The client runs unchanged, over a real loopback TCP connection (tls =
 * none), against a scripted server in a thread of this process. The
 * server answers each command the client sends; the fuzz input is one of
 * its answers, after which it closes its side, so a client that waits for
 * more gets end-of-file at once instead of a timeout.
 *
 * Input: byte 0 picks the mode, the rest is the server's bytes.
 *  mode 0  everything from the greeting on: the greeting, the USER and
 *          PASS answers and whatever follows come from the input.
 *  mode 1  after a clean login, the answer to UIDL and everything after
 *          it (LIST, RETR, DELE, QUIT answers, as the input has them).
 *          What pop3_list() returns is checked: message numbers > 0,
 *          UIDLs of 1-70 printable characters.
 *  mode 2  after a clean login and a one-message listing, the answer to
 *          RETR 1, checked against a model: without a "+OK" status line
 *          of at most 4096 bytes, or without the final "." line, RETR
 *          fails; with both, it succeeds and hands on exactly the lines
 *          before the "." line with one leading dot removed from each.
 * In every mode the client retrieves at most 8 messages, DELEs the first
 * and QUITs; the sink refuses more than 1 MiB (the "could not be stored"
 * path).
 */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sync/account.h"
#include "sync/error.h"
#include "sync/log.h"
#include "sync/remote/pop3.h"

#define SINK_MAX (1u << 20)

static int listen_fd = -1;
static int listen_port;

struct script {
    int mode;
    const uint8_t *data;
    size_t len;
};

static void *server_main(void *arg)
{
    const struct script *sc = arg;
    int fd = accept(listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    char cmd[512];
    bool fuzzed_sent = false;
    if (sc->mode == 0) {
        fuzz_send_all(fd, sc->data, sc->len);
        fuzzed_sent = true;
    } else if (fuzz_send_all(fd, "+OK fuzz POP3 ready\r\n", 21)) {
        while (!fuzzed_sent && fuzz_read_line(fd, cmd, sizeof cmd)) {
            const char *answer = "+OK\r\n";
            bool fuzzed = false;
            if (strncmp(cmd, "UIDL", 4) == 0)
                fuzzed = sc->mode == 1, answer = "+OK\r\n1 uid-one\r\n.\r\n";
            else if (strncmp(cmd, "LIST", 4) == 0)
                answer = "+OK\r\n1 120\r\n.\r\n";
            else if (strncmp(cmd, "RETR", 4) == 0)
                fuzzed = sc->mode == 2;
            if (fuzzed) {
                fuzz_send_all(fd, sc->data, sc->len);
                fuzzed_sent = true;
            } else if (!fuzz_send_all(fd, answer, strlen(answer))) {
                break;
            }
        }
    }
    fuzz_end_stream(fd);
    return NULL;
}

struct sink {
    char *buf;
    size_t len;
};

static int sink_chunk(void *ctx, const char *data, size_t len)
{
    struct sink *k = ctx;
    if (k->len + len > SINK_MAX)
        return -1;
    char *b = realloc(k->buf, k->len + len + 1);
    if (!b)
        abort();
    k->buf = b;
    memcpy(k->buf + k->len, data, len);
    k->len += len;
    return 0;
}

/* The model of RETR's answer (mode 2): 1 with *body filled when it must
 * succeed, 0 when it must fail. */
static int retr_model(const uint8_t *d, size_t n, struct sink *body)
{
    const uint8_t *lf = memchr(d, '\n', n);
    if (!lf || (size_t)(lf - d) + 1 > 4096 || n < 3 || memcmp(d, "+OK", 3) != 0)
        return 0;
    size_t pos = (size_t)(lf - d) + 1;
    while (pos < n) {
        const uint8_t *e = memchr(d + pos, '\n', n - pos);
        if (!e)
            return 0; /* no final line: end of file first */
        size_t full = (size_t)(e - (d + pos)) + 1, len = full;
        const uint8_t *line = d + pos;
        if ((len == 3 && memcmp(line, ".\r\n", 3) == 0) || (len == 2 && memcmp(line, ".\n", 2) == 0))
            return body->len <= SINK_MAX;
        if (line[0] == '.')
            line++, len--;
        if (body->len <= SINK_MAX && body->len + len <= SINK_MAX)
            sink_chunk(body, (const char *)line, len);
        else
            body->len = SINK_MAX + 1; /* the client's sink refuses it too */
        pos += full;
    }
    return 0;
}

static void run_client(int mode, const uint8_t *data, size_t len)
{
    struct account a = {.name = "fuzz",
                        .type = ACCOUNT_POP3,
                        .host = "127.0.0.1",
                        .port = listen_port,
                        .tls = TLS_NONE,
                        .user = "fuzz",
                        .timeout = 5,
                        .maildir = "/nonexistent"};
    struct ms_error err = {0};
    struct pop3_session *s = NULL;
    if (pop3_connect(&a, "secret", &s, &err) != MS_OK) {
        CHECK(mode == 0, "login failed in mode %d: %s", mode, err.msg);
        return;
    }
    struct pop3_msg *m = NULL;
    size_t n = 0;
    int rc = pop3_list(s, &m, &n, &err);
    if (rc == MS_OK) {
        for (size_t i = 0; i < n; i++) {
            size_t ul = strnlen(m[i].uidl, sizeof m[i].uidl);
            CHECK(m[i].n > 0, "message number 0");
            CHECK(ul >= 1 && ul <= 70, "UIDL of %zu characters", ul);
            for (size_t j = 0; j < ul; j++)
                CHECK(m[i].uidl[j] > 0x20 && m[i].uidl[j] < 0x7f, "UIDL byte 0x%02x", (unsigned char)m[i].uidl[j]);
        }
        if (mode == 2)
            CHECK(n == 1 && m[0].n == 1 && strcmp(m[0].uidl, "uid-one") == 0 && m[0].size == 120,
                  "the clean listing was misread (%zu)", n);
        for (size_t i = 0; i < n && i < 8; i++) {
            struct sink got = {0};
            rc = pop3_retr(s, m[i].n, sink_chunk, &got, &err);
            if (mode == 2 && i == 0) {
                struct sink want = {0};
                int ok = retr_model(data, len, &want);
                CHECK((rc == MS_OK) == (ok == 1), "RETR returned %d, the model says %s (%s)", rc,
                      ok ? "success" : "failure", err.msg);
                if (ok)
                    CHECK(got.len == want.len && (got.len == 0 || memcmp(got.buf, want.buf, got.len) == 0),
                          "RETR body differs from the model (%zu vs %zu bytes)", got.len, want.len);
                free(want.buf);
            }
            CHECK(got.len <= len, "more body bytes (%zu) than the server sent (%zu)", got.len, len);
            free(got.buf);
            if (rc != MS_OK)
                break;
        }
        if (rc == MS_OK && n > 0)
            pop3_dele(s, m[0].n, &err);
    }
    free(m);
    bool committed;
    pop3_quit(s, &committed);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    log_verbosity = LOG_ERROR - 1; /* quiet: keep the fuzzer's output readable */
    listen_fd = fuzz_listen_loopback("fuzz_pop3: listen", &listen_port);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct script sc = {.mode = data[0] % 3, .data = data + 1, .len = size - 1};
    pthread_t t;
    if (pthread_create(&t, NULL, server_main, &sc) != 0)
        abort();
    run_client(sc.mode, sc.data, sc.len);
    pthread_join(t, NULL);
    return 0;
}
