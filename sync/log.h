/*
 * log.h: messages for the user on stderr, by verbosity.
 *
 * The program sets log_verbosity from -q/-v; the library calls log_msg().
 * Level 0 is errors and warnings (shown unless --quiet makes it -1 for
 * warnings... errors are always shown), 1 is -v, 2 is -vv (the protocol
 * trace, with secrets already masked by the caller).
 */
#ifndef MAILSYNC_LOG_H
#define MAILSYNC_LOG_H

#include <stddef.h>
#include <stdio.h>

enum log_level { LOG_ERROR = -2, LOG_WARN = -1, LOG_INFO = 0, LOG_VERBOSE = 1, LOG_TRACE = 2 };

/* -1 with --quiet (errors only), 0 by default, 1 with -v, 2 with -vv. */
extern int log_verbosity;

/* Optional hook the program installs so log lines do not tear a progress
 * line on the terminal (called before each line is written). */
extern void (*log_before_write)(void);

/* One line on stderr: the level's prefix, then the formatted text with
 * its control characters escaped (log_clean), then a newline. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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

/* Write log_clean(text) to out. */
void log_print_clean(FILE *out, const char *text);

/* Write text of length len for humans: control characters and bytes that
 * are not printable are shown as \xNN, and at most max bytes are shown
 * (then "..."). For logging what a server sent. Returns a static buffer. */
const char *log_escape(const char *text, size_t len, size_t max);

#endif
