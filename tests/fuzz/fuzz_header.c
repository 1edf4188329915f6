/*
 * fuzz_header.c: libFuzzer target for the header readers that see hostile
 * message bytes (reliability.md §1, "Headerless mail"): message_header()
 * and message_identity_fd() (sync/message.h), and imap_header_value()
 * (sync/netstream.h), which reads Message-ID out of a fetched header block.
 *
 * Input: byte 0 picks the header name and the output size for
 * imap_header_value; the rest is the message, passed with its exact length
 * (no NUL terminator: ASan sees any read past it). Properties:
 *  - message_header: NULL, or a non-empty value of at most 998 bytes with
 *    no NUL, no LF, not starting or ending with a blank;
 *  - imap_header_value: -1, or the value's length, which fits outlen - 1
 *    and has no CR, LF, tab, leading or trailing space; out is always
 *    NUL-terminated inside outlen;
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
#include "sync/netstream.h"

static const char *const names[] = {"Message-ID", "message-id", "Subject", "X", "", "Received"};
static const size_t outlens[] = {1, 2, 8, 64, 999, 4096};

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

static void check_imap_header_value(const char *buf, size_t len, const char *name, size_t outlen)
{
    /* Exactly outlen bytes: a write past the end is an ASan report. */
    char *out = malloc(outlen);
    if (!out)
        abort();
    long r = imap_header_value(buf, len, name, out, outlen);
    CHECK(memchr(out, '\0', outlen) != NULL, "out not NUL-terminated within outlen %zu", outlen);
    size_t n = strlen(out);
    if (r < 0) {
        CHECK(r == -1, "returned %ld", r);
    } else {
        CHECK((size_t)r == n && n > 0 && n < outlen, "returned %ld, strlen %zu, outlen %zu", r, n, outlen);
        CHECK(!memchr(out, '\r', n) && !memchr(out, '\n', n) && !memchr(out, '\t', n), "CR, LF or tab in value");
        CHECK(out[0] != ' ' && out[n - 1] != ' ', "value not trimmed");
    }
    free(out);
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
    size_t outlen = outlens[(sel / 8) % (sizeof outlens / sizeof *outlens)];
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;

    check_message_header(buf, len, name);
    check_message_header(buf, len, "Message-ID");
    check_imap_header_value(buf, len, name, outlen);
    check_imap_header_value(buf, len, "Message-ID", 999);
    check_identity(buf, len);
    return 0;
}
