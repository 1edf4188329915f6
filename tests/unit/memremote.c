/* SPDX-License-Identifier: MIT */
/*
 * memremote.c: the in-memory IMAP-like server and its remote side (see
 * memremote.h). The first half is the server as a test sees it; the
 * second half is the struct remote_ops the engine calls.
 */
#include "memremote.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sync/flags.h"
#include "sync/message.h"
#include "sync/remote/remote.h"
#include "sync/util.h"

/* INTERNALDATE of messages added without one: 2024-01-02 03:04:05 UTC. */
#define MEM_DEFAULT_DATE 1704164645

const char *mem_op_name(enum mem_op op)
{
    static const char *const names[] = {
        [MEM_OP_CONNECT] = "CONNECT", [MEM_OP_LIST] = "LIST",         [MEM_OP_STATUS] = "STATUS", [MEM_OP_SELECT] = "SELECT",
        [MEM_OP_OPEN] = "OPEN",       [MEM_OP_OPEN_INC] = "OPEN_INC", [MEM_OP_META] = "META", [MEM_OP_CHANGES] = "CHANGES",
        [MEM_OP_IDENTITY] = "IDENTITY", [MEM_OP_BODY] = "BODY",       [MEM_OP_STORE] = "STORE",
        [MEM_OP_APPEND] = "APPEND",   [MEM_OP_EXPUNGE] = "EXPUNGE",   [MEM_OP_COPY] = "COPY",
        [MEM_OP_MOVE] = "MOVE",       [MEM_OP_CREATE] = "CREATE",     [MEM_OP_SEARCH] = "SEARCH",
        [MEM_OP_LOGOUT] = "LOGOUT",   [MEM_OP_DROP] = "DROP",
    };
    return op < sizeof names / sizeof *names && names[op] ? names[op] : "?";
}

/* ------------------------------------------------------------------ */
/* the server */

struct mem_server *mem_server_new(void)
{
    struct mem_server *s = xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->delim = '/';
    s->caps = ~0u & ~(unsigned)(REMOTE_OBJECTID | REMOTE_LABELS);
    s->next_uidvalidity = 1000;
    s->incremental_kind = REMOTE_LIST_VANISHED;
    return s;
}

static void msg_free(struct mem_msg *m)
{
    free(m->keywords);
    free(m->body);
}

void mem_server_free(struct mem_server *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nfolders; i++) {
        struct mem_folder *f = &s->folders[i];
        for (size_t k = 0; k < f->n; k++)
            msg_free(&f->msgs[k]);
        free(f->msgs);
        free(f->vanished);
        free(f->name);
    }
    free(s->folders);
    free(s->log);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ------------------------------------------------------------------ */
/* the server across a client's death (a forked child's run) */

static void put_u64(FILE *f, uint64_t v)
{
    fwrite(&v, sizeof v, 1, f);
}

static void put_str(FILE *f, const char *p, size_t len)
{
    put_u64(f, p ? (uint64_t)len : UINT64_MAX);
    if (p)
        fwrite(p, 1, len, f);
}

static uint64_t get_u64(FILE *f)
{
    uint64_t v = 0;
    if (fread(&v, sizeof v, 1, f) != 1)
        abort(); /* a test's own file: cut means a test bug */
    return v;
}

static char *get_str(FILE *f, size_t *len)
{
    uint64_t n = get_u64(f);
    if (n == UINT64_MAX)
        return NULL;
    char *p = xmalloc((size_t)n + 1);
    if (n && fread(p, 1, (size_t)n, f) != n)
        abort();
    p[n] = '\0';
    if (len)
        *len = (size_t)n;
    return p;
}

int mem_server_save(const struct mem_server *s, const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    put_u64(f, s->next_emailid);
    put_u64(f, s->next_uidvalidity);
    put_u64(f, s->nfolders);
    for (size_t i = 0; i < s->nfolders; i++) {
        const struct mem_folder *d = &s->folders[i];
        put_str(f, d->name, strlen(d->name));
        put_u64(f, d->noselect);
        put_u64(f, d->roles);
        put_u64(f, d->uidvalidity);
        put_u64(f, d->uidnext);
        put_u64(f, d->modseq);
        put_u64(f, d->n);
        for (size_t k = 0; k < d->n; k++) {
            const struct mem_msg *m = &d->msgs[k];
            put_u64(f, m->uid);
            put_u64(f, m->flags);
            put_str(f, m->keywords, m->keywords ? strlen(m->keywords) : 0);
            put_u64(f, (uint64_t)m->internaldate);
            put_str(f, m->body, m->len);
            put_u64(f, m->modseq);
            put_str(f, m->emailid, strlen(m->emailid));
        }
        put_u64(f, d->nvanished);
        for (size_t k = 0; k < d->nvanished; k++) {
            put_u64(f, d->vanished[k].uid);
            put_u64(f, d->vanished[k].modseq);
        }
    }
    return fclose(f) == 0 ? 0 : -1;
}

void mem_server_load(struct mem_server *s, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        abort();
    for (size_t i = 0; i < s->nfolders; i++) {
        struct mem_folder *d = &s->folders[i];
        for (size_t k = 0; k < d->n; k++)
            msg_free(&d->msgs[k]);
        free(d->msgs);
        free(d->vanished);
        free(d->name);
    }
    free(s->folders);
    s->next_emailid = (unsigned)get_u64(f);
    s->next_uidvalidity = (uint32_t)get_u64(f);
    s->nfolders = (size_t)get_u64(f);
    s->folders = xcalloc(s->nfolders + 1, sizeof *s->folders);
    for (size_t i = 0; i < s->nfolders; i++) {
        struct mem_folder *d = &s->folders[i];
        d->name = get_str(f, NULL);
        d->noselect = get_u64(f) != 0;
        d->roles = (unsigned)get_u64(f);
        d->uidvalidity = (uint32_t)get_u64(f);
        d->uidnext = (uint32_t)get_u64(f);
        d->modseq = get_u64(f);
        d->n = (size_t)get_u64(f);
        d->msgs = xcalloc(d->n + 1, sizeof *d->msgs);
        for (size_t k = 0; k < d->n; k++) {
            struct mem_msg *m = &d->msgs[k];
            m->uid = (uint32_t)get_u64(f);
            m->flags = (unsigned)get_u64(f);
            m->keywords = get_str(f, NULL);
            m->internaldate = (time_t)get_u64(f);
            m->body = get_str(f, &m->len);
            m->modseq = get_u64(f);
            char *id = get_str(f, NULL);
            snprintf(m->emailid, sizeof m->emailid, "%s", id ? id : "");
            free(id);
        }
        d->nvanished = (size_t)get_u64(f);
        d->vanished = xcalloc(d->nvanished + 1, sizeof *d->vanished);
        for (size_t k = 0; k < d->nvanished; k++) {
            d->vanished[k].uid = (uint32_t)get_u64(f);
            d->vanished[k].modseq = get_u64(f);
        }
    }
    fclose(f);
}

/* The exit point of struct mem_faults (exit_at_op): the server is saved
 * where the test asked, then the client dies. Called with the lock held. */
static void exit_point(struct mem_server *s, bool after)
{
    if (!s->faults.exit_at_op || s->faults.exit_after != after)
        return;
    if (++s->exit_ops < s->faults.exit_at_op)
        return;
    if (s->faults.exit_save && mem_server_save(s, s->faults.exit_save) != 0)
        _exit(78);
    _exit(77);
}

struct mem_folder *mem_folder_find(struct mem_server *s, const char *name)
{
    for (size_t i = 0; i < s->nfolders; i++)
        if (strcmp(s->folders[i].name, name) == 0 ||
            (strcasecmp(name, "INBOX") == 0 && strcasecmp(s->folders[i].name, "INBOX") == 0))
            return &s->folders[i];
    return NULL;
}

struct mem_folder *mem_folder(struct mem_server *s, const char *name)
{
    struct mem_folder *f = mem_folder_find(s, name);
    if (f)
        return f;
    s->folders = xrealloc(s->folders, (s->nfolders + 1) * sizeof *s->folders);
    f = &s->folders[s->nfolders++];
    *f = (struct mem_folder){.name = xstrdup(name), .noselect = false, .roles = 0, .uidvalidity = s->next_uidvalidity++,
                             .uidnext = 1, .modseq = 1, .msgs = NULL, .n = 0, .vanished = NULL, .nvanished = 0};
    return f;
}

struct mem_msg *mem_msg_find(struct mem_folder *f, uint32_t uid)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->msgs[mid].uid == uid)
            return &f->msgs[mid];
        if (f->msgs[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* body with CRLF line ends (a lone LF becomes CRLF). */
static char *to_crlf(const char *body, size_t *len)
{
    size_t n = strlen(body), k = 0;
    char *out = xmalloc(2 * n + 1);
    for (size_t i = 0; i < n; i++) {
        if (body[i] == '\n' && (i == 0 || body[i - 1] != '\r'))
            out[k++] = '\r';
        out[k++] = body[i];
    }
    out[k] = '\0';
    *len = k;
    return out;
}

/* Append a message to f (UID = UIDNEXT), taking body (len bytes). */
static struct mem_msg *folder_append(struct mem_folder *f, char *body, size_t len, unsigned flags,
                                     const char *keywords, time_t date)
{
    f->msgs = xrealloc(f->msgs, (f->n + 1) * sizeof *f->msgs);
    struct mem_msg *m = &f->msgs[f->n++];
    *m = (struct mem_msg){.uid = f->uidnext++, .flags = flags & FLAG_ALL,
                          .keywords = keywords ? xstrdup(keywords) : NULL,
                          .internaldate = date ? date : MEM_DEFAULT_DATE, .body = body, .len = len,
                          .modseq = ++f->modseq};
    return m;
}

uint32_t mem_add(struct mem_server *s, const char *folder, const char *body, unsigned flags, time_t date)
{
    size_t len;
    char *crlf = to_crlf(body, &len);
    struct mem_msg *m = folder_append(mem_folder(s, folder), crlf, len, flags, NULL, date);
    snprintf(m->emailid, sizeof m->emailid, "gm:%u", ++s->next_emailid);
    return m->uid;
}

uint32_t mem_add_simple(struct mem_server *s, const char *folder, const char *message_id, const char *subject,
                        unsigned flags)
{
    char body[1024];
    snprintf(body, sizeof body,
             "From: a@example.org\nTo: b@example.org\nSubject: %s\nMessage-ID: %s\n"
             "Date: Tue, 02 Jan 2024 03:04:05 +0000\n\nThe body of %s.\n",
             subject, message_id, subject);
    return mem_add(s, folder, body, flags, 0);
}

void mem_set_flags(struct mem_server *s, const char *folder, uint32_t uid, unsigned flags)
{
    struct mem_folder *f = mem_folder(s, folder);
    struct mem_msg *m = mem_msg_find(f, uid);
    if (m) {
        m->flags = flags & FLAG_ALL;
        m->modseq = ++f->modseq;
    }
}

/* Remove m (a member of f), remembering it as vanished. */
static void folder_expunge(struct mem_folder *f, struct mem_msg *m)
{
    f->vanished = xrealloc(f->vanished, (f->nvanished + 1) * sizeof *f->vanished);
    f->vanished[f->nvanished++] = (struct mem_vanished){m->uid, ++f->modseq};
    msg_free(m);
    size_t at = (size_t)(m - f->msgs);
    memmove(m, m + 1, (f->n - at - 1) * sizeof *m);
    f->n--;
}

void mem_expunge(struct mem_server *s, const char *folder, uint32_t uid)
{
    struct mem_folder *f = mem_folder(s, folder);
    struct mem_msg *m = mem_msg_find(f, uid);
    if (m)
        folder_expunge(f, m);
}

/* A copy of m appended to dest; its new UID. */
static uint32_t copy_msg(struct mem_folder *dest, const struct mem_msg *m)
{
    char *body = xmalloc(m->len + 1);
    memcpy(body, m->body, m->len + 1);
    struct mem_msg *x = folder_append(dest, body, m->len, m->flags, m->keywords, m->internaldate);
    memcpy(x->emailid, m->emailid, sizeof x->emailid);
    return x->uid;
}

uint32_t mem_label(struct mem_server *s, const char *from, uint32_t uid, const char *to)
{
    struct mem_folder *dest = mem_folder(s, to); /* may move s->folders */
    struct mem_folder *src = mem_folder(s, from);
    dest = mem_folder_find(s, to);
    struct mem_msg *m = mem_msg_find(src, uid);
    return m ? copy_msg(dest, m) : 0;
}

uint32_t mem_move(struct mem_server *s, const char *from, uint32_t uid, const char *to)
{
    struct mem_folder *dest = mem_folder(s, to); /* may move s->folders */
    struct mem_folder *src = mem_folder(s, from);
    dest = mem_folder_find(s, to);
    struct mem_msg *m = mem_msg_find(src, uid);
    if (!m)
        return 0;
    uint32_t nu = copy_msg(dest, m);
    folder_expunge(src, m);
    return nu;
}

void mem_renumber(struct mem_server *s, const char *folder)
{
    struct mem_folder *f = mem_folder(s, folder);
    f->uidvalidity = s->next_uidvalidity++;
    f->uidnext = 1;
    for (size_t i = 0; i < f->n / 2; i++) { /* reversed: see memremote.h */
        struct mem_msg t = f->msgs[i];
        f->msgs[i] = f->msgs[f->n - 1 - i];
        f->msgs[f->n - 1 - i] = t;
    }
    for (size_t i = 0; i < f->n; i++) {
        f->msgs[i].uid = f->uidnext++;
        f->msgs[i].modseq = ++f->modseq;
    }
    free(f->vanished);
    f->vanished = NULL;
    f->nvanished = 0;
}

/* The raw value of header `name` of a CRLF message (its first line only,
 * trimmed, any length), or NULL; for mem_count_id, which a test compares
 * with what it wrote. Owned by the caller. */
static char *header_of(const char *body, size_t len, const char *name)
{
    size_t nl = strlen(name);
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        size_t linelen = (size_t)(eol - p);
        if (linelen == 0 || (linelen == 1 && p[0] == '\r'))
            break; /* end of the header */
        if (linelen > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1, *e = eol;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
                e--;
            char *out = xmalloc((size_t)(e - v) + 1);
            memcpy(out, v, (size_t)(e - v));
            out[e - v] = '\0';
            return out;
        }
        p = eol + 1;
    }
    return NULL;
}

size_t mem_count_id(struct mem_server *s, const char *folder, const char *message_id)
{
    struct mem_folder *f = mem_folder_find(s, folder);
    size_t n = 0;
    for (size_t i = 0; f && i < f->n; i++) {
        char *id = header_of(f->msgs[i].body, f->msgs[i].len, "Message-ID");
        n += id && strcmp(id, message_id) == 0;
        free(id);
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* the operation log */

static void log_op(struct mem_server *s, unsigned session, enum mem_op op, const char *folder, const char *to,
                   uint32_t n)
{
    s->log = xrealloc(s->log, (s->nlog + 1) * sizeof *s->log);
    struct mem_logentry *e = &s->log[s->nlog++];
    memset(e, 0, sizeof *e);
    e->op = op;
    e->n = n;
    e->session = session;
    snprintf(e->folder, sizeof e->folder, "%s", folder ? folder : "");
    snprintf(e->to, sizeof e->to, "%s", to ? to : "");
    if (s->on_op)
        s->on_op(s->on_op_ctx, e);
}

void mem_log_clear(struct mem_server *s)
{
    free(s->log);
    s->log = NULL;
    s->nlog = 0;
}

static bool entry_is(const struct mem_logentry *e, enum mem_op op, const char *folder)
{
    return e->op == op && (!folder || strcmp(e->folder, folder) == 0);
}

size_t mem_log_count(const struct mem_server *s, enum mem_op op, const char *folder)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nlog; i++)
        n += entry_is(&s->log[i], op, folder);
    return n;
}

long mem_log_first(const struct mem_server *s, enum mem_op op, const char *folder)
{
    for (size_t i = 0; i < s->nlog; i++)
        if (entry_is(&s->log[i], op, folder))
            return (long)i;
    return -1;
}

long mem_log_last(const struct mem_server *s, enum mem_op op, const char *folder)
{
    for (size_t i = s->nlog; i-- > 0;)
        if (entry_is(&s->log[i], op, folder))
            return (long)i;
    return -1;
}

char *mem_log_text(const struct mem_server *s)
{
    size_t cap = 64 + s->nlog * 160, k = 0;
    char *out = xmalloc(cap);
    out[0] = '\0';
    for (size_t i = 0; i < s->nlog; i++) {
        const struct mem_logentry *e = &s->log[i];
        int w = snprintf(out + k, cap - k, "%3zu s%u %-8s %s%s%s %u\n", i, e->session, mem_op_name(e->op), e->folder,
                         e->to[0] ? " -> " : "", e->to, e->n);
        if (w > 0)
            k += (size_t)w < cap - k ? (size_t)w : cap - k - 1;
    }
    return out;
}

/* ------------------------------------------------------------------ */
/* sessions: the remote side */

/* The capabilities the side implements (the server may offer fewer). */
#define MEM_CAPS                                                                                                   \
    (REMOTE_FOLDERS | REMOTE_WRITE | REMOTE_UIDS | REMOTE_CHANGES | REMOTE_MOVE | REMOTE_EXACT | REMOTE_EXTRA |    \
     REMOTE_AGE | REMOTE_OBJECTID | REMOTE_LABELS)

/* Bodies are streamed in chunks of this many bytes (several per message,
 * as a network read would cut them). */
#define MEM_CHUNK 64

struct mem_session {
    struct remote base;
    struct mem_server *srv;
    unsigned id;
    char *open;          /* the open folder's name, or NULL */
    bool write;          /* opened for writing */
    uint32_t open_uv;    /* its UIDVALIDITY when opened */
    bool dead;           /* dropped: every op fails with MS_ENET */
    /* A window's listing asked for ahead (side_list_ahead), and the range
     * the op being begun lists (asking: a fetch_meta_range). */
    struct {
        bool on;
        uint32_t first, last;
    } ahead;
    bool asking;
    uint32_t ask_first, ask_last;
};

static const struct remote_ops mem_ops;

static struct mem_session *sess(struct remote *r)
{
    return (struct mem_session *)r;
}

/* Start an op: take the server's lock and count the op for drop_at_op.
 * MS_OK with the lock held, or MS_ENET (lock released) on a dead or now
 * dropped session. */
static int op_begin(struct mem_session *m, const char *what, struct ms_error *err)
{
    struct mem_server *s = m->srv;
    pthread_mutex_lock(&s->mu);
    if (m->ahead.on) { /* taken by the listing of its window, or dropped */
        m->ahead.on = false;
        if (m->asking && m->ask_first == m->ahead.first && m->ask_last == m->ahead.last)
            s->ahead_taken++;
        else
            s->ahead_dropped++;
    }
    m->asking = false;
    if (!m->dead)
        exit_point(s, false);
    if (!m->dead && s->faults.drop_at_op && ++s->ops >= s->faults.drop_at_op) {
        s->faults.drop_at_op = 0;
        m->dead = true;
        log_op(s, m->id, MEM_OP_DROP, m->open, NULL, 0);
    }
    if (m->dead) {
        pthread_mutex_unlock(&s->mu);
        return ms_error_set(err, MS_ENET, "mem: connection lost (%s)", what);
    }
    return MS_OK;
}

static void op_end(struct mem_session *m)
{
    if (!m->dead)
        exit_point(m->srv, true);
    pthread_mutex_unlock(&m->srv->mu);
}

/* The open folder, or NULL with err set (MS_EUSAGE: none open; MS_ENET:
 * its UIDVALIDITY changed under the session and the server ended it). */
static struct mem_folder *open_folder(struct mem_session *m, struct ms_error *err)
{
    if (!m->open) {
        ms_error_set(err, MS_EUSAGE, "mem: no folder open");
        return NULL;
    }
    struct mem_folder *f = mem_folder_find(m->srv, m->open);
    if (!f) {
        ms_error_set(err, MS_EPARTIAL, "mem: folder %s is gone", m->open);
        return NULL;
    }
    if (f->uidvalidity != m->open_uv && !m->srv->faults.stale_session_goes_on) {
        m->dead = true;
        log_op(m->srv, m->id, MEM_OP_DROP, m->open, NULL, 0);
        ms_error_set(err, MS_ENET, "mem: BYE Mailbox UIDVALIDITY changed");
        return NULL;
    }
    return f;
}

static void msg_out(struct remote_msg *o, const struct mem_msg *m)
{
    *o = (struct remote_msg){.uid = m->uid, .flags = m->flags, .keywords = m->keywords ? xstrdup(m->keywords) : NULL,
                             .size = m->len, .internaldate = m->internaldate, .id = NULL};
}

static unsigned side_caps(struct remote *r)
{
    return sess(r)->srv->caps & MEM_CAPS;
}

static const char *side_tls_info(struct remote *r)
{
    (void)r;
    return "none (in memory)";
}

static const char *side_capabilities(struct remote *r)
{
    (void)r;
    return "IMAP4rev1 UIDPLUS MOVE CONDSTORE QRESYNC";
}

static void status_of(const struct mem_server *s, const struct mem_folder *f, struct remote_status *st)
{
    *st = (struct remote_status){.uidvalidity = f->uidvalidity, .uidnext = f->uidnext, .messages = (uint32_t)f->n,
                                 .highestmodseq = (s->caps & REMOTE_CHANGES) ? f->modseq : 0};
}

/* The lagging counters of a folder (mem_server.stale_answers), if due. */
static bool stale_of(struct mem_server *s, const struct mem_folder *f, struct remote_status *st)
{
    if (!s->stale_answers || strcmp(f->name, s->stale_folder) != 0)
        return false;
    *st = s->stale_status;
    return true;
}

struct remote_status mem_status_now(struct mem_server *s, const char *folder)
{
    struct remote_status st = {0};
    pthread_mutex_lock(&s->mu);
    struct mem_folder *f = mem_folder_find(s, folder);
    if (f)
        status_of(s, f, &st);
    pthread_mutex_unlock(&s->mu);
    return st;
}

static int side_list(struct remote *r, const char *const *names, size_t n, struct remote_status *st,
                    struct remote_folder **out, size_t *nout, struct ms_error *err)
{
    struct mem_session *m = sess(r);
    int rc = op_begin(m, "LIST", err);
    if (rc)
        return rc;
    struct mem_server *s = m->srv;
    bool lagged = false;
    for (size_t i = 0; names && i < n; i++) {
        struct mem_folder *f = mem_folder_find(s, names[i]);
        if (f && !f->noselect && !(lagged |= stale_of(s, f, &st[i])))
            status_of(s, f, &st[i]);
    }
    if (lagged)
        s->stale_answers--;
    struct remote_folder *v = xcalloc(s->nfolders + 1, sizeof *v);
    for (size_t i = 0; i < s->nfolders; i++)
        v[i] = (struct remote_folder){.name = xstrdup(s->folders[i].name), .delim = s->delim,
                                      .noselect = s->folders[i].noselect, .roles = s->folders[i].roles};
    *out = v;
    *nout = s->nfolders;
    log_op(s, m->id, MEM_OP_LIST, NULL, NULL, names ? (uint32_t)n : 0);
    op_end(m);
    return MS_OK;
}

static int side_status(struct remote *r, const char *name, struct remote_status *out, struct ms_error *err)
{
    struct mem_session *m = sess(r);
    int rc = op_begin(m, "STATUS", err);
    if (rc)
        return rc;
    struct mem_folder *f = mem_folder_find(m->srv, name);
    if (!f || f->noselect)
        rc = ms_error_set(err, MS_EPARTIAL, "mem: STATUS %s: no such folder", name);
    else if (stale_of(m->srv, f, out))
        m->srv->stale_answers--;
    else
        status_of(m->srv, f, out);
    log_op(m->srv, m->id, MEM_OP_STATUS, name, NULL, 0);
    op_end(m);
    return rc;
}

/* Make name the open folder (the lock held). */
static struct mem_folder *open_by_name(struct mem_session *m, const char *name, bool write, struct remote_box *box,
                                       struct ms_error *err)
{
    struct mem_folder *f = mem_folder_find(m->srv, name);
    free(m->open);
    m->open = NULL;
    if (!f || f->noselect) {
        ms_error_set(err, MS_EPARTIAL, "mem: SELECT %s: no such folder", name);
        return NULL;
    }
    m->open = xstrdup(f->name);
    m->write = write;
    m->open_uv = f->uidvalidity;
    *box = (struct remote_box){.uidvalidity = f->uidvalidity, .uidnext = f->uidnext, .exists = (uint32_t)f->n,
                               .highestmodseq = (m->srv->caps & REMOTE_CHANGES) ? f->modseq : 0};
    return f;
}

static int side_select(struct remote *r, const char *name, bool write, struct remote_box *box, struct ms_error *err)
{
    struct mem_session *m = sess(r);
    int rc = op_begin(m, "SELECT", err);
    if (rc)
        return rc;
    if (!open_by_name(m, name, write, box, err))
        rc = MS_EPARTIAL;
    log_op(m->srv, m->id, MEM_OP_SELECT, name, NULL, write);
    op_end(m);
    return rc;
}

/* After a listing of f: the scripted UIDVALIDITY change, if it is f's. */
static void after_listing(struct mem_server *s, struct mem_folder *f)
{
    if (s->faults.uidvalidity_after_listing[0] && strcmp(s->faults.uidvalidity_after_listing, f->name) == 0 &&
        s->faults.uidvalidity_after_bodies == 0) {
        s->faults.uidvalidity_after_listing[0] = '\0';
        mem_renumber(s, f->name);
    }
}

/* After a body of f: the scripted UIDVALIDITY change, if it is due. */
static void after_body(struct mem_server *s, struct mem_folder *f)
{
    if (s->faults.uidvalidity_after_listing[0] && strcmp(s->faults.uidvalidity_after_listing, f->name) == 0 &&
        s->faults.uidvalidity_after_bodies && --s->faults.uidvalidity_after_bodies == 0) {
        s->faults.uidvalidity_after_listing[0] = '\0';
        mem_renumber(s, f->name);
    }
}

static int side_open(struct remote *r, const char *name, const struct remote_known *known, struct remote_listing *out,
                    struct ms_error *err)
{
    struct mem_session *m = sess(r);
    memset(out, 0, sizeof *out);
    int rc = op_begin(m, "OPEN", err);
    if (rc)
        return rc;
    struct mem_server *s = m->srv;
    struct remote_box box;
    struct mem_folder *f = open_by_name(m, name, false, &box, err);
    if (!f) {
        log_op(s, m->id, MEM_OP_OPEN, name, NULL, 0);
        op_end(m);
        return MS_EPARTIAL;
    }
    bool inc = known && known->modseq && (s->caps & REMOTE_CHANGES) && known->uidvalidity == f->uidvalidity &&
               f->modseq >= known->modseq;
    /* A full listing with a window (as the IMAP side): the top window of
     * UIDs only, when the folder holds more messages than the window. */
    uint32_t from = 0;
    if (!inc && known && known->window && f->n > known->window && f->uidnext > known->window + 1)
        from = f->uidnext - known->window;
    /* An incremental one too, when more messages changed than the window. */
    if (inc && known->window && f->uidnext > known->window + 1) {
        size_t changed = 0;
        for (size_t i = 0; i < f->n; i++)
            changed += f->msgs[i].modseq > known->modseq;
        if (changed > known->window)
            from = f->uidnext - known->window;
    }
    struct remote_msg *v = xcalloc(f->n + 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < f->n; i++)
        if ((!inc || f->msgs[i].modseq > known->modseq) && f->msgs[i].uid >= from)
            msg_out(&v[k++], &f->msgs[i]);
    out->box = box;
    out->from = from;
    out->msgs = v;
    out->nmsgs = k;
    if (!inc) {
        out->kind = REMOTE_LIST_FULL;
        out->uids = NULL; /* as the IMAP side: the engine keeps only msgs of a full listing */
    } else if (s->incremental_kind == REMOTE_LIST_ALL_UIDS) {
        out->kind = REMOTE_LIST_ALL_UIDS;
        out->uids = xcalloc(f->n + 1, sizeof *out->uids);
        for (size_t i = 0; i < f->n; i++)
            out->uids[out->nuids++] = f->msgs[i].uid;
    } else {
        out->kind = REMOTE_LIST_VANISHED;
        out->uids = xcalloc(f->nvanished + 1, sizeof *out->uids);
        for (size_t i = 0; i < f->nvanished; i++) /* in UID order: expunged UIDs only grow... */
            if (f->vanished[i].modseq > known->modseq && f->vanished[i].uid < f->uidnext)
                out->uids[out->nuids++] = f->vanished[i].uid;
        /* ...except that a message expunged later may have a lower UID */
        for (size_t i = 1; i < out->nuids; i++)
            for (size_t j = i; j > 0 && out->uids[j - 1] > out->uids[j]; j--) {
                uint32_t t = out->uids[j];
                out->uids[j] = out->uids[j - 1];
                out->uids[j - 1] = t;
            }
    }
    log_op(s, m->id, inc ? MEM_OP_OPEN_INC : MEM_OP_OPEN, name, NULL, (uint32_t)k);
    after_listing(s, f);
    op_end(m);
    return MS_OK;
}

/* Only noted (not an op of its own: the fault points' counts stay as
 * they were): the next op tells whether it was taken. */
static int side_list_ahead(struct remote *r, uint32_t first, uint32_t last, uint64_t modseq, struct ms_error *err)
{
    (void)modseq, (void)err;
    struct mem_session *m = sess(r);
    pthread_mutex_lock(&m->srv->mu);
    if (m->ahead.on)
        m->srv->ahead_dropped++;
    m->ahead.on = true;
    m->ahead.first = first;
    m->ahead.last = last;
    pthread_mutex_unlock(&m->srv->mu);
    return MS_OK;
}

static int side_fetch_meta_range(struct remote *r, uint32_t first, uint32_t last, struct remote_msg **out, size_t *n,
                                struct ms_error *err)
{
    struct mem_session *m = sess(r);
    m->asking = true;
    m->ask_first = first;
    m->ask_last = last;
    int rc = op_begin(m, "FETCH", err);
    if (rc)
        return rc;
    struct mem_folder *f = open_folder(m, err);
    if (!f) {
        rc = err->code;
        op_end(m);
        return rc;
    }
    struct remote_msg *v = xcalloc(f->n + 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < f->n; i++)
        if (f->msgs[i].uid >= first && (last == 0 || f->msgs[i].uid <= last))
            msg_out(&v[k++], &f->msgs[i]);
    *out = v;
    *n = k;
    log_op(m->srv, m->id, MEM_OP_META, m->open, NULL, (uint32_t)k);
    op_end(m);
    return MS_OK;
}

static int side_fetch_changes_range(struct remote *r, uint32_t first, uint32_t last, uint64_t modseq,
                                   struct remote_msg **out, size_t *n, struct ms_error *err)
{
    struct mem_session *m = sess(r);
    int rc = op_begin(m, "FETCH", err);
    if (rc)
        return rc;
    struct mem_folder *f = open_folder(m, err);
    if (!f) {
        rc = err->code;
        op_end(m);
        return rc;
    }
    struct remote_msg *v = xcalloc(f->n + 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < f->n; i++)
        if (f->msgs[i].uid >= first && (last == 0 || f->msgs[i].uid <= last) && f->msgs[i].modseq > modseq)
            msg_out(&v[k++], &f->msgs[i]);
    *out = v;
    *n = k;
    log_op(m->srv, m->id, MEM_OP_CHANGES, m->open, NULL, (uint32_t)k);
    op_end(m);
    return MS_OK;
}

static int side_fetch_meta(struct remote *r, const uint32_t *uids, size_t n, struct remote_msg **out, size_t *nout,
                          struct ms_error *err)
{
    struct mem_session *m = sess(r);
    int rc = op_begin(m, "FETCH", err);
    if (rc)
        return rc;
    struct mem_folder *f = open_folder(m, err);
    if (!f) {
        rc = err->code;
        op_end(m);
        return rc;
    }
    struct remote_msg *v = xcalloc(n + 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        struct mem_msg *x = mem_msg_find(f, uids[i]);
        if (x)
            msg_out(&v[k++], x);
    }
    *out = v;
    *nout = k;
    log_op(m->srv, m->id, MEM_OP_META, m->open, NULL, (uint32_t)n);
    op_end(m);
    return MS_OK;
}

static int side_fetch_identity(struct remote *r, const uint32_t *uids, size_t n, remote_identity_fn *found, void *ctx,
                              struct ms_error *err)
{
    struct mem_session *m = sess(r);
    int rc = op_begin(m, "FETCH", err);
    if (rc)
        return rc;
    struct mem_folder *f = open_folder(m, err);
    if (!f) {
        rc = err->code;
        op_end(m);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        struct mem_msg *x = mem_msg_find(f, uids[i]);
        if (!x)
            continue;
        /* read as the IMAP side reads its FETCH of the header: the one parser */
        char *id = message_header(x->body, x->len, "Message-ID");
        found(ctx, x->uid, x->len, id);
        free(id);
    }
    log_op(m->srv, m->id, MEM_OP_IDENTITY, m->open, NULL, (uint32_t)n);
    op_end(m);
    return MS_OK;
}

static int side_fetch_identity_oid(struct remote *r, const uint32_t *uids, size_t n, remote_identity_oid_fn *found,
                                  void *ctx, struct ms_error *err)
{
    struct mem_session *m = sess(r);
    if (!(m->srv->caps & REMOTE_OBJECTID))
        return ms_error_set(err, MS_EUSAGE, "mem: no OBJECTID");
    int rc = op_begin(m, "FETCH", err);
    if (rc)
        return rc;
    struct mem_folder *f = open_folder(m, err);
    if (!f) {
        rc = err->code;
        op_end(m);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        struct mem_msg *x = mem_msg_find(f, uids[i]);
        if (!x)
            continue;
        char *id = message_header(x->body, x->len, "Message-ID");
        found(ctx, x->uid, x->len, id, x->emailid[0] ? x->emailid : NULL);
        free(id);
    }
    log_op(m->srv, m->id, MEM_OP_IDENTITY, m->open, NULL, (uint32_t)n);
    op_end(m);
    return MS_OK;
}

static int side_fetch_headers(struct remote *r, const uint32_t *uids, size_t n, const char *const *fields,
                              size_t nfields, remote_headers_fn *found, void *ctx, struct ms_error *err)
{
    struct mem_session *m = sess(r);
    int rc = op_begin(m, "FETCH", err);
    if (rc)
        return rc;
    struct mem_folder *f = open_folder(m, err);
    if (!f) {
        rc = err->code;
        op_end(m);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        struct mem_msg *x = mem_msg_find(f, uids[i]);
        if (!x)
            continue;
        /* the fields asked for, as lines "Name: value" (one parser reads them) */
        char block[4096];
        size_t len = 0;
        if (nfields == 0) { /* the whole header, up to and with the empty line */
            const char *end = strstr(x->body, "\r\n\r\n");
            len = end ? (size_t)(end - x->body) + 4 : x->len;
            len = len < sizeof block ? len : sizeof block;
            memcpy(block, x->body, len);
        }
        for (size_t k = 0; k < nfields; k++) {
            char *v = message_header(x->body, x->len, fields[k]);
            if (v) {
                int w = snprintf(block + len, sizeof block - len, "%s: %s\r\n", fields[k], v);
                if (w > 0 && (size_t)w < sizeof block - len)
                    len += (size_t)w;
            }
            free(v);
        }
        found(ctx, x->uid, x->len, block, len);
    }
    log_op(m->srv, m->id, MEM_OP_IDENTITY, m->open, NULL, (uint32_t)n);
    op_end(m);
    return MS_OK;
}

/* One body taken out of the server, streamed without its lock (the
 * engine's callbacks take locks of their own). */
struct body_copy {
    struct mem_msg m;
    size_t send;  /* bytes to stream: all, or less when the session drops mid-message */
    bool drop;    /* the session drops after send bytes */
};

static int side_fetch_bodies(struct remote *r, const uint32_t *uids, size_t n, const struct remote_body_sink *sink,
                            struct ms_error *err)
{
    struct mem_session *m = sess(r);
    for (size_t i = 0; i < n; i++) {
        int rc = op_begin(m, "FETCH", err);
        if (rc)
            return rc;
        struct mem_server *s = m->srv;
        struct mem_folder *f = open_folder(m, err);
        if (!f) {
            rc = err->code;
            op_end(m);
            return rc;
        }
        struct mem_msg *x = mem_msg_find(f, uids[i]);
        if (!x) { /* expunged meanwhile: simply not reported */
            op_end(m);
            continue;
        }
        struct body_copy b = {.m = *x, .send = x->len, .drop = false};
        bool failed = false;
        s->bodies++;
        if (s->faults.drop_after_bodies && s->bodies > s->faults.drop_after_bodies) {
            /* cut in the middle of this one */
            s->faults.drop_after_bodies = 0;
            b.send = x->len / 2;
            b.drop = true;
        } else if (s->faults.fail_body && s->bodies == s->faults.fail_body) {
            s->faults.fail_body = 0;
            failed = true;
        }
        if (failed && s->faults.body_kind == MEM_BODY_MISSING) {
            op_end(m);
            continue;
        }
        if (failed) {
            log_op(s, m->id, MEM_OP_BODY, m->open, NULL, 0);
            op_end(m);
            /* the bodies after it still come, then the command fails */
            int later = i + 1 < n ? side_fetch_bodies(r, uids + i + 1, n - i - 1, sink, err) : MS_OK;
            if (later)
                return later;
            return ms_error_set(err, MS_EPARTIAL, "mem: UID FETCH failed for UID %u", uids[i]);
        }
        b.m.body = xmalloc(x->len + 1);
        memcpy(b.m.body, x->body, x->len + 1);
        b.m.keywords = x->keywords ? xstrdup(x->keywords) : NULL;
        log_op(s, m->id, b.drop ? MEM_OP_DROP : MEM_OP_BODY, m->open, NULL, x->uid);
        if (b.drop)
            m->dead = true;
        else
            after_body(s, f);
        op_end(m);

        int cb = 0;
        for (size_t at = 0; at < b.send && cb == 0; at += MEM_CHUNK)
            cb = sink->chunk(sink->ctx, b.m.body + at, b.send - at < MEM_CHUNK ? b.send - at : MEM_CHUNK);
        if (cb == 0 && !b.drop) {
            struct remote_msg rm;
            msg_out(&rm, &b.m);
            if ((s->caps & REMOTE_OBJECTID) && b.m.emailid[0])
                rm.emailid = b.m.emailid;
            cb = sink->message(sink->ctx, &rm, true);
            free(rm.keywords);
        }
        msg_free(&b.m);
        if (b.drop)
            return ms_error_set(err, MS_ENET, "mem: connection lost during the fetch");
        if (cb) {
            m->dead = true; /* an aborted fetch leaves the session unusable (remote.h) */
            return ms_error_set(err, cb > 0 ? cb : MS_ENET, "mem: UID %u could not be stored", b.m.uid);
        }
    }
    return MS_OK;
}

static int need_write(struct mem_session *m, struct mem_folder **f, struct ms_error *err)
{
    *f = open_folder(m, err);
    if (!*f)
        return err->code;
    if (!m->write)
        return ms_error_set(err, MS_EPARTIAL, "mem: the folder is open read-only");
    return MS_OK;
}

static int side_store_flags(struct remote *r, const uint32_t *uids, size_t n, unsigned flags, bool add,
                          struct ms_error *err)
{
    struct mem_session *m = sess(r);
    if (n == 0)
        return MS_OK;
    int rc = op_begin(m, "STORE", err);
    if (rc)
        return rc;
    struct mem_folder *f;
    if ((rc = need_write(m, &f, err)) == MS_OK) {
        for (size_t i = 0; i < n; i++) {
            struct mem_msg *x = mem_msg_find(f, uids[i]);
            if (!x)
                continue;
            unsigned now = add ? x->flags | (flags & FLAG_ALL) : x->flags & ~flags;
            if (now != x->flags) {
                x->flags = now;
                x->modseq = ++f->modseq;
            }
        }
        log_op(m->srv, m->id, MEM_OP_STORE, m->open, NULL, (uint32_t)n);
    }
    op_end(m);
    return rc;
}

static int side_append(struct remote *r, const char *name, unsigned flags, time_t date, int fd, uint64_t size,
                      uint32_t *uidvalidity, uint32_t *uid, struct ms_error *err)
{
    struct mem_session *m = sess(r);
    *uidvalidity = 0;
    *uid = 0;
    /* read the file first, outside the lock */
    size_t cap = 4096, len = 0;
    char *raw = xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap)
            raw = xrealloc(raw, cap *= 2);
        ssize_t got = read(fd, raw + len, cap - len - 1);
        if (got < 0) {
            free(raw);
            return ms_error_set(err, MS_ENET, "mem: cannot read the message to append");
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    raw[len] = '\0';
    size_t crlf_len;
    char *body = to_crlf(raw, &crlf_len);
    free(raw);
    int rc = op_begin(m, "APPEND", err);
    if (rc) {
        free(body);
        return rc;
    }
    struct mem_server *s = m->srv;
    struct mem_folder *f = mem_folder_find(s, name);
    if (crlf_len != size) {
        m->dead = true;
        free(body);
        rc = ms_error_set(err, MS_ENET, "mem: APPEND announced %llu bytes, the file has %zu",
                          (unsigned long long)size, crlf_len);
    } else if (!f || f->noselect) {
        free(body);
        rc = ms_error_set(err, MS_EPARTIAL, "mem: APPEND %s: no such folder", name);
    } else {
        struct mem_msg *x = folder_append(f, body, crlf_len, flags, NULL, date ? date : time(NULL));
        snprintf(x->emailid, sizeof x->emailid, "gm:%u", ++s->next_emailid);
        if (!s->faults.no_appenduid) {
            *uidvalidity = f->uidvalidity;
            *uid = x->uid;
        }
        log_op(s, m->id, MEM_OP_APPEND, name, NULL, x->uid);
    }
    op_end(m);
    return rc;
}

static int side_remove(struct remote *r, const uint32_t *uids, size_t n, struct ms_error *err)
{
    struct mem_session *m = sess(r);
    int rc = op_begin(m, "EXPUNGE", err);
    if (rc)
        return rc;
    struct mem_folder *f;
    if (!(m->srv->caps & REMOTE_EXACT))
        rc = ms_error_set(err, MS_EUSAGE, "mem: no UIDPLUS");
    else if ((rc = need_write(m, &f, err)) == MS_OK) {
        for (size_t i = 0; i < n; i++) {
            struct mem_msg *x = mem_msg_find(f, uids[i]);
            if (x)
                folder_expunge(f, x);
        }
        log_op(m->srv, m->id, MEM_OP_EXPUNGE, m->open, NULL, (uint32_t)n);
    }
    op_end(m);
    return rc;
}

/* Copy uids of the open folder f to dest (the lock held); copy_uids as
 * remote.h says. */
static int copy_locked(struct mem_session *m, struct mem_folder **f, const uint32_t *uids, size_t n,
                       const char *dest, uint32_t *copy_uids, uint32_t *dest_uidvalidity, struct ms_error *err)
{
    struct mem_folder *d = mem_folder_find(m->srv, dest);
    if (!d || d->noselect)
        return ms_error_set(err, MS_EPARTIAL, "mem: COPY to %s: no such folder", dest);
    for (size_t i = 0; i < n; i++) {
        struct mem_msg *x = mem_msg_find(*f, uids[i]);
        if (!x)
            continue;
        uint32_t nu = copy_msg(d, x);
        if (copy_uids && (m->srv->caps & REMOTE_EXACT))
            copy_uids[i] = nu;
    }
    if (dest_uidvalidity)
        *dest_uidvalidity = (m->srv->caps & REMOTE_EXACT) ? d->uidvalidity : 0;
    return MS_OK;
}

static int side_copy(struct remote *r, const uint32_t *uids, size_t n, const char *dest, uint32_t *copy_uids,
                    uint32_t *dest_uidvalidity, struct ms_error *err)
{
    struct mem_session *m = sess(r);
    int rc = op_begin(m, "COPY", err);
    if (rc)
        return rc;
    struct mem_folder *f = open_folder(m, err);
    if (!f)
        rc = err->code;
    else if ((rc = copy_locked(m, &f, uids, n, dest, copy_uids, dest_uidvalidity, err)) == MS_OK)
        log_op(m->srv, m->id, MEM_OP_COPY, m->open, dest, (uint32_t)n);
    op_end(m);
    return rc;
}

static int side_move(struct remote *r, const uint32_t *uids, size_t n, const char *dest, struct ms_error *err)
{
    struct mem_session *m = sess(r);
    int rc = op_begin(m, "MOVE", err);
    if (rc)
        return rc;
    struct mem_folder *f;
    if (!(m->srv->caps & (REMOTE_MOVE | REMOTE_EXACT)))
        rc = ms_error_set(err, MS_EUSAGE, "mem: neither MOVE nor UIDPLUS");
    else if ((rc = need_write(m, &f, err)) == MS_OK &&
             (rc = copy_locked(m, &f, uids, n, dest, NULL, NULL, err)) == MS_OK) {
        for (size_t i = 0; i < n; i++) {
            struct mem_msg *x = mem_msg_find(f, uids[i]);
            if (x)
                folder_expunge(f, x);
        }
        log_op(m->srv, m->id, MEM_OP_MOVE, m->open, dest, (uint32_t)n);
    }
    op_end(m);
    return rc;
}

static int side_create(struct remote *r, const char *name, struct ms_error *err)
{
    struct mem_session *m = sess(r);
    int rc = op_begin(m, "CREATE", err);
    if (rc)
        return rc;
    if (mem_folder_find(m->srv, name)) {
        rc = ms_error_set(err, MS_EPARTIAL, "mem: CREATE %s: it exists", name);
    } else {
        mem_folder(m->srv, name); /* (sessions keep names, not pointers) */
        log_op(m->srv, m->id, MEM_OP_CREATE, name, NULL, 0);
    }
    op_end(m);
    return rc;
}

static int side_search_before(struct remote *r, time_t before, uint32_t **out, size_t *n, struct ms_error *err)
{
    struct mem_session *m = sess(r);
    int rc = op_begin(m, "SEARCH", err);
    if (rc)
        return rc;
    struct mem_folder *f = open_folder(m, err);
    if (!f) {
        rc = err->code;
        op_end(m);
        return rc;
    }
    time_t day = before - before % 86400; /* the start of its day, UTC */
    uint32_t *v = xcalloc(f->n + 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < f->n; i++)
        if (f->msgs[i].internaldate < day)
            v[k++] = f->msgs[i].uid;
    *out = v;
    *n = k;
    log_op(m->srv, m->id, MEM_OP_SEARCH, m->open, NULL, (uint32_t)k);
    op_end(m);
    return MS_OK;
}

static int side_commit(struct remote *r, struct ms_error *err)
{
    (void)r;
    (void)err;
    return MS_OK;
}

static int side_watch(struct remote *r, struct ms_error *err)
{
    if (sess(r)->srv->on_wait)
        return MS_OK;
    return ms_error_set(err, MS_EUSAGE, "mem: no IDLE");
}

static int side_wait(struct remote *r, int timeout_ms, volatile sig_atomic_t *stop, int wake_fd, bool *changed,
                    struct ms_error *err)
{
    struct mem_server *s = sess(r)->srv;
    (void)wake_fd;
    (void)timeout_ms;
    (void)stop;
    *changed = false;
    if (s->on_wait) {
        int rc = s->on_wait(s->on_wait_ctx, changed);
        return rc ? ms_error_set(err, rc, "mem: the wait failed") : MS_OK;
    }
    return ms_error_set(err, MS_EUSAGE, "mem: no IDLE");
}

static int side_clone(struct remote *r, const char *password, struct remote **out, struct ms_error *err)
{
    (void)password;
    return mem_connect(sess(r)->srv, r->acct, out, err);
}

static void side_logout_start(struct remote *r)
{
    struct mem_session *m = sess(r);
    pthread_mutex_lock(&m->srv->mu);
    if (!m->dead) {
        exit_point(m->srv, false);
        log_op(m->srv, m->id, MEM_OP_LOGOUT, NULL, NULL, 0);
        exit_point(m->srv, true);
    }
    m->dead = true; /* only close() may follow */
    pthread_mutex_unlock(&m->srv->mu);
}

static void side_close(struct remote *r)
{
    struct mem_session *m = sess(r);
    free(m->open);
    free(m);
}

static const struct remote_ops mem_ops = {
    .name = "mem",
    .memo = NULL,
    .caps = side_caps,
    .tls_info = side_tls_info,
    .capabilities = side_capabilities,
    .list = side_list,
    .status = side_status,
    .select = side_select,
    .open = side_open,
    .open_ahead = NULL,
    .fetch_meta_range = side_fetch_meta_range,
    .list_ahead = side_list_ahead,
    .fetch_changes_range = side_fetch_changes_range,
    .fetch_meta = side_fetch_meta,
    .fetch_identity = side_fetch_identity,
    .fetch_identity_oid = side_fetch_identity_oid,
    .fetch_headers = side_fetch_headers,
    .fetch_bodies = side_fetch_bodies,
    .store_flags = side_store_flags,
    .append = side_append,
    .remove = side_remove,
    .copy = side_copy,
    .move = side_move,
    .create = side_create,
    .search_before = side_search_before,
    .commit = side_commit,
    .watch = side_watch,
    .wait = side_wait,
    .clone = side_clone,
    .logout_start = side_logout_start,
    .close = side_close,
};

int mem_connect(struct mem_server *srv, const struct account *a, struct remote **out, struct ms_error *err)
{
    *out = NULL;
    pthread_mutex_lock(&srv->mu);
    if (srv->refuse_login) {
        srv->refuse_login--;
        pthread_mutex_unlock(&srv->mu);
        return ms_error_set(err, MS_ENET, "mem: connection refused");
    }
    struct mem_session *m = xcalloc(1, sizeof *m);
    m->base = (struct remote){.ops = &mem_ops, .acct = a};
    m->srv = srv;
    m->id = ++srv->sessions;
    log_op(srv, m->id, MEM_OP_CONNECT, NULL, NULL, 0);
    pthread_mutex_unlock(&srv->mu);
    *out = &m->base;
    return MS_OK;
}

static struct mem_server *installed;

void mem_install(struct mem_server *srv)
{
    installed = srv;
}

int mem_remote_connect(const struct account *a, const char *password, struct remote **out, struct ms_error *err)
{
    (void)password;
    if (!installed)
        return ms_error_set(err, MS_EUSAGE, "mem: no server installed");
    return mem_connect(installed, a, out, err);
}
