/* SPDX-License-Identifier: MIT */
/* dryrun.c: a --dry-run's plan as data for the program (dryrun.h). */
#include "sync/engine/dryrun.h"

#include <stddef.h>

void dryrun_report(const struct engine_options *opt, const struct engine_planned *step)
{
    if (opt->progress && opt->progress->planned)
        opt->progress->planned(opt->progress->ctx, step);
}

void dryrun_report_pull(const struct engine_options *opt, const char *account, const char *folder,
                        const struct plan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        const struct plan_action *a = &p->actions[i];
        struct engine_planned s = {.account = account, .folder = folder, .kind = ENGINE_PLAN_FETCH, .uid = a->uid,
                                   .size = 0, .count = 0, .flags = 0, .flags_removed = 0, .file = NULL, .from = NULL, .from_uid = 0};
        switch (a->op) {
        case PLAN_FETCH:
            s.size = a->size;
            s.flags = a->flags;
            break;
        case PLAN_SKIP_LARGE:
            s.kind = ENGINE_PLAN_SKIP;
            s.size = a->size;
            break;
        case PLAN_PLACEHOLDER:
            s.kind = ENGINE_PLAN_PLACEHOLDER;
            s.size = a->size;
            s.flags = a->flags;
            break;
        case PLAN_LOCAL_FLAGS:
            s.kind = ENGINE_PLAN_SET_FLAGS;
            s.flags = a->flags;
            break;
        case PLAN_LOCAL_DELETE: s.kind = ENGINE_PLAN_DELETE_LOCAL; break;
        case PLAN_STATE_FLAGS:
        case PLAN_FORGET:
        case PLAN_BACKUP_KEEP: continue; /* the state DB only: nothing a user sees changes */
        }
        dryrun_report(opt, &s);
    }
}

void dryrun_report_push(const struct engine_options *opt, const char *account, const char *folder,
                        const struct push_plan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        const struct push_action *a = &p->actions[i];
        struct engine_planned s = {.account = account, .folder = folder, .kind = ENGINE_PLAN_UPLOAD, .uid = 0,
                                   .size = 0, .count = 0, .flags = 0, .flags_removed = 0, .file = NULL, .from = NULL, .from_uid = 0};
        switch (a->op) {
        case PUSH_DELETE:
            s.kind = ENGINE_PLAN_REMOVE_ON_SERVER;
            s.uid = a->uid;
            break;
        case PUSH_FLAGS:
            s.kind = ENGINE_PLAN_STORE_FLAGS;
            s.uid = a->uid;
            s.flags = a->add;
            s.flags_removed = a->remove;
            break;
        case PUSH_APPEND:
            s.file = a->uniq;
            s.flags = a->flags;
            break;
        }
        dryrun_report(opt, &s);
    }
}
