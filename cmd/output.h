/*
 * output.h: what the program shows: the progress line on a terminal, the
 * human summary on stdout, and the --json object for scripts.
 */
#ifndef MAILSYNC_OUTPUT_H
#define MAILSYNC_OUTPUT_H

#include <stdbool.h>
#include <stdio.h>

#include "sync/engine.h"

enum progress_mode { PROGRESS_AUTO, PROGRESS_ALWAYS, PROGRESS_NEVER };

/* Decide whether to draw progress (auto: stderr is a terminal and not
 * --quiet/--json). */
void output_init(enum progress_mode mode, bool quiet, bool json);

/* The progress hooks for the engine, or NULL when progress is off. */
const struct engine_progress *output_progress(void);

/* Clear the progress line (before other output). */
void output_clear_line(void);

/* The human summary of one account's pull. */
void output_summary(FILE *out, const char *command, const struct engine_result *r, bool dry_run);

/* Write "  " + name padded with spaces to width characters (UTF-8 aware:
 * counts code points, not bytes) + " ". Control characters in name are
 * escaped (log_clean). */
void output_name_column(FILE *out, const char *name, int width);

/* Write s as a JSON string literal (with quotes), or null for NULL.
 * Control characters (C0, DEL, C1) are written as \u escapes and bytes
 * that are not UTF-8 as \ufffd, so the output is valid JSON and safe on
 * a terminal. */
void output_json_string(FILE *out, const char *s);

/* The --json object of a run over several accounts. */
void output_json_results(FILE *out, const char *command, const struct engine_result *r, size_t n, int exit_code,
                         bool dry_run);

#endif
