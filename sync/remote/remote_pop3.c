/* SPDX-License-Identifier: MIT */
/*
 * remote_pop3.c: the POP3 side of remote.h (RFC 1939), over sync/remote/pop3.c.
 *
 * What POP3 is, in the interface's terms (capability bits REMOTE_EXACT and
 * REMOTE_COMMIT only):
 *  - one folder, "INBOX" (no REMOTE_FOLDERS), and nothing to write to
 *    (no REMOTE_WRITE: no flags, no uploads);
 *  - a message's `uid` is its number in this session (no REMOTE_UIDS, a
 *    UIDVALIDITY of 0); what names it across sessions is its UIDL, given
 *    as struct remote_msg.id;
 *  - remove() is DELE, which the server carries out only at QUIT: commit().
 * The server locks the maildrop for the session, so its listing (UIDL and
 * LIST) is taken once, by the first op that needs it, and serves them all.
 */
#include "sync/remote/remote_pop3.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/remote/pop3.h"
#include "sync/util.h"

struct pop3_remote {
    struct remote base;
    struct pop3_session *s; /* NULL once committed (QUIT) */
    /* The maildrop's listing, sorted by message number (listed: taken,
     * or failed with list_rc / list_err, which every later op reports). */
    bool listed;
    int list_rc;
    struct ms_error list_err;
    struct pop3_msg *msgs;
    size_t nmsgs;
    char caps[80];
};

static struct pop3_remote *P(struct remote *r)
{
    return (struct pop3_remote *)r;
}

static int cmp_msg_n(const void *a, const void *b)
{
    uint32_t x = ((const struct pop3_msg *)a)->n, y = ((const struct pop3_msg *)b)->n;
    return x < y ? -1 : x > y;
}

/* The maildrop's listing, taken on first use. */
static int listing(struct pop3_remote *p, struct ms_error *err)
{
    if (!p->listed) {
        p->listed = true;
        if (!p->s)
            p->list_rc = ms_error_set(&p->list_err, MS_EUSAGE, "the POP3 session is over");
        else
            p->list_rc = pop3_list(p->s, &p->msgs, &p->nmsgs, &p->list_err);
        if (p->list_rc == MS_OK)
            qsort(p->msgs, p->nmsgs, sizeof *p->msgs, cmp_msg_n);
    }
    if (p->list_rc)
        *err = p->list_err;
    return p->list_rc;
}

static const struct pop3_msg *by_number(const struct pop3_remote *p, uint32_t n)
{
    struct pop3_msg key = {.n = n, .uidl = "", .size = 0};
    return p->nmsgs ? bsearch(&key, p->msgs, p->nmsgs, sizeof *p->msgs, cmp_msg_n) : NULL;
}

static int not_inbox(const char *name, struct ms_error *err)
{
    return ms_error_set(err, MS_EPARTIAL, "POP3 has no folder \"%s\", only INBOX", name);
}

static int unsupported(const char *what, struct ms_error *err)
{
    return ms_error_set(err, MS_EUSAGE, "POP3 cannot %s", what);
}

/* The listing entry as the interface's message (id copied). */
static void to_remote_msg(const struct pop3_msg *m, struct remote_msg *out)
{
    *out = (struct remote_msg){
        .uid = m->n, .flags = 0, .keywords = NULL, .size = m->size, .internaldate = 0, .id = xstrdup(m->uidl)};
}

/* ---- the ops ---------------------------------------------------------- */

static unsigned pop3_caps(struct remote *r)
{
    (void)r;
    return REMOTE_EXACT | REMOTE_COMMIT;
}

static const char *pop3_r_tls_info(struct remote *r)
{
    return P(r)->s ? pop3_tls_info(P(r)->s) : "none";
}

/* "POP3 UIDL (N messages in the maildrop)", what `check` reports. */
static const char *pop3_r_capabilities(struct remote *r)
{
    struct pop3_remote *p = P(r);
    struct ms_error e;
    if (listing(p, &e) == MS_OK)
        snprintf(p->caps, sizeof p->caps, "POP3 UIDL (%zu messages in the maildrop)", p->nmsgs);
    else
        snprintf(p->caps, sizeof p->caps, "POP3 UIDL");
    return p->caps;
}

/* One folder; listing it reads the maildrop (so `check` proves it can). */
static int pop3_r_list(struct remote *r, const char *const *names, size_t n, struct remote_status *st,
                       struct remote_folder **out, size_t *nout, struct ms_error *err)
{
    struct pop3_remote *p = P(r);
    *out = NULL;
    *nout = 0;
    int rc = listing(p, err);
    if (rc)
        return rc;
    for (size_t i = 0; names && i < n; i++)
        if (strcmp(names[i], "INBOX") == 0)
            st[i] = (struct remote_status){
                .uidvalidity = 0, .uidnext = 0, .messages = (uint32_t)p->nmsgs, .highestmodseq = 0};
    *out = xcalloc(1, sizeof **out);
    (*out)[0] = (struct remote_folder){.name = xstrdup("INBOX"), .delim = '\0', .noselect = false, .roles = 0};
    *nout = 1;
    return MS_OK;
}

static int pop3_r_status(struct remote *r, const char *name, struct remote_status *out, struct ms_error *err)
{
    memset(out, 0, sizeof *out);
    if (strcmp(name, "INBOX") != 0)
        return not_inbox(name, err);
    int rc = listing(P(r), err);
    if (rc == MS_OK)
        out->messages = (uint32_t)P(r)->nmsgs;
    return rc;
}

static int pop3_r_select(struct remote *r, const char *name, bool write, struct remote_box *box, struct ms_error *err)
{
    (void)write; /* DELE needs no more than the session has */
    memset(box, 0, sizeof *box);
    if (strcmp(name, "INBOX") != 0)
        return not_inbox(name, err);
    int rc = listing(P(r), err);
    if (rc == MS_OK)
        box->exists = (uint32_t)P(r)->nmsgs;
    return rc;
}

/* Always in full: POP3 has no changes to list since. */
static int pop3_r_open(struct remote *r, const char *name, const struct remote_known *known, struct remote_listing *out,
                       struct ms_error *err)
{
    (void)known;
    struct pop3_remote *p = P(r);
    memset(out, 0, sizeof *out);
    int rc = pop3_r_select(r, name, false, &out->box, err);
    if (rc)
        return rc;
    out->kind = REMOTE_LIST_FULL;
    out->msgs = xcalloc(p->nmsgs ? p->nmsgs : 1, sizeof *out->msgs);
    for (size_t i = 0; i < p->nmsgs; i++)
        to_remote_msg(&p->msgs[i], &out->msgs[i]);
    out->nmsgs = p->nmsgs;
    out->uids = xcalloc(1, sizeof *out->uids);
    out->how = "UIDL and LIST";
    return MS_OK;
}

/* The listing's entries of the numbers in [first, last] (last 0: no bound)
 * or, with uids, of those numbers. */
static int meta(struct pop3_remote *p, uint32_t first, uint32_t last, const uint32_t *uids, size_t nuids,
                struct remote_msg **out, size_t *n, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    int rc = listing(p, err);
    if (rc)
        return rc;
    size_t cap = uids ? nuids : p->nmsgs; /* (uids may repeat one) */
    struct remote_msg *v = xcalloc(cap ? cap : 1, sizeof *v);
    size_t k = 0;
    if (uids) {
        for (size_t i = 0; i < nuids; i++) {
            const struct pop3_msg *m = by_number(p, uids[i]);
            if (m && (k == 0 || v[k - 1].uid != m->n))
                to_remote_msg(m, &v[k++]);
        }
    } else {
        for (size_t i = 0; i < p->nmsgs; i++)
            if (p->msgs[i].n >= first && (last == 0 || p->msgs[i].n <= last))
                to_remote_msg(&p->msgs[i], &v[k++]);
    }
    *out = v;
    *n = k;
    return MS_OK;
}

static int pop3_r_fetch_meta_range(struct remote *r, uint32_t first, uint32_t last, struct remote_msg **out, size_t *n,
                                   struct ms_error *err)
{
    return meta(P(r), first, last, NULL, 0, out, n, err);
}

static int pop3_r_fetch_meta(struct remote *r, const uint32_t *uids, size_t n, struct remote_msg **out, size_t *nout,
                             struct ms_error *err)
{
    return meta(P(r), 0, 0, uids, n, out, nout, err);
}

static int pop3_r_fetch_identity(struct remote *r, const uint32_t *uids, size_t n, remote_identity_fn *found, void *ctx,
                                 struct ms_error *err)
{
    (void)r, (void)uids, (void)n, (void)found, (void)ctx;
    return unsupported("read a message's identity without its body", err);
}

static int pop3_r_fetch_headers(struct remote *r, const uint32_t *uids, size_t n, const char *const *fields,
                                size_t nfields, remote_headers_fn *found, void *ctx, struct ms_error *err)
{
    (void)r, (void)uids, (void)n, (void)fields, (void)nfields, (void)found, (void)ctx;
    return unsupported("read a message's header fields without its body", err);
}

/* A body on its way to the sink, cut off when the server sends far more
 * than the size it listed (it must not fill the disk). */
struct retr {
    const struct remote_body_sink *sink;
    uint64_t got, cap;
    bool over;
    int sink_rc; /* what the sink's chunk() returned, if it aborted */
};

static int on_chunk(void *ctx, const char *data, size_t len)
{
    struct retr *t = ctx;
    t->got += len;
    if (t->got > t->cap) {
        t->over = true;
        return -1;
    }
    int rc = t->sink->chunk(t->sink->ctx, data, len);
    if (rc)
        t->sink_rc = rc;
    return rc;
}

/* RETR of each, in turn. A -ERR for one (gone meanwhile?) ends the fetch
 * with MS_EPARTIAL once the others are done: the caller's sink got every
 * other body. */
static int pop3_r_fetch_bodies(struct remote *r, const uint32_t *uids, size_t n, const struct remote_body_sink *sink,
                               struct ms_error *err)
{
    struct pop3_remote *p = P(r);
    int rc = listing(p, err);
    int partial = MS_OK;
    for (size_t i = 0; i < n && rc == MS_OK; i++) {
        const struct pop3_msg *m = by_number(p, uids[i]);
        if (!m)
            continue; /* not in the maildrop: not reported */
        struct retr t = {.sink = sink, .got = 0, .cap = 2 * m->size + (1u << 20), .over = false, .sink_rc = 0};
        rc = pop3_retr(p->s, m->n, on_chunk, &t, err);
        if (rc != MS_OK && t.over)
            rc = ms_error_set(err, MS_ENET,
                              "POP3 RETR %" PRIu32 ": the server sent more than twice the %llu bytes "
                              "it listed: cut off",
                              m->n, (unsigned long long)m->size);
        else if (rc != MS_OK && t.sink_rc)
            rc = t.sink_rc > 0 ? t.sink_rc : MS_ELOCAL;
        if (rc == MS_EPARTIAL) { /* -ERR: this one only */
            partial = rc;
            rc = MS_OK;
            continue;
        }
        if (rc == MS_OK) {
            struct remote_msg rm;
            to_remote_msg(m, &rm);
            int cb = sink->message(sink->ctx, &rm, true);
            free(rm.id);
            if (cb)
                rc = ms_error_set(err, cb > 0 ? cb : MS_ELOCAL,
                                  "POP3 RETR %" PRIu32 ": the message could not be stored", m->n);
        }
    }
    return rc ? rc : partial;
}

static int pop3_r_store_flags(struct remote *r, const uint32_t *uids, size_t n, unsigned flags, bool add,
                              struct ms_error *err)
{
    (void)r, (void)uids, (void)n, (void)flags, (void)add;
    return unsupported("store flags", err);
}

static int pop3_r_append(struct remote *r, const char *name, unsigned flags, time_t date, int fd, uint64_t size,
                         uint32_t *uidvalidity, uint32_t *uid, struct ms_error *err)
{
    (void)r, (void)name, (void)flags, (void)date, (void)fd, (void)size;
    *uidvalidity = 0;
    *uid = 0;
    return unsupported("upload messages", err);
}

/* DELE of each: carried out at commit(). A -ERR for one ends with
 * MS_EPARTIAL once the others are marked. */
static int pop3_r_remove(struct remote *r, const uint32_t *uids, size_t n, struct ms_error *err)
{
    struct pop3_remote *p = P(r);
    if (!p->s)
        return unsupported("remove messages after QUIT", err);
    int partial = MS_OK;
    for (size_t i = 0; i < n; i++) {
        int rc = pop3_dele(p->s, uids[i], err);
        if (rc == MS_EPARTIAL)
            partial = rc;
        else if (rc)
            return rc;
    }
    return partial;
}

static int pop3_r_copy(struct remote *r, const uint32_t *uids, size_t n, const char *dest, uint32_t *copy_uids,
                       uint32_t *dest_uidvalidity, struct ms_error *err)
{
    (void)r, (void)uids, (void)n, (void)dest, (void)copy_uids;
    if (dest_uidvalidity)
        *dest_uidvalidity = 0;
    return unsupported("copy messages", err);
}

static int pop3_r_move(struct remote *r, const uint32_t *uids, size_t n, const char *dest, struct ms_error *err)
{
    (void)r, (void)uids, (void)n, (void)dest;
    return unsupported("move messages", err);
}

static int pop3_r_create(struct remote *r, const char *name, struct ms_error *err)
{
    (void)r, (void)name;
    return unsupported("create folders", err);
}

static int pop3_r_search_before(struct remote *r, time_t before, uint32_t **out, size_t *n, struct ms_error *err)
{
    (void)r, (void)before;
    *out = NULL;
    *n = 0;
    return unsupported("search by date", err);
}

/* QUIT: the server carries out the DELEs now. */
static int pop3_r_commit(struct remote *r, struct ms_error *err)
{
    struct pop3_remote *p = P(r);
    bool committed = false;
    pop3_quit(p->s, &committed);
    p->s = NULL;
    return committed ? MS_OK : ms_error_set(err, MS_ENET, "POP3 QUIT was not confirmed");
}

static int pop3_r_watch(struct remote *r, struct ms_error *err)
{
    (void)r;
    return unsupported("watch for changes", err);
}

static int pop3_r_wait(struct remote *r, int timeout_ms, volatile sig_atomic_t *stop, int wake_fd, bool *changed,
                       struct ms_error *err)
{
    (void)r, (void)timeout_ms, (void)stop, (void)wake_fd;
    *changed = false;
    return unsupported("watch for changes", err);
}

static int pop3_r_clone(struct remote *r, const char *password, struct remote **out, struct ms_error *err)
{
    (void)r, (void)password;
    *out = NULL;
    return unsupported("open extra sessions", err);
}

static void pop3_r_logout_start(struct remote *r)
{
    (void)r; /* QUIT is one short round trip: close() sends it */
}

/* QUIT (DELEs sent and not committed are then carried out too, as the
 * protocol has it) and free. */
static void pop3_r_close(struct remote *r)
{
    struct pop3_remote *p = P(r);
    pop3_quit(p->s, NULL);
    free(p->msgs);
    free(p);
}

static const struct remote_ops pop3_ops = {
    .name = "pop3",
    .memo = NULL,
    .caps = pop3_caps,
    .tls_info = pop3_r_tls_info,
    .capabilities = pop3_r_capabilities,
    .list = pop3_r_list,
    .status = pop3_r_status,
    .select = pop3_r_select,
    .open = pop3_r_open,
    .open_ahead = NULL,
    .fetch_meta_range = pop3_r_fetch_meta_range,
    .fetch_changes_range = NULL,
    .fetch_meta = pop3_r_fetch_meta,
    .fetch_identity = pop3_r_fetch_identity,
    .fetch_headers = pop3_r_fetch_headers,
    .fetch_bodies = pop3_r_fetch_bodies,
    .store_flags = pop3_r_store_flags,
    .append = pop3_r_append,
    .remove = pop3_r_remove,
    .copy = pop3_r_copy,
    .move = pop3_r_move,
    .create = pop3_r_create,
    .search_before = pop3_r_search_before,
    .commit = pop3_r_commit,
    .watch = pop3_r_watch,
    .wait = pop3_r_wait,
    .clone = pop3_r_clone,
    .logout_start = pop3_r_logout_start,
    .close = pop3_r_close,
};

int remote_pop3_connect(const struct account *acct, const char *password, struct remote **out, struct ms_error *err)
{
    struct pop3_session *s = NULL;
    *out = NULL;
    int rc = pop3_connect(acct, password, &s, err);
    if (rc)
        return rc;
    struct pop3_remote *p = xcalloc(1, sizeof *p);
    p->base = (struct remote){.ops = &pop3_ops, .acct = acct};
    p->s = s;
    *out = &p->base;
    return MS_OK;
}
