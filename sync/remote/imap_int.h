/* SPDX-License-Identifier: MIT */
/*
 * imap_int.h: what the files of the IMAP side share, private to sync/remote/imap_*.c.
 *
 * The public API is imap.h. The protocol code is split by concern:
 *   imap_session.c  the session: connect, TLS/STARTTLS, capabilities,
 *                   LOGIN/AUTHENTICATE, logout, errors, "ready for a command"
 *   imap_fetch.c    the FETCH machinery: streamed bodies, flag listings,
 *                   identities, reading a tagged answer
 *   imap_status.c   LIST, SELECT/EXAMINE, STATUS, LIST+STATUS pipelined, ENABLE
 *   imap_qresync.c  CONDSTORE/QRESYNC: SELECT (QRESYNC), EXAMINEs sent ahead,
 *                   CHANGEDSINCE, the UID SEARCH listing
 *   imap_mailbox.c  changes and mailbox commands: STORE, EXPUNGE, COPY, MOVE,
 *                   APPEND, CREATE, SEARCH BEFORE, NOTIFY, IDLE
 * Nothing outside sync/remote/ includes this header.
 */
#ifndef MAILSYNC_IMAP_INT_H
#define MAILSYNC_IMAP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libetpan/libetpan.h>

#include "sync/error.h"
#include "sync/net/netstream.h"
#include "sync/net/tls.h"
#include "sync/remote/imap.h"

#define FETCH_BATCH_UIDS 500 /* UIDs per command: UID FETCH, and the UID set commands of imap_mailbox.c */
/* UIDs per UID FETCH of bodies: each command costs a round trip before
 * its first byte, so small messages come in big commands (the engine's
 * own cut, deliver.c's BATCH_MESSAGES, is the same; bytes cut it sooner) */
#define FETCH_BODY_UIDS 4096
#define FETCH_SET_CHARS 7000 /* keeps a UID FETCH line well under 8 KB */
#define IDENTITY_MAX 8192
#define FLAGS_MISSING (1u << 31) /* internal: a FETCH report without FLAGS */

enum body_mode { BODY_DISCARD, BODY_SINK, BODY_IDENTITY };

/* An EXAMINE (QRESYNC) sent by imap_examine_ahead(), its answer unread. */
struct queued_examine {
    int tag;
    char *name;
    uint32_t uidvalidity;
    uint64_t modseq;
    uint32_t fetch_from; /* a UID FETCH fetch_from:* went out behind it (the last one) */
    int fetch_tag;       /* its tag */
};

/* The changes a QRESYNC EXAMINE reported past the window its listing
 * holds whole ("mark all read" elsewhere): kept compact (8 bytes a
 * report, keywords apart) so that the windows below are taken from them
 * rather than listed again (imap_fetch_flags_changedsince). Sorted by UID
 * once the answer is read; one per session, for the folder selected. */
struct stash_entry {
    uint32_t uid;
    uint32_t seq;   /* arrival: of two reports of a UID the later one counts */
    uint32_t flags; /* FLAG_* */
};
struct stash_keywords { /* (uid and seq first, as above: one order for both) */
    uint32_t uid, seq;
    char *keywords;
};
struct imap_stash {
    bool ok;         /* false: a report it cannot hold came (no UID or no FLAGS, too many) */
    uint64_t modseq; /* the changes since this */
    uint32_t known_uidnext; /* UIDs from it up are new mail (sizes unknown here) */
    char *folder;    /* whose (imap_select of another folder frees it) */
    struct stash_entry *v;
    size_t n, cap;
    struct stash_keywords *kw; /* the entries with keywords, by UID */
    size_t nkw, capkw;
};
void imap_stash_free(struct imap_stash *st);
/* m into the stash (its keywords taken); false when it cannot be held (a
 * report without FLAGS, more than it holds, out of memory). */
bool imap_stash_add(struct imap_stash *st, struct remote_msg *m);
/* Sorted by UID, the latest report of each (once the answer is read). */
void imap_stash_seal(struct imap_stash *st);
/* Drop the entries of the sorted, unique v[0..n) (vanished UIDs). */
void imap_stash_drop(struct imap_stash *st, const uint32_t *v, size_t n);
/* Whether the stash can give the reports of first..last (since modseq):
 * sealed, of these changes, and no new mail among them (their sizes are
 * not in it). */
bool imap_stash_serves(const struct imap_stash *st, uint32_t first, uint32_t last, uint64_t modseq);
/* The reports of first..last (sorted, sizes 0: the caller knows these
 * messages) into *out; false if out of memory. */
bool imap_stash_take(const struct imap_stash *st, uint32_t first, uint32_t last, struct remote_msg **out, size_t *n);

/* One connection: made by imap_connect(), freed by imap_close(). */
struct imap_session {
    mailimap *imap;
    struct netstream *ns; /* owned by imap->imap_stream; NULL once closed */
    struct tls_client *tls;
    char *host;
    int port;
    int timeout;
    bool dead;
    bool logout_sent; /* imap_logout_start(): the answer is read at close */
    char *caps;
    char *tls_info;
    /* What the session-wide body handler does with body bytes now. */
    enum body_mode body_mode;
    struct fetch_ctx *fetch;
    bool enable_tried; /* ENABLE QRESYNC was sent (once per session) */
    bool qresync;      /* ...and the server confirmed it */
    bool id_tried;     /* ID (RFC 2971) was sent (once per session) */
    /* imap_examine_ahead(): EXAMINEs sent, answers not read yet, in the
     * order sent (ahead[ahead_next..nahead)). */
    struct queued_examine *ahead;
    size_t nahead, ahead_next;
    /* The folder a pipelined answer was read for while later EXAMINEs were
     * in flight: the server has another one selected by now, so a command
     * on this one EXAMINEs it again first (and checks its UIDVALIDITY). */
    char *reselect;
    uint32_t reselect_uv;
    size_t vanished_max; /* imap_set_vanished_max(); 0: VANISHED_MAX */
    struct imap_stash *stash; /* of the folder selected, or NULL */
    /* A window's flag listing sent ahead (imap_list_ahead: UID FETCH
     * lo:hi ... [(CHANGEDSINCE modseq)]), its answer not read yet: read by
     * the listing of that window, dropped by imap_ready() before any other
     * command. */
    struct window_ahead {
        bool on;
        int tag;
        uint32_t lo, hi;
        uint64_t modseq;
    } win_ahead;
    /* A sync run's listing sent behind the login (imap_listing_send_ahead)
     * and, once read, its answers for imap_status_and_list. */
    struct listing_ahead *ahead_listing;
    /* What the server said of itself (for imap_memo): the capabilities
     * of its greeting, and whether the login's OK brought the ones after
     * it; NULL/false when it did not say. */
    char *caps_greeting;
    bool caps_volunteered;
    char *memo; /* imap_memo() */
    bool compressing; /* COMPRESS DEFLATE is on */
    char text[204]; /* imap_server_text() */
};

/* One fetch: what libetpan's handlers (imap_fetch.c) fill or stream to,
 * and why it was stopped (rc, why). */
struct fetch_ctx {
    struct imap_session *s;
    const uint32_t *batch; /* sorted UIDs asked for in this command */
    size_t nbatch;
    bool *seen; /* per batch entry: a body/identity came back */
    int rc;     /* non-zero: abort (callback's code, or MS_ENET) */
    char why[200];
    /* imap_fetch_flags */
    uint32_t first, last;
    struct remote_msg *msgs;
    size_t nmsgs, capmsgs;
    size_t unplaced; /* reports without UID */
    size_t max;      /* 0, or: at most this many reports are kept; past it all
                        are dropped as they arrive and overflow is set (into
                        stash, when not NULL, they go compact) */
    bool overflow;
    struct imap_stash *stash;
    /* imap_fetch_bodies */
    const struct remote_body_sink *sink;
    bool body_started;
    /* imap_fetch_identity */
    void (*found)(void *ctx, uint32_t uid, uint64_t size, const char *message_id);
    /* imap_fetch_headers: the header section as the server sent it */
    void (*found_block)(void *ctx, uint32_t uid, uint64_t size, const char *block, size_t len);
    /* imap_fetch_identity_oid: with the server's id of each message */
    void (*found_oid)(void *ctx, uint32_t uid, uint64_t size, const char *message_id, const char *emailid);
    void *found_ctx;
    char idbuf[IDENTITY_MAX];
    size_t idlen;
    bool id_seen;
};

/* ---- imap_session.c: errors and the state before a command ---- */

/* The server's text of the last tagged response, escaped and bounded
 * (it is hostile input); valid until the next call. */
const char *imap_server_text(struct imap_session *s);
/* Close the connection now: after a fatal error nothing more may be sent
 * or trusted, and mailimap_free() must not try a LOGOUT. */
void imap_kill_stream(struct imap_session *s);
/* Fill err (MS_ENET) from fmt, close the connection; returns MS_ENET. */
int imap_fail_dead(struct imap_session *s, struct ms_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A libetpan call `what` returned r (not NO_ERROR): fatal codes end the
 * session (MS_ENET), a tagged NO is MS_EPARTIAL. */
int imap_fail_call(struct imap_session *s, int r, const char *what, struct ms_error *err);
/* MS_ENET if the session is no longer usable. */
int imap_check_alive(struct imap_session *s, struct ms_error *err);
/* Before a command: the session is usable, and no pipelined EXAMINE
 * answer is waiting (on_selected: and the folder the caller works on is
 * the one the server has selected). */
int imap_ready(struct imap_session *s, bool on_selected, struct ms_error *err);
/* One command whose text needs no quoting; untagged data is dropped and
 * the tagged state comes through *state. A libetpan error code. */
int imap_plain_command(struct imap_session *s, const char *text, int *state);
/* Write text to the stream (not flushed); 0 or -1. */
int imap_stream_puts(mailstream *st, const char *text);
/* name as an IMAP quoted string, malloc'd; NULL if out of memory. */
char *imap_quote_name(const char *name);
/* The name can be sent (not empty, no line break); shown: it escaped for
 * messages. */
int imap_folder_name_ok(const char *name, char *shown, size_t shown_len, struct ms_error *err);
/* imap_ready(s, false) and imap_folder_name_ok(name). */
int imap_folder_cmd_start(struct imap_session *s, const char *name, char *shown, size_t shown_len,
                          struct ms_error *err);

/* ---- imap_fetch.c ---- */

/* Install the session-wide body handler (bodies dropped until a fetch
 * says otherwise). */
void imap_body_handler_install(struct imap_session *s);
/* Read one response to the command sent under tag, the FETCH data going
 * to f (UID FLAGS [RFC822.SIZE]) or dropped when f is NULL; the tagged
 * state through *state. A libetpan error code. */
int imap_read_tagged(struct imap_session *s, int tag, struct fetch_ctx *f, int *state);
/* How a command whose FETCH data went to f ended, libetpan saying r. */
int imap_fetch_outcome(struct imap_session *s, struct fetch_ctx *f, int r, const char *what, struct ms_error *err);
/* The answer of a UID FETCH (FLAGS) sent by hand under tag, its reports
 * into f: imap_read_tagged, a tagged NO or BAD an error, imap_fetch_outcome. */
int imap_read_flags_answer(struct imap_session *s, int tag, struct fetch_ctx *f, const char *what,
                           struct ms_error *err);
/* A libetpan set of the ranges; NULL if out of memory. */
struct mailimap_set *imap_set_from_ranges(const struct uid_range *r, size_t n);
/* Sort by UID, the later report with FLAGS winning for a UID that came
 * twice; the new count, or SIZE_MAX (list unchanged) if out of memory. */
size_t imap_sort_dedupe(struct remote_msg *m, size_t n);
/* After a flags fetch that returned rc: its messages sorted and unique
 * into *out (never NULL on MS_OK); f is freed. */
int imap_finish_flags_fetch(struct fetch_ctx *f, int rc, struct remote_msg **out, size_t *n, struct ms_error *err);
/* UID FETCH first:last (UID FLAGS RFC822.SIZE) [(CHANGEDSINCE modseq) if
 * modseq is non-zero]; last 0 means '*'. */
int imap_fetch_flags_modseq(struct imap_session *s, uint32_t first, uint32_t last, uint64_t modseq,
                            struct remote_msg **out, size_t *n, struct ms_error *err);
/* Read and drop the answer of a window sent ahead and not asked for
 * (imap_ready, before any other command). */
int imap_drop_window_ahead(struct imap_session *s, struct ms_error *err);
/* ---- imap_status.c / imap_qresync.c ---- */

/* The extension data at it if it is of ext_id/ext_type with data; else NULL. */
struct mailimap_extension_data *imap_ext_item(clistiter *it, int ext_id, int ext_type);
/* Read (and drop) EXAMINE answers still queued, and re-EXAMINE a folder
 * whose answer was read while others were in flight (on_selected). */
int imap_settle_ahead(struct imap_session *s, bool on_selected, struct ms_error *err);
/* UID SEARCH key (freed here), adding the answers within first..last
 * (last 0: no upper end) to l. */
int imap_uid_search(struct imap_session *s, struct mailimap_search_key *key, uint32_t first, uint32_t last,
                    const char *what, struct imap_uid_list *l, struct ms_error *err);

/* ---- imap_status.c: the listing sent behind the login ---- */

/* Send (not flush) the commands imap_status_and_list(s, enable_qresync,
 * names, n) would, as the session's capabilities (s->caps) choose them;
 * names are copied. A libetpan code. */
int imap_listing_send_ahead(struct imap_session *s, bool enable_qresync, const char *const *names, size_t n);
/* Once the login succeeded: read the answers of what went out, keep them
 * for the run's imap_status_and_list (keep) or drop them (the capabilities
 * changed: the commands may not be the ones the run needs; ENABLED and ID
 * answers still count). MS_OK when nothing was sent. */
int imap_listing_read_ahead(struct imap_session *s, bool keep, struct ms_error *err);
/* All of its commands went out (none waits for an answer to be sent). */
bool imap_listing_ahead_whole(const struct imap_session *s);
/* Forget it (the session is closed, or the answers were not read). */
void imap_listing_ahead_free(struct imap_session *s);

/* ---- imap_flagline.c: a flag listing's lines without libetpan's parser ---- */

enum { IMAP_FLAGLINE_OTHER = 0, IMAP_FLAGLINE_OK = 1 };

/* One FETCH report of a flag listing, as imap_flagline_parse read it. */
struct imap_flagline {
    struct remote_msg m; /* uid, flags, keywords (the caller frees), size */
    bool has_uid, has_flags;
};

/* Is the line of len bytes (with its CRLF) `* n FETCH (...)` with only the
 * items UID, FLAGS, RFC822.SIZE and MODSEQ, each at most once, every token
 * as RFC 3501 spells it (atoms only; no literal, no extra space)? Then
 * IMAP_FLAGLINE_OK with *out filled, as the FETCH handler reads the same
 * line through libetpan; else IMAP_FLAGLINE_OTHER, *out empty, and
 * libetpan's parser is to read the line. */
int imap_flagline_parse(const char *line, size_t len, struct imap_flagline *out);
/* The same from one FETCH report libetpan parsed (imap_fetch.c: what the
 * flag listing's handler takes from it). */
void imap_flagline_of_att(const struct mailimap_msg_att *att, struct imap_flagline *out);
/* Append the keyword kw (len bytes) to the space-separated list *kws,
 * unless it is no atom, longer than 200 or the list would pass 4 KiB. */
void imap_add_keyword(char **kws, const char *kw, size_t len);

/* ---- imap_objectid.c: EMAILID (RFC 8474) and X-GM-MSGID ---- */

#define IMAP_OBJID_MAX 255 /* RFC 8474: an objectid is 1-255 characters */

enum imap_objid { IMAP_OBJID_NONE, IMAP_OBJID_EMAILID, IMAP_OBJID_XGM };

/* Register libetpan's parser of the EMAILID FETCH item (once per process;
 * any thread). */
void imap_objectid_register(void);
/* Which id the server offers: OBJECTID's EMAILID first, else X-GM-MSGID. */
enum imap_objid imap_objid_kind(struct imap_session *s);
/* The FETCH attribute asking for kind's id (not IMAP_OBJID_NONE); NULL if
 * out of memory. */
struct mailimap_fetch_att *imap_objid_fetch_att(enum imap_objid kind);
/* The id one parsed FETCH item carries into out ("gm:<decimal>" for
 * X-GM-MSGID); false when the item is neither. */
bool imap_objid_of_item(const struct mailimap_msg_att_item *item, char out[IMAP_OBJID_MAX + 1]);
/* The parser itself: len bytes at p start with `EMAILID (objectid)`
 * (keyword case-insensitive, objectid 1-255 of ALPHA DIGIT "_" "-")?
 * Returns the bytes it spans with out set, else 0 with out "". */
size_t imap_emailid_parse(const char *p, size_t len, char out[IMAP_OBJID_MAX + 1]);

#endif
