/* SPDX-License-Identifier: MIT */
/*
 * fuzz_flagline.c: libFuzzer target for sync/remote/imap_flagline.c, the
 * reader of a flag listing's lines that bypasses libetpan's parser, checked
 * against libetpan itself.
 *
 * Input: one server line (cut after its first LF; CRLF appended when it
 * has none). Properties:
 *  - imap_flagline_parse never reads past the line and, when it declines
 *    (IMAP_FLAGLINE_OTHER), leaves *out empty;
 *  - when it accepts a line, libetpan's parser, given the same line and a
 *    tagged OK as the whole answer, accepts it too and its one FETCH
 *    report means the same (imap_flagline_of_att: UID, flags, keywords,
 *    size; "has UID", "has FLAGS"): the fast path changes nothing a
 *    listing holds, for any input.
 * libetpan reads from a socketpair, as it reads from the server.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libetpan/libetpan.h>

#include "fuzz_util.h"
#include "sync/flags.h"
#include "sync/remote/imap_int.h"

struct reports {
    size_t n;
    struct imap_flagline first;
};

static void on_att(struct mailimap_msg_att *att, void *ctx)
{
    struct reports *r = ctx;
    if (r->n++ == 0)
        imap_flagline_of_att(att, &r->first);
}

static void on_progress(size_t current, size_t maximum, void *ctx)
{
    (void)current, (void)maximum, (void)ctx;
}

/* libetpan's reading of line followed by "1 OK done": its FETCH reports
 * into *r; MAILIMAP_NO_ERROR if it parsed the answer. */
static int libetpan_reads(const char *line, size_t len, struct reports *r)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    static const char tagged[] = "1 OK done\r\n";
    CHECK(fuzz_send_all(sv[1], line, len) && fuzz_send_all(sv[1], tagged, sizeof tagged - 1), "write");
    close(sv[1]);
    mailimap *imap = mailimap_new(0, NULL);
    CHECK(imap != NULL, "mailimap_new");
    imap->imap_stream = mailstream_socket_open(sv[0]);
    CHECK(imap->imap_stream != NULL, "mailstream_socket_open");
    imap->imap_state = MAILIMAP_STATE_SELECTED;
    imap->imap_tag = 1;
    mailimap_set_msg_att_handler(imap, on_att, r);
    mailimap_set_progress_callback(imap, NULL, on_progress, r);
    int rc = MAILIMAP_ERROR_STREAM;
    if (mailimap_read_line(imap)) {
        struct mailimap_response *resp = NULL;
        rc = mailimap_parse_response(imap, &resp);
        if (rc == MAILIMAP_NO_ERROR)
            mailimap_response_free(resp);
    }
    mailstream_close(imap->imap_stream); /* closes sv[0] */
    imap->imap_stream = NULL;
    mailimap_free(imap);
    return rc;
}

static bool same_keywords(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *lf = memchr(data, '\n', size);
    size_t n = lf ? (size_t)(lf - data) + 1 : size;
    char *line = malloc(n + 2);
    CHECK(line != NULL, "malloc");
    memcpy(line, data, n);
    if (!lf) {
        memcpy(line + n, "\r\n", 2);
        n += 2;
    }
    /* exactly n bytes, so ASan catches a read past the line */
    char *exact = malloc(n);
    CHECK(exact != NULL, "malloc");
    memcpy(exact, line, n);
    free(line);

    struct imap_flagline fast;
    int k = imap_flagline_parse(exact, n, &fast);
    CHECK(k == IMAP_FLAGLINE_OK || k == IMAP_FLAGLINE_OTHER, "result %d", k);
    if (k == IMAP_FLAGLINE_OTHER) {
        CHECK(!fast.has_uid && !fast.has_flags && !fast.m.uid && !fast.m.flags && !fast.m.keywords && !fast.m.size,
              "declined but *out not empty");
        free(exact);
        return 0;
    }
    CHECK(fast.has_uid == (fast.m.uid != 0), "uid %u, has_uid %d", fast.m.uid, fast.has_uid);
    CHECK((fast.m.flags & ~(unsigned)FLAG_ALL) == 0, "flags 0x%x", fast.m.flags);

    struct reports r = {0};
    int rc = libetpan_reads(exact, n, &r);
    if (rc != MAILIMAP_NO_ERROR || r.n != 1) {
        fuzz_dump("line", exact, n);
        CHECK(false, "accepted a line libetpan reads otherwise (rc %d, %zu reports)", rc, r.n);
    }
    const struct imap_flagline *e = &r.first;
    if (e->has_uid != fast.has_uid || e->has_flags != fast.has_flags || e->m.uid != fast.m.uid ||
        e->m.flags != fast.m.flags || e->m.size != fast.m.size || !same_keywords(e->m.keywords, fast.m.keywords)) {
        fuzz_dump("line", exact, n);
        CHECK(false, "fast: uid %u flags 0x%x size %llu kw '%s'; libetpan: uid %u flags 0x%x size %llu kw '%s'",
              fast.m.uid, fast.m.flags, (unsigned long long)fast.m.size, fast.m.keywords ? fast.m.keywords : "",
              e->m.uid, e->m.flags, (unsigned long long)e->m.size, e->m.keywords ? e->m.keywords : "");
    }
    free(e->m.keywords);
    free(fast.m.keywords);
    free(exact);
    return 0;
}
