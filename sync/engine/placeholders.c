/* SPDX-License-Identifier: MIT */
/*
 * placeholders.c: quick view first. With `placeholders = yes` (the
 * default; IMAP), a message over max_size is not skipped but stored as a placeholder: its real header
 * (BODY.PEEK[HEADER], never the body) and a short note with its size
 * (message_placeholder), with the server's flags. Its row is a message's
 * row (one per UID, marked STATE_PLACEHOLDER: db/state.h), so a resync
 * never downloads it again, its flags sync both ways, and a push never
 * uploads it (the state knows it; without the state, its marks make rematch
 * and push_placeholders.c leave it alone, as they do mbsync's).
 *
 * The full message replaces it when the user flags the placeholder
 * (\Flagged, locally: the next pull or sync), asks for it (`mailsync
 * fetch FILE...` / `--all`), or max_size is raised above its size. The replacement, crash-safe:
 *   1. the message streams into a new file in tmp/, fsynced;
 *   2. that file is renamed over the placeholder's name (rename(2): a reader
 *      sees one or the other, never both, never neither); the directory is
 *      fsynced;
 *   3. the row's mark is cleared.
 * A kill before 2 leaves the placeholder (the tmp/ file is swept later); a
 * kill between 2 and 3 leaves the full message under a row still marked:
 * the next run that looks at the row reads the file, finds no placeholder
 * and only clears the mark. The file keeps its name (unique part and flags,
 * \Flagged too), so no second copy appears on either side.
 *
 * A row whose mark was lost (a state DB restored from before it) while
 * its file is still the placeholder is marked again when the user flags
 * the file (the push, before its STORE) or names it (`fetch FILE`): the
 * file must carry a placeholder's marks, the row's Message-ID and, in its
 * field, the row's size, the server's (placeholders_mark_lost). The mark
 * is committed first, so a kill after it leaves a marked placeholder that
 * the next run replaces, once.
 *
 * Delivery of new placeholders uses the delivery journal (journal.h) like
 * any download, so a kill there is as safe as in deliver.c.
 */
#include "sync/engine/engine_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/state.h"
#include "sync/engine/journal.h"
#include "sync/flags.h"
#include "sync/log.h"
#include "sync/message.h"
#include "sync/util.h"

/* Placeholders delivered per journal batch. */
#define PLACEHOLDER_BATCH 200
/* How much of a file is read to tell a placeholder (a header and a note). */

/* ------------------------------------------------------------------ */
/* delivery (pull) */

struct deliver_ctx {
    struct run *r;
    struct maildir_folder *mf;
    const struct plan_action **by_uid; /* the batch's actions, by uid */
    size_t n;
    bool *got;
    struct journal_entry *v;
    size_t nv;
    int rc;
    struct ms_error err;
};

static int cmp_action_uid(const void *a, const void *b)
{
    uint32_t x = (*(const struct plan_action *const *)a)->uid, y = (*(const struct plan_action *const *)b)->uid;
    return (x > y) - (x < y);
}

static int cmp_key_action(const void *key, const void *elem)
{
    uint32_t x = *(const uint32_t *)key, y = (*(const struct plan_action *const *)elem)->uid;
    return (x > y) - (x < y);
}

static void found_header(void *vctx, uint32_t uid, uint64_t size, const char *block, size_t len)
{
    struct deliver_ctx *c = vctx;
    (void)size; /* the listing's size is the one recorded */
    const struct plan_action **at = bsearch(&uid, c->by_uid, c->n, sizeof *c->by_uid, cmp_key_action);
    if (c->rc || !at || c->got[at - c->by_uid])
        return;
    const struct plan_action *a = *at;
    c->got[at - c->by_uid] = true;
    size_t plen = 0;
    char *text = message_placeholder(block, len, a->size, c->r->acct->max_size, &plen);
    struct maildir_tmp *t = NULL;
    if (!text) {
        c->rc = ms_error_set(&c->err, MS_ELOCAL, "out of memory");
        return;
    }
    if ((c->rc = maildir_tmp_open(c->mf, &t, &c->err)) == MS_OK &&
        (c->rc = maildir_tmp_write(t, text, plen, &c->err)) == MS_OK)
        c->rc = maildir_tmp_close(t, 0, false, &c->err);
    free(text);
    if (c->rc) {
        if (t)
            maildir_tmp_discard(t);
        return;
    }
    struct journal_entry *e = &c->v[c->nv++];
    memset(e, 0, sizeof *e);
    e->uid = uid;
    e->tmp = t;
    e->flags = a->flags;
    e->keywords = a->keywords ? xstrdup(a->keywords) : NULL;
    e->size = a->size;
    e->message_id = message_header(block, len, "Message-ID");
    e->placeholder = true;
}

/* One batch of the plan's placeholders (acts[0..n), sorted by uid). */
static int deliver_batch(struct run *r, const struct selected *sel, struct maildir_folder *mf, struct journal *j,
                         const struct plan_action **acts, size_t n, struct engine_folder_result *fres,
                         struct ms_error *err)
{
    struct deliver_ctx c = {.r = r, .mf = mf, .by_uid = acts, .n = n, .got = xcalloc(n, sizeof(bool)),
                            .v = xcalloc(n, sizeof(struct journal_entry)), .nv = 0, .rc = MS_OK, .err = {0}};
    uint32_t *uids = xmalloc(n * sizeof *uids);
    for (size_t i = 0; i < n; i++)
        uids[i] = acts[i]->uid;
    int rc = r->remote->ops->fetch_headers(r->remote, uids, n, NULL, 0, found_header, &c, err);
    if (rc == MS_OK && c.rc) {
        rc = c.rc;
        *err = c.err;
    }
    if (rc == MS_OK) {
        for (size_t i = 0; i < n; i++)
            if (!c.got[i]) { /* expunged meanwhile, or a server in trouble: the next run asks again */
                log_msg(LOG_WARN, "%s: UID %u: the server returned no header; no placeholder stored", sel->name,
                        uids[i]);
                fres->failed++;
            }
        size_t nv = c.nv;
        rc = journal_submit(j, c.v, c.nv, err);
        if (rc == MS_OK)
            fres->placeholders += nv;
    }
    journal_entries_clear(c.v, c.nv);
    free(c.v);
    free(c.got);
    free(uids);
    return rc;
}

int placeholders_deliver(struct run *r, const struct selected *sel, struct maildir_folder *mf, int64_t folder_id,
                         const struct plan *p, struct engine_folder_result *fres, struct state_folder *finish,
                         struct ms_error *err)
{
    const struct plan_action **acts = xcalloc(p->nplaceholder + 1, sizeof *acts);
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->actions[i].op == PLAN_PLACEHOLDER)
            acts[n++] = &p->actions[i];
    if (!r->remote->ops->fetch_headers) {
        free(acts);
        return ms_error_set(err, MS_EUSAGE, "%s: this server cannot send a header alone: no placeholders",
                            sel->name);
    }
    /* newest first when the plan says so: batches from the top down, each
     * sorted for the fetch */
    struct journal *j = journal_new(r->st, mf, folder_id, JOURNAL_UID, r->dirs, NULL, NULL);
    int rc = MS_OK;
    for (size_t done = 0; done < n && rc == MS_OK && !run_stopped(r); done += PLACEHOLDER_BATCH) {
        size_t k = n - done < PLACEHOLDER_BATCH ? n - done : PLACEHOLDER_BATCH;
        qsort(acts + done, k, sizeof *acts, cmp_action_uid);
        rc = deliver_batch(r, sel, mf, j, acts + done, k, fres, err);
    }
    struct ms_error ferr;
    int frc = journal_finish(j, &ferr);
    if (frc && rc == MS_OK) {
        rc = frc;
        *err = ferr;
    }
    /* the folder's row only when everything is in (else the next run
     * lists the folder in full and asks again) */
    frc = journal_confirm(j, rc == MS_OK && fres->failed == 0 && !run_stopped(r) ? finish : NULL, &ferr);
    if (frc && rc == MS_OK) {
        rc = frc;
        *err = ferr;
    }
    journal_free(&j);
    free(acts);
    if (rc == MS_OK && fres->placeholders)
        log_msg(LOG_INFO, "%s: %zu messages over max_size stored as placeholders", sel->name, fres->placeholders);
    return rc;
}

/* ------------------------------------------------------------------ */
/* replacement (pull, sync, fetch) */

/* The first PLACEHOLDER_WINDOW bytes of m's file (or all of a smaller
 * one) into buf, which holds that many: how many, or -1 if it cannot be
 * opened. Enough to tell a placeholder (ours or mbsync's) by its header. */
ssize_t placeholder_head_of(struct maildir_folder *mf, struct local_msg *m, char *buf, bool small_only)
{
    struct ms_error e;
    struct stat st;
    int fd = maildir_open_msg(mf, m, &e);
    if (fd < 0)
        return -1;
    if (small_only && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > PLACEHOLDER_WINDOW)) {
        close(fd);
        return -1;
    }
    size_t n = 0;
    while (n < PLACEHOLDER_WINDOW) {
        ssize_t got = read(fd, buf + n, PLACEHOLDER_WINDOW - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    return (ssize_t)n;
}

ssize_t placeholder_head(struct maildir_folder *mf, struct local_msg *m, char *buf)
{
    return placeholder_head_of(mf, m, buf, false);
}

/* Is m's file (still) a placeholder? A file that cannot be read is not
 * replaced (false). */
static bool file_is_placeholder(struct maildir_folder *mf, struct local_msg *m)
{
    char *buf = xmalloc(PLACEHOLDER_WINDOW);
    ssize_t n = placeholder_head(mf, m, buf);
    bool yes = n >= 0 && message_is_mbsync_placeholder(buf, (size_t)n);
    free(buf);
    return yes;
}

/* Was the file with unique part uniq named on the command line (`fetch
 * FILE...`)? Marks it found. */
static bool asked_for(const struct engine_options *opt, const char *uniq)
{
    bool yes = false;
    for (size_t i = 0; i < opt->nfetch_uniqs; i++)
        if (strcmp(opt->fetch_uniqs[i], uniq) == 0) {
            yes = true;
            if (opt->fetch_found)
                opt->fetch_found[i] = true;
        }
    return yes;
}

/* ------------------------------------------------------------------ */
/* a placeholder whose mark was lost */

/* Does buf[0..n) (the head of the file of row) hold a placeholder of the
 * row's message: its marks, the row's Message-ID and, in its field, the
 * row's size (the server's)? */
static bool placeholder_of(const char *buf, size_t n, const struct state_msg *row)
{
    if (!message_has_placeholder_marks(buf, n) || message_placeholder_size(buf, n) != row->size)
        return false;
    char *mid = message_header(buf, n, "Message-ID");
    bool same = mid && row->message_id && strcmp(mid, row->message_id) == 0;
    free(mid);
    return same;
}

static int cmp_uid_file(const void *a, const void *b)
{
    uint32_t x = ((const struct placeholder_candidate *)a)->uid, y = ((const struct placeholder_candidate *)b)->uid;
    return (x > y) - (x < y);
}

int placeholders_mark_lost(struct run *r, const char *folder, int64_t folder_id, struct maildir_folder *mf,
                           struct placeholder_candidate *v, size_t n, size_t *marked, struct ms_error *err)
{
    struct state_msg *rows = NULL;
    struct state_placeholder *marks = NULL;
    size_t nrows = 0, nmarks = 0;
    *marked = 0;
    if (n == 0)
        return MS_OK;
    qsort(v, n, sizeof *v, cmp_uid_file);
    uint32_t *uids = xmalloc(n * sizeof *uids);
    for (size_t i = 0; i < n; i++)
        uids[i] = v[i].uid;
    int rc = state_msg_get_uids(r->st, folder_id, uids, n, &rows, &nrows, err);
    if (rc == MS_OK)
        rc = state_placeholder_list(r->st, folder_id, &marks, &nmarks, err);
    char *buf = NULL;
    for (size_t i = 0, k = 0; rc == MS_OK && i < nrows; i++) {
        const struct state_msg *row = &rows[i];
        while (k < n && v[k].uid < row->uid)
            k++;
        bool has_mark = false;
        for (size_t x = 0; x < nmarks && !has_mark; x++) /* few */
            has_mark = marks[x].uid == row->uid;
        if (k == n || v[k].uid != row->uid || has_mark || row->pending)
            continue;
        if (!buf)
            buf = xmalloc(PLACEHOLDER_WINDOW);
        ssize_t got = placeholder_head(mf, v[k].file, buf);
        if (got <= 0 || !placeholder_of(buf, (size_t)got, row))
            continue;
        /* committed before anything is sent for it: a run killed later
         * finds the mark and replaces the placeholder */
        if ((rc = state_msg_set_placeholder(r->st, folder_id, row->uid, STATE_PLACEHOLDER, err)) != MS_OK)
            break;
        (*marked)++;
        log_msg(LOG_INFO, "%s: %s is a placeholder of UID %u its state did not know as one (a restored state DB?): "
                          "marked again", folder, log_escape(v[k].file->name, strlen(v[k].file->name), 100), row->uid);
    }
    free(buf);
    free(uids);
    state_msgs_free(rows, nrows);
    state_placeholders_free(marks, nmarks);
    return rc;
}

/* `fetch FILE`: the named files of the folder whose rows lost their mark
 * are marked again, so that the replacement below takes them. */
static int mark_asked_for(struct run *r, const struct selected *sel, int64_t folder_id, struct ms_error *err)
{
    struct state_msg *rows = NULL;
    struct maildir_folder *mf = NULL;
    size_t nrows = 0, nv = 0, marked = 0;
    const struct engine_options *opt = r->opt;
    if (!opt->nfetch_uniqs || !maildir_folder_exists(r->rootfd, sel->path))
        return MS_OK;
    struct placeholder_candidate *v = xcalloc(opt->nfetch_uniqs, sizeof *v);
    int rc = maildir_folder_open(r->rootfd, sel->path, false, &mf, err);
    if (rc == MS_OK)
        rc = state_msg_list_brief(r->st, folder_id, &rows, &nrows, err); /* only when files are named */
    for (size_t i = 0; rc == MS_OK && i < nrows; i++) {
        bool named = false;
        for (size_t k = 0; rows[i].uniq && k < opt->nfetch_uniqs && !named; k++)
            named = strcmp(opt->fetch_uniqs[k], rows[i].uniq) == 0;
        if (!named)
            continue;
        struct local_msg *l = xcalloc(1, sizeof *l);
        int f = maildir_find_hint(mf, rows[i].uniq, rows[i].flags, l, err);
        if (f == MS_OK && nv < opt->nfetch_uniqs) {
            v[nv++] = (struct placeholder_candidate){.uid = rows[i].uid, .file = l};
            continue;
        }
        free(l->uniq);
        free(l->name);
        free(l);
        if (f != 1)
            rc = f;
    }
    if (rc == MS_OK)
        rc = placeholders_mark_lost(r, sel->name, folder_id, mf, v, nv, &marked, err);
    for (size_t i = 0; i < nv; i++) {
        free(v[i].file->uniq);
        free(v[i].file->name);
        free(v[i].file);
    }
    free(v);
    state_msgs_free(rows, nrows);
    maildir_folder_close(mf);
    return rc;
}

struct wanted {
    uint32_t uid;
    uint64_t size;
    struct local_msg l; /* the placeholder's file, as found */
    bool done;
};

struct replace_ctx {
    struct run *r;
    const struct selected *sel;
    struct maildir_folder *mf;
    int64_t folder_id;
    struct wanted *w;
    size_t n;
    struct maildir_tmp *cur;
    struct engine_folder_result *fres;
    struct ms_error err;
};

static int replace_chunk(void *vctx, const char *data, size_t len)
{
    struct replace_ctx *c = vctx;
    if (!c->cur && maildir_tmp_open(c->mf, &c->cur, &c->err))
        return c->err.code;
    return maildir_tmp_write(c->cur, data, len, &c->err) ? c->err.code : 0;
}

static struct wanted *wanted_uid(struct replace_ctx *c, uint32_t uid)
{
    for (size_t i = 0; i < c->n; i++) /* few: placeholders someone asked for */
        if (c->w[i].uid == uid)
            return &c->w[i];
    return NULL;
}

static int replace_message(void *vctx, const struct remote_msg *m, bool has_body)
{
    struct replace_ctx *c = vctx;
    if (!has_body)
        return 0;
    struct wanted *w = wanted_uid(c, m->uid);
    struct maildir_tmp *t = c->cur;
    c->cur = NULL;
    if (!t && maildir_tmp_open(c->mf, &t, &c->err))
        return c->err.code;
    if (!w || w->done || maildir_tmp_size(t) == 0) {
        if (w && !w->done)
            log_msg(LOG_WARN, "%s: UID %u: the server sent an empty body; the placeholder stays", c->sel->name,
                    m->uid);
        maildir_tmp_discard(t);
        return 0;
    }
    /* 1: the whole message durable in tmp/ before it takes the name */
    if (maildir_tmp_close(t, m->internaldate, true, &c->err)) {
        maildir_tmp_discard(t);
        return c->err.code;
    }
    uint64_t bytes = maildir_tmp_size(t);
    /* 2: over the placeholder, durable */
    if (maildir_tmp_replace(c->mf, t, &w->l, &c->err) || maildir_sync_dirs(c->mf, &c->err))
        return c->err.code;
    /* 3: the mark goes */
    if (state_msg_set_placeholder(c->r->st, c->folder_id, m->uid, 0, &c->err))
        return c->err.code;
    w->done = true;
    c->fres->replaced++;
    c->fres->bytes += bytes;
    log_msg(LOG_INFO, "%s: UID %u: placeholder %s replaced by the full message (%llu bytes)", c->sel->name,
            m->uid, log_escape(w->l.name, strlen(w->l.name), 100), (unsigned long long)m->size);
    return 0;
}

int placeholders_replace(struct run *r, const struct selected *sel, struct engine_folder_result *fres,
                         struct ms_error *err)
{
    struct state_folder sf = {0};
    struct state_placeholder *rows = NULL;
    struct maildir_folder *mf = NULL;
    struct wanted *w = NULL;
    size_t nrows = 0, nw = 0;
    int rc = state_folder_get(r->st, sel->raw, &sf, err);
    if (rc || !sf.id || r->opt->dry_run)
        goto out;
    if ((rc = mark_asked_for(r, sel, sf.id, err)))
        goto out;
    if ((rc = state_placeholder_list(r->st, sf.id, &rows, &nrows, err)) || nrows == 0)
        goto out;
    if (!maildir_folder_exists(r->rootfd, sel->path))
        goto out;
    if ((rc = maildir_folder_open(r->rootfd, sel->path, false, &mf, err)))
        goto out;
    w = xcalloc(nrows, sizeof *w);
    for (size_t i = 0; i < nrows && rc == MS_OK; i++) {
        struct wanted *x = &w[nw];
        int f = rows[i].uniq ? maildir_find_hint(mf, rows[i].uniq, rows[i].flags, &x->l, err) : 1;
        if (f == 1)
            continue; /* deleted locally: the push takes it off the server */
        if (f != MS_OK) {
            rc = f;
            break;
        }
        bool asked = r->opt->fetch_all || asked_for(r->opt, rows[i].uniq);
        /* ... or max_size was raised (or removed) since: it fits now */
        bool fits = !r->acct->max_size || rows[i].size <= r->acct->max_size;
        bool want = asked || fits || (x->l.flags & FLAG_FLAGGED);
        if (want && !file_is_placeholder(mf, &x->l)) {
            /* a run killed after the rename (step 2): only the mark is left */
            log_msg(LOG_VERBOSE, "%s: UID %u is here in full already", sel->name, rows[i].uid);
            rc = state_msg_set_placeholder(r->st, sf.id, rows[i].uid, 0, err);
            want = false;
        }
        if (!want) {
            free(x->l.uniq);
            free(x->l.name);
            memset(&x->l, 0, sizeof x->l);
            continue;
        }
        x->uid = rows[i].uid;
        x->size = rows[i].size;
        nw++;
    }
    if (rc || nw == 0)
        goto out;
    struct remote_box mb;
    if ((rc = r->remote->ops->select(r->remote, sel->raw, false, &mb, err)))
        goto out;
    if (mb.uidvalidity != sf.uidvalidity) {
        log_msg(LOG_WARN, "%s: UIDVALIDITY changed: placeholders are replaced after the next pull", sel->name);
        goto out;
    }
    uint32_t *uids = xmalloc(nw * sizeof *uids);
    for (size_t i = 0; i < nw; i++)
        uids[i] = w[i].uid; /* rows come by uid: sorted */
    struct replace_ctx c = {.r = r, .sel = sel, .mf = mf, .folder_id = sf.id, .w = w, .n = nw, .cur = NULL,
                            .fres = fres, .err = {0}};
    struct remote_body_sink sink = {.ctx = &c, .chunk = replace_chunk, .message = replace_message};
    log_msg(LOG_VERBOSE, "%s: fetching %zu messages to replace their placeholders", sel->name, nw);
    rc = r->remote->ops->fetch_bodies(r->remote, uids, nw, &sink, err);
    if (c.cur)
        maildir_tmp_discard(c.cur);
    if (rc && c.err.code) {
        *err = c.err;
        rc = c.err.code;
    }
    free(uids);
    for (size_t i = 0; rc == MS_OK && i < nw; i++)
        if (!w[i].done) {
            log_msg(LOG_WARN, "%s: UID %u: the server sent no message; the placeholder stays", sel->name, w[i].uid);
            fres->failed++;
        }
out:
    for (size_t i = 0; w && i < nrows; i++) {
        free(w[i].l.uniq);
        free(w[i].l.name);
    }
    free(w);
    state_placeholders_free(rows, nrows);
    maildir_folder_close(mf);
    state_folder_free(&sf);
    return rc;
}

/* ------------------------------------------------------------------ */
/* a placeholder beside its full message (pull, push) */

/* Has the folder's state a whole message (no placeholder mark) with this
 * Message-ID under another file than uniq, and is that file on disk? */
static int full_message_here(struct placeholder_sweep *s, const char *message_id, const char *uniq, bool *here,
                             struct ms_error *err)
{
    *here = false;
    for (size_t i = 0; message_id && i < s->nrows && !*here; i++) {
        const struct state_msg *row = &s->rows[i];
        if (!row->message_id || strcmp(row->message_id, message_id) != 0 || !row->uniq ||
            strcmp(row->uniq, uniq) == 0)
            continue;
        bool marked = false;
        for (size_t k = 0; k < s->nmarked && !marked; k++)
            marked = s->marked[k].uid == row->uid;
        if (marked) /* a placeholder itself */
            continue;
        struct local_msg l = {0};
        int f = maildir_find_hint(s->mf, row->uniq, row->flags, &l, err);
        free(l.uniq);
        free(l.name);
        if (f != MS_OK && f != 1)
            return f;
        *here = f == MS_OK;
    }
    return MS_OK;
}

int placeholder_sweep_file(struct placeholder_sweep *s, struct local_msg *m, enum placeholder_fate *fate,
                           struct ms_error *err)
{
    *fate = PLACEHOLDER_NOT;
    if (!s->buf)
        s->buf = xmalloc(PLACEHOLDER_WINDOW);
    ssize_t n = placeholder_head(s->mf, m, s->buf);
    s->head_len = n > 0 ? (size_t)n : 0;
    /* an edited one too, while it still has a mark: never uploaded */
    if (n < 0 || !message_has_placeholder_marks(s->buf, (size_t)n))
        return MS_OK;
    *fate = PLACEHOLDER_KEPT;
    int rc = MS_OK;
    if (!s->have_rows) {
        if ((rc = state_msg_list(s->r->st, s->folder_id, &s->rows, &s->nrows, err)) ||
            (rc = state_placeholder_list(s->r->st, s->folder_id, &s->marked, &s->nmarked, err)))
            return rc;
        s->have_rows = true;
    }
    char *mid = message_header(s->buf, (size_t)n, "Message-ID");
    bool here = false;
    rc = full_message_here(s, mid, m->uniq, &here, err);
    free(mid);
    if (rc || !here)
        return rc;
    const char *name = log_escape(m->name, strlen(m->name), 100);
    if (s->r->opt->dry_run) {
        log_msg(LOG_INFO, "%s: would remove %s, a placeholder for a message that is here in full", s->folder, name);
        *fate = PLACEHOLDER_REMOVED;
        return MS_OK;
    }
    rc = maildir_remove(s->mf, m, err);
    if (rc != MS_OK && rc != 1) /* 1: gone already */
        return rc;
    log_msg(LOG_INFO, "%s: removed %s, a placeholder for a message that is here in full", s->folder, name);
    s->removed++;
    *fate = PLACEHOLDER_REMOVED;
    return MS_OK;
}

int placeholder_sweep_end(struct placeholder_sweep *s, struct ms_error *err)
{
    int rc = s->removed ? dirsync_add_folder(s->r->dirs, s->mf, err) : MS_OK;
    free(s->buf);
    state_msgs_free(s->rows, s->nrows);
    state_placeholders_free(s->marked, s->nmarked);
    s->buf = NULL;
    s->rows = NULL;
    s->marked = NULL;
    s->nrows = s->nmarked = 0;
    s->have_rows = false;
    return rc;
}
