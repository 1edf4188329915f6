/* SPDX-License-Identifier: MIT */
/*
 * fuzz_header.c: libFuzzer target for the header reader that sees hostile
 * message bytes (reliability.md §1, "Headerless mail"): message_header()
 * and message_identity_fd() (sync/message.h), the one parser the Maildir
 * side, the download and the IMAP side's Message-ID FETCH all use.
 *
 * Input: byte 0 picks the header name; the rest is the message, passed
 * with its exact length (no NUL terminator: ASan sees any read past it).
 * Properties:
 *  - message_header: NULL, or a non-empty value of at most 998 bytes with
 *    no NUL, no LF, not starting or ending with a blank;
 *  - the same bytes with every bare LF made CRLF (a server's copy of a
 *    Maildir file) give the same value, or none likewise;
 *  - message_identity_fd on the same bytes in a memfd: the Message-ID
 *    message_header finds, and the size with every bare LF counted as CRLF.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "sync/message.h"

static const char *const names[] = {"Message-ID", "message-id", "Subject", "X", "", "Received"};

static void check_message_header(const char *buf, size_t len, const char *name)
{
    char *v = message_header(buf, len, name);
    if (!v)
        return;
    size_t n = strlen(v);
    CHECK(n > 0 && n <= 998, "value of %zu bytes", n);
    CHECK(!memchr(v, '\n', n), "value contains LF");
    CHECK(v[0] != ' ' && v[0] != '\t' && v[n - 1] != ' ' && v[n - 1] != '\t', "value not trimmed: \"%s\"", v);
    free(v);
}

/* A server stores a Maildir file with CRLF line ends: it must read the same. */
static void check_crlf_alike(const char *buf, size_t len, const char *name)
{
    size_t bare = 0;
    for (size_t i = 0; i < len; i++)
        bare += buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r');
    char *crlf = malloc(len + bare + 1);
    if (!crlf)
        abort();
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
            crlf[k++] = '\r';
        crlf[k++] = buf[i];
    }
    char *a = message_header(buf, len, name), *b = message_header(crlf, k, name);
    CHECK((a == NULL) == (b == NULL) && (!a || strcmp(a, b) == 0), "LF and CRLF copies read differently");
    free(a);
    free(b);
    free(crlf);
}

static void check_identity(const char *buf, size_t len)
{
    int fd = memfd_create("fuzz_header", MFD_CLOEXEC);
    if (fd < 0)
        return; /* no memfd: skip this part */
    if (len && write(fd, buf, len) != (ssize_t)len) {
        close(fd);
        return;
    }
    lseek(fd, 0, SEEK_SET);
    char *id = NULL;
    uint64_t size = 0;
    CHECK(message_identity_fd(fd, &id, &size) == 0, "message_identity_fd failed on a memfd");
    close(fd);

    uint64_t want = len;
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
            want++;
    CHECK(size == want, "CRLF size %llu, expected %llu", (unsigned long long)size, (unsigned long long)want);

    /* The identity reads a 64 KiB window; inputs here are smaller. */
    if (len <= 64 * 1024) {
        char *direct = message_header(buf, len, "Message-ID");
        CHECK((id == NULL) == (direct == NULL) && (!id || strcmp(id, direct) == 0),
              "message_identity_fd and message_header disagree");
        free(direct);
    }
    free(id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned sel = data[0];
    const char *name = names[sel % (sizeof names / sizeof *names)];
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;

    check_message_header(buf, len, name);
    check_message_header(buf, len, "Message-ID");
    check_crlf_alike(buf, len, name);
    check_identity(buf, len);
    return 0;
}
