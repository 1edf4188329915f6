/* SPDX-License-Identifier: MIT */
/*
 * hooks.h: the commands an account runs after its runs
 * (post_sync_command, new_mail_command), so `notmuch new`, `mu index` or a
 * desktop notification need no wrapper script.
 */
#ifndef MAILSYNC_CMD_HOOKS_H
#define MAILSYNC_CMD_HOOKS_H

#include "sync/account.h"
#include "sync/engine/engine.h"

/* After a run (command: "pull", "push", "sync" or "watch") of account a
 * with result res: post_sync_command always, new_mail_command when
 * messages were downloaded. Each runs with /bin/sh -c, with what happened
 * in MAILSYNC_* environment variables and the run's JSON document on its
 * stdin, its stdout and stderr on mailsync's stderr, for at most
 * a->hook_timeout seconds (then its process group is killed). A hook that
 * fails or times out is a warning: it does not change the exit code. */
void hooks_run(const struct account *a, const char *command, const struct engine_result *res);

#endif
