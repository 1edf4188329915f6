/* SPDX-License-Identifier: MIT */
/*
 * dryrun.h: a --dry-run's plan handed to the program as data (struct
 * engine_planned through engine_progress's planned callback), step by
 * step; the program renders it (text lines or --json). The engine never
 * prints it itself.
 */
#ifndef MAILSYNC_DRYRUN_H
#define MAILSYNC_DRYRUN_H

#include "sync/engine/engine.h"
#include "sync/plan/plan.h"

/* One step to opt->progress->planned (nothing without one). */
void dryrun_report(const struct engine_options *opt, const struct engine_planned *step);

/* Every step of a pull plan of account's folder (FETCH, SKIP, SET_FLAGS,
 * DELETE_LOCAL; the state-only actions are no change a user sees). */
void dryrun_report_pull(const struct engine_options *opt, const char *account, const char *folder,
                        const struct plan *p);

/* Every step of a push plan (REMOVE_ON_SERVER, STORE_FLAGS, UPLOAD). */
void dryrun_report_push(const struct engine_options *opt, const char *account, const char *folder,
                        const struct push_plan *p);

#endif
