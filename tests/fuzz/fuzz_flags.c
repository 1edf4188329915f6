/* SPDX-License-Identifier: MIT */
/*
 * fuzz_flags.c: libFuzzer target for sync/flags.c, which parses the info
 * part of Maildir file names (":2,<letters>"): local file names are input
 * too (other programs, other users of the Maildir, a synced-back store).
 *
 * Input: byte 0 picks the size of the `extra` buffer (0..15, or NULL); the
 * rest, as a C string, is the letters. Properties:
 *  - flags_from_letters sets exactly the bits whose letters occur; only
 *    FLAG_ALL bits;
 *  - flags_to_letters(f) is sorted, has one letter per bit, and parses back
 *    to f with no extra letters (round trip);
 *  - extra is NUL-terminated within extra_len, sorted, without duplicates,
 *    and holds only unknown printable letters from the input (no ',', '/',
 *    blanks, controls), never written past extra_len; with room enough,
 *    every such letter is kept (unknown letters must survive a sync);
 *  - the input as an IMAP flag name maps to a single bit or 0, and that
 *    bit's name maps back to the same bit.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_util.h"
#include "sync/flags.h"

static const char known[] = "DFPRST";

/* Once: every bit set round-trips. */
static void check_all_bitsets(void)
{
    for (unsigned f = 0; f <= FLAG_ALL; f++) {
        char out[8];
        flags_to_letters(f, out);
        char extra[8];
        CHECK(flags_from_letters(out, extra, sizeof extra) == f && extra[0] == '\0', "bit set 0x%x", f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool once;
    if (!once) {
        check_all_bitsets();
        once = true;
    }
    if (size == 0)
        return 0;
    size_t extra_len = data[0] % 17; /* 16 means "NULL" */
    char *letters = fuzz_strndup(data + 1, size - 1);

    char *extra = extra_len < 16 ? malloc(extra_len ? extra_len : 1) : NULL;
    if (extra_len < 16 && !extra)
        abort();
    if (extra && extra_len)
        memset(extra, 'Z', extra_len); /* not a valid result: must be overwritten */
    size_t elen = extra_len < 16 ? extra_len : 0;
    unsigned f = flags_from_letters(letters, extra, elen);

    CHECK((f & ~FLAG_ALL) == 0, "bits outside FLAG_ALL: 0x%x", f);
    for (size_t i = 0; known[i]; i++) {
        bool in_input = strchr(letters, known[i]) != NULL;
        unsigned bit = flags_from_letters((char[]){known[i], '\0'}, NULL, 0);
        CHECK(bit != 0 && (bit & (bit - 1)) == 0, "letter %c is not one bit", known[i]);
        CHECK(((f & bit) != 0) == in_input, "letter %c: bit %d, in input %d", known[i], (f & bit) != 0, in_input);
    }

    char out[8];
    CHECK(flags_to_letters(f, out) == out, "flags_to_letters does not return out");
    size_t n = strlen(out);
    CHECK(n == (size_t)__builtin_popcount(f), "%zu letters for %d bits", n, __builtin_popcount(f));
    for (size_t i = 0; i < n; i++) {
        CHECK(strchr(known, out[i]) != NULL, "unknown letter %c in output", out[i]);
        CHECK(i == 0 || out[i - 1] < out[i], "letters not sorted: \"%s\"", out);
    }
    char back_extra[4];
    CHECK(flags_from_letters(out, back_extra, sizeof back_extra) == f, "round trip of \"%s\"", out);
    CHECK(back_extra[0] == '\0', "extra letters from our own output");

    if (extra && extra_len) {
        CHECK(memchr(extra, '\0', extra_len) != NULL, "extra not NUL-terminated within %zu", extra_len);
        size_t m = strlen(extra);
        for (size_t i = 0; i < m; i++) {
            unsigned char c = (unsigned char)extra[i];
            CHECK(c > ' ' && c != 0x7f && c != ',' && c != '/', "bad extra letter 0x%02x", c);
            CHECK(strchr(known, c) == NULL, "known letter %c in extra", c);
            CHECK(strchr(letters, c) != NULL, "extra letter %c not in input", c);
            CHECK(i == 0 || (unsigned char)extra[i - 1] < c, "extra not sorted/unique");
        }
    }
    free(extra);

    /* With room for every byte, no unknown printable letter is lost. */
    char all[256];
    CHECK(flags_from_letters(letters, all, sizeof all) == f, "result depends on the extra buffer");
    for (const unsigned char *p = (const unsigned char *)letters; *p; p++) {
        bool wanted = *p > ' ' && *p != 0x7f && *p != ',' && *p != '/' && !strchr(known, *p);
        CHECK(!wanted || strchr(all, *p) != NULL, "unknown letter 0x%02x dropped", *p);
    }

    unsigned bit = flags_from_imap_name(letters);
    CHECK(bit == 0 || (bit & (bit - 1)) == 0, "IMAP name maps to several bits");
    if (bit) {
        const char *name = flags_imap_name(bit);
        CHECK(name && strcasecmp(name, letters) == 0, "IMAP name round trip");
        CHECK(flags_from_imap_name(name) == bit, "IMAP name round trip (bit)");
    }
    free(letters);
    return 0;
}
