/* SPDX-License-Identifier: MIT */
/*
 * memremote.h: an IMAP-like server held in memory, and a remote side
 * (sync/remote/remote.h) that talks to it, for the engine's unit tests.
 *
 * The server (struct mem_server) outlives the sessions: a test fills it,
 * runs the engine (each run connects a new session through
 * mem_server_connect, injected with engine_options), looks at it again,
 * runs again. It behaves like a small IMAP server with UIDPLUS, MOVE and
 * QRESYNC: folders with UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ, messages
 * with a UID, flags, keywords, an INTERNALDATE, a body and the modseq of
 * their last change; expunges are remembered with their modseq so that an
 * incremental listing can name them as vanished.
 *
 * Faults are scripted by the test (struct mem_faults) and fire once: a
 * run that meets one fails as a run against a real server would, and the
 * next run finds a healthy server. Every operation a session performs is
 * appended to the server's operation log (which op, on which folder, how
 * many UIDs), in order, for the test to assert on.
 *
 * Everything is single-threaded except what the engine's extra sessions
 * do; the server serialises its sessions with one mutex.
 */
#ifndef MAILSYNC_TEST_MEMREMOTE_H
#define MAILSYNC_TEST_MEMREMOTE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sync/account.h"
#include "sync/error.h"
#include "sync/remote/remote.h"

struct remote;

/* What a session did, in the order it did it. */
enum mem_op {
    MEM_OP_CONNECT,  /* a session logged in */
    MEM_OP_LIST,     /* the folders (and the STATUS of some) */
    MEM_OP_STATUS,   /* one folder's counters, without opening it */
    MEM_OP_SELECT,   /* a folder made the open one, without a listing */
    MEM_OP_OPEN,     /* a folder opened, with a full listing */
    MEM_OP_OPEN_INC, /* a folder opened, with only the changes since a modseq */
    MEM_OP_META,     /* flags and sizes of some UIDs (n = how many asked) */
    MEM_OP_CHANGES,  /* the changes since a modseq in a range of UIDs (n = how many) */
    MEM_OP_IDENTITY, /* Message-IDs and sizes of some UIDs (n) */
    MEM_OP_BODY,     /* one message body delivered (n = its UID) */
    MEM_OP_STORE,    /* flags stored on n UIDs */
    MEM_OP_APPEND,   /* one message appended (n = its new UID) */
    MEM_OP_EXPUNGE,  /* n UIDs removed */
    MEM_OP_COPY,     /* n UIDs copied to folder `to` */
    MEM_OP_MOVE,     /* n UIDs moved to folder `to` */
    MEM_OP_CREATE,   /* a folder created */
    MEM_OP_SEARCH,   /* UIDs older than a date */
    MEM_OP_LOGOUT,
    MEM_OP_DROP,     /* a scripted fault ended the session here */
};

const char *mem_op_name(enum mem_op op);

struct mem_logentry {
    enum mem_op op;
    char folder[64]; /* "" when the op is not about one folder */
    char to[64];     /* COPY/MOVE: the destination */
    uint32_t n;      /* see enum mem_op */
    unsigned session;/* which session (1 = the first connected) */
};

struct mem_msg {
    uint32_t uid;
    unsigned flags;       /* FLAG_* */
    char *keywords;       /* space separated, or NULL */
    time_t internaldate;
    char *body;           /* as the server stores it: CRLF line ends */
    size_t len;
    uint64_t modseq;      /* of the last change */
    char emailid[24];     /* the server's id of the content ("gm:N", Gmail's
                             X-GM-MSGID): kept by copies and moves; told
                             only with REMOTE_OBJECTID */
};

struct mem_vanished {
    uint32_t uid;
    uint64_t modseq; /* the folder's modseq when it was expunged */
};

struct mem_folder {
    char *name;
    bool noselect;
    unsigned roles; /* FOLDER_ROLE_* its listing shows (SPECIAL-USE) */
    uint32_t uidvalidity;
    uint32_t uidnext;
    uint64_t modseq; /* HIGHESTMODSEQ */
    struct mem_msg *msgs; /* sorted by uid */
    size_t n;
    struct mem_vanished *vanished;
    size_t nvanished;
};

/* How a scripted body failure shows. */
enum mem_body_fault {
    MEM_BODY_ERROR,   /* the fetch command fails (MS_EPARTIAL, session usable)
                         after the bodies before it */
    MEM_BODY_MISSING, /* the message is left out of the answer, the rest come */
};

/* Scripted faults; all counters count from when they are set, and each
 * fault fires once (its field is cleared when it fires). 0 = off. */
struct mem_faults {
    unsigned fail_body;            /* the Nth body of the server's fetches fails... */
    enum mem_body_fault body_kind; /* ...this way */
    unsigned drop_after_bodies;    /* the session drops (MS_ENET) after K bodies */
    unsigned drop_at_op;           /* the session drops at its server's Nth op from now */
    /* The process dies (_exit(77), as a client killed with -9) at its
     * server's Nth op from now (a LOGOUT counts): before the server sees
     * it (exit_after false) or after the server carried it out, before
     * its answer (true). For a forked child running the engine: the
     * server is first saved to exit_save (if set), for the parent to take
     * it up as the dead client left it (mem_server_load). Sticky. */
    unsigned exit_at_op;
    bool exit_after;
    const char *exit_save;
    bool no_appenduid;             /* APPEND does not say the new UID (sticky: stays on) */
    /* UIDVALIDITY of this folder changes (every UID renumbered) right after
     * a listing of it, before the bodies are fetched. */
    char uidvalidity_after_listing[64];
    /* With the above: the change comes only after this many bodies of the
     * fetch that follows the listing (0: before the first). */
    unsigned uidvalidity_after_bodies;
    /* What a session that has the folder open then sees: false, the
     * server ends it (MS_ENET, as Dovecot's "BYE Mailbox UIDVALIDITY
     * changed"); true, it goes on answering by the new numbering. */
    bool stale_session_goes_on;
};

struct mem_server {
    pthread_mutex_t mu;
    /* How open() lists a folder incrementally: REMOTE_LIST_VANISHED
     * (QRESYNC, the default) or REMOTE_LIST_ALL_UIDS (CONDSTORE alone). */
    int incremental_kind;
    struct mem_folder *folders;
    size_t nfolders;
    char delim;           /* hierarchy delimiter, '/' by default */
    unsigned caps;        /* REMOTE_CAP_* offered (all by default, but REMOTE_OBJECTID
                             and REMOTE_LABELS: Gmail's, asked for by a test) */
    unsigned next_emailid;
    uint32_t next_uidvalidity;
    struct mem_faults faults;
    unsigned bodies;      /* bodies delivered since the body fault was set */
    unsigned ops;         /* ops since drop_at_op was set */
    unsigned exit_ops;    /* ops since exit_at_op was set */
    struct mem_logentry *log;
    size_t nlog;
    unsigned sessions;    /* how many connected so far */
    unsigned refuse_login;/* the next N logins fail (MS_ENET) */
    /* Called with every entry as it is logged (the server's lock held: it
     * must not call the server), so a test can look at the local side at
     * that moment. NULL: none. */
    void (*on_op)(void *ctx, const struct mem_logentry *e);
    void *on_op_ctx;
    /* watch: with on_wait set, the side can wait for changes (IDLE), and
     * each wait calls it (the server's lock not held: it may call
     * mem_add... to change the server, and sets *changed as the server's
     * report would); it returns an MS_ code. NULL: the side has no IDLE. */
    int (*on_wait)(void *ctx, bool *changed);
    void *on_wait_ctx;
    /* Listings asked for ahead (list_ahead): taken by the call that asked
     * for that window next, or dropped by another op before it. */
    unsigned ahead_taken, ahead_dropped;
    /* A server whose counters lag behind its reports: the next
     * stale_answers answers of LIST (its statuses) and STATUS about
     * stale_folder give stale_status instead of the folder's. */
    unsigned stale_answers;
    char stale_folder[64];
    struct remote_status stale_status;
};

struct mem_server *mem_server_new(void);
void mem_server_free(struct mem_server *s);

/* The server's folders and messages saved to a file, and loaded from it
 * into s (replacing its folders; caps, faults and the log stay): a
 * forked child's run changes the server the parent tests see
 * (mem_faults.exit_save). Save returns 0 or -1; load aborts on a bad
 * file (the test's own). */
int mem_server_save(const struct mem_server *s, const char *path);
void mem_server_load(struct mem_server *s, const char *path);

/* A folder; created empty if missing (UIDVALIDITY from a counter). */
struct mem_folder *mem_folder(struct mem_server *s, const char *name);
/* The folder, or NULL. */
struct mem_folder *mem_folder_find(struct mem_server *s, const char *name);

/* Add a message: body (LF or CRLF line ends; stored with CRLF), flags,
 * INTERNALDATE (0: a fixed date). Returns its UID. */
uint32_t mem_add(struct mem_server *s, const char *folder, const char *body, unsigned flags, time_t date);
/* A small message with this Message-ID and subject. */
uint32_t mem_add_simple(struct mem_server *s, const char *folder, const char *message_id, const char *subject,
                        unsigned flags);
/* The status LIST and STATUS give of the folder now (for stale_status). */
struct remote_status mem_status_now(struct mem_server *s, const char *folder);
/* Change a message's flags (a new modseq), as another client would. */
void mem_set_flags(struct mem_server *s, const char *folder, uint32_t uid, unsigned flags);
/* Expunge one message, as another client would. */
void mem_expunge(struct mem_server *s, const char *folder, uint32_t uid);
/* Move one message to another folder (a new UID there), as another client. */
uint32_t mem_move(struct mem_server *s, const char *from, uint32_t uid, const char *to);
/* Show one message in another folder too (a new UID there, the same
 * emailid): a Gmail label added, as another client would. */
uint32_t mem_label(struct mem_server *s, const char *from, uint32_t uid, const char *to);
/* A new UIDVALIDITY: every message of the folder gets a new UID, from 1,
 * in reverse order (the old UID of one message is the new UID of another,
 * so a client that mixes the two numberings takes one for the other). */
void mem_renumber(struct mem_server *s, const char *folder);
/* The message of that UID, or NULL. */
struct mem_msg *mem_msg_find(struct mem_folder *f, uint32_t uid);
/* How many messages of the folder carry this Message-ID (header value,
 * e.g. "<a@x>"). */
size_t mem_count_id(struct mem_server *s, const char *folder, const char *message_id);

/* --- the operation log --- */
void mem_log_clear(struct mem_server *s);
/* How many entries of op (on folder; NULL = any folder). */
size_t mem_log_count(const struct mem_server *s, enum mem_op op, const char *folder);
/* The index of the first / last entry of op on folder (NULL = any), or -1. */
long mem_log_first(const struct mem_server *s, enum mem_op op, const char *folder);
long mem_log_last(const struct mem_server *s, enum mem_op op, const char *folder);
/* The log as text, one entry a line (for a failing test to print). Owned
 * by the caller. */
char *mem_log_text(const struct mem_server *s);

/* --- sessions --- */

/* A session of srv: a struct remote whose ops work on it (the CONNECT of
 * the log). MS_ENET while srv->refuse_login counts down. */
int mem_connect(struct mem_server *srv, const struct account *a, struct remote **out, struct ms_error *err);

/* The engine's connect hook (engine_options.connect_remote) has no
 * context pointer: it connects to the server installed here. */
void mem_install(struct mem_server *srv);
int mem_remote_connect(const struct account *a, const char *password, struct remote **out, struct ms_error *err);

#endif
