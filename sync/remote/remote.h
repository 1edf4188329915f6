/* SPDX-License-Identifier: MIT */
/*
 * remote.h: the remote side of an account, as the engine sees it.
 *
 * The engine talks to a server only through a table of function pointers
 * (struct remote_ops), in the shape of isync's `struct driver`. Each kind of
 * side (IMAP: sync/remote/remote_imap.c; POP3; an in-memory one for the engine's
 * unit tests) embeds `struct remote` first in its own session struct and
 * fills the table. What a side can do is said by capability bits
 * (REMOTE_*), never by the account's type; the protocol's own choices
 * (QRESYNC or CONDSTORE or a plain listing, examine-ahead, MOVE/UIDPLUS
 * fallbacks, ENABLE) are made inside the side.
 *
 * The engine hands the side facts it recorded (UIDVALIDITY, UIDNEXT,
 * MODSEQ), never SQL; the side hands back listings, bodies and UIDs.
 *
 * Model: one session, at most one folder open at a time (IMAP's selected
 * folder). Ops marked "on the open folder" act on the folder the last
 * select/open made current. A side without REMOTE_FOLDERS has one folder,
 * "INBOX".
 *
 * Messages are named by a uint32_t `uid`, sorted ascending wherever a set
 * of them is passed or returned. A side with REMOTE_UIDS has IMAP's
 * meaning (stable within a UIDVALIDITY). A side without it (POP3) numbers
 * its messages for this session only and gives each a stable string id
 * (struct remote_msg.id, POP3's UIDL); its uidvalidity is 0.
 *
 * Return values: every int op returns MS_OK or an MS_* code with err filled
 * (sync/error.h):
 *   MS_ENET     connection, TLS, timeout, protocol trouble: session unusable
 *   MS_EAUTH    credentials refused
 *   MS_EPARTIAL a command failed (IMAP NO, POP3 -ERR) on a usable session
 *   MS_EUSAGE   the side cannot do this (a capability is missing)
 * On failure, no output is returned (out pointers stay NULL / counts 0).
 *
 * Memory: arrays returned by an op are malloc'd and owned by the caller,
 * freed with the matching *_free below (or free() for uint32_t arrays);
 * never NULL on MS_OK, even when empty. Strings the session hands out for
 * information (tls_info, capabilities) are owned by the session.
 *
 * This header must stay free of imap.h, pop3.h, sqlite3.h and db/state.h.
 */
#ifndef MAILSYNC_REMOTE_H
#define MAILSYNC_REMOTE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sync/account.h"
#include "sync/error.h"

/* ---- plain data ---------------------------------------------------------- */

/* One message as a listing shows it. */
struct remote_msg {
    uint32_t uid;        /* see above; 0 never names a message */
    unsigned flags;      /* FLAG_* (sync/flags.h) */
    char *keywords;      /* other keywords (not \Recent), space separated, or NULL */
    uint64_t size;       /* as the server counts it (IMAP RFC822.SIZE, POP3 LIST);
                            0: not sent (see struct remote_listing) */
    time_t internaldate; /* 0 if not fetched */
    char *id;            /* stable string id for sides without REMOTE_UIDS
                            (POP3 UIDL), else NULL */
    const char *emailid; /* with REMOTE_OBJECTID, in fetch_bodies' message() only:
                            the server's id of the message's content (see
                            remote_identity_oid_fn), valid during the call;
                            NULL in listings and when not sent */
};

/* Frees keywords and id of each, then the array. NULL is fine. */
void remote_msgs_free(struct remote_msg *m, size_t n);

/* A folder of the server, as its listing names it. */
struct remote_folder {
    char *name;    /* raw server name (IMAP: modified UTF-7) */
    char delim;    /* hierarchy delimiter, '\0' if none */
    bool noselect; /* has no messages (IMAP \Noselect, \NonExistent) */
    unsigned roles; /* FOLDER_ROLE_* (sync/names.h): what the server says the
                       folder is for (IMAP SPECIAL-USE); 0 if it says nothing */
};

void remote_folders_free(struct remote_folder *f, size_t n);

/* A folder's counters as a status query (without opening it) gives them. */
struct remote_status {
    uint32_t uidvalidity; /* 0 if not said (then never take it as unchanged) */
    uint32_t uidnext;     /* 0 if not said */
    uint32_t messages;
    uint64_t highestmodseq; /* 0 without REMOTE_CHANGES (or IMAP NOMODSEQ) */
};

/* A folder's counters once opened. */
struct remote_box {
    uint32_t uidvalidity;
    uint32_t uidnext;       /* 0 if the server did not say */
    uint32_t exists;        /* messages in the folder */
    uint64_t highestmodseq; /* 0 without REMOTE_CHANGES (or NOMODSEQ) */
};

/* What the engine recorded of a folder at its last complete sync, handed
 * to open() so the side can list only what changed since. */
struct remote_known {
    uint32_t uidvalidity; /* 0: never synced */
    uint32_t uidnext;
    uint64_t modseq;         /* 0: list in full (no incremental listing wanted) */
    uint32_t status_uidnext; /* hint: UIDNEXT a status() or list() of this
                                session reported for the folder, 0 if none */
    uint32_t window;         /* 0, or: a full listing of a folder that holds more
                                than this many messages lists only the UIDs from
                                UIDNEXT - window up (remote_listing.from says
                                where it began): a first pull of a big folder
                                goes in windows of UIDs, top down, its memory
                                bounded by the window, not by the folder; and
                                an incremental listing with more than this many
                                changed messages ("mark all read" elsewhere)
                                gives the changes from UIDNEXT - window up only
                                (the same from), the rest being for
                                fetch_changes_range */
    size_t vanished_max;     /* 0, or: the most vanished UIDs an incremental
                                listing holds (the side's own cap otherwise);
                                past it the folder is listed in full */
};

/* The answer of open(). */
enum remote_listing_kind {
    /* msgs: every message of the folder (uidnext/modseq did not allow
     * less, or UIDVALIDITY changed: compare box.uidvalidity). uids empty
     * (NULL or an empty array: the one exception to "never NULL"). */
    REMOTE_LIST_FULL = 0,
    /* msgs: the messages whose flags changed since known.modseq or that
     * are new; uids: the UIDs expunged since (sorted, unique, never in msgs;
     * may hold UIDs the engine never knew). Among msgs, those below
     * known.uidnext may have size 0 (not sent: the engine knows them, or
     * asks fetch_meta). (IMAP QRESYNC.) */
    REMOTE_LIST_VANISHED = 1,
    /* msgs: changed or new as above (sizes always given); uids: all UIDs the
     * folder holds now (sorted, unique): expunges are the known UIDs not in
     * it. (IMAP CONDSTORE without QRESYNC.) */
    REMOTE_LIST_ALL_UIDS = 2,
};

struct remote_listing {
    struct remote_box box;
    enum remote_listing_kind kind;
    struct remote_msg *msgs; /* sorted by uid */
    size_t nmsgs;
    uint32_t *uids;
    size_t nuids;
    const char *how; /* how the side listed, for verbose logs (static; may be NULL) */
    uint32_t from;   /* 0 when msgs are every message (REMOTE_LIST_FULL) or
                        every change; else (known->window) msgs are those
                        with uid >= from only, the rest is for
                        fetch_meta_range(1, from - 1) (REMOTE_LIST_FULL) or
                        fetch_changes_range(1, from - 1, known->modseq)
                        (the incremental kinds, whose uids stay whole) */
};

/* Frees the arrays and zeroes *l. */
void remote_listing_free(struct remote_listing *l);

/* Folders to open ahead (open_ahead): the raw name and the recorded
 * values open() will be called with. list_from: 0, or (the last folder of
 * a request only) the recorded UIDNEXT of a folder whose status showed
 * new mail, open() to be called with known->uidnext = list_from and a
 * larger status_uidnext: its listing of the new UIDs goes out too. */
struct remote_ahead {
    const char *name;
    uint32_t uidvalidity;
    uint64_t modseq;
    uint32_t list_from;
};

/* Streamed bodies: for every message, its bytes arrive in order through
 * chunk() (zero or more calls, never the whole message in memory; IMAP as
 * sent, CRLF; POP3 dot-unstuffed, CRLF), then message() once with its
 * uid, flags, internaldate and size (has_body false when the server sent
 * no body for it, e.g. an unsolicited flag update: then no chunk()
 * preceded it). m and its strings are valid during the call only. A
 * non-zero return from a callback (an MS_* code) aborts the fetch: the op
 * returns that code, err saying the message could not be stored (the
 * callback keeps its own reason), and the session is unusable after it. */
struct remote_body_sink {
    void *ctx;
    int (*chunk)(void *ctx, const char *data, size_t len);
    int (*message)(void *ctx, const struct remote_msg *m, bool has_body);
};

/* Identity of one message: size, and the Message-ID header's value trimmed
 * (e.g. "<abc@host>"), or NULL if absent; valid during the call only. */
typedef void remote_identity_fn(void *ctx, uint32_t uid, uint64_t size, const char *message_id);
/* Identity with the server's own id of the message's content: IMAP
 * EMAILID (RFC 8474 OBJECTID) as sent, or "gm:" and Gmail's X-GM-MSGID in
 * decimal; the same in every folder the message is moved or copied to;
 * NULL if the server sent none. Valid during the call only. */
typedef void remote_identity_oid_fn(void *ctx, uint32_t uid, uint64_t size, const char *message_id,
                                    const char *emailid);
/* Header fields of one message: size, and the header lines the side
 * returned (read them with message_header()); valid during the call only. */
typedef void remote_headers_fn(void *ctx, uint32_t uid, uint64_t size, const char *block, size_t len);

/* ---- capabilities ---------------------------------------------------------- */

enum {
    REMOTE_FOLDERS = 1u << 0,   /* several folders (else only INBOX); create() */
    REMOTE_WRITE = 1u << 1,     /* store_flags, append, copy: a push is possible */
    REMOTE_UIDS = 1u << 2,      /* UIDVALIDITY + UIDs stable across sessions */
    REMOTE_CHANGES = 1u << 3,   /* modseqs: status/open report HIGHESTMODSEQ, open()
                                   may list incrementally (IMAP CONDSTORE) */
    REMOTE_AHEAD = 1u << 4,     /* open_ahead() does something (IMAP: QRESYNC enabled;
                                   known only after list()) */
    REMOTE_MOVE = 1u << 5,      /* move() is atomic (IMAP MOVE) */
    REMOTE_EXACT = 1u << 6,     /* remove() removes exactly the given messages
                                   (IMAP UIDPLUS: UID EXPUNGE; POP3 DELE); copy() and
                                   append() may report the new UIDs */
    REMOTE_WATCH = 1u << 7,     /* watch() + wait() (IMAP IDLE) */
    REMOTE_WATCH_ALL = 1u << 8, /* watch() hears of every folder (IMAP NOTIFY), else INBOX */
    REMOTE_EXTRA = 1u << 9,     /* clone(): extra sessions for parallel downloads */
    REMOTE_COMMIT = 1u << 10,   /* removals take effect only at commit() (POP3 QUIT) */
    REMOTE_AGE = 1u << 11,      /* search_before() */
    REMOTE_OBJECTID = 1u << 12, /* fetch_identity_oid(), and fetch_bodies' message() gets
                                   remote_msg.emailid (IMAP OBJECTID or X-GM-EXT-1) */
    REMOTE_LABELS = 1u << 13,   /* one message shows in several folders under one server
                                   id ("gm:" emailid: Gmail's labels, X-GM-EXT-1), as
                                   one message, not copies; with REMOTE_OBJECTID */
};

/* What a connect may use to save round trips (remote_connect_hinted).
 * The side calls prepare(ctx, ...) at most once, with the connection up
 * and before its first command (so the caller can look things up while
 * the connection is made): *memo gets what memo() gave at the end of an
 * earlier run (NULL: nothing), *names and *n the names the run's first list()
 * will be called with (names NULL: no listing expected). They stay valid
 * until the connect returns. The side checks everything it assumed once
 * the server answers, and falls back to the usual way when it was wrong:
 * a hint never changes what a run does, only how many round trips it
 * waits for. */
struct remote_hint {
    void *ctx;
    void (*prepare)(void *ctx, const char **memo, const char *const **names, size_t *n);
};

/* ---- the side ---------------------------------------------------------- */

struct remote;

/* One window of list_windows: the messages with lo <= uid <= hi (m: the
 * callee's to free with remote_msgs_free). */
typedef int remote_window_fn(void *ctx, uint32_t lo, uint32_t hi, struct remote_msg *m, size_t n,
                             struct ms_error *err);

struct remote_ops {
    /* Kind for messages, "imap", "pop3", "mem". */
    const char *name;

    /* A line of text the side would like back at the next connect
     * (struct remote_hint: the engine keeps it in the state DB, uninterpreted);
     * NULL when there is nothing to remember. IMAP: the server's
     * capabilities before and after the login. Owned by the session; NULL
     * op: none. */
    const char *(*memo)(struct remote *r);

    /* REMOTE_* bits. May grow after list() (REMOTE_AHEAD, once IMAP has
     * enabled QRESYNC); never shrinks. */
    unsigned (*caps)(struct remote *r);

    /* One-line descriptions for `mailsync check`: TLS version, cipher and
     * certificate ("none" for plaintext); the server's capability list
     * (space separated; "" if the protocol has none). Owned by the session. */
    const char *(*tls_info)(struct remote *r);
    const char *(*capabilities)(struct remote *r);

    /* The folders (a side without REMOTE_FOLDERS: one, "INBOX"). With
     * names == NULL a plain listing that leaves the session as it is
     * (check, folders). Otherwise (n may be 0) the listing of a sync run:
     * st[i] (zeroed by the caller) gets the status of names[i], in the same
     * round trip where the side can (IMAP: pipelined STATUS), or stays
     * zeroed (no answer: not an error, ask status()); and the side may
     * prepare the session for open() (IMAP: ENABLE QRESYNC, which must
     * precede the first SELECT). *out: free with remote_folders_free. */
    int (*list)(struct remote *r, const char *const *names, size_t n, struct remote_status *st,
                struct remote_folder **out, size_t *nout, struct ms_error *err);

    /* The counters of one folder without opening it. NO (no such folder)
     * is MS_EPARTIAL. */
    int (*status)(struct remote *r, const char *name, struct remote_status *out, struct ms_error *err);

    /* Make folder name the open one, read-only or for writing (IMAP
     * EXAMINE/SELECT), and give its counters. No listing. NO (no such
     * folder) is MS_EPARTIAL. */
    int (*select)(struct remote *r, const char *name, bool write, struct remote_box *box, struct ms_error *err);

    /* Open folder name read-only and list it: incrementally (kind
     * REMOTE_LIST_VANISHED or REMOTE_LIST_ALL_UIDS) when known->modseq is
     * non-zero, the side has REMOTE_CHANGES, the folder's UIDVALIDITY is
     * still known->uidvalidity and its HIGHESTMODSEQ is non-zero and not
     * below known->modseq; else in full (REMOTE_LIST_FULL, whose box tells
     * whether UIDVALIDITY changed). The side chooses the protocol (IMAP:
     * SELECT QRESYNC, or CONDSTORE's CHANGEDSINCE + all UIDs, or a plain
     * FETCH 1:*). Only complete answers count. Free out with
     * remote_listing_free. */
    int (*open)(struct remote *r, const char *name, const struct remote_known *known, struct remote_listing *out,
                struct ms_error *err);

    /* Hint: these folders will be open()ed next, in this order, with these
     * values and read-only; the side may send the requests now so the
     * server works ahead (IMAP: pipelined EXAMINE (QRESYNC)). Only with
     * REMOTE_AHEAD; may be NULL. A failure ends the session (later ops
     * report it). */
    int (*open_ahead)(struct remote *r, const struct remote_ahead *req, size_t n, struct ms_error *err);

    /* On the open folder: the messages with first <= uid <= last (last 0:
     * no upper bound), flags and sizes. Sorted. */
    int (*fetch_meta_range)(struct remote *r, uint32_t first, uint32_t last, struct remote_msg **out, size_t *n,
                            struct ms_error *err);
    /* On the open folder: every message below the UID below, a window of
     * size UIDs at a time from the top down ([below - size, below - 1],
     * then the window under it, down to UID 1), each window's messages
     * (flags, sorted, as fetch_meta_range gives them; their sizes may be
     * left out: 0, for the caller to ask fetch_meta for those it needs)
     * handed to window(), which owns them; its non-zero return stops the listing and
     * is returned. The side may ask for the next windows before the
     * current one is handed over (IMAP: UID FETCH lo:hi pipelined, a few
     * in flight), so the server lists while the caller compares and the
     * windows cost no round trip each. May be NULL: the caller asks
     * fetch_meta_range for each window. */
    int (*list_windows)(struct remote *r, uint32_t below, uint32_t size, remote_window_fn *window, void *ctx,
                        struct ms_error *err);
    /* On the open folder: the messages with first <= uid <= last (last 0:
     * no upper bound) whose flags changed since modseq (or that are new),
     * flags and sizes. Sorted. For the windows of an incremental listing
     * (remote_listing.from). REMOTE_CHANGES; may be NULL without it. */
    int (*fetch_changes_range)(struct remote *r, uint32_t first, uint32_t last, uint64_t modseq,
                               struct remote_msg **out, size_t *n, struct ms_error *err);
    /* On the open folder: the caller's next call will be
     * fetch_changes_range(first, last, modseq) (modseq non-zero) or
     * fetch_meta_range(first, last) (modseq 0), unless it calls anything
     * else first. The side may ask the server now, so that the listing
     * comes while the caller applies the window it has (IMAP: the UID
     * FETCH sent, its answer read by that call, or read and dropped before
     * any other command). May be NULL. */
    int (*list_ahead)(struct remote *r, uint32_t first, uint32_t last, uint64_t modseq, struct ms_error *err);
    /* On the open folder: the messages of uids (sorted) that still exist,
     * flags and sizes. Sorted. */
    int (*fetch_meta)(struct remote *r, const uint32_t *uids, size_t n, struct remote_msg **out, size_t *nout,
                      struct ms_error *err);

    /* On the open folder: found() once per message of uids (sorted) the
     * folder still holds, with its size and Message-ID. */
    int (*fetch_identity)(struct remote *r, const uint32_t *uids, size_t n, remote_identity_fn *found, void *ctx,
                          struct ms_error *err);
    /* fetch_identity with each message's server id (emailid) in the same
     * round trip. REMOTE_OBJECTID; may be NULL without it. */
    int (*fetch_identity_oid)(struct remote *r, const uint32_t *uids, size_t n, remote_identity_oid_fn *found,
                              void *ctx, struct ms_error *err);
    /* On the open folder: found() once per message of uids (sorted) the
     * folder still holds, with its size and its header fields named in
     * fields (e.g. "DATE"; IMAP: BODY.PEEK[HEADER.FIELDS (...)]); with
     * nfields 0, the whole header (IMAP: BODY.PEEK[HEADER]), its first
     * 8 KiB at most (the block may end inside a field: cut at a line). */
    int (*fetch_headers)(struct remote *r, const uint32_t *uids, size_t n, const char *const *fields,
                         size_t nfields, remote_headers_fn *found, void *ctx, struct ms_error *err);

    /* On the open folder: the bodies of uids (sorted), streamed to sink.
     * Messages gone meanwhile are simply not reported. */
    int (*fetch_bodies)(struct remote *r, const uint32_t *uids, size_t n, const struct remote_body_sink *sink,
                        struct ms_error *err);

    /* On the open folder (selected for writing): add (add true) or remove
     * the FLAG_* bits flags on uids (sorted). Nothing is sent for n == 0.
     * REMOTE_WRITE. */
    int (*store_flags)(struct remote *r, const uint32_t *uids, size_t n, unsigned flags, bool add,
                       struct ms_error *err);

    /* Add a message to folder name: size bytes from fd (its current offset
     * to its end, LF line ends sent as CRLF; size is the CRLF size), with
     * flags and date (0: the server's now). *uidvalidity and *uid: the new
     * message's, when the server says (IMAP APPENDUID), else 0. A file that
     * turns out longer or shorter ends the session (MS_ENET). NO is
     * MS_EPARTIAL. REMOTE_WRITE. */
    int (*append)(struct remote *r, const char *name, unsigned flags, time_t date, int fd, uint64_t size,
                  uint32_t *uidvalidity, uint32_t *uid, struct ms_error *err);

    /* On the open folder (for writing): mark uids (sorted) deleted and
     * remove exactly them, never other messages someone else marked (IMAP:
     * UID STORE +FLAGS \Deleted, UID EXPUNGE; POP3: DELE, carried out at
     * commit()). MS_EUSAGE without REMOTE_EXACT. */
    int (*remove)(struct remote *r, const uint32_t *uids, size_t n, struct ms_error *err);

    /* On the open folder: copy uids (sorted) to folder dest. copy_uids (n
     * entries, zeroed by the caller; may be NULL) gets the UID of each
     * copy where the server says (IMAP COPYUID), *dest_uidvalidity (may be
     * NULL) dest's UIDVALIDITY, or 0 if none said. REMOTE_WRITE. */
    int (*copy)(struct remote *r, const uint32_t *uids, size_t n, const char *dest, uint32_t *copy_uids,
                uint32_t *dest_uidvalidity, struct ms_error *err);

    /* On the open folder (for writing): move uids (sorted) to dest,
     * atomically with REMOTE_MOVE (else the side's fallback, IMAP: COPY +
     * \Deleted + UID EXPUNGE with UIDPLUS; MS_EUSAGE without either). */
    int (*move)(struct remote *r, const uint32_t *uids, size_t n, const char *dest, struct ms_error *err);

    /* Create folder name (raw). NO (exists, not allowed) is MS_EPARTIAL.
     * REMOTE_FOLDERS. */
    int (*create)(struct remote *r, const char *name, struct ms_error *err);

    /* On the open folder: the UIDs of messages received before the day
     * (UTC) of `before`, sorted; *out: free(). REMOTE_AGE. */
    int (*search_before)(struct remote *r, time_t before, uint32_t **out, size_t *n, struct ms_error *err);

    /* Make removals take effect (POP3: QUIT; the session is over after it,
     * only close() may follow). MS_OK only when the server confirmed.
     * Sides without REMOTE_COMMIT: a no-op returning MS_OK; may be NULL. */
    int (*commit)(struct remote *r, struct ms_error *err);

    /* Prepare the session to hear of changes (IMAP: NOTIFY for every
     * folder with REMOTE_WATCH_ALL, falling back to INBOX selected, IDLE).
     * MS_EUSAGE without REMOTE_WATCH. Then only wait() and close(). */
    int (*watch)(struct remote *r, struct ms_error *err);
    /* After watch(): block until the server reports a change (*changed
     * true), timeout_ms passes, wake_fd (-1: none) becomes readable (a
     * local change: *changed stays false; the caller reads wake_fd), or
     * *stop (may be NULL) becomes non-zero (looked at every second and
     * after a signal). */
    int (*wait)(struct remote *r, int timeout_ms, volatile sig_atomic_t *stop, int wake_fd, bool *changed,
                struct ms_error *err);

    /* A new session of the same kind to the same server and account,
     * logged in with password (the caller keeps it: the side does not).
     * May be called from another thread while r is in use there: it reads
     * only what r's connect set up. REMOTE_EXTRA. */
    int (*clone)(struct remote *r, const char *password, struct remote **out, struct ms_error *err);

    /* Start ending the session without waiting (IMAP: LOGOUT sent, the
     * answer read by close()); no other op but close() may follow. */
    void (*logout_start)(struct remote *r);
    /* End the session (best effort) and free everything. */
    void (*close)(struct remote *r);
};

/* The base of every side's session struct (embedded first). */
struct remote {
    const struct remote_ops *ops;
    const struct account *acct; /* borrowed: outlives the session */
};

/* Connect to the account's server, by acct->type (IMAP; POP3), verify TLS
 * and log in with password (not kept). The engine's default for
 * engine_options.connect_remote. */
int remote_connect(const struct account *acct, const char *password, struct remote **out, struct ms_error *err);
/* remote_connect with a hint (NULL: none); sides that cannot use one
 * ignore it. */
int remote_connect_hinted(const struct account *acct, const char *password, const struct remote_hint *hint,
                          struct remote **out, struct ms_error *err);
/* r's memo() or NULL. */
const char *remote_memo(struct remote *r);

/* The capability bits a side of this account's kind can have at best,
 * known without connecting (a server may offer fewer): for what the
 * program and the engine decide before a login, e.g. that a POP3
 * account is pull-only (no REMOTE_WRITE), has no folder list
 * (REMOTE_FOLDERS) and cannot be watched (REMOTE_WATCH), or that its
 * rows are keyed by id, not UID (REMOTE_UIDS). 0 for an unknown kind. */
unsigned remote_caps_possible(const struct account *acct);

/* ---- short forms ---------------------------------------------------------- */

static inline unsigned remote_caps(struct remote *r)
{
    return r->ops->caps(r);
}

static inline bool remote_can(struct remote *r, unsigned bits)
{
    return (r->ops->caps(r) & bits) == bits;
}

/* logout_start, if r is not NULL. */
static inline void remote_logout_start(struct remote *r)
{
    if (r)
        r->ops->logout_start(r);
}

/* close and clear *r; NULL and *r == NULL are fine. */
static inline void remote_close(struct remote **r)
{
    if (r && *r) {
        (*r)->ops->close(*r);
        *r = NULL;
    }
}

#endif
