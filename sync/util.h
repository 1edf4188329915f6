/* util.h: small helpers shared by the library. */
#ifndef MAILSYNC_UTIL_H
#define MAILSYNC_UTIL_H

#include <stdbool.h>
#include <stddef.h>
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

/* Free a string that may hold a secret (NULL is fine): wiped first, so it
 * does not linger in freed heap memory or a core dump. */
void util_free_secret(char *s);

/* A host name as the resolver wants it: "[::1]" -> "::1" (an address in
 * brackets), anything else copied; truncated to len - 1 bytes. */
void util_host_unbracket(const char *host, char *out, size_t len);

/* Seconds on the monotonic clock. */
double util_now(void);

#endif
