/* SPDX-License-Identifier: MIT */
/*
 * output.h: what the program shows: the progress line on a terminal, the
 * library's log lines on stderr, a --dry-run's plan, the human summary on
 * stdout, and the --json document for scripts. The library (sync/, db/)
 * never prints: it hands lines and plans here (log sink, engine_progress).
 *
 * --json: every command prints exactly one JSON object on stdout, also
 * when it fails before any account ran ({"command", "exit", "error",
 * "errors", "errors_total", "accounts": []}); watch prints one per pass.
 */
#ifndef MAILSYNC_OUTPUT_H
#define MAILSYNC_OUTPUT_H

#include <stdbool.h>
#include <stdio.h>

#include "cmd/config.h"
#include "sync/account.h"
#include "sync/engine/engine.h"
#include "sync/log.h"

enum progress_mode { PROGRESS_AUTO, PROGRESS_ALWAYS, PROGRESS_NEVER };

/* Decide whether to draw progress (auto: stderr is a terminal and not
 * --quiet/--json) and how to show a --dry-run's plan (json: kept for
 * output_json_results; else a line on stdout per step, at once). */
void output_init(enum progress_mode mode, bool quiet, bool json);

/* The log sink (log_set_sink): the level's prefix ("mailsync: error: ",
 * "mailsync: warning: ", "mailsync: " for a fatal one) + text on stderr,
 * after clearing the progress line. Remembers the last error for
 * output_json_error. */
void output_log_line(enum log_level level, const char *text);

/* Remember text as the run's last error (a message the program printed
 * itself), for output_json_error. */
void output_note_error(const char *text);

/* The hooks for the engine: the plan of a --dry-run always, the progress
 * line's (cmd/progress.h) when it is on. */
const struct engine_progress *output_progress(void);

/* The run goes over n accounts: the progress line shows account k/n. */
void output_progress_accounts(size_t n);

/* Clear the progress line (before other output). */
void output_clear_line(void);

/* The human summary of one account's pull, push or sync: its counters,
 * or, when the account's run failed (status other than MS_OK and
 * MS_EPARTIAL), "ACCOUNT: COMMAND failed: ERROR" and what was done before. */
void output_summary(FILE *out, const char *command, const struct engine_result *r, bool dry_run);

/* Write "  " + name padded with spaces to width characters (UTF-8 aware:
 * counts code points, not bytes) + " ". Control characters in name are
 * escaped (log_clean). */
void output_name_column(FILE *out, const char *name, int width);

/* Write log_clean(text) to out. */
void output_print_clean(FILE *out, const char *text);

/* Write s as a JSON string literal (with quotes), or null for NULL.
 * Control characters (C0, DEL, C1) are written as \u escapes and bytes
 * that are not UTF-8 as \ufffd, so the output is valid JSON and safe on
 * a terminal. */
void output_json_string(FILE *out, const char *s);

/* The --json object of a run over several accounts. With dry_run, each
 * account holds "plan": the steps collected from the engine for it. */
void output_json_results(FILE *out, const char *command, const struct engine_result *r, size_t n, int exit_code,
                         bool dry_run);

/* The same document for one account's result, for another reader (a
 * hook's stdin): not counted as the command's own, no plan. */
void output_json_copy(FILE *out, const char *command, const struct engine_result *r, int exit_code);

/* How many JSON documents were written so far (by any output_json_*). */
unsigned output_json_documents(void);

/* The document of a command that failed before (or without) its own:
 * {"command": command or null, "exit": exit_code, "error": the last
 * error logged or noted, "errors": [], "errors_total": 0, "accounts": []}. */
void output_json_error(FILE *out, const char *command, int exit_code);

/* The same document for a config file (path) that was refused: "errors"
 * holds cfg's errors in parts ({"file", "line", "key", "message",
 * "suggestion"}), "errors_total" counts them all (also those not kept);
 * when cfg has none (the file could not be read or has no account) the
 * one error is whole ("PATH: what", as config_load's err gives it), with
 * line and key null. */
void output_json_config_error(FILE *out, const char *command, int exit_code, const char *path, const struct config *cfg,
                              const char *whole);

/* status, check, folders: per account, text or one JSON object (call
 * output_json_begin, then an account function per account with first
 * telling the first, then output_json_end). rc != MS_OK: the account
 * failed with error (its data is not looked at). */
void output_json_begin(FILE *out, const char *command);
void output_json_end(FILE *out, int exit_code);
void output_status_text(FILE *out, const struct account *a, const struct engine_status *s);
void output_status_json(FILE *out, const struct account *a, int rc, const char *error, const struct engine_status *s,
                        bool first);
void output_check_text(FILE *out, const struct account *a, const struct engine_check *c);
void output_check_json(FILE *out, const struct account *a, int rc, const char *error, const struct engine_check *c,
                       bool first);
void output_folders_text(FILE *out, const struct account *a, const struct engine_folder_map *m, size_t n);
void output_folders_json(FILE *out, const struct account *a, int rc, const char *error,
                         const struct engine_folder_map *m, size_t n, bool first);

#endif
