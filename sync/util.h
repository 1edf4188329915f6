/* SPDX-License-Identifier: MIT */
/* util.h: small helpers shared by the library. */
#ifndef MAILSYNC_UTIL_H
#define MAILSYNC_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* mkdir -p the directories of path up to (not including) its last
 * component when parent_only, else the whole path; new ones get mode.
 * Returns 0 or -1 with errno set. */
int util_mkdirs(const char *path, mode_t mode, bool parent_only);

/* The allocation wrappers, the only ones in the program: out of memory,
 * they abort with a message (never NULL). A size of 0 allocates 1 byte. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* At most n bytes of s, NUL-terminated. */
char *xstrndup(const char *s, size_t n);

/* Binary search by UID, the one in the program. base holds n elements of
 * size bytes, sorted by a uint32_t UID at byte offset off in each,
 * ascending and unique (UID lists, listings, state rows, journals are
 * kept so). Returns the element whose UID is uid, or NULL. */
void *util_find_uid(const void *base, size_t n, size_t size, size_t off, uint32_t uid);

/* util_find_uid over an array of structs by their uint32_t member field
 * (a compile error if field is not a uint32_t); the result has the
 * array's element type: UTIL_FIND_UID(rows, nrows, uid, 42). */
#define UTIL_FIND_UID(arr, n, field, uid)                                                                   \
    ((__typeof__(&(arr)[0]))_Generic((arr)->field, uint32_t: util_find_uid)((arr), (n), sizeof *(arr),     \
                                                                          offsetof(__typeof__(*(arr)), field), (uid)))

/* qsort/bsearch comparator for an array of C strings (char *), by strcmp. */
int util_cmp_str(const void *a, const void *b);
/* qsort/bsearch comparator for an array of uint32_t (UIDs), ascending. */
int util_cmp_u32(const void *a, const void *b);

/* Where uid stands in the sorted, unique array uids, or NULL. */
static inline const uint32_t *util_uid_find(const uint32_t *uids, size_t n, uint32_t uid)
{
    return util_find_uid(uids, n, sizeof *uids, 0, uid);
}

/* Free a string that may hold a secret (NULL is fine): wiped first, so it
 * does not linger in freed heap memory or a core dump. */
void util_free_secret(char *s);

/* A host name as the resolver wants it: "[::1]" -> "::1" (an address in
 * brackets), anything else copied; truncated to len - 1 bytes. */
void util_host_unbracket(const char *host, char *out, size_t len);

/* Seconds on the monotonic clock. */
double util_now(void);

#endif
