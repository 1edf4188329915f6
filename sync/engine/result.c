/* SPDX-License-Identifier: MIT */
/*
 * result.c: an account's result and its folders' (engine.h), filled by
 * the run, the pull and the POP3 pull.
 */
#include "sync/engine/engine_int.h"

#include <stdlib.h>
#include <string.h>

#include "sync/util.h"

struct engine_folder_result *engine_add_folder_result(struct engine_result *res, const char *name, const char *path)
{
    res->folders = xrealloc(res->folders, (res->nfolders + 1) * sizeof *res->folders);
    struct engine_folder_result *f = &res->folders[res->nfolders++];
    memset(f, 0, sizeof *f);
    f->name = xstrdup(name);
    f->path = path ? xstrdup(path) : NULL;
    return f;
}

void engine_folder_fail(struct engine_folder_result *f, const struct ms_error *err)
{
    f->status = err->code ? err->code : MS_EPARTIAL;
    free(f->error);
    f->error = xstrdup(err->msg);
}

void engine_result_totals(const struct engine_result *r, struct engine_folder_result *t)
{
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < r->nfolders; i++) {
        const struct engine_folder_result *f = &r->folders[i];
        t->fetched += f->fetched;
        t->bytes += f->bytes;
        t->flagged += f->flagged;
        t->deleted += f->deleted;
        t->skipped += f->skipped;
        t->uploaded += f->uploaded;
        t->bytes_up += f->bytes_up;
        t->pushed_flags += f->pushed_flags;
        t->pushed_deleted += f->pushed_deleted;
        t->retired += f->retired;
        t->moved += f->moved;
        t->moved_on_server += f->moved_on_server;
        t->failed += f->failed;
        t->placeholders += f->placeholders;
        t->linked += f->linked;
        t->replaced += f->replaced;
    }
}

void engine_result_free(struct engine_result *r)
{
    for (size_t i = 0; i < r->nfolders; i++) {
        free(r->folders[i].name);
        free(r->folders[i].path);
        free(r->folders[i].error);
    }
    free(r->folders);
    free(r->account);
    free(r->folder_patterns_unmatched);
    memset(r, 0, sizeof *r);
}
