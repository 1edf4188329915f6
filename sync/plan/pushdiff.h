/* SPDX-License-Identifier: MIT */
/*
 * pushdiff.h: which of a folder's state rows and local files a push must
 * look at, found without holding either side's names. Pure: no I/O.
 *
 * A push compares the folder's listing (cur/ and new/) with its state
 * rows by unique name. Held whole, both sides cost ~300 B a message (two
 * arrays of structs and their strings): 30 MB for a folder of 100,000.
 * Here the rows are held as a keyed 64-bit hash of the unique name, the
 * UID and the flags (16 B, plus 4 B for the UID list), and the listing is
 * streamed past them: a file whose name hashes to a row's, with that
 * row's flags, is that row's unchanged file and is dropped. What is left
 * is what a push can act on, each in full (names, rows): files no row
 * names (new), files whose flags differ from their row's, rows no file
 * was listed for (gone), and what the caller asks for by UID or name.
 *
 * Exactness. Everything kept is compared by its strings afterwards (the
 * planner), so a hash collision can only make a file be dropped as some
 * row's unchanged file when it is not. Where that row's own file is
 * listed too, the row is listed twice (pushdiff_ambiguous()), and where
 * two rows share a hash pushdiff_seal() says so: the caller then takes
 * the folder whole, as before. What is left is a new file whose hash is
 * that of a row whose file is gone, with the same flags: with a key drawn
 * at random for each run that is (new files x gone rows) / 2^64 per push.
 */
#ifndef MAILSYNC_PUSHDIFF_H
#define MAILSYNC_PUSHDIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pushdiff;

/* A new, empty set keyed by key (16 bytes: SipHash-2-4's key). */
struct pushdiff *pushdiff_new(const uint8_t key[16]);
/* Frees *d and sets it to NULL (harmless on NULL). */
void pushdiff_free(struct pushdiff **d);

/* Room for n rows (the folder's count, if known): no array grown by
 * doubling (and copied) on the way. */
void pushdiff_reserve(struct pushdiff *d, size_t n);
/* A state row, in any order. Rows without a unique name are not added
 * (a push leaves them alone). */
void pushdiff_add_row(struct pushdiff *d, uint32_t uid, const char *uniq, unsigned flags);
/* After the last row: indexes them by hash. false when two rows share a hash (the same
 * name twice, or a collision): the set cannot tell them apart. */
bool pushdiff_seal(struct pushdiff *d);

/* The row of uid, or of the unique name uniq, if any, is wanted: kept
 * with its file whatever the listing says. After pushdiff_seal(). */
void pushdiff_want_uid(struct pushdiff *d, uint32_t uid);
void pushdiff_want_uniq(struct pushdiff *d, const char *uniq);

/* A listing starts (or starts again: what earlier files marked is
 * forgotten). */
void pushdiff_restart(struct pushdiff *d);
/* One listed file, by its unique name and flags (FLAG_*): whether the
 * caller keeps it (new, other flags than its row's, or wanted). */
bool pushdiff_keep_file(struct pushdiff *d, const char *uniq, unsigned flags);
/* Whether a row was listed more than once since the last restart (a name
 * in both new/ and cur/, a restored backup, or a collision). */
bool pushdiff_ambiguous(const struct pushdiff *d);

/* The UIDs (ascending, malloc'd into *out) of the rows to keep in full:
 * no file listed for them, other flags, or wanted. Returns the count. */
size_t pushdiff_needed(const struct pushdiff *d, uint32_t **out);
/* Whether uid was one of the added rows (the first call sorts their
 * UIDs: 4 B a row more from then on). */
bool pushdiff_has_uid(struct pushdiff *d, uint32_t uid);
/* How many rows were added. */
size_t pushdiff_rows(const struct pushdiff *d);

/* SipHash-2-4 of n bytes under a 16-byte key (exposed for the tests). */
uint64_t pushdiff_siphash(const uint8_t key[16], const void *data, size_t n);

#endif
