/* SPDX-License-Identifier: MIT */
/*
 * fuzz_util.h: small helpers shared by the libFuzzer targets.
 *
 * CHECK(cond, ...) is the property assertion: when a property of the code
 * under test does not hold, it prints what was expected and aborts, which
 * libFuzzer (with ASan's signal handler) reports as a crash with a stack
 * and saves the input. Everything here is header-only so each target stays
 * one .c file.
 */
#ifndef MAILSYNC_FUZZ_UTIL_H
#define MAILSYNC_FUZZ_UTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(cond, ...)                                                                                  \
    do {                                                                                                  \
        if (!(cond)) {                                                                                    \
            fprintf(stderr, "\n*** property failed at %s:%d: %s\n*** ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                                                 \
            fputc('\n', stderr);                                                                          \
            abort();                                                                                      \
        }                                                                                                 \
    } while (0)

/* A NUL-terminated heap copy of data[0..n) (the copy stops at an embedded
 * NUL as C strings do). Exact-size allocation so ASan sees over-reads. */
static inline char *fuzz_strndup(const uint8_t *data, size_t n)
{
    const uint8_t *nul = memchr(data, '\0', n);
    size_t len = nul ? (size_t)(nul - data) : n;
    char *s = malloc(len + 1);
    if (!s)
        abort();
    memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

/* Whether s[0..n) is strictly valid UTF-8 (no overlongs, no surrogates,
 * at most U+10FFFF): an independent oracle for the codecs under test. */
static inline int fuzz_valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t v, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 2, v = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            k = 3, v = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            k = 4, v = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < k)
            return 0;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            v = (v << 6) | (s[i + j] & 0x3f);
        }
        if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
            return 0;
        i += k;
    }
    return 1;
}

/* Print s with non-printable bytes as \xNN, for property messages. */
static inline void fuzz_dump(const char *label, const char *s, size_t n)
{
    fprintf(stderr, "%s: \"", label);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
}

/* ---- a scripted server on loopback ------------------------------------------
 * For the targets that run our client code over a real TCP connection
 * (fuzz_imap_fetch, fuzz_pop3): a listening socket on 127.0.0.1 (exits
 * when it cannot be had), whole writes that never raise SIGPIPE, one
 * command line at a time, and an end of stream the client sees as EOF. */

static inline int fuzz_listen_loopback(const char *who, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 4) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror(who);
        exit(1);
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static inline bool fuzz_send_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        p += w, n -= (size_t)w;
    }
    return true;
}

/* One command line (without CRLF) into buf; false at EOF. */
static inline bool fuzz_read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        char c;
        if (recv(fd, &c, 1, 0) != 1)
            return false;
        if (c == '\n')
            break;
        if (c != '\r' && n + 1 < cap)
            buf[n++] = c;
    }
    buf[n] = '\0';
    return true;
}

/* The server says no more: whatever the client still waits for fails now.
 * What the client still sends is read until it closes, so the close is a
 * FIN, not a reset that could drop data the client has not read yet. */
static inline void fuzz_end_stream(int fd)
{
    char line[512];
    shutdown(fd, SHUT_WR);
    while (fuzz_read_line(fd, line, sizeof line))
        ;
    close(fd);
}

#endif
