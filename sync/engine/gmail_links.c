/* SPDX-License-Identifier: MIT */
/*
 * gmail_links.c: Gmail shows one message in several folders (INBOX, each of
 * its labels, [Gmail]/All Mail), under its own UID in each and the same
 * X-GM-MSGID in all (REMOTE_LABELS). A message already on disk in one
 * synced folder is not downloaded again for another: the new folder gets
 * a hard link to the same file. One inode, so the mail is stored once and
 * notmuch or mu see one message with several file names; each link has
 * its own unique name, so it carries its own folder's flags and a rename
 * of one (a flag change) leaves the others as they are; a label removed
 * is one link unlinked, the others stay.
 *
 * Where: pull.c, after the plan and the server moves (moves_server.c
 * renames a file whose message left one folder for another; what is left
 * to fetch here is new to this folder), before the download. The new
 * UIDs' X-GM-MSGIDs come in one FETCH (with their Message-IDs, as the
 * identity FETCH has them); each is looked up in the state DB across the
 * account's folders (state_msg_copies, an index on emailid). A confirmed
 * row whose file is still there is linked into this folder's tmp/
 * (maildir_tmp_link; on another file system, or for a file that is a
 * symlink, a copy of the local bytes: never a download), and the link
 * lands through the delivery journal (journal.h) like a downloaded file:
 * durable (syncfs), journalled as a pending row, renamed into new/ or
 * cur/ with the server's flags, directories fsynced, row confirmed. A
 * killed run is finished by journal_recover() as for any delivery; a link
 * left in tmp/ before its row was journalled is swept like any tmp/ file.
 * Those UIDs are then dropped from the plan's fetches. Only ids of the
 * "gm:" form are linked: on a server with OBJECTID, two folders holding
 * one EMAILID hold copies (RFC 8474), which a user may change apart.
 *
 * The row found must say the same RFC822.SIZE as the new UID (the same
 * message has the same size everywhere), and its file must be able to
 * hold that many bytes as stored (LF for CRLF: between half and all of
 * them; a placeholder of a bigger message is not linked). What cannot be
 * linked (gone, another size, the other folder unreadable) is downloaded
 * as before; a failure to write this folder's tmp/ fails the folder, as
 * the download would. A push never uploads a link: it has its row in this folder.
 *
 * A dry run links nothing but says what the run would link
 * (ENGINE_PLAN_LINK): a file on disk as above, or a message an earlier
 * folder of the same run would download (the run downloads it there
 * first, then links it here: r->gm_planned remembers the ids of the
 * downloads a dry run plans). So its plan and counters are the run's.
 */
#include "sync/engine/engine_int.h"

#include <stdlib.h>
#include <string.h>

#include "sync/engine/dryrun.h"
#include "sync/engine/journal.h"
#include "sync/log.h"
#include "sync/names.h"
#include "sync/util.h"

/* Rows of other folders tried per message (one usually suffices). */
#define COPIES_MAX 4
/* Links handed to the journal at a time. */
#define LINK_BATCH 200

struct gm_ids {
    uint32_t *uid;
    char **emailid;
    char **message_id;
    size_t n;
};

static void found_id(void *ctx, uint32_t uid, uint64_t size, const char *message_id, const char *emailid)
{
    (void)size;
    struct gm_ids *g = ctx;
    if (!emailid || strncmp(emailid, "gm:", 3) != 0)
        return;
    g->uid = xrealloc(g->uid, (g->n + 1) * sizeof *g->uid);
    g->emailid = xrealloc(g->emailid, (g->n + 1) * sizeof *g->emailid);
    g->message_id = xrealloc(g->message_id, (g->n + 1) * sizeof *g->message_id);
    g->uid[g->n] = uid;
    g->emailid[g->n] = xstrdup(emailid);
    g->message_id[g->n] = message_id ? xstrdup(message_id) : NULL;
    g->n++;
}

static void gm_ids_free(struct gm_ids *g)
{
    for (size_t i = 0; i < g->n; i++) {
        free(g->emailid[i]);
        free(g->message_id[i]);
    }
    free(g->uid);
    free(g->emailid);
    free(g->message_id);
}

/* The other folders' Maildirs, opened once each per call. */
struct sources {
    int64_t *id;
    struct maildir_folder **mf;
    size_t n;
};

static struct maildir_folder *source(struct run *r, struct sources *s, const struct state_copy *c)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->id[i] == c->folder_id)
            return s->mf[i];
    struct maildir_folder *mf = NULL;
    struct ms_error e;
    if (!maildir_folder_exists(r->rootfd, c->path) || maildir_folder_open(r->rootfd, c->path, false, &mf, &e))
        mf = NULL; /* not there (any more): the message is downloaded */
    s->id = xrealloc(s->id, (s->n + 1) * sizeof *s->id);
    s->mf = xrealloc(s->mf, (s->n + 1) * sizeof *s->mf);
    s->id[s->n] = c->folder_id;
    s->mf[s->n++] = mf;
    return mf;
}

static void sources_close(struct sources *s)
{
    for (size_t i = 0; i < s->n; i++)
        maildir_folder_close(s->mf[i]);
    free(s->id);
    free(s->mf);
}

/* Can a file of len bytes hold a message of size bytes (RFC822.SIZE, CRLF
 * line ends) as stored (LF)? At most size, at least half of it (every
 * line at least CRLF). Not a placeholder of a bigger message, not a file
 * someone truncated. */
static bool stored_size_fits(uint64_t len, uint64_t size)
{
    return len <= size && len * 2 >= size;
}

/* A file in mf's tmp/ that is the message the server calls emailid, of
 * the given size, taken from another folder; NULL if there is none to
 * take. *linked: a hard link (else a copy). With dry_from (a dry run):
 * nothing is linked, *dry_from is the id of the folder whose file would
 * be (0: none). Local errors are the run's. */
static int link_one(struct run *r, struct sources *src, struct maildir_folder *mf, int64_t folder_id,
                    const char *emailid, uint64_t size, struct maildir_tmp **out, bool *linked, int64_t *dry_from,
                    struct ms_error *err)
{
    struct state_copy c[COPIES_MAX];
    size_t nc = 0;
    *out = NULL;
    int rc = state_msg_copies(r->st, emailid, folder_id, c, COPIES_MAX, &nc, err);
    for (size_t i = 0; rc == MS_OK && !*out && !(dry_from && *dry_from) && i < nc; i++) {
        if (c[i].size != size)
            continue;
        struct maildir_folder *from = source(r, src, &c[i]);
        if (!from)
            continue;
        struct local_msg l = {0};
        int f = maildir_find_hint(from, c[i].uniq, c[i].flags, &l, err);
        if (f == MS_OK && !stored_size_fits(l.size, size)) {
            log_msg(LOG_VERBOSE, "%s: %s (%llu bytes) is not the whole message of %llu bytes: not linked", c[i].path,
                    l.name, (unsigned long long)l.size, (unsigned long long)size);
        } else if (f == MS_OK && dry_from) {
            *dry_from = c[i].folder_id;
        } else if (f == MS_OK) {
            f = maildir_tmp_link(mf, from, &l, out, linked, err);
            if (f == 1)
                f = MS_OK; /* renamed away meanwhile: the next row, or a download */
        } else if (f != MS_OK) {
            if (f != 1) /* the other folder cannot be read: not this folder's failure */
                log_msg(LOG_VERBOSE, "%s: %s", c[i].path, err->msg);
            f = MS_OK;
        }
        free(l.uniq);
        free(l.name);
        rc = f;
    }
    state_copies_free(c, nc);
    return rc;
}

/* Land v[0..n) through the folder's journal (see the top of the file). */
static int land(struct run *r, struct maildir_folder *mf, int64_t folder_id, struct journal_entry *v, size_t n,
                struct engine_folder_result *fres, struct ms_error *err)
{
    struct journal *j = journal_new(r->st, mf, folder_id, JOURNAL_UID, r->dirs, NULL, fres);
    int rc = MS_OK;
    for (size_t i = 0; i < n && rc == MS_OK; i += LINK_BATCH)
        rc = journal_submit(j, v + i, n - i < LINK_BATCH ? n - i : LINK_BATCH, err);
    struct ms_error e;
    int frc = journal_finish(j, &e);
    if (frc && rc == MS_OK) {
        rc = frc;
        *err = e;
    }
    if (rc == MS_OK)
        rc = journal_confirm(j, NULL, err);
    journal_free(&j);
    return rc;
}

/* The plan without the fetches of the UIDs in done (sorted). */
static void drop_fetches(struct plan *p, const uint32_t *done, size_t ndone)
{
    size_t k = 0;
    for (size_t i = 0; i < p->n; i++) {
        const struct plan_action *a = &p->actions[i];
        if (a->op == PLAN_FETCH && util_uid_find(done, ndone, a->uid)) {
            p->nfetch--;
            p->fetch_bytes -= a->size;
            continue;
        }
        p->actions[k++] = *a;
    }
    p->n = k;
}

void gmail_links_free(struct run *r)
{
    for (size_t i = 0; i < r->ngm_planned; i++) {
        free(r->gm_planned[i].emailid);
        free(r->gm_planned[i].folder);
    }
    free(r->gm_planned);
    r->gm_planned = NULL;
    r->ngm_planned = 0;
}

/* --dry-run: the folder (display name, malloc'd) whose file the message
 * emailid of size would be linked to, or NULL for a download (then
 * remembered for the folders after this one). */
static char *dry_link(struct run *r, struct sources *src, const struct selected *sel, struct maildir_folder *mf,
                      int64_t folder_id, const char *emailid, uint64_t size, int *rc, struct ms_error *err)
{
    struct maildir_tmp *t = NULL;
    bool linked = false;
    int64_t from = 0;
    if ((*rc = link_one(r, src, mf, folder_id, emailid, size, &t, &linked, &from, err)))
        return NULL;
    if (from) { /* a dry run only: the folders' rows read again */
        struct state_folder *f = NULL;
        size_t nf = 0;
        char *name = NULL;
        if ((*rc = state_folder_list_brief(r->st, &f, &nf, err)))
            return NULL;
        for (size_t i = 0; i < nf && !name; i++)
            if (f[i].id == from)
                name = names_display(f[i].name);
        state_folders_free(f, nf);
        return name ? name : xstrdup("?");
    }
    for (size_t i = 0; i < r->ngm_planned; i++)
        if (r->gm_planned[i].size == size && strcmp(r->gm_planned[i].emailid, emailid) == 0)
            return xstrdup(r->gm_planned[i].folder);
    r->gm_planned = xrealloc(r->gm_planned, (r->ngm_planned + 1) * sizeof *r->gm_planned);
    r->gm_planned[r->ngm_planned++] = (struct gmail_planned){.emailid = xstrdup(emailid), .size = size,
                                                             .folder = xstrdup(sel->name)};
    return NULL;
}

int gmail_links_take(struct run *r, const struct selected *sel, struct maildir_folder *mf, int64_t folder_id,
                     struct plan *p, const struct remote_msg *rm, size_t nr, struct engine_folder_result *fres,
                     struct ms_error *err)
{
    bool dry = r->opt->dry_run;
    if (!p->nfetch || (!mf && !dry) || !remote_can(r->remote, REMOTE_LABELS | REMOTE_OBJECTID) ||
        !r->remote->ops->fetch_identity_oid)
        return MS_OK;
    uint32_t *uids = xmalloc(p->nfetch * sizeof *uids);
    size_t nu = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->actions[i].op == PLAN_FETCH)
            uids[nu++] = p->actions[i].uid;
    qsort(uids, nu, sizeof *uids, util_cmp_u32);
    struct gm_ids ids = {0};
    struct sources src = {0};
    struct journal_entry *v = NULL;
    uint32_t *done = NULL;
    size_t nv = 0, nlinked = 0;
    /* Nothing to link to (the first folder, or only one synced): no
     * FETCH of ids, no round trip. A dry run asks always: the folders
     * after this one would link to its downloads. */
    bool any = dry;
    int rc = any ? MS_OK : state_msg_ids_elsewhere(r->st, folder_id, &any, err);
    if (rc == MS_OK && any)
        rc = r->remote->ops->fetch_identity_oid(r->remote, uids, nu, found_id, &ids, err);
    if (rc || ids.n == 0)
        goto out;
    v = xcalloc(ids.n, sizeof *v);
    done = xmalloc(ids.n * sizeof *done);
    for (size_t i = 0; i < ids.n && rc == MS_OK; i++) {
        const struct remote_msg *m = UTIL_FIND_UID(rm, nr, uid, ids.uid[i]);
        if (!m || !m->size)
            continue;
        if (dry) {
            char *from = dry_link(r, &src, sel, mf, folder_id, ids.emailid[i], m->size, &rc, err);
            if (from)
                dryrun_report(r->opt, &(struct engine_planned){
                                          .account = r->acct->name, .folder = sel->name, .kind = ENGINE_PLAN_LINK,
                                          .uid = m->uid, .size = m->size, .count = 0, .flags = m->flags,
                                          .flags_removed = 0, .file = NULL, .from = from, .from_uid = 0});
            if (from)
                done[nv++] = m->uid;
            free(from);
            continue;
        }
        struct maildir_tmp *t = NULL;
        bool linked = false;
        if ((rc = link_one(r, &src, mf, folder_id, ids.emailid[i], m->size, &t, &linked, NULL, err)) || !t)
            continue;
        nlinked += linked;
        done[nv] = m->uid;
        v[nv++] = (struct journal_entry){.uid = m->uid, .uidl = {0}, .tmp = t, .adopted = NULL, .flags = m->flags,
                                         .keywords = m->keywords ? xstrdup(m->keywords) : NULL, .size = m->size,
                                         .message_id = ids.message_id[i], .emailid = ids.emailid[i]};
        ids.message_id[i] = ids.emailid[i] = NULL; /* the entry's now */
    }
    if (rc || nv == 0)
        goto out;
    if (dry) {
        qsort(done, nv, sizeof *done, util_cmp_u32);
        drop_fetches(p, done, nv);
        fres->linked += nv;
        nv = 0; /* no journal entries */
        goto out;
    }
    /* Nothing was downloaded: the journal counts the messages landed, not
     * their bytes. */
    uint64_t bytes0 = fres->bytes;
    size_t fetched0 = fres->fetched;
    rc = land(r, mf, folder_id, v, nv, fres, err);
    fres->bytes = bytes0;
    fres->linked += fres->fetched - fetched0;
    if (rc)
        goto out;
    qsort(done, nv, sizeof *done, util_cmp_u32);
    drop_fetches(p, done, nv);
    log_msg(LOG_VERBOSE, "%s: %zu messages already in other folders (Gmail labels, X-GM-MSGID): %zu hard-linked, "
                         "%zu copied, none downloaded", sel->name, nv, nlinked, nv - nlinked);
out:
    journal_entries_clear(v, nv); /* what land() did not take (after a failure) */
    free(v);
    free(done);
    sources_close(&src);
    gm_ids_free(&ids);
    free(uids);
    return rc;
}
