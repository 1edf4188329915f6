/* SPDX-License-Identifier: MIT */
/*
 * error.h: how every layer of mailsync reports failure.
 *
 * A failing function returns one of the MS_* codes below (never 0) and, when
 * given a struct ms_error, fills it with a one-line message for the user.
 * The codes are the exit codes of the contract (shared/docs/interface.md), so
 * the program can exit with the worst code it met without translating.
 */
#ifndef MAILSYNC_ERROR_H
#define MAILSYNC_ERROR_H

#include <stddef.h>

enum {
    MS_OK = 0,
    MS_EPARTIAL = 1, /* finished, but some folders or messages failed */
    MS_EUSAGE = 2,   /* usage or configuration error */
    MS_EAUTH = 3,    /* authentication failed */
    MS_ENET = 4,     /* network, TLS or protocol failure */
    MS_ELOCAL = 5,   /* local storage failure (disk, permissions, state DB) */
    MS_ELOCKED = 75, /* another run holds the account lock */
};

struct ms_error {
    int code;
    char msg[512];
};

/* Set err (if not NULL) to code and a printf-style message; returns code. */
int ms_error_set(struct ms_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like ms_error_set, appending ": strerror(errno_value)". */
int ms_error_errno(struct ms_error *err, int code, int errno_value, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Clear err to MS_OK and an empty message. */
void ms_error_clear(struct ms_error *err);

/* The more serious of two exit codes (75 > 5 > 4 > 3 > 2 > 1 > 0 is not the
 * order: usage/local/net/auth all outrank "partial"; the first hard error
 * wins among equals). */
int ms_error_worse(int a, int b);

#endif
