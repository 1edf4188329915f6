/* SPDX-License-Identifier: MIT */
/*
 * folders.c: which folders a run visits, and in what order: the server's
 * LIST (with the STATUS of the folders that may be unchanged), the mapping
 * of server names to local paths and display names, the selection by the
 * account's and the command line's patterns, the folders the state knows
 * that the server dropped, the examine-ahead order of a pull, and the
 * local folders a push creates on the server.
 */
#include "sync/engine/engine_int.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "db/state.h"
#include "sync/engine/dryrun.h"
#include "sync/local/maildir.h"
#include "sync/log.h"
#include "sync/names.h"
#include "sync/util.h"

/* ------------------------------------------------------------------ */
/* folder selection */

bool folders_is_trash(const struct run *r, const struct selected *sel)
{
    return r->trash && *r->trash && (strcmp(r->trash, sel->raw) == 0 || strcmp(r->trash, sel->name) == 0);
}

static bool trash_is_auto(const struct account *a)
{
    return a->trash && strcasecmp(a->trash, "auto") == 0;
}

/* The run's trash folder (r->trash): the account's `trash`, or with
 * `trash = auto` the first selectable folder the listing marks \Trash. */
static void find_trash(struct run *r, const struct remote_folder *f, size_t n)
{
    free(r->trash);
    r->trash = NULL;
    r->trash_missing = false;
    if (!trash_is_auto(r->acct)) {
        if (r->acct->trash && *r->acct->trash)
            r->trash = xstrdup(r->acct->trash);
        return;
    }
    for (size_t i = 0; i < n && !r->trash; i++)
        if ((f[i].roles & FOLDER_ROLE_TRASH) && !f[i].noselect)
            r->trash = xstrdup(f[i].name);
    if (r->trash) {
        char *name = names_display(r->trash);
        log_msg(LOG_VERBOSE, "trash = auto: the server marks \"%s\" as \\Trash", log_escape(name, strlen(name), 200));
        free(name);
        return;
    }
    r->trash_missing = true;
    log_msg(LOG_WARN, "trash = auto: the server marks no folder as \\Trash (that needs SPECIAL-USE, RFC 6154); "
                      "messages deleted locally stay on the server until `trash` names a folder");
}

/* The name people see and patterns match: UTF-8, '/' between levels, and
 * no control characters (a server's name must not drive the terminal). */
static char *display_name(const struct remote_folder *f)
{
    char *name = names_display(f->name);
    for (char *p = name; *p; p++) {
        if (f->delim && f->delim != '/' && *p == f->delim)
            *p = '/';
        else if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    }
    return name;
}

/* Selected by the account's `folders =` and by --folder (if any). */
bool folders_wanted(const struct account *a, const struct engine_options *opt, const char *name, unsigned roles)
{
    return names_folder_selected(name, roles, a->folders, a->nfolders) &&
           (opt->nfolder_patterns == 0 ||
            names_folder_selected(name, roles, opt->folder_patterns, opt->nfolder_patterns));
}

void folders_map(const struct account *a, const struct engine_options *opt, const struct remote_folder *f,
                        size_t n, struct engine_folder_map *out)
{
    for (size_t i = 0; i < n; i++) {
        struct engine_folder_map *m = &out[i];
        m->raw = xstrdup(f[i].name);
        m->name = display_name(&f[i]);
        m->noselect = f[i].noselect;
        m->roles = f[i].roles;
        m->path = names_folder_path(f[i].name, f[i].delim, a->layout, &m->why);
        m->selected = !m->noselect && m->path && folders_wanted(a, opt, m->name, m->roles);
        /* Two server names on one path would mix two folders: keep the
         * first, refuse the second. */
        for (size_t j = 0; m->path && j < i; j++)
            if (out[j].path && strcmp(out[j].path, m->path) == 0) {
                free(m->path);
                m->path = NULL;
                m->why = "maps to the same local path as another folder";
                m->selected = false;
            }
    }
}

void engine_folders_free(struct engine_folder_map *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(f[i].raw);
        free(f[i].name);
        free(f[i].path);
    }
    free(f);
}

static int cmp_key_folder(const void *key, const void *elem)
{
    return strcmp(key, ((const struct state_folder *)elem)->name);
}

/* The state's row of a folder as read for the run's LIST (r->known is
 * sorted by name), or NULL. */
const struct state_folder *folders_known(const struct run *r, const char *raw)
{
    return r->nknown ? bsearch(raw, r->known, r->nknown, sizeof *r->known, cmp_key_folder) : NULL;
}

/* The STATUS of a folder asked for with the run's LIST, or NULL (r->known
 * is sorted by name, r->known_status parallel to it). */
const struct remote_status *folders_known_status(const struct run *r, const char *raw)
{
    const struct state_folder *f = folders_known(r, raw);
    return f && r->known_status ? &r->known_status[f - r->known] : NULL;
}
/* By the messages the folders hold (ctx), most first; ties keep their order. */
static int cmp_messages_desc(const void *a, const void *b, void *ctx)
{
    const uint32_t *size = ctx;
    uint32_t x = size[*(const size_t *)a], y = size[*(const size_t *)b];
    return x < y ? 1 : x > y ? -1 : (*(const size_t *)a > *(const size_t *)b) - (*(const size_t *)a < *(const size_t *)b);
}

/* The folders whose STATUS (asked with the LIST) shows flag changes or
 * expunges but no new mail will each be opened incrementally by
 * pull_folder (IMAP: EXAMINE (QRESYNC)), with nothing else to ask the
 * server unless their answer holds a surprise: with REMOTE_AHEAD, hand
 * them to the side's open_ahead now (IMAP: the EXAMINEs in one write), and visit
 * those folders first, in that order (a folder visited in between would
 * make the session drop the answers still queued). The server then
 * answers the next ones while this side renames the files of the first:
 * one round trip for all of them, not one each. The biggest go first, so
 * that the renames (and directory fsyncs) that take longest overlap with
 * the server's work, not follow it. The other folders follow in the order
 * moves_server_order gives them (what lost messages first); when the first
 * of them got new mail (and nothing else is in doubt: same UIDVALIDITY,
 * modseqs known), its EXAMINE and the listing of its new UIDs join the
 * same write, last (it stays selected for its downloads): the folders
 * with flag changes and the first with new mail cost one round trip
 * together. A queue of one gains nothing and is not sent. Returns how many
 * were queued; order gets the visiting order of all nsel folders (as
 * indexes into sel). */
/* The folder's STATUS shows new mail (and maybe flag changes), and
 * pull_folder will open it incrementally from its recorded UIDNEXT: the
 * recorded UIDNEXT to list from, else 0. */
static uint32_t new_mail_from(const struct run *r, const struct selected *sel)
{
    const struct remote_status *st = folders_known_status(r, sel->raw);
    const struct state_folder *sf = folders_known(r, sel->raw);
    if (!st || !sf || !sf->last_sync || !sf->uidvalidity || !sf->highestmodseq || !st->highestmodseq)
        return 0;
    if (st->uidvalidity != sf->uidvalidity || sf->uidnext < 2 || st->uidnext <= sf->uidnext)
        return 0;
    if (r->trash_changed && folders_is_trash(r, sel))
        return 0; /* (pull_folder does not trust this run's STATUS of it) */
    return sf->uidnext;
}

size_t folders_examine_ahead(struct run *r, const struct selected *sel, size_t nsel, size_t *order)
{
    size_t n = 0;
    uint32_t *size = xcalloc(nsel + 1, sizeof *size);
    bool ahead = remote_can(r->remote, REMOTE_AHEAD) && r->remote->ops->open_ahead;
    for (size_t i = 0; i < nsel && ahead; i++) {
        const struct remote_status *st = folders_known_status(r, sel[i].raw);
        const struct state_folder *sf = folders_known(r, sel[i].raw);
        if (!st || !sf || !sf->last_sync || !sf->uidvalidity || !sf->highestmodseq)
            continue;
        if (st->uidvalidity != sf->uidvalidity || st->uidnext != sf->uidnext || !st->highestmodseq ||
            st->highestmodseq == sf->highestmodseq)
            continue;
        size[i] = st->messages;
        order[n++] = i;
    }
    qsort_r(order, n, sizeof *order, cmp_messages_desc, size);
    /* the rest in their own order, what lost messages first */
    bool *queued = xcalloc(nsel + 1, sizeof *queued);
    for (size_t k = 0; k < n; k++)
        queued[order[k]] = true;
    for (size_t i = 0, k = n; i < nsel; i++)
        if (!queued[i])
            order[k++] = i;
    free(queued);
    moves_server_order(r, sel, order, n, nsel);
    uint32_t list_from = ahead && n < nsel ? new_mail_from(r, &sel[order[n]]) : 0;
    size_t nq = n + (list_from != 0);
    if (nq < 2)
        nq = 0;
    struct remote_ahead *req = xcalloc(nq + 1, sizeof *req);
    for (size_t k = 0; k < nq; k++) {
        const struct state_folder *sf = folders_known(r, sel[order[k]].raw);
        req[k] = (struct remote_ahead){sel[order[k]].raw, sf->uidvalidity, sf->highestmodseq, k < n ? 0 : list_from};
    }
    struct ms_error err;
    /* A failure ends the session: the folders report it. */
    if (nq && r->remote->ops->open_ahead(r->remote, req, nq, &err) != MS_OK)
        log_msg(LOG_VERBOSE, "%s", err.msg);
    free(req);
    free(size);
    return nq;
}
/* ------------------------------------------------------------------ */
/* the server's folders */

/* Is the folder's STATUS worth asking for with the LIST
 * (unchanged_since_last_sync may use it)? */
static bool skip_candidate(const struct run *r, const struct state_folder *f)
{
    if (!pull_may_be_unchanged(f))
        return false;
    if (r->acct->nfolders == 0 && r->opt->nfolder_patterns == 0)
        return true;
    /* The server's delimiter is not known yet: with '/' this is the name
     * patterns see; with another one a wanted folder may be missed here
     * (it then gets its own STATUS later) or an unwanted one asked for. */
    char *name = names_display(f->name);
    /* Nor are the roles (a role pattern): a folder taken for one without
     * costs a STATUS, a wanted one missed gets its own. */
    bool wanted = folders_wanted(r->acct, r->opt, name, 0);
    free(name);
    return wanted;
}

/* The folders of known (n rows) whose status goes out with the listing,
 * INBOX first: their names into names and their indexes into idx (n + 1
 * entries each); how many. */
static size_t status_names(const struct run *r, const struct state_folder *known, size_t n, const char **names,
                           size_t *idx)
{
    size_t k = 0;
    for (int inbox_pass = 1; inbox_pass >= 0; inbox_pass--)
        for (size_t i = 0; i < n; i++)
            if ((strcasecmp(known[i].name, "INBOX") == 0) == inbox_pass && skip_candidate(r, &known[i])) {
                names[k] = known[i].name;
                idx[k++] = i;
            }
    return k;
}

bool folders_listing_preview(const struct run *r, struct state_folder **known, size_t *nknown, const char ***names,
                             size_t *n)
{
    struct ms_error e;
    *known = NULL;
    *nknown = 0;
    *names = NULL;
    *n = 0;
    if (!r->st || state_folder_list_brief(r->st, known, nknown, &e) != MS_OK)
        return false;
    *names = xcalloc(*nknown + 1, sizeof **names);
    size_t *idx = xcalloc(*nknown + 1, sizeof *idx);
    *n = status_names(r, *known, *nknown, *names, idx);
    free(idx);
    return true;
}

/* The server's folders. With REMOTE_CHANGES, the status (IMAP STATUS) of
 * every folder that may be unchanged goes out with the listing (one
 * round trip instead of one per folder), INBOX first: Dovecot answers
 * STATUS INBOX from its list index only until the session has looked at
 * another folder (afterwards it opens the mailbox: ~3 ms at 10,000
 * messages). (The connect may have sent the same listing behind the
 * login already, from folders_listing_preview: the side then answers
 * from what it read.) */
static int list_folders(struct run *r, struct remote_folder **f, size_t *n, struct ms_error *err)
{
    if (!remote_can(r->remote, REMOTE_CHANGES) || state_folder_list_brief(r->st, &r->known, &r->nknown, err) != MS_OK) {
        /* a sync run's listing all the same (the side may prepare for
         * incremental opens: ENABLE QRESYNC), without STATUS */
        const char *none = NULL;
        struct remote_status nost = {0};
        return r->remote->ops->list(r->remote, &none, 0, &nost, f, n, err);
    }
    const char **names = xcalloc(r->nknown + 1, sizeof *names);
    size_t *idx = xcalloc(r->nknown + 1, sizeof *idx);
    size_t k = status_names(r, r->known, r->nknown, names, idx);
    struct remote_status *st = xcalloc(k + 1, sizeof *st);
    /* The IMAP side sends ENABLE QRESYNC along (it only has to precede
     * the first EXAMINE). */
    int rc = r->remote->ops->list(r->remote, names, k, st, f, n, err);
    if (rc == MS_OK) {
        r->known_status = xcalloc(r->nknown + 1, sizeof *r->known_status);
        for (size_t j = 0; j < k; j++)
            r->known_status[idx[j]] = st[j];
    }
    free(st);
    free(idx);
    free(names);
    return rc;
}

/* A server folder whose directory another tool wrote under the folder's
 * raw (modified UTF-7) name, names_raw_path (mbsync 1.4: "Th&AbA- m&HuU-c"
 * for "Thư mục"), is that folder, not a local one to create on the
 * server: its raw path joins r->server_paths. If the folder is selected,
 * the raw directory exists and mailsync's own does not, the directory is
 * renamed to mailsync's name (one rename: the files keep their inodes,
 * and from then on the Maildir has one layout; mapping the raw name
 * instead would have to be found again every run and would leave two
 * names for one folder). With both directories there, nothing is guessed:
 * a warning, both stay, the folder syncs with mailsync's. A dry run only
 * says so, and plans against the raw directory. Parents go first (shorter
 * paths), so a renamed parent takes its children along. */
struct raw_dir {
    size_t at; /* index into the listing */
    char *path;
};

static int cmp_raw_dir(const void *a, const void *b)
{
    size_t x = strlen(((const struct raw_dir *)a)->path), y = strlen(((const struct raw_dir *)b)->path);
    return (x > y) - (x < y);
}

static void adopt_raw_dirs(struct run *r, const struct remote_folder *f, struct engine_folder_map *map, size_t n)
{
    struct raw_dir *v = xcalloc(n + 1, sizeof *v);
    size_t nv = 0;
    for (size_t i = 0; i < n; i++) {
        char *rp = map[i].path ? names_raw_path(map[i].raw, f[i].delim, r->acct->layout) : NULL;
        if (!rp)
            continue;
        v[nv++] = (struct raw_dir){i, rp};
        r->server_paths = xrealloc(r->server_paths, (r->nserver_paths + 2) * sizeof *r->server_paths);
        r->server_paths[r->nserver_paths++] = xstrdup(rp);
    }
    qsort(v, nv, sizeof *v, cmp_raw_dir);
    /* A raw path that is some folder's own path (another server folder's,
     * or one the state knows) belongs to that folder: never taken. */
    struct state_folder *known = NULL;
    size_t nknown = 0;
    struct ms_error ke;
    /* without the list nothing can be told apart: the directories stay */
    bool usable = !nv || state_folder_list_brief(r->st, &known, &nknown, &ke) == MS_OK;
    for (size_t k = 0; k < nv && usable; k++) {
        struct engine_folder_map *m = &map[v[k].at];
        const char *rp = v[k].path;
        bool owned = false;
        for (size_t j = 0; j < n && !owned; j++)
            owned = map[j].path && strcmp(map[j].path, rp) == 0;
        for (size_t j = 0; j < nknown && !owned; j++)
            owned = known[j].path && strcmp(known[j].path, rp) == 0;
        if (owned || !m->selected || r->rootfd < 0 || !maildir_folder_exists(r->rootfd, rp))
            continue;
        const char *root = r->acct->maildir;
        if (maildir_folder_exists(r->rootfd, m->path)) {
            log_msg(LOG_WARN, "folder \"%s\": both %s/%s and %s/%s (its raw name, as mbsync writes it) exist; "
                              "leaving both, syncing %s/%s (merge the other into it if it is the same folder)",
                    m->name, root, m->path, root, rp, root, m->path);
            continue;
        }
        if (r->opt->dry_run) {
            log_msg(LOG_INFO, "folder \"%s\": would rename %s/%s (its raw name) to %s/%s", m->name, root, rp, root,
                    m->path);
            free(m->path);
            m->path = xstrdup(rp);
            continue;
        }
        struct ms_error e;
        if (maildir_rename_folder(r->rootfd, rp, m->path, &e) == MS_OK)
            log_msg(LOG_INFO, "folder \"%s\": renamed %s/%s (its raw name, as mbsync writes it) to %s/%s", m->name,
                    root, rp, root, m->path);
        else
            log_msg(LOG_WARN, "folder \"%s\": %s; its messages stay there and are not synced", m->name, e.msg);
    }
    state_folders_free(known, nknown);
    for (size_t k = 0; k < nv; k++)
        free(v[k].path);
    free(v);
}

/* ------------------------------------------------------------------ */
/* patterns that match nothing */

static enum maildir_find folders_find_mode(enum folder_layout layout); /* below */

/* Does one pattern (a `folders` entry or a --folder; a leading '!' is
 * looked through) match the folder? */
static bool pattern_matches(const char *pattern, const char *name, unsigned roles)
{
    char *one[1] = {(char *)(pattern[0] == '!' ? pattern + 1 : pattern)};
    return names_folder_selected(name, roles, one, 1);
}

/* The display names of the local folders (as folders_create_local names
 * them): a pattern may mean a folder that exists only locally, which a
 * push creates on the server. */
static char **local_folder_names(struct run *r, size_t *n)
{
    char **paths = NULL, **names = NULL;
    size_t np = 0;
    *n = 0;
    if (r->rootfd < 0)
        return NULL;
    maildir_find_folders(r->rootfd, folders_find_mode(r->acct->layout), &paths, &np);
    names = xcalloc(np + 1, sizeof *names);
    for (size_t i = 0; i < np; i++) {
        char *raw = names_folder_raw(paths[i], r->delim, r->acct->layout);
        free(paths[i]);
        if (!raw)
            continue;
        char *name = names_display(raw);
        free(raw);
        for (char *c = name; r->delim && r->delim != '/' && *c; c++)
            if (*c == r->delim)
                *c = '/';
        names[(*n)++] = name;
    }
    free(paths);
    return names;
}

/* A pattern that matches no folder, on the server or in the Maildir, is a
 * typo or a folder gone: the account's `folders` patterns are warned
 * about, and --folder ones are a usage error (MS_EUSAGE, before any
 * folder is touched) with opt->folder_patterns_strict; without it they
 * are only noted in res->folder_patterns_unmatched, for the program to
 * judge over all its accounts. A role pattern (\Junk) is said to need a
 * server that marks its folders (SPECIAL-USE). */
int folders_check_patterns(struct run *r, const struct engine_folder_map *map, size_t n, struct ms_error *err)
{
    const struct account *a = r->acct;
    const struct engine_options *opt = r->opt;
    size_t na = a->nfolders, total = na + opt->nfolder_patterns;
    bool *hit = xcalloc(total + 1, sizeof *hit);
    unsigned roles = 0;
    size_t left = total;
    for (size_t i = 0; i < n; i++) {
        roles |= map[i].roles;
        for (size_t j = 0; j < total; j++)
            if (!hit[j] && pattern_matches(j < na ? a->folders[j] : opt->folder_patterns[j - na], map[i].name,
                                           map[i].roles)) {
                hit[j] = true;
                left--;
            }
    }
    if (left) { /* only then is the Maildir looked at */
        size_t nl = 0;
        char **local = local_folder_names(r, &nl);
        for (size_t i = 0; i < nl; i++) {
            for (size_t j = 0; j < total; j++)
                if (!hit[j] && pattern_matches(j < na ? a->folders[j] : opt->folder_patterns[j - na], local[i], 0))
                    hit[j] = true;
            free(local[i]);
        }
        free(local);
    }
    static const char no_roles[] = " (it marks no folder with a role: a role pattern needs a server with "
                                   "SPECIAL-USE, RFC 6154; name the folder instead)";
    for (size_t j = 0; j < na; j++) {
        const char *p = a->folders[j], *bare = p[0] == '!' ? p + 1 : p;
        unsigned long long bit = j < 64 ? 1ULL << j : 0, *warned = opt->patterns_warned;
        if (hit[j] || (warned && (*warned & bit))) {
            if (warned && hit[j])
                *warned &= ~bit; /* matches again: a later miss is news */
            continue;
        }
        if (warned)
            *warned |= bit;
        if (names_role_bit(bare, false))
            log_msg(LOG_WARN, "%s: the folders pattern \"%.200s\" matches no folder: the server marks none as %s%s",
                    a->name, p, bare, roles ? "" : no_roles);
        else
            log_msg(LOG_WARN, "%s: the folders pattern \"%.200s\" matches no folder on the server or in the Maildir; "
                              "'mailsync folders %s' lists them",
                    a->name, p, a->name);
    }
    int rc = MS_OK;
    if (opt->nfolder_patterns && r->res) {
        free(r->res->folder_patterns_unmatched);
        r->res->folder_patterns_unmatched = xcalloc(opt->nfolder_patterns, sizeof *r->res->folder_patterns_unmatched);
        r->res->nfolder_patterns = opt->nfolder_patterns;
    }
    for (size_t j = na; j < total; j++) {
        const char *p = opt->folder_patterns[j - na], *bare = p[0] == '!' ? p + 1 : p;
        if (hit[j])
            continue;
        if (r->res)
            r->res->folder_patterns_unmatched[j - na] = true;
        bool role = names_role_bit(bare, false) != 0;
        char why[300];
        if (role)
            snprintf(why, sizeof why, "the server marks no folder as %.40s%s", bare, roles ? "" : no_roles);
        else
            snprintf(why, sizeof why, "no folder on the server or in the Maildir has that name; "
                                      "'mailsync folders %.64s' lists them", a->name);
        if (opt->folder_patterns_strict && rc == MS_OK)
            rc = ms_error_set(err, MS_EUSAGE, "--folder \"%.200s\" matches no folder: %s",
                              p, why);
        else if (!opt->folder_patterns_strict)
            log_msg(LOG_INFO, "%s: --folder \"%.200s\" matches no folder of this account", a->name,
                    p);
    }
    free(hit);
    return rc;
}

int folders_list_selected(struct run *r, struct selected **out, size_t *nout, struct ms_error *err)
{
    struct remote_folder *f = NULL;
    size_t n = 0;
    int rc = list_folders(r, &f, &n, err);
    if (rc)
        return rc;
    find_trash(r, f, n);
    struct engine_folder_map *map = xcalloc(n, sizeof *map);
    folders_map(r->acct, r->opt, f, n, map);
    r->server_paths = xcalloc(n + 1, sizeof *r->server_paths);
    for (size_t i = 0; i < n; i++) {
        if (map[i].path)
            r->server_paths[r->nserver_paths++] = xstrdup(map[i].path);
        if (f[i].delim && (!r->delim || strcasecmp(f[i].name, "INBOX") == 0))
            r->delim = f[i].delim;
    }
    /* before adopt_raw_dirs: a --folder typo touches nothing */
    if ((rc = folders_check_patterns(r, map, n, err)) != MS_OK) {
        engine_folders_free(map, n);
        remote_folders_free(f, n);
        return rc;
    }
    adopt_raw_dirs(r, f, map, n);
    qsort(r->server_paths, r->nserver_paths, sizeof *r->server_paths, util_cmp_str);
    struct selected *sel = xcalloc(n, sizeof *sel);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!map[i].path && !map[i].noselect && folders_wanted(r->acct, r->opt, map[i].name, map[i].roles)) {
            /* Its mail is not synced: the run must not claim it was. */
            struct ms_error e;
            ms_error_set(&e, MS_EPARTIAL, "skipped server folder \"%s\": %s",
                         log_escape(map[i].raw, strlen(map[i].raw), 200), map[i].why);
            log_msg(LOG_WARN, "%s", e.msg);
            engine_folder_fail(engine_add_folder_result(r->res, map[i].name, NULL), &e);
            r->res->status = ms_error_worse(r->res->status, MS_EPARTIAL);
        }
        if (!map[i].selected)
            continue;
        sel[k].raw = map[i].raw;
        sel[k].name = map[i].name;
        sel[k].path = map[i].path;
        map[i].raw = map[i].name = map[i].path = NULL;
        k++;
    }
    engine_folders_free(map, n);
    remote_folders_free(f, n);
    *out = sel;
    *nout = k;
    return MS_OK;
}

/* Folders the state knows that the server no longer lists: a pull keeps
 * their local copy (it never deletes a folder), but says so once a run. */
void folders_report_vanished(struct run *r, const struct selected *sel, size_t nsel)
{
    /* The list read for the LIST's STATUS commands, if there was one (no
     * folder row is added before this runs). */
    struct state_folder *f = r->known;
    size_t n = r->nknown;
    struct ms_error e;
    if (!f && state_folder_list_brief(r->st, &f, &n, &e) != MS_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        bool listed = false;
        for (size_t j = 0; j < nsel && !listed; j++)
            listed = strcmp(sel[j].raw, f[i].name) == 0;
        if (listed || !f[i].last_sync)
            continue;
        char *name = names_display(f[i].name);
        if (folders_wanted(r->acct, r->opt, name, 0))
            log_msg(LOG_WARN, "folder \"%s\" is no longer on the server; its local copy %s/%s is kept",
                    log_escape(name, strlen(name), 200), r->acct->maildir, f[i].path ? f[i].path : "?");
        free(name);
    }
    if (f != r->known)
        state_folders_free(f, n);
}

void folders_free_selected(struct selected *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(s[i].raw);
        free(s[i].name);
        free(s[i].path);
    }
    free(s);
}

/* ------------------------------------------------------------------ */
/* folders that exist only locally */

/* Where maildir_find_folders looks for the account's layout. */
static enum maildir_find folders_find_mode(enum folder_layout layout)
{
    switch (layout) {
    case LAYOUT_MAILDIRPP:
        return MAILDIR_FIND_DOTDIRS;
    case LAYOUT_DOTTED:
        return MAILDIR_FIND_TOPLEVEL;
    case LAYOUT_VERBATIM:
        break;
    }
    return MAILDIR_FIND_NESTED;
}

void folders_find_local(struct run *r, char ***paths, size_t *n)
{
    *paths = NULL;
    *n = 0;
    if (r->rootfd >= 0)
        maildir_find_folders(r->rootfd, folders_find_mode(r->acct->layout), paths, n);
}

static bool path_in(char **v, size_t n, const char *path)
{
    return n && bsearch(&path, v, n, sizeof *v, util_cmp_str) != NULL;
}

int folders_create_local(struct run *r, struct selected **sel, size_t *nsel, struct ms_error *err)
{
    if (r->rootfd < 0)
        return MS_OK;
    char **paths = NULL;
    size_t np = 0;
    maildir_find_folders(r->rootfd, folders_find_mode(r->acct->layout), &paths, &np);
    struct state_folder *known = NULL;
    size_t nknown = 0;
    struct ms_error e;
    int rc = MS_OK;
    if (np && state_folder_list_brief(r->st, &known, &nknown, &e) != MS_OK) {
        log_msg(LOG_WARN, "%s", e.msg); /* without it, nothing can be told new */
        np = 0;
    }
    for (size_t i = 0; i < np && rc == MS_OK; i++) {
        const char *path = paths[i];
        bool seen = path_in(r->server_paths, r->nserver_paths, path);
        for (size_t k = 0; k < nknown && !seen; k++)
            seen = known[k].path && strcmp(known[k].path, path) == 0;
        if (seen)
            continue;
        const char *why = NULL;
        char *raw = names_folder_raw(path, r->delim, r->acct->layout);
        char *back = raw ? names_folder_path(raw, r->delim, r->acct->layout, &why) : NULL;
        if (!back || strcmp(back, path) != 0) {
            log_msg(LOG_WARN, "local folder %s/%s has no server name that maps back to it; not created on the server",
                    r->acct->maildir, log_escape(path, strlen(path), 200));
            free(raw);
            free(back);
            continue;
        }
        free(back);
        char *name = names_display(raw);
        for (char *p = name; r->delim && r->delim != '/' && *p; p++)
            if (*p == r->delim)
                *p = '/';
        if (!folders_wanted(r->acct, r->opt, name, 0)) {
            free(raw);
            free(name);
            continue;
        }
        struct remote_box mb = {0};
        struct state_folder sf = {0};
        if (r->opt->dry_run) {
            dryrun_report(r->opt, &(struct engine_planned){.account = r->acct->name, .folder = name,
                                                          .kind = ENGINE_PLAN_CREATE_FOLDER, .uid = 0, .size = 0,
                                                          .count = 0, .flags = 0, .flags_removed = 0, .file = NULL, .from = NULL, .from_uid = 0});
            free(raw);
            free(name);
            continue;
        }
        int x = r->remote->ops->create(r->remote, raw, &e);
        if (x == MS_OK)
            x = r->remote->ops->select(r->remote, raw, false, &mb, &e);
        if (x == MS_OK) {
            /* Empty on the server, made by us: the push may upload the
             * folder's messages at once. The first pull lists it in full
             * (no modseq recorded). */
            sf.name = xstrdup(raw);
            sf.path = xstrdup(path);
            sf.uidvalidity = mb.uidvalidity;
            sf.uidnext = mb.uidnext;
            sf.last_sync = (int64_t)time(NULL);
            x = state_folder_save(r->st, &sf, &e);
            state_folder_free(&sf);
        }
        if (x == MS_OK) {
            log_msg(LOG_INFO, "created folder \"%s\" on the server", name);
            *sel = xrealloc(*sel, (*nsel + 1) * sizeof **sel);
            (*sel)[(*nsel)++] = (struct selected){raw, name, xstrdup(path)};
            continue;
        }
        if (x == MS_EPARTIAL) {
            log_msg(LOG_ERROR, "cannot create folder \"%s\" on the server: %s", name, e.msg);
            r->res->status = ms_error_worse(r->res->status, MS_EPARTIAL);
        } else {
            *err = e;
            rc = x;
        }
        free(raw);
        free(name);
    }
    state_folders_free(known, nknown);
    for (size_t i = 0; i < np; i++)
        free(paths[i]);
    free(paths);
    return rc;
}

/* Could the folder's record let a STATUS alone show it unchanged? (A
 * complete sync with a modseq, no delivery left unconfirmed.) */
bool pull_may_be_unchanged(const struct state_folder *f)
{
    return f->last_sync && f->highestmodseq && !f->pending_count && !f->appends_count;
}
