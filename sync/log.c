/* log.c: stderr messages by verbosity (log.h). */
#include <stddef.h>

#include "sync/log.h"

#include <stdarg.h>
#include <stdio.h>

int log_verbosity = 0;
void (*log_before_write)(void) = NULL;

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level > LOG_ERROR && (int)level > log_verbosity)
        return;
    if (log_before_write)
        log_before_write();
    const char *prefix = "";
    if (level == LOG_ERROR)
        prefix = "mailsync: error: ";
    else if (level == LOG_WARN)
        prefix = "mailsync: warning: ";
    fputs(prefix, stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

const char *log_escape(const char *text, size_t len, size_t max)
{
    static _Thread_local char buf[4096];
    size_t o = 0;
    if (max > 1000)
        max = 1000;
    for (size_t i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            buf[o++] = (char)c;
        } else {
            o += (size_t)snprintf(buf + o, sizeof buf - o, "\\x%02x", c);
        }
    }
    if (len > max) {
        buf[o++] = '.';
        buf[o++] = '.';
        buf[o++] = '.';
    }
    buf[o] = '\0';
    return buf;
}
