/* SPDX-License-Identifier: MIT */
/* log.c: messages by verbosity, escaped, handed to the program's sink (log.h). */
#include <stddef.h>

#include "sync/log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/names.h"
#include "sync/util.h"

int log_verbosity = 0;
static log_sink_fn log_sink; /* NULL: lines are dropped */

void log_set_sink(log_sink_fn sink)
{
    log_sink = sink;
}

void log_fatal(const char *text)
{
    if (log_sink)
        log_sink(LOG_FATAL, text);
}

size_t log_utf8_len(const char *s, size_t n)
{
    uint32_t cp;
    return names_utf8_decode((const unsigned char *)s, n, &cp);
}

char *log_clean(const char *text)
{
    size_t n = strlen(text);
    char *out = xmalloc(n * 4 + 1);
    const unsigned char *s = (const unsigned char *)text;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        uint32_t cp = 0;
        size_t len = c >= 0x80 ? names_utf8_decode(s + i, n - i, &cp) : 0;
        if (c >= 0x20 && c != 0x7f && c < 0x80) {
            out[o++] = (char)c;
            i++;
        } else if (len && cp >= 0xa0) { /* printable UTF-8 ("Thư đã gửi") */
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            out[o++] = '\\';
            out[o++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            i++;
        } else { /* C0, DEL, a C1 control's bytes, or not UTF-8 */
            size_t k = len ? len : 1;
            for (size_t j = 0; j < k; j++)
                o += (size_t)snprintf(out + o, 5, "\\x%02x", s[i + j]);
            i += k;
        }
    }
    out[o] = '\0';
    return out;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if ((level > LOG_ERROR && (int)level > log_verbosity) || !log_sink)
        return;
    /* Format first, then escape the whole line: names and server text in
     * the arguments must not carry a newline (a forged log line) or an
     * escape sequence (a rewritten terminal) out. */
    char small[1024], *text = small;
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (len < 0)
        return;
    if ((size_t)len >= sizeof small) {
        text = xmalloc((size_t)len + 1);
        va_start(ap, fmt);
        vsnprintf(text, (size_t)len + 1, fmt, ap);
        va_end(ap);
    }
    char *clean = log_clean(text);
    if (text != small)
        free(text);
    log_sink(level, clean);
    free(clean);
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
