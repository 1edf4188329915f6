/* SPDX-License-Identifier: MIT */
/*
 * netstream.h: mailsync's own libetpan transport (a mailstream_low driver).
 *
 * libetpan reads and writes through a `struct mailstream_low_driver`; ours
 * sits on a non-blocking socket plus an optional OpenSSL SSL* (sync/net/tls.c)
 * and is the guard rail between the server and libetpan:
 *   - connect: getaddrinfo, every address tried, each with a timeout;
 *   - every read and write has a deadline of `timeout` seconds that any
 *     progress resets; EOF, timeout, reset or cancel make the call return
 *     -1 (libetpan then reports MAILIMAP_ERROR_STREAM) and record a reason
 *     for the user ("connection closed by server", "timed out after 60 s
 *     without progress"); after the first failure every call fails at once;
 *   - it follows the IMAP framing of what the server sends (lines, and
 *     literals announced by {N} at a line end) and fails the read before
 *     libetpan sees a literal above the cap, a size with too many digits
 *     (libetpan wraps sizes at 2^32), an over-long line or response;
 *   - with log_verbosity >= 2 it logs both directions line by line, server
 *     text escaped and bounded, literal contents summarised, and secrets
 *     masked (LOGIN arguments, AUTHENTICATE lines, whatever libetpan writes
 *     with privacy off);
 *   - it counts bytes for progress, ignores SIGPIPE (MSG_NOSIGNAL) and can
 *     be cancelled from another thread;
 *   - after COMPRESS DEFLATE it inflates what it reads and deflates what it
 *     writes (sync/net/deflate_layer.c), between TLS and the framer.
 *
 * Ownership: netstream_connect() makes a netstream together with its
 * mailstream_low. Until the low is handed to mailstream_new(), free it with
 * netstream_destroy(); afterwards the mailstream owns it, and
 * mailstream_close() frees the netstream too (the pointer is then dangling).
 */
#ifndef MAILSYNC_NETSTREAM_H
#define MAILSYNC_NETSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libetpan/libetpan.h>

#include "sync/error.h"
#include "sync/net/tls.h"

/* Largest literal accepted where a message body is expected (BODY[...],
 * RFC822...), and anywhere else. */
#define MAILSYNC_MAX_LITERAL (1ull << 30)
#define MAILSYNC_MAX_SMALL_LITERAL (1ull << 20)
/* Longest line (literal contents not counted). Big enough for a
 * "* SEARCH" listing a million UIDs, small enough not to matter. */
#define MAILSYNC_MAX_LINE (16ull << 20)
/* Most bytes libetpan may have to keep for one untagged response, and for
 * all responses up to a tagged one (body literals excluded: they stream). */
#define MAILSYNC_MAX_RESPONSE (64ull << 20)
#define MAILSYNC_MAX_COMMAND_RESPONSES (512ull << 20)

struct netstream;

/* Connect to host:port over TCP. host may be a name or an address literal
 * ("[::1]" allowed). Each address getaddrinfo returns gets timeout_s
 * seconds. On failure err says why (MS_ENET) and *out is NULL. */
int netstream_connect(const char *host, int port, int timeout_s, struct netstream **out, struct ms_error *err);

/* The libetpan driver object to give to mailstream_new(). */
mailstream_low *netstream_low(struct netstream *ns);

/* Free a netstream whose low was never handed to a mailstream. */
void netstream_destroy(struct netstream *ns);

/* Run the TLS handshake on the connection (implicit TLS right after
 * connect, or after a STARTTLS OK once libetpan's buffers are checked
 * empty). Later reads and writes go through TLS. */
int netstream_start_tls(struct netstream *ns, struct tls_client *tls, const char *host, struct ms_error *err);

/* Switch both directions to COMPRESS=DEFLATE (RFC 4978; the codec is
 * sync/net/deflate_layer.c), after the server's OK to COMPRESS DEFLATE.
 * pending[0..pending_len) are bytes that arrived after the OK and sit
 * unread in libetpan's buffer: they are compressed already, so the caller
 * hands them over here and empties that buffer. From now on reads are
 * inflated and writes deflated below the framer; a broken stream from the
 * server fails the read with a reason (MS_ENET to the caller). */
int netstream_start_compress(struct netstream *ns, const void *pending, size_t pending_len, struct ms_error *err);
/* Whether COMPRESS=DEFLATE is active. */
bool netstream_compressing(const struct netstream *ns);
/* Whether TLS itself compresses (mailsync's TLS context forbids it; RFC
 * 4978 says not to stack both). */
bool netstream_tls_compressed(const struct netstream *ns);

/* Why the last read or write failed ("" if none has). */
const char *netstream_reason(const struct netstream *ns);
bool netstream_failed(const struct netstream *ns);
/* The text of the last "* BYE" the server sent (escaped), or NULL. */
const char *netstream_bye_text(const struct netstream *ns);

/* Counters of bytes received / sent on the wire since connect (TLS
 * payload: IMAP bytes, compressed once COMPRESS is active). */
uint64_t netstream_bytes_received(const struct netstream *ns);
uint64_t netstream_bytes_sent(const struct netstream *ns);

/* Seconds without progress before a read/write gives up (<= 0: 60). */
void netstream_set_timeout(struct netstream *ns, int timeout_s);

/* Not IMAP (POP3): no IMAP framing checks or trace; the caller bounds its
 * own reads. */
void netstream_set_raw(struct netstream *ns, bool on);

/* While on, every byte written is a secret (masked in the trace). */
void netstream_set_secret(struct netstream *ns, bool on);

/* Make any pending and future read/write fail ("cancelled"). Safe to call
 * from another thread. */
void netstream_cancel(struct netstream *ns);

/* Whether bytes from the server can be read without waiting (decrypted
 * and pending, or on the socket). */
bool netstream_readable_now(const struct netstream *ns);

/* TLS description (tls_describe) or "none". Owned by the netstream. */
const char *netstream_tls_info(const struct netstream *ns);

/* ---- pure parts, exposed for tests ---------------------------------- */

/* Follows IMAP framing over a byte stream, one direction. */
struct imap_framer {
    bool check_limits; /* server -> client: enforce the caps above */
    bool in_literal;
    uint64_t literal_left;
    uint64_t line_len;   /* bytes of the current line so far */
    bool response_start; /* the current line starts a response */
    uint64_t response_bytes;
    uint64_t command_bytes;
    bool line_private; /* (sending) some byte of this line was secret */
    /* Start of the current line, for status detection and the trace. */
    char head[256];
    size_t head_len;
    /* Last bytes of the line before a '{', to tell body literals apart. */
    char tail[24];
    size_t tail_len;
    char brace_ctx[24];
    size_t brace_ctx_len;
    /* {digits} scanner */
    int brace_state; /* 0 none, 1 in digits, 2 after '}' (only blanks since) */
    unsigned brace_digits;
    uint64_t brace_value;
    uint64_t brace_last; /* value of the last complete {N} */
    bool brace_body;     /* it followed a body section */
    char reason[200];    /* why feeding failed */
    /* Guards against libetpan 1.9.4's NULL dereferences (see
     * refuse_libetpan_traps() in netstream.c). */
    bool greeting_seen;
    int greeting_code;   /* 0 before '[', 1 inside the code, 2 after ']' */
    int perm_state;      /* validating a [PERMANENTFLAGS (...)] list */
    /* Following a response's first line for "tag|*|+ ... [ALERT]" without
     * text (alert_step() in netstream.c): state, and the token or code so far. */
    int alert_state;
    unsigned alert_len;
    char alert_word[8];
    /* Called for each complete line (head, head_len, full length, whether
     * a literal of literal_len bytes follows, private) and may be NULL. */
    void (*on_line)(void *ctx, const struct imap_framer *f, bool literal_follows, uint64_t literal_len);
    void *ctx;
};

void imap_framer_init(struct imap_framer *f, bool check_limits);

/* Feed bytes (private: they are secrets, for the trace). Returns 0, or -1
 * with f->reason set when the server broke a limit (only if check_limits).
 * After -1 the framer must not be fed again. */
int imap_framer_feed(struct imap_framer *f, const char *data, size_t len, bool private_data);

/* The text to show for a line sent by the client (head of f, length
 * line_len) with secrets masked: LOGIN arguments, AUTHENTICATE initial
 * responses, and whole lines that were private and are not a command.
 * Writes a NUL-terminated string into out. */
void imap_mask_client_line(const char *head, size_t head_len, uint64_t line_len, bool private_line, char *out,
                           size_t outlen);

/* ---- pure IMAP helpers used by imap_*.c, exposed for tests ------------- */

struct uid_range {
    uint32_t first, last;
};

/* Take one batch from sorted uids[0..n) (duplicates and 0 are skipped):
 * at most max_uids UIDs, at most max_ranges ranges, and a set text
 * ("1:5,9,12:14") of at most max_chars characters. Fills ranges and
 * *nranges; returns how many entries of uids were consumed (> 0 if n > 0). */
size_t imap_uid_batch(const uint32_t *uids, size_t n, size_t max_uids, size_t max_chars, struct uid_range *ranges,
                      size_t max_ranges, size_t *nranges);

/* A growing, malloc'd list of UIDs (e.g. from VANISHED ranges). */
struct imap_uid_list {
    uint32_t *v;
    size_t n, cap;
};

/* Add the UIDs first..last (either order; 0, i.e. '*', stands for the top)
 * clipped to 1..max_uid (max_uid 0: no clip). Returns 0; -1 out of memory;
 * -2 if the list, made unique, plus the whole new range would exceed
 * max_total (it is then left sorted and unique, without this range).
 * Server input: a single range may be 2^32 wide. */
int imap_uid_list_add_range(struct imap_uid_list *l, uint32_t first, uint32_t last, uint32_t max_uid,
                            size_t max_total);

/* Sort ascending and drop duplicates. */
void imap_uid_list_sort_unique(struct imap_uid_list *l);

/* Free the entries; the list is empty (and reusable) afterwards. */
void imap_uid_list_free(struct imap_uid_list *l);

/* Copy server text for a message to the user, thread-safe: printable
 * ASCII kept, other bytes as \xNN, cut with "..." to fit out. */
void imap_escape_text(const char *text, size_t len, char *out, size_t outlen);

#endif
