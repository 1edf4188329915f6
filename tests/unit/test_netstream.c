/* SPDX-License-Identifier: MIT */
/* test_netstream.c: the pure parts of the transport: IMAP framing and its
 * limits, secret masking, UID set batching, UID lists, header values,
 * fingerprints; and, over a loopback connection the test makes itself,
 * whether the server's bytes can be read without waiting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sync/net/netstream.h"
#include "sync/net/tls.h"

/* ---- framer ---------------------------------------------------------- */

struct seen {
    int lines;
    int literals;
    uint64_t last_literal;
    char last_head[300];
};

static void record(void *ctx, const struct imap_framer *f, bool literal, uint64_t len)
{
    struct seen *s = ctx;
    s->lines++;
    if (literal) {
        s->literals++;
        s->last_literal = len;
    }
    snprintf(s->last_head, sizeof s->last_head, "%.*s", (int)f->head_len, f->head);
}

static void framer_setup(struct imap_framer *f, struct seen *s, bool limits)
{
    memset(s, 0, sizeof *s);
    memset(f, 0, sizeof *f);
    f->on_line = record;
    f->ctx = s;
    imap_framer_init(f, limits);
}

static int feed(struct imap_framer *f, const char *text)
{
    return imap_framer_feed(f, text, strlen(text), false);
}

static void literal_is_skipped(void **unused)
{
    (void)unused;
    struct imap_framer f;
    struct seen s;
    framer_setup(&f, &s, true);
    /* The literal holds a line that would be a huge literal if parsed. */
    const char *in = "* 1 FETCH (UID 5 BODY[] {20}\r\n{99999999999}\r\nabcdef)\r\nA1 OK done\r\n";
    assert_int_equal(feed(&f, in), 0);
    assert_int_equal(s.literals, 1);
    assert_int_equal(s.last_literal, 20);
    assert_int_equal(s.lines, 3); /* the FETCH line, ")", the tagged OK */
    assert_string_equal(s.last_head, "A1 OK done\r\n");
}

static void byte_by_byte_equals_whole(void **unused)
{
    (void)unused;
    const char *in = "* LIST () \"/\" {3}\r\nabc\r\n* 2 FETCH (BODY[]<0> {4}\r\nx\r\ny)\r\nT OK x\r\n";
    struct imap_framer f;
    struct seen s;
    framer_setup(&f, &s, true);
    for (size_t i = 0; in[i]; i++)
        assert_int_equal(imap_framer_feed(&f, in + i, 1, false), 0);
    assert_int_equal(s.literals, 2);
    assert_int_equal(s.last_literal, 4);
    assert_false(f.in_literal);
    assert_true(f.response_start);
}

static void wrapping_size_is_refused(void **unused)
{
    (void)unused;
    struct imap_framer f;
    struct seen s;
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* 1 FETCH (BODY[] {4294967306}\r\n"), -1);
    assert_non_null(strstr(f.reason, "4294967306"));
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* 1 FETCH (BODY[] {000000000001}\r\n"), -1);
    assert_non_null(strstr(f.reason, "12-digit"));
}

static void body_cap_and_small_cap(void **unused)
{
    (void)unused;
    struct imap_framer f;
    struct seen s;
    framer_setup(&f, &s, true);
    /* A 100 MB body is fine... */
    assert_int_equal(feed(&f, "* 1 FETCH (UID 1 BODY[] {100000000}\r\n"), 0);
    assert_true(f.in_literal);
    /* ...over 1 GiB is not. */
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* 1 FETCH (UID 1 RFC822 {1073741825}\r\n"), -1);
    /* A 2 MiB mailbox name is not a body. */
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* LIST () \"/\" {2097152}\r\n"), -1);
    assert_non_null(strstr(f.reason, "limit 1048576"));
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* LIST () \"/\" {1048576}\r\n"), 0);
}

static void mid_line_brace_checked(void **unused)
{
    (void)unused;
    struct imap_framer f;
    struct seen s;
    framer_setup(&f, &s, true);
    /* libetpan also reads "{N}  data" in the middle of a line. */
    assert_int_equal(feed(&f, "* 1 FETCH (BODY[] {4294967295}  xx)\r\n"), -1);
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* 1 FETCH (BODY[] {5}  hello)\r\nA OK ok\r\n"), 0);
    assert_int_equal(s.literals, 0);
}

static void status_text_is_not_a_literal(void **unused)
{
    (void)unused;
    struct imap_framer f;
    struct seen s;
    framer_setup(&f, &s, true);
    /* A literal announced in text would let the server hide the next
     * line from the framer: it must stay a line. */
    assert_int_equal(feed(&f, "* OK hello {30}\r\n* 1 FETCH (BODY[] {4294967306}\r\n"), -1);
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "A1 NO sorry {5}\r\n+ go ahead {7}\r\n"), 0);
    assert_int_equal(s.literals, 0);
    assert_false(f.in_literal);
}

static void long_line_refused(void **unused)
{
    (void)unused;
    struct imap_framer f;
    struct seen s;
    framer_setup(&f, &s, true);
    size_t n = MAILSYNC_MAX_LINE + 10;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'a', n);
    assert_int_equal(imap_framer_feed(&f, big, n, false), -1);
    assert_non_null(strstr(f.reason, "line longer"));
    free(big);
    /* Without limits (client side) nothing is refused. */
    framer_setup(&f, &s, false);
    assert_int_equal(feed(&f, "a APPEND x {4294967306}\r\n"), 0);
}

/* Up to times: pre, n bytes of big, post; stops at the first failure.
 * The last feed's result. */
static int feed_around(struct imap_framer *f, const char *pre, const char *big, size_t n, const char *post, int times)
{
    int rc = 0;
    for (int i = 0; i < times && rc == 0; i++) {
        rc = feed(f, pre);
        if (rc == 0)
            rc = imap_framer_feed(f, big, n, false);
        if (rc == 0)
            rc = feed(f, post);
    }
    return rc;
}

/* Runs of plain bytes are taken in one step once the greeting is in:
 * the limits still stop them at the first byte over, and a literal's
 * kind is still told from the bytes before its '{' however long the line
 * (and wherever its head stopped being kept). */
static void plain_runs_keep_the_limits(void **unused)
{
    (void)unused;
    struct imap_framer f;
    struct seen s;
    size_t n = 8u << 20;
    char *big = malloc(MAILSYNC_MAX_LINE + 16);
    assert_non_null(big);
    memset(big, 'a', MAILSYNC_MAX_LINE + 16);

    /* One read longer than a line may be, no line end in it. */
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* OK hi\r\n"), 0);
    assert_int_equal(imap_framer_feed(&f, big, MAILSYNC_MAX_LINE + 5, false), -1);
    assert_non_null(strstr(f.reason, "line longer"));
    /* A line of exactly the limit (CRLF included) passes; one more byte does not. */
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* OK hi\r\n"), 0);
    assert_int_equal(imap_framer_feed(&f, big, MAILSYNC_MAX_LINE - 2, false), 0);
    assert_int_equal(feed(&f, "\r\n"), 0);
    assert_int_equal(s.lines, 2);
    assert_int_equal(imap_framer_feed(&f, big, MAILSYNC_MAX_LINE - 1, false), 0);
    assert_int_equal(feed(&f, "\r\n"), -1);
    assert_non_null(strstr(f.reason, "line longer"));

    /* One response over its limit: 8 MiB lines joined by 1-byte literals. */
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* OK hi\r\n* 1 FETCH (X {1}\r\n"), 0);
    assert_int_equal(feed_around(&f, "x", big, n, " {1}\r\n", 10), -1);
    assert_non_null(strstr(f.reason, "response longer"));
    assert_true(f.response_bytes > MAILSYNC_MAX_RESPONSE && f.response_bytes <= MAILSYNC_MAX_RESPONSE + 1);

    /* Untagged lines to one command over their limit. */
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* OK hi\r\n"), 0);
    assert_int_equal(feed_around(&f, "* ", big, n, "\r\n", 70), -1);
    assert_non_null(strstr(f.reason, "responses to one command"));
    assert_true(f.command_bytes == MAILSYNC_MAX_COMMAND_RESPONSES + 1);
    free(big);

    /* A body section's literal after 300 bytes of other items (the head
     * keeps 256 bytes) is a body; the same size after another item is not. */
    char line[600];
    snprintf(line, sizeof line, "* OK hi\r\n* 1 FETCH (X-PAD %300s BODY[] {100000000}\r\n", "x");
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, line), 0);
    assert_true(f.in_literal);
    assert_int_equal(s.last_literal, 100000000);
    snprintf(line, sizeof line, "* OK hi\r\n* 1 FETCH (BODY[] %300s X-PAD {100000000}\r\n", "x");
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, line), -1);
    assert_non_null(strstr(f.reason, "limit 1048576"));
}

/* An [ALERT] or [PARSE] code with no text after it crashes libetpan
 * (it copies the missing text): refused, tagged or not, in any case,
 * whatever blanks follow or stand for a space (libetpan takes any run of
 * spaces and tabs for one); with text, or another code, it passes. */
static void alert_without_text_refused(void **unused)
{
    (void)unused;
    static const char *const bad[] = {"* OK [ALERT]\r\n", "* ok [alert] \r\n", "* NO [PARSE]\t\r\n",
                                      "* BAD [ALERT]\n", "A7 OK [ALERT]\r\n", "+ [ALERT]\r\n",
                                      "* BYE [PARSE]\r\n",
                                      /* libetpan takes any run of blanks for a space */
                                      "j  OK [ALERT]\r\n", "j[COPYUID  OK [ALERT]\r\n", "j\tOK [ALERT]\r\n",
                                      "j OK\t[ALERT]\r\n", "*  OK [ALERT]\r\n", "*\tOK [PARSE]\r\n",
                                      "* \t NO \t [ALERT] \t\r\n", "+  [ALERT]\r\n", "+\t[PARSE]\r\n",
                                      /* its text ends at the first CR, a bare one too */
                                      "j\tOK [ALERT]\r[APPENDUID \n", "* OK [PARSE] \r x\r\n",
                                      "a-long-tag-of-many-letters OK [ALERT]\r\n"};
    static const char *const good[] = {"* OK [ALERT] x\r\n", "* OK [UNSEEN 3]\r\n", "* OK [ALERTS]\r\n",
                                       "* 3 FETCH (UID 3 FLAGS ([ALERT]))\r\n", "A7 OK [PARSE] done\r\n",
                                       "j  OK [ALERT] x\r\n", "*\tOK\t[ALERT]\tx\r\n", "* OK[ALERT]\r\n"};
    struct imap_framer f;
    struct seen s;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        framer_setup(&f, &s, true);
        assert_int_equal(feed(&f, "* OK hi\r\n"), 0);
        assert_int_equal(feed(&f, bad[i]), -1);
        assert_non_null(strstr(f.reason, "without text"));
    }
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        framer_setup(&f, &s, true);
        assert_int_equal(feed(&f, "* OK hi\r\n"), 0);
        assert_int_equal(feed(&f, good[i]), 0);
    }
    /* Past the framer's head (256 bytes): a long tag, a long run of
     * blanks, blanks up to a bare CR in the middle of a long line. */
    char big[1200], tag[301];
    memset(tag, 't', 300);
    tag[300] = '\0';
    static const char *const far[] = {"%s OK [ALERT]\r\n", "*%300s OK [ALERT]\r\n", "* OK%300s[ALERT]\r\n",
                                       "* OK [ALERT]%300s\rx%300s\r\n"};
    for (size_t i = 0; i < sizeof far / sizeof *far; i++) {
        snprintf(big, sizeof big, far[i], i == 0 ? tag : "", "y");
        framer_setup(&f, &s, true);
        assert_int_equal(feed(&f, "* OK hi\r\n"), 0);
        assert_int_equal(feed(&f, big), -1);
    }
    /* Blanks before it (libetpan reading on after a response it could not
     * parse); after a literal, the rest of the line in that response: a
     * status word there is no status word, the literal's bytes not a tag. */
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* OK hi\r\n"), 0);
    assert_int_equal(feed(&f, " \tUNSE\tOK [ALERT]\r[APPEN 4)\r\n"), -1);
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* OK hi\r\n"), 0);
    assert_int_equal(feed(&f, "* 1 FETCH (X {3}\r\nabc OK [ALERT]\r\n"), 0);
    assert_int_equal(feed(&f, "* 1 FETCH (X {3}\r\nabc x OK [ALERT]\r\n"), -1);
    /* a NUL ends libetpan's text as a CR does */
    static const char nul[] = " 9 OK [ALERT]\0\0 set as\r\n";
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* OK hi\r\n"), 0);
    assert_int_equal(imap_framer_feed(&f, nul, sizeof nul - 1, false), -1);
    /* A long line: blank in its head and its tail counts as blank. */
    char line[600];
    snprintf(line, sizeof line, "* OK [ALERT]%400s\r\n", "");
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* OK hi\r\n"), 0);
    assert_int_equal(feed(&f, line), -1);
    snprintf(line, sizeof line, "* OK [ALERT]%400s\r\n", "x");
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* OK hi\r\n"), 0);
    assert_int_equal(feed(&f, line), 0);
}

/* A malformed PERMANENTFLAGS list crashes libetpan: refused, the code's
 * name in any case (found by its last letter first, then compared). */
static void permanentflags_checked(void **unused)
{
    (void)unused;
    static const char *const bad[] = {
        "* OK [PERMANENTFLAGS (\\Seen]\r\n",
        "* OK [permanentflags (\\Seen \\*\r\n",
        "* OK [PermanentFlags (\\Seen \\Answered) x] y\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct imap_framer f;
        struct seen s;
        framer_setup(&f, &s, true);
        assert_int_equal(feed(&f, "* OK hi\r\n"), 0);
        assert_int_equal(feed(&f, bad[i]), -1);
        assert_non_null(strstr(f.reason, "PERMANENTFLAGS"));
    }
    struct imap_framer f;
    struct seen s;
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* OK hi\r\n* OK [PERMANENTFLAGS (\\Seen \\Answered $Junk \\*)] ok\r\n"
                              "* OK [PERMANENTFLAGS ()] none\r\n* OK PERMANENTFLAGS (\r\nA1 OK x\r\n"),
                     0);
}

static void bare_lf_and_trailing_space(void **unused)
{
    (void)unused;
    struct imap_framer f;
    struct seen s;
    framer_setup(&f, &s, true);
    assert_int_equal(feed(&f, "* 1 FETCH (BODY[] {3} \nabc)\nA OK x\n"), 0);
    assert_int_equal(s.literals, 1);
    assert_int_equal(s.last_literal, 3);
    assert_string_equal(s.last_head, "A OK x\n");
}

/* ---- masking --------------------------------------------------------- */

static void mask(const char *line, bool priv, char *out, size_t outlen)
{
    imap_mask_client_line(line, strlen(line), strlen(line), priv, out, outlen);
}

static void masking(void **unused)
{
    (void)unused;
    char out[512];
    mask("4 LOGIN alice \"secret pw\"\r\n", true, out, sizeof out);
    assert_null(strstr(out, "secret"));
    assert_string_equal(out, "4 LOGIN [credentials masked]");
    /* Even if libetpan forgot to mark it private. */
    mask("4 login alice hunter2\r\n", false, out, sizeof out);
    assert_null(strstr(out, "hunter2"));
    mask("5 AUTHENTICATE PLAIN AGFsaWNlAGh1bnRlcjI=\r\n", true, out, sizeof out);
    assert_string_equal(out, "5 AUTHENTICATE PLAIN [initial response masked]");
    mask("5 AUTHENTICATE XOAUTH2\r\n", true, out, sizeof out);
    assert_string_equal(out, "5 AUTHENTICATE XOAUTH2");
    mask("AGFsaWNlAGh1bnRlcjI=\r\n", true, out, sizeof out);
    assert_null(strstr(out, "AGFs"));
    mask("6 SELECT INBOX\r\n", false, out, sizeof out);
    assert_string_equal(out, "6 SELECT INBOX");
}

struct trace_capture {
    char text[2048];
};

static void capture(void *ctx, const struct imap_framer *f, bool literal, uint64_t len)
{
    (void)literal;
    (void)len;
    struct trace_capture *t = ctx;
    char shown[512];
    imap_mask_client_line(f->head, f->head_len, f->line_len, f->line_private, shown, sizeof shown);
    strncat(t->text, shown, sizeof t->text - strlen(t->text) - 2);
    strcat(t->text, "|");
}

static void login_literal_password_masked(void **unused)
{
    (void)unused;
    struct imap_framer f;
    struct trace_capture t = {{0}};
    memset(&f, 0, sizeof f);
    f.on_line = capture;
    f.ctx = &t;
    imap_framer_init(&f, false);
    const char *cmd = "7 LOGIN alice {6}\r\n";
    assert_int_equal(imap_framer_feed(&f, cmd, strlen(cmd), true), 0);
    assert_int_equal(imap_framer_feed(&f, "s3cr3t\r\n", 8, true), 0);
    assert_null(strstr(t.text, "s3cr3t"));
    assert_non_null(strstr(t.text, "7 LOGIN [credentials masked]"));
}

/* ---- UID batches ----------------------------------------------------- */

static void uid_batches(void **unused)
{
    (void)unused;
    uint32_t uids[] = {0, 1, 2, 3, 3, 5, 7, 8, 9, 100};
    struct uid_range r[10];
    size_t nr;
    size_t used = imap_uid_batch(uids, 10, 500, 8000, r, 10, &nr);
    assert_int_equal(used, 10);
    assert_int_equal(nr, 4);
    assert_int_equal(r[0].first, 1);
    assert_int_equal(r[0].last, 3);
    assert_int_equal(r[1].first, 5);
    assert_int_equal(r[1].last, 5);
    assert_int_equal(r[2].first, 7);
    assert_int_equal(r[2].last, 9);
    assert_int_equal(r[3].first, 100);
    /* At most 4 UIDs per batch. */
    used = imap_uid_batch(uids, 10, 4, 8000, r, 10, &nr);
    assert_int_equal(nr, 2);
    assert_int_equal(r[1].first, 5);
    assert_int_equal(used, 6); /* 0,1,2,3,3,5 */
}

/* VANISHED ranges: clipping, '*', reversed ranges, caps, dedupe. */
static void uid_lists(void **unused)
{
    (void)unused;
    struct imap_uid_list l = {0};
    assert_int_equal(imap_uid_list_add_range(&l, 10, 12, 39, 100), 0);
    assert_int_equal(imap_uid_list_add_range(&l, 4, 2, 39, 100), 0);  /* reversed: 2..4 */
    assert_int_equal(imap_uid_list_add_range(&l, 11, 11, 39, 100), 0); /* duplicate */
    assert_int_equal(imap_uid_list_add_range(&l, 38, 0, 39, 100), 0);  /* 38:* -> 38,39 */
    assert_int_equal(imap_uid_list_add_range(&l, 50, 60, 39, 100), 0); /* above the clip */
    imap_uid_list_sort_unique(&l);
    uint32_t want[] = {2, 3, 4, 10, 11, 12, 38, 39};
    assert_int_equal(l.n, 8);
    assert_memory_equal(l.v, want, sizeof want);
    /* 2^32 wide without a clip: refused, not allocated. */
    assert_int_equal(imap_uid_list_add_range(&l, 1, UINT32_MAX, 0, 1000), -2);
    assert_int_equal(l.n, 8);
    /* With a clip it fits. */
    assert_int_equal(imap_uid_list_add_range(&l, 1, UINT32_MAX, 39, 1000), 0);
    imap_uid_list_sort_unique(&l);
    assert_int_equal(l.n, 39);
    /* Overlapping reports fit once duplicates are dropped (the new range
     * counts whole). */
    for (int i = 0; i < 10; i++)
        assert_int_equal(imap_uid_list_add_range(&l, 1, 39, 39, 80), 0);
    imap_uid_list_sort_unique(&l);
    assert_int_equal(l.n, 39);
    assert_int_equal(l.v[38], 39);
    imap_uid_list_free(&l);
    assert_null(l.v);
    assert_int_equal(l.n, 0);
    imap_uid_list_sort_unique(&l); /* empty is fine */
}

static void uid_batch_char_limit(void **unused)
{
    (void)unused;
    enum { N = 5000 };
    uint32_t *uids = malloc(N * sizeof *uids);
    assert_non_null(uids);
    for (uint32_t i = 0; i < N; i++)
        uids[i] = 1000000000u + 2 * i; /* no ranges: 10 digits + comma each */
    struct uid_range *r = malloc(N * sizeof *r);
    assert_non_null(r);
    size_t done = 0, batches = 0;
    while (done < N) {
        size_t nr;
        size_t used = imap_uid_batch(uids + done, N - done, N, 7000, r, N, &nr);
        assert_true(used > 0);
        assert_true(nr * 11 - 1 <= 7000);
        done += used;
        batches++;
    }
    assert_int_equal(batches, (N + 636 - 1) / 636);
    free(uids);
    free(r);
}

static void escaping(void **unused)
{
    (void)unused;
    char out[16];
    imap_escape_text("ok\r\n\\", 5, out, sizeof out);
    assert_string_equal(out, "ok\\x0d\\x0a\\x5c");
    imap_escape_text("abcdefghijklmnopqrstuvwxyz", 26, out, sizeof out);
    assert_string_equal(out, "abcdefghijkl...");
    assert_true(strlen(out) < sizeof out);
    imap_escape_text("\x01\x02\x03\x04\x05", 5, out, sizeof out);
    assert_string_equal(out, "\\x01\\x02\\x03...");
}

/* ---- fingerprints ---------------------------------------------------- */

static void fingerprints(void **unused)
{
    (void)unused;
    unsigned char md[32], md2[32];
    const char *colons =
        "sha256:4F:73:C7:B8:F2:3E:01:58:B0:D0:F7:C7:CB:9F:B4:AC:67:23:5A:10:B1:84:D1:96:94:18:BE:69:82:44:FA:E4";
    assert_int_equal(tls_parse_fingerprint(colons, md), 0);
    assert_int_equal(tls_parse_fingerprint("4f73c7b8f23e0158b0d0f7c7cb9fb4ac67235a10b184d1969418be698244fae4", md2), 0);
    assert_memory_equal(md, md2, 32);
    char out[110];
    tls_format_fingerprint(md, out, sizeof out);
    assert_string_equal(out, colons);
    assert_int_equal(tls_parse_fingerprint("sha256:4F:73", md), -1);
    assert_int_equal(tls_parse_fingerprint(colons + 7, md2), 0);
    char longer[200];
    snprintf(longer, sizeof longer, "%s:00", colons);
    assert_int_equal(tls_parse_fingerprint(longer, md), -1);
    assert_int_equal(tls_parse_fingerprint("sha256:zz", md), -1);
    assert_int_equal(tls_parse_fingerprint("", md), -1);
}

/* ---- readable without waiting ---------------------------------------- */

static bool readable_within(struct netstream *ns, int ms)
{
    for (int i = 0; i < ms; i++) {
        if (netstream_readable_now(ns))
            return true;
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    return netstream_readable_now(ns);
}

static void readable_now(void **unused)
{
    (void)unused;
    assert_false(netstream_readable_now(NULL));
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 1), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);

    struct netstream *ns = NULL;
    struct ms_error err = {0};
    assert_int_equal(netstream_connect("127.0.0.1", ntohs(a.sin_port), 5, &ns, &err), MS_OK);
    int peer = accept(lfd, NULL, NULL);
    assert_true(peer >= 0);
    /* nothing sent yet: not readable (and the check does not wait) */
    assert_false(netstream_readable_now(ns));
    assert_int_equal(write(peer, "* BYE\r\n", 7), 7);
    assert_true(readable_within(ns, 2000));
    netstream_destroy(ns);
    close(peer);
    close(lfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(literal_is_skipped),
        cmocka_unit_test(byte_by_byte_equals_whole),
        cmocka_unit_test(wrapping_size_is_refused),
        cmocka_unit_test(body_cap_and_small_cap),
        cmocka_unit_test(mid_line_brace_checked),
        cmocka_unit_test(status_text_is_not_a_literal),
        cmocka_unit_test(long_line_refused),
        cmocka_unit_test(plain_runs_keep_the_limits),
        cmocka_unit_test(permanentflags_checked),
        cmocka_unit_test(alert_without_text_refused),
        cmocka_unit_test(bare_lf_and_trailing_space),
        cmocka_unit_test(masking),
        cmocka_unit_test(login_literal_password_masked),
        cmocka_unit_test(uid_batches),
        cmocka_unit_test(uid_batch_char_limit),
        cmocka_unit_test(uid_lists),
        cmocka_unit_test(escaping),
        cmocka_unit_test(fingerprints),
        cmocka_unit_test(readable_now),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
