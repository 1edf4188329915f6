/* SPDX-License-Identifier: MIT */
/* flags.c: the flag bit set <-> Maildir letters <-> IMAP names (flags.h). */
#include "sync/flags.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

static const struct {
    unsigned bit;
    char letter;
    const char *imap;
} table[] = {
    /* Sorted by letter: flags_to_letters relies on this order. */
    {FLAG_DRAFT, 'D', "\\Draft"},
    {FLAG_FLAGGED, 'F', "\\Flagged"},
    {FLAG_FORWARDED, 'P', "$Forwarded"},
    {FLAG_ANSWERED, 'R', "\\Answered"},
    {FLAG_SEEN, 'S', "\\Seen"},
    {FLAG_DELETED, 'T', "\\Deleted"},
};
#define NFLAGS (sizeof table / sizeof table[0])

static unsigned flags_from_letter(unsigned char c)
{
    for (size_t i = 0; i < NFLAGS; i++)
        if ((unsigned char)table[i].letter == c)
            return table[i].bit;
    return 0;
}

char *flags_to_letters(unsigned flags, char out[8])
{
    size_t n = 0;
    for (size_t i = 0; i < NFLAGS; i++)
        if (flags & table[i].bit)
            out[n++] = table[i].letter;
    out[n] = '\0';
    return out;
}

unsigned flags_from_letters(const char *letters, char *extra, size_t extra_len)
{
    unsigned flags = 0;
    bool odd = false;
    for (const unsigned char *p = (const unsigned char *)letters; *p; p++) {
        unsigned bit = flags_from_letter(*p);
        flags |= bit;
        odd = odd || !bit;
    }
    if (extra && extra_len) {
        size_t n = 0;
        if (odd) {
            /* other letters, each once, in byte order */
            bool seen[256] = {false};
            for (const unsigned char *p = (const unsigned char *)letters; *p; p++)
                if (!flags_from_letter(*p))
                    seen[*p] = true;
            for (int c = 1; c < 256 && n + 1 < extra_len; c++)
                if (seen[c] && c != ',' && c != '/' && c > ' ' && c != 0x7f)
                    extra[n++] = (char)c;
        }
        extra[n] = '\0';
    }
    return flags;
}

unsigned flags_from_imap_name(const char *name)
{
    for (size_t i = 0; i < NFLAGS; i++)
        if (strcasecmp(name, table[i].imap) == 0)
            return table[i].bit;
    return 0;
}

const char *flags_imap_name(unsigned flag)
{
    for (size_t i = 0; i < NFLAGS; i++)
        if (table[i].bit == flag)
            return table[i].imap;
    return NULL;
}
