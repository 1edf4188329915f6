/*
 * fuzz_util.h: small helpers shared by the libFuzzer targets.
 *
 * CHECK(cond, ...) is the property assertion: when a property of the code
 * under test does not hold, it prints what was expected and aborts, which
 * libFuzzer (with ASan's signal handler) reports as a crash with a stack
 * and saves the input. Everything here is header-only so each target stays
 * one .c file.
 */
#ifndef MAILSYNC_FUZZ_UTIL_H
#define MAILSYNC_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                                                  \
    do {                                                                                                  \
        if (!(cond)) {                                                                                    \
            fprintf(stderr, "\n*** property failed at %s:%d: %s\n*** ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                                                 \
            fputc('\n', stderr);                                                                          \
            abort();                                                                                      \
        }                                                                                                 \
    } while (0)

/* A NUL-terminated heap copy of data[0..n) (the copy stops at an embedded
 * NUL as C strings do). Exact-size allocation so ASan sees over-reads. */
static inline char *fuzz_strndup(const uint8_t *data, size_t n)
{
    const uint8_t *nul = memchr(data, '\0', n);
    size_t len = nul ? (size_t)(nul - data) : n;
    char *s = malloc(len + 1);
    if (!s)
        abort();
    memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

/* Whether s[0..n) is strictly valid UTF-8 (no overlongs, no surrogates,
 * at most U+10FFFF): an independent oracle for the codecs under test. */
static inline int fuzz_valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t v, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 2, v = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            k = 3, v = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            k = 4, v = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < k)
            return 0;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            v = (v << 6) | (s[i + j] & 0x3f);
        }
        if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
            return 0;
        i += k;
    }
    return 1;
}

/* Print s with non-printable bytes as \xNN, for property messages. */
static inline void fuzz_dump(const char *label, const char *s, size_t n)
{
    fprintf(stderr, "%s: \"", label);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
}

#endif
