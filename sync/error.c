/* SPDX-License-Identifier: MIT */
/* error.c: filling struct ms_error (see error.h). */
#include "sync/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int verror(struct ms_error *err, int code, int errno_value, const char *fmt, va_list ap)
{
    if (!err)
        return code;
    err->code = code;
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    if (errno_value && n >= 0 && (size_t)n < sizeof err->msg)
        snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s", strerror(errno_value));
    return code;
}

int ms_error_set(struct ms_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(err, code, 0, fmt, ap);
    va_end(ap);
    return code;
}

int ms_error_errno(struct ms_error *err, int code, int errno_value, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(err, code, errno_value, fmt, ap);
    va_end(ap);
    return code;
}

void ms_error_clear(struct ms_error *err)
{
    if (err) {
        err->code = MS_OK;
        err->msg[0] = '\0';
    }
}

static int rank(int code)
{
    switch (code) {
    case MS_OK: return 0;
    case MS_EPARTIAL: return 1;
    case MS_ELOCKED: return 2;
    default: return 3; /* hard errors: 2, 3, 4, 5 */
    }
}

int ms_error_worse(int a, int b)
{
    return rank(b) > rank(a) ? b : a;
}
