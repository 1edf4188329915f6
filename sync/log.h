/* SPDX-License-Identifier: MIT */
/*
 * log.h: messages for the user, by verbosity.
 *
 * The program sets log_verbosity from -q/-v and installs a sink
 * (log_set_sink) that shows the lines (cmd/ writes them to stderr with
 * the level's prefix); the library calls log_msg(), which filters by
 * verbosity, formats and escapes the line and hands it to the sink. The
 * library never writes to a terminal itself: without a sink, lines are
 * dropped. Level 0 is errors and warnings (shown unless --quiet makes it
 * -1 for warnings... errors are always shown), 1 is -v, 2 is -vv (the
 * protocol trace, with secrets already masked by the caller).
 */
#ifndef MAILSYNC_LOG_H
#define MAILSYNC_LOG_H

#include <stddef.h>

/* LOG_FATAL: the process ends right after (out of memory); always shown. */
enum log_level { LOG_FATAL = -3, LOG_ERROR = -2, LOG_WARN = -1, LOG_INFO = 0, LOG_VERBOSE = 1, LOG_TRACE = 2 };

/* -1 with --quiet (errors only), 0 by default, 1 with -v, 2 with -vv. */
extern int log_verbosity;

/* Takes one finished line: text is the formatted message with its
 * control characters escaped (log_clean), without prefix or newline; the
 * sink adds what its output needs (the level's prefix on a terminal). It
 * may be called from any of the run's threads. */
typedef void (*log_sink_fn)(enum log_level level, const char *text);

/* Install the sink (NULL: drop every line, the default). Set it before
 * the first run; it is read without a lock. */
void log_set_sink(log_sink_fn sink);

/* One line to the sink, if level is within log_verbosity (errors always):
 * the formatted text with its control characters escaped (log_clean). */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* text (a constant: not formatted, not escaped) to the sink at LOG_FATAL,
 * allocating nothing: for the out-of-memory path, which aborts after. */
void log_fatal(const char *text);

/* text made safe for a terminal or a journal, so that nothing from outside
 * (a file name, a folder name, server text) can end a line, forge another
 * or send an escape sequence: newline, CR and tab become \n, \r, \t; other
 * C0 controls, DEL, C1 controls (U+0080-U+009F) and bytes that are not
 * valid UTF-8 become \xNN. Valid printable UTF-8 is kept as it is. Returns
 * a malloc'd string (aborts on OOM). */
char *log_clean(const char *text);

/* The length of the valid UTF-8 sequence at s (n bytes left: 1 for
 * ASCII), or 0 if none starts there: no overlong forms, surrogates or code
 * points past U+10FFFF. */
size_t log_utf8_len(const char *s, size_t n);

/* Write text of length len for humans: control characters and bytes that
 * are not printable are shown as \xNN, and at most max bytes are shown
 * (then "..."). For logging what a server sent. Returns a static buffer. */
const char *log_escape(const char *text, size_t len, size_t max);

#endif
