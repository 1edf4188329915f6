/* SPDX-License-Identifier: MIT */
/*
 * inspect.c: the commands that change nothing: check (connect, verify,
 * authenticate, list), folders (the name -> path mapping) and status (read
 * only the state DB and the Maildir; works offline).
 */
#include "sync/engine/engine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "sync/util.h"

/* ------------------------------------------------------------------ */
/* check, folders, status */

/* check and folders: the patterns that match nothing, said as a run says
 * them (folders_check_patterns), the Maildir only looked at. */
static int inspect_patterns(struct run *r, const struct remote_folder *f, const struct engine_folder_map *map,
                            size_t n, struct ms_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (f[i].delim && (!r->delim || strcasecmp(f[i].name, "INBOX") == 0))
            r->delim = f[i].delim;
    int fd = open(r->acct->maildir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    r->rootfd = fd;
    int rc = folders_check_patterns(r, map, n, err);
    r->rootfd = -1;
    if (fd >= 0)
        close(fd);
    return rc;
}

int engine_check(const struct account *a, const struct engine_options *opt, struct engine_check *out,
                 struct ms_error *err)
{
    struct run r = {.acct = a, .opt = opt, .rootfd = -1, .lockfd = -1};
    struct remote_folder *f = NULL;
    size_t n = 0;
    memset(out, 0, sizeof *out);
    int rc = engine_connect_account(&r, err);
    if (rc == MS_OK) {
        snprintf(out->tls, sizeof out->tls, "%s", r.remote->ops->tls_info(r.remote));
        out->capabilities = xstrdup(r.remote->ops->capabilities(r.remote));
        rc = r.remote->ops->list(r.remote, NULL, 0, NULL, &f, &n, err);
        out->nfolders = n;
        if (rc == MS_OK) {
            struct engine_folder_map *map = xcalloc(n + 1, sizeof *map);
            folders_map(a, opt, f, n, map);
            rc = inspect_patterns(&r, f, map, n, err);
            engine_folders_free(map, n);
        }
        remote_folders_free(f, n);
    }
    engine_end_run(&r);
    return rc;
}

void engine_check_free(struct engine_check *c)
{
    free(c->capabilities);
    memset(c, 0, sizeof *c);
}

int engine_folders(const struct account *a, const struct engine_options *opt, struct engine_folder_map **out,
                   size_t *nout, struct ms_error *err)
{
    struct run r = {.acct = a, .opt = opt, .rootfd = -1, .lockfd = -1};
    struct remote_folder *f = NULL;
    size_t n = 0;
    *out = NULL;
    *nout = 0;
    int rc = engine_connect_account(&r, err);
    if (rc == MS_OK)
        rc = r.remote->ops->list(r.remote, NULL, 0, NULL, &f, &n, err);
    if (rc == MS_OK) {
        *out = xcalloc(n, sizeof **out);
        folders_map(a, opt, f, n, *out);
        *nout = n;
        if ((rc = inspect_patterns(&r, f, *out, n, err)) != MS_OK) {
            engine_folders_free(*out, n);
            *out = NULL;
            *nout = 0;
        }
    }
    remote_folders_free(f, n);
    engine_end_run(&r);
    return rc;
}

static int cmp_tomb_key(const void *key, const void *elem)
{
    return strcmp(key, ((const struct state_tombstone *)elem)->uniq);
}

/* Whether uniq has one of the tombstones t (sorted by uniq). */
static bool tombstoned(const struct state_tombstone *t, size_t n, const char *uniq)
{
    return n && bsearch(uniq, t, n, sizeof *t, cmp_tomb_key);
}

static void status_folder(struct state *st, int rootfd, const struct state_folder *sf, bool pop3,
                          struct engine_status_folder *out)
{
    struct ms_error e;
    struct state_msg *s = NULL;
    size_t ns = 0;
    struct local_msg *l = NULL;
    size_t nl = 0;
    struct maildir_folder *mf = NULL;
    out->name = xstrdup(sf->name);
    out->path = xstrdup(sf->path ? sf->path : "");
    out->last_sync = state_folder_last_sync(st, sf);
    out->local = -1;
    if (pop3) {
        /* pull-only: what is stored, and nothing to push */
        struct state_pop3 *p = NULL;
        size_t np = 0;
        if (state_pop3_list(st, sf->id, &p, &np, &e) == MS_OK)
            out->synced = (int64_t)np;
        state_pop3_free(p, np);
        if (rootfd >= 0 && sf->path && maildir_folder_exists(rootfd, sf->path) &&
            maildir_folder_open(rootfd, sf->path, false, &mf, &e) == MS_OK &&
            maildir_scan_names(mf, &l, &nl, &e) == MS_OK)
            out->local = (int64_t)nl;
        maildir_msgs_free(l, nl);
        maildir_folder_close(mf);
        return;
    }
    if (state_msg_list_brief(st, sf->id, &s, &ns, &e) == MS_OK)
        out->synced = (int64_t)ns;
    struct state_tombstone *t = NULL;
    size_t nt = 0;
    if (state_tombstone_list(st, sf->id, false, &t, &nt, &e) != MS_OK)
        nt = 0;
    for (size_t i = 0; i < nt; i++) {
        if (t[i].reason == STATE_TOMB_KEPT_BY_BACKUP)
            out->kept_by_backup++;
        else
            out->retired++;
    }
    if (rootfd >= 0 && sf->path && maildir_folder_exists(rootfd, sf->path) &&
        maildir_folder_open(rootfd, sf->path, false, &mf, &e) == MS_OK &&
        maildir_scan_names(mf, &l, &nl, &e) == MS_OK) {
        out->local = (int64_t)nl;
        size_t nidx;
        const char **idx = rematch_uniq_index(s, ns, &nidx);
        for (size_t i = 0; i < nl; i++)
            if (!rematch_index_has(idx, nidx, l[i].uniq) && !tombstoned(t, nt, l[i].uniq))
                out->local_new++; /* a tombstoned file is never pushed */
        free(idx);
        /* Where a known message's file is no longer a regular file, push
         * deletes nothing (see push.c): not counted as deleted here. */
        size_t nodd;
        const struct local_msg *odd = maildir_scan_left_out(mf, &nodd);
        for (size_t i = 0; i < ns; i++) {
            struct local_msg *m = s[i].uniq ? views_local_by_uniq(l, nl, s[i].uniq) : NULL;
            bool skipped = false;
            for (size_t k = 0; !m && s[i].uniq && k < nodd && !skipped; k++)
                skipped = odd[k].odd && strcmp(odd[k].uniq, s[i].uniq) == 0;
            if (!m && !skipped)
                out->local_gone++;
            else if (m && m->flags != s[i].flags)
                out->local_flags++;
        }
    }
    maildir_msgs_free(l, nl);
    maildir_folder_close(mf);
    state_msgs_free(s, ns);
    state_tombstones_free(t, nt);
}

int engine_status(const struct account *a, struct engine_status *out, struct ms_error *err)
{
    struct state *st = NULL;
    struct state_folder *f = NULL;
    size_t n = 0;
    int rootfd = -1;
    memset(out, 0, sizeof *out);
    if (access(a->state_path, F_OK) != 0)
        return MS_OK; /* never synced */
    int rc = state_open(a->state_path, &st, err);
    if (rc)
        return rc;
    out->have_state = true;
    out->last_sync = state_last_sync(st);
    state_meta_get(st, "last_error", &out->last_error, err);
    rc = state_folder_list(st, &f, &n, err);
    if (rc == MS_OK) {
        struct ms_error e;
        if (maildir_root_open(a->maildir, false, &rootfd, &e) != MS_OK)
            rootfd = -1;
        out->folders = xcalloc(n, sizeof *out->folders);
        out->nfolders = n;
        for (size_t i = 0; i < n; i++) {
            status_folder(st, rootfd, &f[i], !(remote_caps_possible(a) & REMOTE_UIDS), &out->folders[i]);
            out->retired += out->folders[i].retired;
            out->kept_by_backup += out->folders[i].kept_by_backup;
        }
    }
    if (rootfd >= 0)
        close(rootfd);
    state_folders_free(f, n);
    state_close(st);
    return rc;
}

void engine_status_free(struct engine_status *s)
{
    for (size_t i = 0; i < s->nfolders; i++) {
        free(s->folders[i].name);
        free(s->folders[i].path);
    }
    free(s->folders);
    free(s->last_error);
    memset(s, 0, sizeof *s);
}
