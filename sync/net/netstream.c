/* SPDX-License-Identifier: MIT */
/*
 * netstream.c: the libetpan transport of netstream.h: socket + optional
 * OpenSSL, deadlines reset by progress, IMAP framing checks, masked trace.
 *
 * libetpan parses whatever its driver returns; it trusts literal sizes
 * (wrapping them at 2^32), allocates non-body literals whole, and spins
 * when a plain read returns 0 mid-literal. So this driver never returns 0:
 * end of file, timeout and every limit violation are -1 with a reason, and
 * the framer below sees every byte before libetpan does.
 */
#include "sync/net/netstream.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#include "sync/log.h"
#include "sync/net/deflate_layer.h"
#include "sync/util.h"

struct netstream {
    mailstream_low *low;
    int fd;
    int cancel_fd; /* eventfd: readable once netstream_cancel() was called */
    atomic_bool cancelled;
    SSL *ssl;
    int timeout_s;
    bool failed;
    bool secret;
    char reason[320];
    char bye[200];
    uint64_t rx, tx;
    struct imap_framer rx_framer, tx_framer;
    bool raw; /* not IMAP (POP3): no framing checks, no IMAP trace */
    char *tls_info;
    struct deflate_layer *z; /* COMPRESS=DEFLATE active (netstream_start_compress) */
};

/* ======================================================================
 * The framer (pure): lines, literals and limits.
 * ==================================================================== */

/* States of the PERMANENTFLAGS list check (perm_flags_step). */
enum { PERM_NONE, PERM_SP, PERM_OPEN, PERM_FIRST, PERM_NEXT, PERM_BS, PERM_ATOM, PERM_STAR, PERM_CLOSE, PERM_DONE };

/* alert_step()'s states (struct imap_framer's alert_state). */
enum { ALERT_IDLE, ALERT_TOKEN, ALERT_BLANK_WORD, ALERT_WORD, ALERT_BLANK_CODE, ALERT_CODE, ALERT_AFTER };

void imap_framer_init(struct imap_framer *f, bool check_limits)
{
    void (*cb)(void *, const struct imap_framer *, bool, uint64_t) = f->on_line;
    void *ctx = f->ctx;
    memset(f, 0, sizeof *f);
    f->check_limits = check_limits;
    f->response_start = true;
    f->alert_state = check_limits ? ALERT_TOKEN : ALERT_IDLE;
    f->on_line = cb;
    f->ctx = ctx;
}

static bool ends_with_ci(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && strncasecmp(s + len - n, suffix, n) == 0;
}

/* Does the text before a '{' name a message body (BODY[...], BODY[]<0>,
 * BINARY[...], RFC822, RFC822.TEXT, RFC822.HEADER)? Those may be big and are
 * streamed by the body handler; every other literal is small. */
static bool is_body_context(const char *s, size_t len)
{
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len && s[len - 1] == '>') {
        size_t i = len - 1;
        while (i && s[i - 1] >= '0' && s[i - 1] <= '9')
            i--;
        if (i && s[i - 1] == '<')
            len = i - 1;
    }
    if (len && s[len - 1] == ']')
        return true;
    return ends_with_ci(s, len, "RFC822") || ends_with_ci(s, len, "RFC822.TEXT") ||
           ends_with_ci(s, len, "RFC822.HEADER");
}

/* What libetpan's parser takes for the one space between two tokens: any
 * run of spaces and tabs (it is built with UNSTRICT_SYNTAX). */
static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

static size_t skip_blanks(const char *s, size_t i, size_t n)
{
    while (i < n && blank(s[i]))
        i++;
    return i;
}

/* The length of the word at w (len bytes at most; it ends at a blank, a
 * line end or '[') when it names a status response, OK, NO, BAD, BYE or
 * PREAUTH in any case; else 0. */
static size_t status_word(const char *w, size_t len)
{
    size_t n = 0;
    while (n < len && !blank(w[n]) && w[n] != '\r' && w[n] != '\n' && w[n] != '[')
        n++;
    static const char *const words[] = {"OK", "NO", "BAD", "BYE", "PREAUTH"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strlen(words[i]) == n && strncasecmp(w, words[i], n) == 0)
            return n;
    return 0;
}

/* A line whose {N} at the end is text, not a literal: server status
 * responses (untagged OK/NO/BAD/BYE/PREAUTH, every tagged line) and
 * continuation requests. libetpan parses their text to the line end. */
static bool is_text_line(const char *head, size_t len)
{
    if (len == 0)
        return false;
    if (head[0] == '+')
        return true;
    if (head[0] != '*')
        return true; /* tagged: tag SP resp-cond-state */
    if (len < 2 || !blank(head[1]))
        return false;
    size_t i = skip_blanks(head, 1, len);
    return status_word(head + i, len - i) > 0;
}

static int framer_fail(struct imap_framer *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int framer_fail(struct imap_framer *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->reason, sizeof f->reason, fmt, ap);
    va_end(ap);
    return -1;
}

static int literal_too_big(struct imap_framer *f, uint64_t value, unsigned digits, uint64_t limit)
{
    if (digits > 10)
        return framer_fail(f, "server announced a literal with a %u-digit size (limit %llu bytes)", digits,
                           (unsigned long long)limit);
    return framer_fail(f, "server announced a literal of %llu bytes (limit %llu)", (unsigned long long)value,
                       (unsigned long long)limit);
}

static int count_bytes(struct imap_framer *f, uint64_t n)
{
    f->response_bytes += n;
    f->command_bytes += n;
    if (!f->check_limits)
        return 0;
    if (f->response_bytes > MAILSYNC_MAX_RESPONSE)
        return framer_fail(f, "server sent a response longer than %llu bytes",
                           (unsigned long long)MAILSYNC_MAX_RESPONSE);
    if (f->command_bytes > MAILSYNC_MAX_COMMAND_RESPONSES)
        return framer_fail(f, "server sent more than %llu bytes of responses to one command",
                           (unsigned long long)MAILSYNC_MAX_COMMAND_RESPONSES);
    return 0;
}

/* The {digits} scanner, one byte at a time. Every complete {N} is checked
 * against the largest cap wherever it is (libetpan also takes "{N}  " in
 * the middle of a line as a literal); the cap by kind is applied at the
 * line end. */
static int scan_brace(struct imap_framer *f, unsigned char c)
{
    if (f->brace_state == 1) {
        if (c >= '0' && c <= '9') {
            f->brace_digits++;
            if (f->brace_digits <= 19)
                f->brace_value = f->brace_value * 10 + (uint64_t)(c - '0');
            return 0;
        }
        if (c == '+' && f->brace_digits > 0)
            return 0; /* LITERAL+ marker: '}' must follow */
        if (c == '}' && f->brace_digits > 0) {
            if (f->check_limits && (f->brace_digits > 10 || f->brace_value > MAILSYNC_MAX_LITERAL))
                return literal_too_big(f, f->brace_value, f->brace_digits, MAILSYNC_MAX_LITERAL);
            f->brace_last = f->brace_value;
            f->brace_body = is_body_context(f->brace_ctx, f->brace_ctx_len);
            f->brace_state = 2;
            return 0;
        }
        f->brace_state = 0;
    } else if (f->brace_state == 2) {
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            return 0;
        f->brace_state = 0;
    }
    if (c == '{') {
        memcpy(f->brace_ctx, f->tail, f->tail_len);
        f->brace_ctx_len = f->tail_len;
        f->brace_state = 1;
        f->brace_digits = 0;
        f->brace_value = 0;
    }
    return 0;
}

static void push_tail(struct imap_framer *f, char c)
{
    if (f->tail_len == sizeof f->tail) {
        memmove(f->tail, f->tail + 1, sizeof f->tail - 1);
        f->tail_len--;
    }
    f->tail[f->tail_len++] = c;
}

static void reset_line(struct imap_framer *f)
{
    if (f->line_private)
        explicit_bzero(f->head, sizeof f->head);
    f->line_len = 0;
    f->head_len = 0;
    f->tail_len = 0;
    f->brace_state = 0;
    f->line_private = false;
    f->perm_state = PERM_NONE;
    f->alert_state = f->check_limits ? ALERT_TOKEN : ALERT_IDLE;
    f->alert_len = 0;
}

static int refuse_libetpan_traps(struct imap_framer *f);

static int end_of_line(struct imap_framer *f)
{
    if (f->check_limits && refuse_libetpan_traps(f) != 0)
        return -1;
    bool announced = f->brace_state == 2;
    bool literal = announced;
    if (f->check_limits && f->response_start && is_text_line(f->head, f->head_len))
        literal = false;
    if (literal && f->check_limits) {
        uint64_t cap = f->brace_body ? MAILSYNC_MAX_LITERAL : MAILSYNC_MAX_SMALL_LITERAL;
        if (f->brace_last > cap)
            return literal_too_big(f, f->brace_last, f->brace_digits, cap);
    }
    bool tagged = f->response_start && f->head_len > 0 && f->head[0] != '*' && f->head[0] != '+';
    if (f->on_line)
        f->on_line(f->ctx, f, literal, literal ? f->brace_last : 0);
    if (literal) {
        f->in_literal = f->brace_last > 0;
        f->literal_left = f->brace_last;
        f->response_start = false;
    } else {
        f->response_start = true;
        f->response_bytes = 0;
        if (tagged)
            f->command_bytes = 0;
    }
    reset_line(f);
    return 0;
}

static int feed_literal(struct imap_framer *f, const char *data, size_t len, size_t *i)
{
    (void)data;
    uint64_t avail = len - *i;
    uint64_t take = f->literal_left < avail ? f->literal_left : avail;
    f->literal_left -= take;
    *i += (size_t)take;
    if (!f->brace_body && count_bytes(f, take) != 0)
        return -1;
    if (f->literal_left == 0)
        f->in_literal = false;
    return 0;
}

/* ---- libetpan traps ---------------------------------------------------
 *
 * libetpan 1.9.4 dereferences NULL on a few shapes of server responses
 * (found by tests/fuzz/fuzz_imap_fetch; two are not fixed upstream):
 *   - "* CAPABILITY" with no capability names (also as a response code);
 *   - a malformed list in "[PERMANENTFLAGS (...)]";
 *   - a greeting whose response code holds a parenthesised list;
 *   - a status response whose code is [ALERT] or [PARSE] with no text
 *     after it (libetpan copies that text, NULL), followed byte by byte
 *     (alert_step).
 * The framer sees each line before libetpan parses it, so these lines are
 * refused here and the connection fails (exit 4) instead of crashing. */


static bool atom_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("(){%*\"\\]", c);
}

/* One more byte of "[PERMANENTFLAGS" SP "(" [flag *(SP flag)] ")" "]". */
static int perm_flags_step(struct imap_framer *f, unsigned char c)
{
    int next = -1;
    switch (f->perm_state) {
    case PERM_SP: next = c == ' ' ? PERM_OPEN : -1; break;
    case PERM_OPEN: next = c == '(' ? PERM_FIRST : -1; break;
    case PERM_FIRST:
        if (c == ')') {
            next = PERM_CLOSE;
            break;
        }
        /* fall through */
    case PERM_NEXT: next = c == '\\' ? PERM_BS : atom_char(c) ? PERM_ATOM : -1; break;
    case PERM_BS: next = c == '*' ? PERM_STAR : atom_char(c) ? PERM_ATOM : -1; break;
    case PERM_ATOM:
        if (atom_char(c)) {
            next = PERM_ATOM;
            break;
        }
        /* fall through */
    case PERM_STAR: next = c == ' ' ? PERM_NEXT : c == ')' ? PERM_CLOSE : -1; break;
    case PERM_CLOSE: next = c == ']' ? PERM_DONE : -1; break;
    default: return 0;
    }
    if (next < 0)
        return framer_fail(f, "server sent a malformed PERMANENTFLAGS list (refused: it would crash libetpan)");
    f->perm_state = next;
    return 0;
}

static bool rest_is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* One more byte of a line (every line outside a literal, also the rest of
 * one after a literal, blanks before it or not), for the shape libetpan
 * 1.9.4 crashes on: "tag|* OK|NO|BAD|BYE|PREAUTH [ALERT]" or "+ [PARSE]"
 * (the code in any case) with no text after it. libetpan's text ends at
 * the first CR, LF or NUL, even a bare CR inside the line, and it takes any run
 * of spaces and tabs for the one space between tokens; so does this,
 * byte by byte, however long the tag or the blanks are. No server sends
 * that shape anywhere (RFC 3501 requires the text), so it is refused on
 * every line. Idle for the rest of the line once the shape is ruled out. */
static int alert_step(struct imap_framer *f, char c)
{
    bool end = c == '\r' || c == '\n' || c == '\0'; /* (no TEXT-CHAR to libetpan) */
    switch (f->alert_state) {
    case ALERT_TOKEN: /* the tag, '*' or '+' */
        if (blank(c) && f->alert_len) {
            f->alert_state = f->alert_len == 1 && f->alert_word[0] == '+' ? ALERT_BLANK_CODE : ALERT_BLANK_WORD;
            f->alert_len = 0;
        } else if (end) {
            f->alert_state = ALERT_IDLE;
        } else if (blank(c)) {
            /* blanks before it: libetpan, reading on after a response it
             * could not parse, has taken such a line for a status line */
        } else if (f->alert_len++ == 0) {
            f->alert_word[0] = c;
        }
        break;
    case ALERT_BLANK_WORD:
    case ALERT_WORD:
        if (blank(c) && f->alert_state == ALERT_BLANK_WORD)
            break;
        if (blank(c)) {
            f->alert_state = status_word(f->alert_word, f->alert_len) == f->alert_len ? ALERT_BLANK_CODE : ALERT_IDLE;
            f->alert_len = 0;
        } else if (end || c == '[' || f->alert_len == sizeof f->alert_word) {
            f->alert_state = ALERT_IDLE;
        } else {
            f->alert_state = ALERT_WORD;
            f->alert_word[f->alert_len++] = c;
        }
        break;
    case ALERT_BLANK_CODE:
        if (!blank(c)) {
            f->alert_state = c == '[' ? ALERT_CODE : ALERT_IDLE;
            f->alert_len = 0;
        }
        break;
    case ALERT_CODE: /* "ALERT" or "PARSE", then ']' */
        if (f->alert_len < 5 && !end) {
            f->alert_word[f->alert_len++] = c;
            break;
        }
        f->alert_state =
            c == ']' && (strncasecmp(f->alert_word, "ALERT", 5) == 0 || strncasecmp(f->alert_word, "PARSE", 5) == 0)
                ? ALERT_AFTER
                : ALERT_IDLE;
        break;
    case ALERT_AFTER:
        if (end)
            return framer_fail(f, "server sent an ALERT or PARSE code without text (refused: it would crash libetpan)");
        if (!blank(c))
            f->alert_state = ALERT_IDLE; /* the text */
        break;
    default: break;
    }
    return 0;
}

/* Checks on a complete line, at its end (head holds its first bytes). */
static int refuse_libetpan_traps(struct imap_framer *f)
{
    const char *h = f->head;
    size_t n = f->head_len;
    if (f->perm_state != PERM_NONE && f->perm_state != PERM_DONE)
        return framer_fail(f, "server sent an unterminated PERMANENTFLAGS list (refused: it would crash libetpan)");
    if (n >= 12 && strncasecmp(h, "* CAPABILITY", 12) == 0 && rest_is_blank(h + 12, n - 12))
        return framer_fail(f, "server sent an empty CAPABILITY list (refused: it would crash libetpan)");
    for (size_t i = 0; i + 11 <= n; i++)
        if (h[i] == '[' && strncasecmp(h + i + 1, "CAPABILITY", 10) == 0) {
            size_t j = skip_blanks(h, i + 11, n);
            if (j < n && h[j] == ']')
                return framer_fail(f, "server sent an empty CAPABILITY code (refused: it would crash libetpan)");
        }
    f->greeting_seen = true;
    return 0;
}

/* One more byte of the greeting: a '(' inside its response code is fatal
 * to libetpan (however long the code, so this is tracked byte by byte). */
static int greeting_step(struct imap_framer *f, char c)
{
    if (f->greeting_code == 0 && c == '[')
        f->greeting_code = 1;
    else if (f->greeting_code == 1 && c == ']')
        f->greeting_code = 2;
    else if (f->greeting_code == 1 && c == '(')
        return framer_fail(f, "server greeting carries a list in its response code (refused: it would crash "
                              "libetpan)");
    return 0;
}

/* One byte outside a literal, every check in order. */
static int feed_byte(struct imap_framer *f, char c, bool private_data)
{
    f->line_len++;
    if (private_data)
        f->line_private = true;
    if (f->check_limits && f->line_len > MAILSYNC_MAX_LINE)
        return framer_fail(f, "server sent a line longer than %llu bytes", (unsigned long long)MAILSYNC_MAX_LINE);
    if (count_bytes(f, 1) != 0)
        return -1;
    bool in_head = f->head_len < sizeof f->head;
    if (in_head)
        f->head[f->head_len++] = c;
    if (f->check_limits && !f->greeting_seen && greeting_step(f, c) != 0)
        return -1;
    if (f->alert_state != ALERT_IDLE && alert_step(f, c) != 0)
        return -1;
    if (f->check_limits && c != '\r' && c != '\n') {
        if (f->perm_state != PERM_NONE && perm_flags_step(f, (unsigned char)c) != 0)
            return -1;
        /* (the last letter first: the comparison for every byte of a
         * line's head was a third of a flag listing's CPU) */
        if (f->perm_state == PERM_NONE && in_head && (c == 'S' || c == 's') &&
            ends_with_ci(f->head, f->head_len, "[PERMANENTFLAGS"))
            f->perm_state = PERM_SP;
    }
    if (scan_brace(f, (unsigned char)c) != 0)
        return -1;
    if (c == '\n')
        return end_of_line(f);
    push_tail(f, c);
    return 0;
}

/* Runs shorter than this go byte by byte (so a stream fed one byte at a
 * time never takes the run path: the fuzz target compares the two). */
#define PLAIN_RUN_MIN 8

/* The length of the run of plain bytes at data: bytes for which
 * feed_byte would only count, copy into head and tail, and which no
 * limit stops (they stop short of the byte that breaks one). Not plain:
 * '{' (a literal's size may follow), LF (the line ends), 'S'/'s' (the
 * last letter of "[PERMANENTFLAGS"); nothing is plain while a {N}, a
 * PERMANENTFLAGS list, the start of a response (alert_step) or the
 * greeting is followed byte by byte. */
static size_t plain_run(const struct imap_framer *f, const char *data, size_t len)
{
    if (f->brace_state != 0 || (f->perm_state != PERM_NONE && f->perm_state != PERM_DONE) ||
        f->alert_state != ALERT_IDLE || (f->check_limits && !f->greeting_seen))
        return 0;
    if (f->check_limits) {
        uint64_t room = MAILSYNC_MAX_LINE - f->line_len;
        if (MAILSYNC_MAX_RESPONSE - f->response_bytes < room)
            room = MAILSYNC_MAX_RESPONSE - f->response_bytes;
        if (MAILSYNC_MAX_COMMAND_RESPONSES - f->command_bytes < room)
            room = MAILSYNC_MAX_COMMAND_RESPONSES - f->command_bytes;
        if (room < len)
            len = (size_t)room;
    }
    size_t n = 0;
    while (n < len && data[n] != '{' && data[n] != '\n' && data[n] != 'S' && data[n] != 's')
        n++;
    return n;
}

/* feed_byte over a run plain_run measured, in one step. */
static void feed_run(struct imap_framer *f, const char *p, size_t k, bool private_data)
{
    f->line_len += k;
    if (private_data)
        f->line_private = true;
    (void)count_bytes(f, k); /* within every limit: plain_run stopped short */
    size_t room = sizeof f->head - f->head_len, h = k < room ? k : room;
    memcpy(f->head + f->head_len, p, h);
    f->head_len += h;
    if (k >= sizeof f->tail) {
        memcpy(f->tail, p + k - sizeof f->tail, sizeof f->tail);
        f->tail_len = sizeof f->tail;
        return;
    }
    size_t keep = sizeof f->tail - k;
    if (f->tail_len > keep) {
        memmove(f->tail, f->tail + f->tail_len - keep, keep);
        f->tail_len = keep;
    }
    memcpy(f->tail + f->tail_len, p, k);
    f->tail_len += k;
}

int imap_framer_feed(struct imap_framer *f, const char *data, size_t len, bool private_data)
{
    size_t i = 0;
    while (i < len) {
        if (f->in_literal) {
            if (feed_literal(f, data, len, &i) != 0)
                return -1;
            continue;
        }
        size_t k = plain_run(f, data + i, len - i);
        if (k >= PLAIN_RUN_MIN) {
            feed_run(f, data + i, k, private_data);
            i += k;
            continue;
        }
        /* A short run, then the byte after it, one at a time (the short
         * run leaves every state as it was, so it is not measured again). */
        for (size_t end = i + k + 1 < len ? i + k + 1 : len; i < end;)
            if (feed_byte(f, data[i++], private_data) != 0)
                return -1;
    }
    return 0;
}

/* ---- masking of client lines ---------------------------------------- */

/* Length of the token starting at s (up to a space or line end). */
static size_t token_len(const char *s, size_t len)
{
    size_t n = 0;
    while (n < len && s[n] != ' ' && s[n] != '\r' && s[n] != '\n')
        n++;
    return n;
}

void imap_mask_client_line(const char *head, size_t head_len, uint64_t line_len, bool private_line, char *out,
                           size_t outlen)
{
    size_t shown = head_len;
    while (shown && (head[shown - 1] == '\n' || head[shown - 1] == '\r'))
        shown--;
    size_t tag = token_len(head, shown);
    size_t cmd_at = tag < shown ? tag + 1 : shown;
    size_t cmd = token_len(head + cmd_at, shown - cmd_at);
    bool login = cmd == 5 && strncasecmp(head + cmd_at, "LOGIN", 5) == 0;
    bool auth = cmd == 12 && strncasecmp(head + cmd_at, "AUTHENTICATE", 12) == 0;
    if (login || auth) {
        size_t keep = cmd_at + cmd;
        const char *what = "[credentials masked]";
        if (auth) {
            size_t mech_at = keep < shown ? keep + 1 : shown;
            keep = mech_at + token_len(head + mech_at, shown - mech_at);
            what = keep < shown ? "[initial response masked]" : "";
        }
        if (keep > 100)
            keep = 100;
        char shown[420];
        imap_escape_text(head, keep, shown, sizeof shown);
        snprintf(out, outlen, "%s%s%s", shown, *what ? " " : "", what);
        return;
    }
    if (private_line) {
        snprintf(out, outlen, "[secret masked, %llu bytes]", (unsigned long long)line_len);
        return;
    }
    char text[1100];
    imap_escape_text(head, shown, text, sizeof text);
    snprintf(out, outlen, "%s%s", text, line_len > head_len ? " ..." : "");
}

/* ======================================================================
 * The transport.
 * ==================================================================== */

static void ns_fail(struct netstream *ns, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ns_fail(struct netstream *ns, const char *fmt, ...)
{
    if (ns->failed)
        return;
    ns->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ns->reason, sizeof ns->reason, fmt, ap);
    va_end(ap);
}

static void fail_closed(struct netstream *ns)
{
    if (ns->bye[0])
        ns_fail(ns, "connection closed by server (BYE %s)", ns->bye);
    else
        ns_fail(ns, "connection closed by server");
}

static void deadline_in(struct timespec *d, int seconds)
{
    clock_gettime(CLOCK_MONOTONIC, d);
    d->tv_sec += seconds;
}

static long ms_left(const struct timespec *d)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (long)(d->tv_sec - now.tv_sec) * 1000 + (d->tv_nsec - now.tv_nsec) / 1000000;
    return ms < 0 ? 0 : ms;
}

/* Wait for events on the socket. 1: ready; 0: the deadline passed (reason
 * set); -1: cancelled or poll failed (reason set). */
static int ns_wait(struct netstream *ns, short events, const struct timespec *deadline)
{
    for (;;) {
        if (atomic_load(&ns->cancelled)) {
            ns_fail(ns, "cancelled");
            return -1;
        }
        long ms = ms_left(deadline);
        if (ms == 0) {
            ns_fail(ns, "timed out after %d s without progress", ns->timeout_s);
            return 0;
        }
        struct pollfd p[2] = {{.fd = ns->fd, .events = events}, {.fd = ns->cancel_fd, .events = POLLIN}};
        int r = poll(p, 2, ms > 60000 ? 60000 : (int)ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ns_fail(ns, "poll: %s", strerror(errno));
            return -1;
        }
        if (p[1].revents & POLLIN) {
            ns_fail(ns, "cancelled");
            return -1;
        }
        if (r > 0 && p[0].revents)
            return 1;
    }
}

/* After SSL_read/SSL_write returned n <= 0: the event to wait for, or 0
 * when the connection is finished (reason set). */
static short ssl_want(struct netstream *ns, int n, int saved_errno)
{
    int e = SSL_get_error(ns->ssl, n);
    switch (e) {
    case SSL_ERROR_WANT_READ: return POLLIN;
    case SSL_ERROR_WANT_WRITE: return POLLOUT;
    case SSL_ERROR_ZERO_RETURN: fail_closed(ns); return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && (n == 0 || saved_errno == 0 || saved_errno == ECONNRESET || saved_errno == EPIPE))
            fail_closed(ns);
        else if (ERR_peek_error() == 0)
            ns_fail(ns, "%s", strerror(saved_errno));
        else
            ns_fail(ns, "TLS error: %s", ERR_reason_error_string(ERR_peek_error()));
        return 0;
    default: {
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
        if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            fail_closed(ns); /* cut without close_notify: a plain EOF to the user */
            return 0;
        }
#endif
        const char *r = ERR_reason_error_string(ERR_peek_error());
        ns_fail(ns, "TLS error: %s", r ? r : "unknown");
        return 0;
    }
    }
}

/* One read attempt: >0 bytes, or 0 with *want set to the event to wait
 * for (0 = failed, reason set). */
static ssize_t read_once(struct netstream *ns, void *buf, size_t count, short *want)
{
    if (ns->ssl) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(ns->ssl, buf, count > INT_MAX ? INT_MAX : (int)count);
        if (n > 0)
            return n;
        *want = ssl_want(ns, n, errno);
        return 0;
    }
    for (;;) {
        ssize_t n = recv(ns->fd, buf, count, 0);
        if (n > 0)
            return n;
        if (n == 0) {
            fail_closed(ns);
            *want = 0;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *want = POLLIN;
        } else if (errno == ECONNRESET) {
            fail_closed(ns);
            *want = 0;
        } else {
            ns_fail(ns, "%s", strerror(errno));
            *want = 0;
        }
        return 0;
    }
}

static ssize_t write_once(struct netstream *ns, const void *buf, size_t count, short *want)
{
    if (ns->ssl) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_write(ns->ssl, buf, count > INT_MAX ? INT_MAX : (int)count);
        if (n > 0)
            return n;
        *want = ssl_want(ns, n, errno);
        return 0;
    }
    for (;;) {
        ssize_t n = send(ns->fd, buf, count, MSG_NOSIGNAL);
        if (n > 0)
            return n;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            *want = POLLOUT;
        } else if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            fail_closed(ns);
            *want = 0;
        } else {
            ns_fail(ns, "%s", n < 0 ? strerror(errno) : "write returned 0");
            *want = 0;
        }
        return 0;
    }
}

/* One read (out == NULL) or write (in == NULL) of at most count bytes,
 * waiting until *deadline: > 0 bytes moved, or -1 with the reason
 * recorded. */
static ssize_t ns_transfer_until(struct netstream *ns, void *out, const void *in, size_t count,
                                 const struct timespec *deadline)
{
    if (ns->failed || atomic_load(&ns->cancelled)) {
        ns_fail(ns, "cancelled");
        return -1;
    }
    if (count == 0)
        return 0;
    for (;;) {
        short want = 0;
        ssize_t n = out ? read_once(ns, out, count, &want) : write_once(ns, in, count, &want);
        if (n > 0)
            return n;
        if (want == 0 || ns_wait(ns, want, deadline) != 1)
            return -1;
    }
}

/* The same with a deadline reset by this call: any progress counts. */
static ssize_t ns_transfer(struct netstream *ns, void *out, const void *in, size_t count)
{
    struct timespec deadline;
    deadline_in(&deadline, ns->timeout_s);
    return ns_transfer_until(ns, out, in, count, &deadline);
}

/* A read through COMPRESS=DEFLATE: > 0 inflated bytes, or -1 with the
 * reason recorded. The deadline is reset only by inflated output, so a
 * server sending compressed nothing (empty blocks) times out like a silent
 * one. */
static ssize_t ns_read_inflated(struct netstream *ns, void *buf, size_t count)
{
    struct timespec deadline;
    deadline_in(&deadline, ns->timeout_s);
    for (;;) {
        ssize_t n = deflate_layer_inflate(ns->z, buf, count);
        if (n > 0)
            return n;
        if (n < 0) {
            ns_fail(ns, "%s", deflate_layer_error(ns->z));
            return -1;
        }
        size_t space = 0;
        unsigned char *in = deflate_layer_in_space(ns->z, &space);
        ssize_t got = ns_transfer_until(ns, in, NULL, space, &deadline);
        if (got <= 0)
            return -1;
        ns->rx += (uint64_t)got;
        deflate_layer_in_added(ns->z, (size_t)got);
    }
}

/* A write through COMPRESS=DEFLATE: all of buf deflated and sent (count),
 * or -1 with the reason recorded. */
static ssize_t ns_write_deflated(struct netstream *ns, const void *buf, size_t count)
{
    deflate_layer_begin_out(ns->z, buf, count);
    const unsigned char *piece = NULL;
    ssize_t n;
    while ((n = deflate_layer_next_out(ns->z, &piece)) > 0) {
        for (size_t done = 0; done < (size_t)n;) {
            ssize_t w = ns_transfer(ns, NULL, piece + done, (size_t)n - done);
            if (w <= 0)
                return -1;
            done += (size_t)w;
            ns->tx += (uint64_t)w;
        }
    }
    if (n < 0) {
        ns_fail(ns, "%s", deflate_layer_error(ns->z));
        return -1;
    }
    return (ssize_t)count;
}

static ssize_t ns_read(mailstream_low *low, void *buf, size_t count)
{
    struct netstream *ns = low->data;
    ssize_t n;
    if (ns->z) {
        n = ns_read_inflated(ns, buf, count);
    } else {
        n = ns_transfer(ns, buf, NULL, count);
        if (n > 0)
            ns->rx += (uint64_t)n;
    }
    if (n <= 0)
        return n;
    if (!ns->raw && imap_framer_feed(&ns->rx_framer, buf, (size_t)n, false) != 0) {
        ns_fail(ns, "%s", ns->rx_framer.reason);
        return -1;
    }
    return n;
}

static ssize_t ns_write(mailstream_low *low, const void *buf, size_t count)
{
    struct netstream *ns = low->data;
    ssize_t n;
    if (ns->z) {
        n = ns_write_deflated(ns, buf, count);
    } else {
        n = ns_transfer(ns, NULL, buf, count);
        if (n > 0)
            ns->tx += (uint64_t)n;
    }
    if (n <= 0)
        return n;
    /* libetpan turns privacy off (0) while it writes a password. */
    if (!ns->raw)
        imap_framer_feed(&ns->tx_framer, buf, (size_t)n, low->privacy == 0 || ns->secret);
    return n;
}

static int ns_close(mailstream_low *low)
{
    struct netstream *ns = low->data;
    if (ns->fd >= 0) {
        close(ns->fd);
        ns->fd = -1;
    }
    return 0;
}

static int ns_get_fd(mailstream_low *low)
{
    struct netstream *ns = low->data;
    return ns->fd;
}

static void ns_free(mailstream_low *low)
{
    struct netstream *ns = low->data;
    if (ns) {
        SSL_free(ns->ssl);
        if (ns->fd >= 0)
            close(ns->fd);
        if (ns->cancel_fd >= 0)
            close(ns->cancel_fd);
        free(ns->tls_info);
        if (ns->z) {
            uint64_t raw_in, plain_in, raw_out, plain_out;
            deflate_layer_counts(ns->z, &raw_in, &plain_in, &raw_out, &plain_out);
            log_msg(LOG_TRACE, "COMPRESS: received %llu bytes for %llu, sent %llu for %llu",
                    (unsigned long long)raw_in, (unsigned long long)plain_in, (unsigned long long)raw_out,
                    (unsigned long long)plain_out);
            deflate_layer_free(&ns->z);
        }
        explicit_bzero(&ns->tx_framer, sizeof ns->tx_framer);
        free(ns);
    }
    low->data = NULL;
    free(low);
}

static void ns_cancel_low(mailstream_low *low)
{
    netstream_cancel(low->data);
}

static carray *ns_cert_chain(mailstream_low *low)
{
    struct netstream *ns = low->data;
    if (!ns->ssl)
        return NULL;
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ns->ssl);
    if (!chain)
        return NULL;
    carray *a = carray_new(4);
    if (!a)
        return NULL;
    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        int len = i2d_X509(x, NULL);
        MMAPString *s = len > 0 ? mmap_string_sized_new((size_t)len) : NULL;
        if (!s)
            continue;
        unsigned char *p = (unsigned char *)s->str;
        i2d_X509(x, &p);
        s->len = (size_t)len;
        if (carray_add(a, s, NULL) < 0)
            mmap_string_free(s);
    }
    return a;
}

static mailstream_low_driver netstream_driver = {
    .mailstream_read = ns_read,
    .mailstream_write = ns_write,
    .mailstream_close = ns_close,
    .mailstream_get_fd = ns_get_fd,
    .mailstream_free = ns_free,
    .mailstream_cancel = ns_cancel_low,
    .mailstream_get_cancel = NULL,
    .mailstream_get_certificate_chain = ns_cert_chain,
    .mailstream_setup_idle = NULL,
    .mailstream_unsetup_idle = NULL,
    .mailstream_interrupt_idle = NULL,
};

/* ---- trace ----------------------------------------------------------- */

static size_t shown_len(const struct imap_framer *f)
{
    size_t n = f->head_len;
    while (n && (f->head[n - 1] == '\n' || f->head[n - 1] == '\r'))
        n--;
    return n;
}

static void rx_line(void *ctx, const struct imap_framer *f, bool literal, uint64_t literal_len)
{
    struct netstream *ns = ctx;
    size_t n = shown_len(f);
    if (f->response_start && n >= 5 && strncasecmp(f->head, "* BYE", 5) == 0) {
        size_t skip = n > 6 ? 6 : n;
        imap_escape_text(f->head + skip, n - skip, ns->bye, sizeof ns->bye);
    }
    if (log_verbosity < LOG_TRACE || f->line_len == 0)
        return;
    if (n > 0) {
        char text[1100];
        imap_escape_text(f->head, n, text, sizeof text);
        log_msg(LOG_TRACE, "S: %s%s", text, f->line_len > f->head_len ? " ..." : "");
    }
    if (literal)
        log_msg(LOG_TRACE, "S: <literal, %llu bytes>", (unsigned long long)literal_len);
}

static void tx_line(void *ctx, const struct imap_framer *f, bool literal, uint64_t literal_len)
{
    (void)ctx;
    if (log_verbosity < LOG_TRACE)
        return;
    size_t n = shown_len(f);
    if (n > 0) {
        char shown[512];
        imap_mask_client_line(f->head, f->head_len, f->line_len, f->line_private, shown, sizeof shown);
        log_msg(LOG_TRACE, "C: %s", shown);
    }
    if (literal)
        log_msg(LOG_TRACE, "C: <literal, %llu bytes%s>", (unsigned long long)literal_len,
                f->line_private ? ", masked" : "");
}

/* ---- connect --------------------------------------------------------- */

static void describe_addr(const struct addrinfo *ai, char *out, size_t outlen)
{
    if (getnameinfo(ai->ai_addr, ai->ai_addrlen, out, (socklen_t)outlen, NULL, 0, NI_NUMERICHOST) != 0)
        snprintf(out, outlen, "?");
}

/* Connect one address within timeout_s. Returns the fd or -1 with why. */
static int connect_one(const struct addrinfo *ai, int timeout_s, char *why, size_t whylen)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return fd;
    if (errno != EINPROGRESS) {
        snprintf(why, whylen, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    struct timespec deadline;
    deadline_in(&deadline, timeout_s);
    for (;;) {
        long ms = ms_left(&deadline);
        if (ms == 0) {
            snprintf(why, whylen, "timed out after %d s", timeout_s);
            close(fd);
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int r = poll(&p, 1, ms > 60000 ? 60000 : (int)ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, whylen, "poll: %s", strerror(errno));
            close(fd);
            return -1;
        }
        if (r > 0)
            break;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
        soerr = errno;
    if (soerr != 0) {
        snprintf(why, whylen, "%s", strerror(soerr));
        close(fd);
        return -1;
    }
    return fd;
}

static int connect_any(const char *name, int port, int timeout_s, int *out_fd, struct ms_error *err)
{
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(name, portstr, &hints, &res);
    if (g != 0)
        return ms_error_set(err, MS_ENET, "cannot resolve %s: %s", name,
                            g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
    char why[200] = "no address", addr[INET6_ADDRSTRLEN + 8] = "";
    int tried = 0, fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        tried++;
        describe_addr(ai, addr, sizeof addr);
        fd = connect_one(ai, timeout_s, why, sizeof why);
    }
    freeaddrinfo(res);
    if (fd < 0) {
        if (tried > 1)
            return ms_error_set(err, MS_ENET, "cannot connect to %s port %d (%d addresses tried, last %s): %s", name,
                                port, tried, addr, why);
        return ms_error_set(err, MS_ENET, "cannot connect to %s port %d: %s", name, port, why);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    *out_fd = fd;
    return MS_OK;
}

int netstream_connect(const char *host, int port, int timeout_s, struct netstream **out, struct ms_error *err)
{
    *out = NULL;
    /* SSL writes to a closed peer through write(): no MSG_NOSIGNAL there. */
    signal(SIGPIPE, SIG_IGN);
    if (timeout_s <= 0)
        timeout_s = 60;
    char name[256];
    util_host_unbracket(host, name, sizeof name);

    struct netstream *ns = calloc(1, sizeof *ns);
    if (!ns)
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    ns->fd = -1;
    ns->timeout_s = timeout_s;
    ns->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    atomic_init(&ns->cancelled, false);
    ns->rx_framer.on_line = rx_line;
    ns->rx_framer.ctx = ns;
    ns->tx_framer.on_line = tx_line;
    ns->tx_framer.ctx = ns;
    imap_framer_init(&ns->rx_framer, true);
    imap_framer_init(&ns->tx_framer, false);
    ns->low = mailstream_low_new(ns, &netstream_driver);
    if (ns->cancel_fd < 0 || !ns->low) {
        if (ns->cancel_fd >= 0)
            close(ns->cancel_fd);
        free(ns->low);
        free(ns);
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    int rc = connect_any(name, port, timeout_s, &ns->fd, err);
    if (rc != MS_OK) {
        netstream_destroy(ns);
        return rc;
    }
    log_msg(LOG_VERBOSE, "connected to %s port %d", name, port);
    *out = ns;
    return MS_OK;
}

mailstream_low *netstream_low(struct netstream *ns)
{
    return ns->low;
}

void netstream_destroy(struct netstream *ns)
{
    if (!ns)
        return;
    mailstream_low *low = ns->low;
    ns_close(low);
    ns_free(low);
}

int netstream_start_tls(struct netstream *ns, struct tls_client *tls, const char *host, struct ms_error *err)
{
    if (ns->failed)
        return ms_error_set(err, MS_ENET, "%s", ns->reason);
    if (ns->ssl)
        return ms_error_set(err, MS_ENET, "TLS is already active");
    SSL *ssl = NULL;
    int rc = tls_handshake(tls, ns->fd, host, ns->timeout_s, ns->cancel_fd, &ssl, err);
    if (rc != MS_OK) {
        ns_fail(ns, "%s", err ? err->msg : "TLS handshake failed");
        return rc;
    }
    ns->ssl = ssl;
    free(ns->tls_info);
    ns->tls_info = tls_describe(ssl);
    /* The plaintext phase is over: start framing afresh. */
    imap_framer_init(&ns->rx_framer, true);
    imap_framer_init(&ns->tx_framer, false);
    log_msg(LOG_VERBOSE, "TLS: %s", ns->tls_info ? ns->tls_info : "?");
    return MS_OK;
}

bool netstream_tls_compressed(const struct netstream *ns)
{
    return ns->ssl && SSL_get_current_compression(ns->ssl) != NULL;
}

int netstream_start_compress(struct netstream *ns, const void *pending, size_t pending_len, struct ms_error *err)
{
    if (ns->failed)
        return ms_error_set(err, MS_ENET, "%s", ns->reason);
    if (ns->z)
        return ms_error_set(err, MS_ENET, "COMPRESS is already active");
    ns->z = deflate_layer_new();
    if (!ns->z || deflate_layer_in_push(ns->z, pending, pending_len) != 0) {
        deflate_layer_free(&ns->z);
        ns_fail(ns, "out of memory");
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    /* Bytes that came with the OK went through the framer as they were
     * (compressed); the IMAP text starts afresh after that line. */
    imap_framer_init(&ns->rx_framer, true);
    ns->rx_framer.greeting_seen = true;
    return MS_OK;
}

bool netstream_compressing(const struct netstream *ns)
{
    return ns && ns->z != NULL;
}

const char *netstream_reason(const struct netstream *ns)
{
    return ns->reason;
}

bool netstream_failed(const struct netstream *ns)
{
    return ns->failed;
}

const char *netstream_bye_text(const struct netstream *ns)
{
    return ns->bye[0] ? ns->bye : NULL;
}

uint64_t netstream_bytes_received(const struct netstream *ns)
{
    return ns->rx;
}

uint64_t netstream_bytes_sent(const struct netstream *ns)
{
    return ns->tx;
}

void netstream_set_timeout(struct netstream *ns, int timeout_s)
{
    ns->timeout_s = timeout_s > 0 ? timeout_s : 60;
}

void netstream_set_raw(struct netstream *ns, bool on)
{
    ns->raw = on;
}

void netstream_set_secret(struct netstream *ns, bool on)
{
    ns->secret = on;
}

void netstream_cancel(struct netstream *ns)
{
    if (!ns)
        return;
    atomic_store(&ns->cancelled, true);
    uint64_t one = 1;
    ssize_t r = write(ns->cancel_fd, &one, sizeof one);
    (void)r;
}

bool netstream_readable_now(const struct netstream *ns)
{
    if (!ns || ns->fd < 0)
        return false;
    if (ns->z && deflate_layer_pending(ns->z))
        return true;
    if (ns->ssl && SSL_has_pending(ns->ssl))
        return true;
    struct pollfd p = {.fd = ns->fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

const char *netstream_tls_info(const struct netstream *ns)
{
    return ns->ssl && ns->tls_info ? ns->tls_info : "none";
}

/* ======================================================================
 * Pure IMAP helpers.
 * ==================================================================== */

void imap_escape_text(const char *text, size_t len, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    if (outlen == 0)
        return;
    size_t full = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        full += (c >= 0x20 && c < 0x7f && c != '\\') ? 1 : 4;
    }
    size_t reserve = full < outlen ? 1 : 4; /* the NUL, and "..." if cut */
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        bool plain = c >= 0x20 && c < 0x7f && c != '\\';
        size_t need = plain ? 1 : 4;
        if (o + need + reserve > outlen) {
            if (o + 4 <= outlen) {
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
}

static size_t decimal_len(uint32_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

static size_t range_chars(const struct uid_range *r)
{
    return decimal_len(r->first) + (r->last != r->first ? 1 + decimal_len(r->last) : 0);
}

size_t imap_uid_batch(const uint32_t *uids, size_t n, size_t max_uids, size_t max_chars, struct uid_range *ranges,
                      size_t max_ranges, size_t *nranges)
{
    size_t i = 0, taken = 0, chars = 0, nr = 0;
    *nranges = 0;
    while (i < n) {
        uint32_t u = uids[i];
        if (u == 0 || (nr > 0 && u <= ranges[nr - 1].last)) {
            i++; /* 0 is no UID; duplicates (or disorder) add nothing */
            continue;
        }
        if (taken >= max_uids)
            break;
        if (nr > 0 && u == ranges[nr - 1].last + 1) {
            struct uid_range grown = {ranges[nr - 1].first, u};
            size_t extra = range_chars(&grown) - range_chars(&ranges[nr - 1]);
            if (chars + extra > max_chars)
                break;
            ranges[nr - 1].last = u;
            chars += extra;
        } else {
            struct uid_range r = {u, u};
            size_t extra = range_chars(&r) + (nr > 0 ? 1 : 0);
            if (nr >= max_ranges || (nr > 0 && chars + extra > max_chars))
                break;
            ranges[nr++] = r;
            chars += extra;
        }
        taken++;
        i++;
    }
    *nranges = nr;
    return i;
}

void imap_uid_list_sort_unique(struct imap_uid_list *l)
{
    if (l->n < 2)
        return;
    qsort(l->v, l->n, sizeof *l->v, util_cmp_u32);
    size_t o = 1;
    for (size_t i = 1; i < l->n; i++)
        if (l->v[i] != l->v[o - 1])
            l->v[o++] = l->v[i];
    l->n = o;
}

int imap_uid_list_add_range(struct imap_uid_list *l, uint32_t first, uint32_t last, uint32_t max_uid,
                            size_t max_total)
{
    uint32_t top = max_uid ? max_uid : UINT32_MAX;
    if (first == 0)
        first = top;
    if (last == 0)
        last = top;
    if (first > last) {
        uint32_t t = first;
        first = last;
        last = t;
    }
    if (first > top)
        return 0; /* entirely above the clip */
    if (last > top)
        last = top;
    uint64_t count = (uint64_t)last - first + 1;
    if (count > max_total || l->n + count > max_total) {
        /* Overlapping reports may still fit once duplicates are gone. */
        imap_uid_list_sort_unique(l);
        if (count > max_total || l->n + count > max_total)
            return -2;
    }
    if (l->n + count > l->cap) {
        size_t ncap = l->cap ? l->cap : 64;
        while (ncap < l->n + count)
            ncap *= 2;
        if (ncap > max_total)
            ncap = max_total;
        uint32_t *nv = realloc(l->v, ncap * sizeof *nv);
        if (!nv)
            return -1;
        l->v = nv;
        l->cap = ncap;
    }
    for (uint64_t u = first; u <= last; u++)
        l->v[l->n++] = (uint32_t)u;
    return 0;
}

void imap_uid_list_free(struct imap_uid_list *l)
{
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}
