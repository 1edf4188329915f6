/* SPDX-License-Identifier: MIT */
/*
 * import.c: `mailsync import`: mbsync's and OfflineIMAP's config files
 * translated into a mailsync config (see import.h).
 *
 * Two readers turn the rc text into a list of sections, each a list of
 * lines (key + arguments + line number + a `used` mark). The translators
 * then look keys up by name, mark what they carry over, and write one
 * [account] per mbsync Channel group or OfflineIMAP Account. Whatever is
 * still unmarked in a section an account was built from is listed under
 * it as "# not carried over: KEY (line N): why", so the output accounts
 * for every line of the rc. Values are written only in forms config.c
 * reads back unchanged (no " #", no leading/trailing blanks, no $VAR in a
 * path); anything else becomes a comment.
 *
 * Only import_default_rc, import_read_rc and import_write_config touch the
 * file system; the translation is pure.
 */
#include "cmd/import.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sync/util.h"

#define RC_MAX_BYTES (1024 * 1024)

/* ---- text out ------------------------------------------------------------ */

struct sb {
    char *s;
    size_t len, cap;
};

static void sb_put(struct sb *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *ns = xmalloc(cap);
        if (b->s) {
            memcpy(ns, b->s, b->len);
            explicit_bzero(b->s, b->cap); /* may hold a password */
            free(b->s);
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_str(struct sb *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_vprintf(struct sb *b, const char *fmt, va_list ap)
{
    char *t = NULL;
    if (vasprintf(&t, fmt, ap) < 0)
        abort();
    sb_str(b, t);
    free(t);
}

static void sb_free(struct sb *b)
{
    if (b->s)
        explicit_bzero(b->s, b->cap);
    free(b->s);
    memset(b, 0, sizeof *b);
}

/* "# " + the formatted text as one line: control characters (a newline
 * from the rc) become '?', so a comment never spills into a key line. */
static void comment(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void comment(struct sb *b, const char *fmt, ...)
{
    struct sb t = {0};
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&t, fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < t.len; i++)
        if (iscntrl((unsigned char)t.s[i]))
            t.s[i] = '?';
    sb_str(b, "# ");
    sb_put(b, t.s, t.len);
    sb_str(b, "\n");
    sb_free(&t);
}

/* Whether config.c reads value back as written: no control characters,
 * no blanks at either end (they are trimmed), no '#' that starts a
 * comment (at the start or after a blank). */
static bool value_fits(const char *v)
{
    if (!*v || v[0] == ' ' || v[0] == '\t' || v[0] == '#')
        return false;
    for (const char *c = v; *c; c++) {
        if (iscntrl((unsigned char)*c))
            return false;
        if (*c == '#' && (c[-1] == ' ' || c[-1] == '\t'))
            return false;
    }
    char last = v[strlen(v) - 1];
    return last != ' ' && last != '\t';
}

/* config.c expands $NAME and ${...} in most values. */
static bool has_variable(const char *v)
{
    for (const char *d = strchr(v, '$'); d; d = strchr(d + 1, '$'))
        if (isalpha((unsigned char)d[1]) || d[1] == '_' || d[1] == '{')
            return true;
    return false;
}

/* Whether config.c's $VAR expansion of a shell command gives what the
 * shell would have: no $NAME inside '...' or after a backslash (the shell
 * leaves those alone), and every ${ a plain ${NAME} (config.c refuses
 * ${NAME:-x} and the like). */
static bool command_vars_fit(const char *v)
{
    bool single = false;
    for (const char *c = v; *c; c++) {
        if (*c == '\'' )
            single = !single;
        else if (*c == '\\' && !single && c[1])
            c++;
        if (*c != '$' || !(isalpha((unsigned char)c[1]) || c[1] == '_' || c[1] == '{'))
            continue;
        if (single || (c > v && c[-1] == '\\'))
            return false;
        if (c[1] == '{') {
            const char *e = c + 2;
            if (!(isalpha((unsigned char)*e) || *e == '_'))
                return false;
            while (isalnum((unsigned char)*e) || *e == '_')
                e++;
            if (*e != '}')
                return false;
        }
    }
    return true;
}

/* A path config.c accepts: absolute, or ~ / ~/... ($HOME). */
static bool path_fits(const char *p)
{
    return p[0] == '/' || (p[0] == '~' && (p[1] == '\0' || p[1] == '/'));
}

/* ---- the rc as sections of lines ------------------------------------------ */

enum sec_kind {
    SEC_GLOBAL, /* mbsync: lines outside any section; OfflineIMAP: [DEFAULT] */
    SEC_IMAPACCOUNT,
    SEC_IMAPSTORE,
    SEC_MAILDIRSTORE,
    SEC_CHANNEL,
    SEC_GROUP,
    SEC_INI, /* an OfflineIMAP [section] */
};

static const char *const sec_words[] = {"", "IMAPAccount", "IMAPStore", "MaildirStore", "Channel", "Group", ""};

struct rc_line {
    int line;
    char *key;
    char **args; /* mbsync: the arguments; OfflineIMAP: args[0] is the value */
    size_t nargs;
    bool used;
};

struct rc_section {
    enum sec_kind kind;
    char *name;
    int line;
    struct rc_line *lines;
    size_t nlines;
    bool used; /* an account was built from it */
};

struct rc {
    const char *path;
    struct rc_section *secs; /* secs[0]: the global lines */
    size_t nsecs;
};

static struct rc_section *rc_add_section(struct rc *rc, enum sec_kind kind, const char *name, int line)
{
    rc->secs = xrealloc(rc->secs, (rc->nsecs + 1) * sizeof *rc->secs);
    struct rc_section *s = &rc->secs[rc->nsecs++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->name = xstrdup(name);
    s->line = line;
    return s;
}

static struct rc_line *rc_add_line(struct rc_section *s, const char *key, int line)
{
    s->lines = xrealloc(s->lines, (s->nlines + 1) * sizeof *s->lines);
    struct rc_line *l = &s->lines[s->nlines++];
    memset(l, 0, sizeof *l);
    l->key = xstrdup(key);
    l->line = line;
    return l;
}

static void rc_add_arg(struct rc_line *l, const char *a, size_t n)
{
    l->args = xrealloc(l->args, (l->nargs + 1) * sizeof *l->args);
    l->args[l->nargs++] = xstrndup(a, n);
}

static void rc_free(struct rc *rc)
{
    for (size_t i = 0; i < rc->nsecs; i++) {
        struct rc_section *s = &rc->secs[i];
        for (size_t j = 0; j < s->nlines; j++) {
            for (size_t k = 0; k < s->lines[j].nargs; k++) {
                explicit_bzero(s->lines[j].args[k], strlen(s->lines[j].args[k]));
                free(s->lines[j].args[k]);
            }
            free(s->lines[j].args);
            free(s->lines[j].key);
        }
        free(s->lines);
        free(s->name);
    }
    free(rc->secs);
    memset(rc, 0, sizeof *rc);
}

static struct rc_section *rc_find(struct rc *rc, enum sec_kind kind, const char *name)
{
    for (size_t i = 1; i < rc->nsecs; i++)
        if (rc->secs[i].kind == kind && strcmp(rc->secs[i].name, name) == 0)
            return &rc->secs[i];
    return NULL;
}

/* The last line of s with key (case-insensitive), every such line marked
 * used; NULL if none. */
static struct rc_line *sec_get(struct rc_section *s, const char *key)
{
    struct rc_line *found = NULL;
    for (size_t i = 0; s && i < s->nlines; i++)
        if (strcasecmp(s->lines[i].key, key) == 0) {
            s->lines[i].used = true;
            found = &s->lines[i];
        }
    return found;
}

/* The first argument of sec_get(s, key), or NULL. */
static const char *sec_arg(struct rc_section *s, const char *key, int *line)
{
    struct rc_line *l = sec_get(s, key);
    if (!l || l->nargs == 0)
        return NULL;
    if (line)
        *line = l->line;
    return l->args[0];
}

static int rc_error(struct rc *rc, struct ms_error *err, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int rc_error(struct rc *rc, struct ms_error *err, int line, const char *fmt, ...)
{
    char what[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return ms_error_set(err, MS_EUSAGE, "%s:%d: %s", rc->path, line, what);
}

/* A name from the rc shown in an error: only when it looks like a name
 * (printable and short), since a broken line may hold a secret. */
static const char *shown(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 40)
        return "(not shown)";
    for (const char *c = s; *c; c++)
        if (!isprint((unsigned char)*c))
            return "(not shown)";
    return s;
}

/* ---- mbsync: reading -------------------------------------------------------- */

/* Split one line into arguments as isync's get_arg() does: blanks
 * separate, "..." groups (the quotes themselves vanish, and may stand
 * inside a word), a backslash takes the next character literally, '#' at
 * the start of an argument ends the line. Returns 0, or -1 with *why. */
static int mbsync_split(char *s, struct rc_line *into, const char **why)
{
    size_t cap = strlen(s) + 1;
    char *word = xmalloc(cap);
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r')
            s++;
        if (!*s || *s == '#')
            break;
        size_t n = 0;
        bool quoted = false, escaped = false;
        for (; *s; s++) {
            char c = *s;
            if (escaped) {
                escaped = false;
                word[n++] = c;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                quoted = !quoted;
            } else if (!quoted && (c == ' ' || c == '\t' || c == '\r')) {
                break;
            } else {
                word[n++] = c;
            }
        }
        if (escaped || quoted) {
            *why = escaped ? "unterminated escape sequence (a '\\' at the end of the line)" : "missing closing quote";
            explicit_bzero(word, cap);
            free(word);
            return -1;
        }
        rc_add_arg(into, word, n);
    }
    explicit_bzero(word, cap);
    free(word);
    return 0;
}

/* The next line of text at *pos (up to end), cut at its '\n' in place;
 * *pos moves past it. NULL when no text is left. *nul is set when the line
 * holds a NUL byte (then it is not a text file). */
static char *take_line(char **pos, char *end, bool *nul)
{
    char *line = *pos;
    if (line >= end)
        return NULL;
    char *nl = memchr(line, '\n', (size_t)(end - line));
    char *stop = nl ? nl : end;
    *nul = memchr(line, '\0', (size_t)(stop - line)) != NULL;
    *stop = '\0'; /* the text has a byte past its end for this */
    *pos = stop + 1;
    return line;
}

static int mbsync_section_kind(const char *word)
{
    for (int k = SEC_IMAPACCOUNT; k <= SEC_GROUP; k++)
        if (strcasecmp(word, sec_words[k]) == 0)
            return k;
    return -1;
}

static int mbsync_read(struct rc *rc, char *text, size_t len, struct ms_error *err)
{
    struct rc_section *cur = NULL; /* NULL: between sections */
    rc_add_section(rc, SEC_GLOBAL, "", 0);
    char *pos = text, *end = text + len, *line;
    int no = 0;
    bool nul = false;
    while ((line = take_line(&pos, end, &nul)) != NULL) {
        no++;
        if (nul)
            return rc_error(rc, err, no, "contains a NUL byte (is this a text file?)");
        const char *first = line;
        while (*first == ' ' || *first == '\t' || *first == '\r')
            first++;
        bool comment_line = *first == '#', blank = *first == '\0';
        struct rc_line tmp = {0};
        const char *why = NULL;
        int rc_split = comment_line || blank ? 0 : mbsync_split(line, &tmp, &why);
        if (rc_split != 0) {
            for (size_t k = 0; k < tmp.nargs; k++) {
                explicit_bzero(tmp.args[k], strlen(tmp.args[k]));
                free(tmp.args[k]);
            }
            free(tmp.args);
            return rc_error(rc, err, no, "%s", why);
        }
        if (blank)
            cur = NULL; /* a blank line ends a section; a comment line does not */
        if (tmp.nargs == 0) {
            free(tmp.args);
            continue;
        }
        int kind = mbsync_section_kind(tmp.args[0]);
        if (kind == SEC_CHANNEL && cur && cur->kind == SEC_GROUP)
            kind = -1; /* "Channel X" inside a Group names a member */
        struct rc_line *l = NULL;
        if (kind > 0) {
            if (tmp.nargs < 2) {
                int r = rc_error(rc, err, no, "%s needs a name", sec_words[kind]);
                for (size_t k = 0; k < tmp.nargs; k++)
                    free(tmp.args[k]);
                free(tmp.args);
                return r;
            }
            struct rc_section *dup = rc_find(rc, (enum sec_kind)kind, tmp.args[1]);
            if (dup) {
                int r = rc_error(rc, err, no, "%s %s is defined twice (first on line %d)", sec_words[kind],
                                 shown(tmp.args[1]), dup->line);
                for (size_t k = 0; k < tmp.nargs; k++)
                    free(tmp.args[k]);
                free(tmp.args);
                return r;
            }
            cur = rc_add_section(rc, (enum sec_kind)kind, tmp.args[1], no);
            if (kind == SEC_GROUP && tmp.nargs > 2) { /* Group NAME ch1 ch2 ... */
                l = rc_add_line(cur, "Channels", no);
                for (size_t k = 2; k < tmp.nargs; k++)
                    rc_add_arg(l, tmp.args[k], strlen(tmp.args[k]));
            }
        } else {
            l = rc_add_line(cur ? cur : &rc->secs[0], tmp.args[0], no);
            for (size_t k = 1; k < tmp.nargs; k++)
                rc_add_arg(l, tmp.args[k], strlen(tmp.args[k]));
        }
        for (size_t k = 0; k < tmp.nargs; k++) {
            explicit_bzero(tmp.args[k], strlen(tmp.args[k]));
            free(tmp.args[k]);
        }
        free(tmp.args);
    }
    return MS_OK;
}

/* ---- mailsync accounts out ---------------------------------------------------- */

struct out {
    const struct import_options *opt;
    const char *path;
    struct sb head;  /* file-level comments: what belongs to no account */
    struct sb body;  /* the accounts */
    char **names;    /* account names given so far */
    size_t nnames;
};

/* Why a key of the rc has no mailsync counterpart (NULL: a generic why). */
struct reason {
    const char *key;
    const char *why;
};

static const char *reason_for(const struct reason *r, const char *key)
{
    for (; r && r->key; r++)
        if (strcasecmp(r->key, key) == 0)
            return r->why;
    return "mailsync has no such setting";
}

/* Whether a key's value may be a secret (and so is not repeated). */
static bool key_is_secret(const char *key)
{
    static const char *const words[] = {"pass", "secret", "token", "eval", "cmd", "key", "hook", NULL};
    for (int i = 0; words[i]; i++)
        if (strcasestr(key, words[i]))
            return true;
    return false;
}

static void lost(struct sb *b, int line, const char *what, const char *why)
{
    if (line > 0)
        comment(b, "not carried over: %s (line %d): %s", what, line, why);
    else
        comment(b, "not carried over: %s: %s", what, why);
}

/* "KEY VALUE..." of an rc line for a comment; the value only when it
 * cannot be a secret, and cut short. */
static char *line_text(const struct rc_line *l, bool ini)
{
    struct sb t = {0};
    sb_str(&t, l->key);
    if (ini)
        sb_str(&t, " =");
    if (key_is_secret(l->key)) {
        if (l->nargs)
            sb_str(&t, " ...");
    } else {
        for (size_t i = 0; i < l->nargs; i++) {
            sb_str(&t, " ");
            sb_str(&t, l->args[i]);
        }
    }
    if (t.len > 100) {
        t.len = 97;
        t.s[t.len] = '\0';
        sb_str(&t, "...");
    }
    return t.s;
}

/* Every line of s no translator took, as a comment. */
static void list_unused(struct sb *b, struct rc_section *s, const struct reason *reasons, bool ini)
{
    for (size_t i = 0; i < s->nlines; i++) {
        struct rc_line *l = &s->lines[i];
        if (l->used)
            continue;
        l->used = true;
        char *what = line_text(l, ini);
        lost(b, l->line, what, reason_for(reasons, l->key));
        free(what);
    }
}

/* key = value, when config.c reads it back the same: else a comment
 * saying what was in the rc (value only when not a secret). path: the
 * value must be absolute or start with ~/. expands: config.c would
 * expand a $VAR in it (a shell command is written anyway, with a note:
 * its shell would have expanded it too). */
static bool put(struct sb *b, const char *key, const char *value, int line, const char *from, bool path)
{
    bool secret = key_is_secret(from) || key_is_secret(key);
    const char *why = NULL;
    if (!value_fits(value))
        why = "its value has blanks at an end, a control character or \" #\", which a mailsync config cannot hold";
    else if (strcmp(key, "host") == 0 && strpbrk(value, " \t/"))
        why = "not a host name";
    else if (path && !path_fits(value))
        why = "mailsync needs an absolute path (or one starting with ~/)";
    else if (!secret && has_variable(value))
        why = "it holds '$', which mailsync would expand as an environment variable";
    else if (secret && !command_vars_fit(value))
        why = "it holds a $VAR in quotes or a ${...} form that mailsync would expand differently than the shell";
    if (why) {
        char what[160];
        snprintf(what, sizeof what, "%s%s%s", from, secret ? "" : " ", secret ? "" : value);
        lost(b, line, what, why);
        return false;
    }
    if (secret && has_variable(value))
        comment(b, "note: mailsync expands $VAR in %s itself, from its own environment", key);
    sb_str(b, key);
    sb_str(b, " = ");
    sb_str(b, value);
    sb_str(b, "\n");
    return true;
}

/* A literal password: into the output only when asked (the 0600 file of
 * --write), with a recommendation; a comment otherwise. */
static void put_password(struct out *o, struct sb *b, const char *value, int line, const char *from)
{
    if (!value_fits(value)) {
        lost(b, line, from, "the password has blanks at an end, a control character or \" #\", which a mailsync "
                            "config cannot hold; set password_command");
        return;
    }
    if (!o->opt->with_secrets) {
        comment(b, "password = (%s, line %d: not printed; `mailsync import --write` puts it in the file it "
                   "creates with mode 0600)",
                from, line);
        return;
    }
    comment(b, "WARNING: %s (line %d) is a password in clear: better store it in a password manager and", from,
            line);
    comment(b, "replace this line with password_command = pass show mail/ACCOUNT (its first line is used)");
    sb_str(b, "password = ");
    sb_str(b, value);
    sb_str(b, "\n");
}

/* One folder pattern in config.c's syntax: quoted when it holds a blank
 * or '#'; NULL when it cannot be written ('"' or a control character). */
static char *folder_pattern(const char *p)
{
    for (const char *c = p; *c; c++)
        if (*c == '"' || iscntrl((unsigned char)*c))
            return NULL;
    bool neg = p[0] == '!';
    const char *rest = neg ? p + 1 : p;
    if (!*rest)
        return NULL;
    if (!strpbrk(rest, " \t#")) {
        return xstrdup(p);
    }
    char *q = NULL;
    if (asprintf(&q, "%s\"%s\"", neg ? "!" : "", rest) < 0)
        abort();
    return q;
}

/* folders = the patterns (in order: the last match decides, as in mbsync
 * and mailsync alike). */
static void put_folders(struct sb *b, char *const *pats, size_t n, int line, const char *from)
{
    struct sb v = {0};
    for (size_t i = 0; i < n; i++) {
        char *q = folder_pattern(pats[i]);
        if (!q) {
            char what[200];
            snprintf(what, sizeof what, "%s pattern %s", from, pats[i]);
            lost(b, line, what, "a mailsync folder pattern cannot hold '\"' or control characters");
            continue;
        }
        if (v.len)
            sb_str(&v, " ");
        sb_str(&v, q);
        free(q);
    }
    if (v.len) {
        sb_str(b, "folders = ");
        sb_str(b, v.s);
        sb_str(b, "\n");
    }
    sb_free(&v);
}

/* An account name config.c accepts, from an rc name: other characters
 * become '-', and a number is added when the name is taken. */
static char *account_name(struct out *o, const char *from)
{
    char base[60];
    size_t n = 0;
    for (const char *c = from; *c && n < sizeof base - 1; c++)
        base[n++] = isalnum((unsigned char)*c) || *c == '-' || *c == '_' || *c == '.' ? *c : '-';
    base[n] = '\0';
    if (n == 0 || base[0] == '.' || base[0] == '-') {
        memmove(base + 1, base, n + 1 < sizeof base - 1 ? n + 1 : sizeof base - 2);
        base[0] = 'a';
        base[sizeof base - 1] = '\0';
    }
    char *name = xstrdup(base);
    for (int k = 2;; k++) {
        bool taken = false;
        for (size_t i = 0; i < o->nnames; i++)
            taken = taken || strcmp(o->names[i], name) == 0;
        if (!taken)
            break;
        free(name);
        if (asprintf(&name, "%s-%d", base, k) < 0)
            abort();
    }
    o->names = xrealloc(o->names, (o->nnames + 1) * sizeof *o->names);
    o->names[o->nnames++] = name;
    return name;
}

/* mbsync's and OfflineIMAP's "size[k|m][b]" as config.c's max_size
 * ("25M"); NULL if it is not one. *zero: 0 (no limit). */
static char *size_value(const char *v, bool *zero)
{
    char *end = NULL;
    errno = 0;
    if (!isdigit((unsigned char)v[0]))
        return NULL;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || n > (UINT64_MAX >> 30)) /* what config.c takes */
        return NULL;
    char unit = 0;
    if (*end == 'k' || *end == 'K' || *end == 'm' || *end == 'M')
        unit = (char)toupper((unsigned char)*end++);
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end)
        return NULL;
    *zero = n == 0;
    char *out = NULL;
    if (asprintf(&out, "%llu%s", n, unit ? (unit == 'K' ? "K" : "M") : "") < 0)
        abort();
    return out;
}

static bool word_is(const char *v, const char *w)
{
    return v && strcasecmp(v, w) == 0;
}

/* yes/no as Python's configparser and mbsync read them; -1 if neither. */
static int boolean(const char *v)
{
    static const char *const yes[] = {"yes", "true", "on", "1", NULL}, *const no[] = {"no", "false", "off", "0", NULL};
    for (int i = 0; v && yes[i]; i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return 1;
        if (strcasecmp(v, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* 'x' -> x for the shell */
static void shell_quote(struct sb *b, const char *s)
{
    if (*s && !strpbrk(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~"))
        return sb_str(b, s);
    sb_str(b, "'");
    for (; *s; s++) {
        if (*s == '\'')
            sb_str(b, "'\\''");
        else
            sb_put(b, s, 1);
    }
    sb_str(b, "'");
}

static bool host_is_loopback_name(const char *h)
{
    return strcasecmp(h, "localhost") == 0 || strncmp(h, "127.", 4) == 0 || strcmp(h, "::1") == 0 ||
           strcmp(h, "[::1]") == 0;
}

/* tls = none for a host that is not this machine needs allow_plaintext. */
static void put_plaintext(struct sb *b, const char *host)
{
    sb_str(b, "tls = none\n");
    if (host && !host_is_loopback_name(host)) {
        comment(b, "WARNING: the rc sent the password unencrypted; mailsync refuses that unless told so.");
        comment(b, "Better: tls = starttls (or implicit) and remove allow_plaintext.");
        sb_str(b, "allow_plaintext = yes\n");
    }
}

/* ---- mbsync: translating ------------------------------------------------------ */

static const struct reason mbsync_reasons[] = {
    {"Tunnel", "mailsync connects over TCP only (host and port)"},
    {"UserCmd", "mailsync needs the user name written out: user = NAME"},
    {"UseKeychain", "mailsync reads no macOS Keychain; use password_command = security find-internet-password -w "
                    "-s HOST -a USER"},
    {"SSLVersions", "mailsync picks the TLS versions itself"},
    {"TLSVersions", "mailsync picks the TLS versions itself"},
    {"CipherString", "mailsync uses OpenSSL's default ciphers"},
    {"ClientCertificate", "mailsync sends no client certificate"},
    {"ClientKey", "mailsync sends no client certificate"},
    {"SystemCertificates", "mailsync trusts the system's store, or only ca_file when that is set"},
    {"PipelineDepth", "mailsync decides its pipelining itself"},
    {"DisableExtension", "mailsync has no switch to turn IMAP extensions off"},
    {"DisableExtensions", "mailsync has no switch to turn IMAP extensions off"},
    {"UseNamespace", "mailsync names folders as the server lists them"},
    {"PathDelimiter", "mailsync uses the hierarchy delimiter the server reports"},
    {"SubscribedOnly", "mailsync syncs every folder its patterns select, subscribed or not"},
    {"AltMap", "mailsync keeps its own state database"},
    {"MaxMessages", "mailsync has no per-folder message limit"},
    {"ExpireUnread", "mailsync has no per-folder message limit"},
    {"ExpireSide", "mailsync has no per-folder message limit"},
    {"SyncState", "mailsync keeps its own state database (state =); mbsync's state files are left alone"},
    {"FSync", "mailsync always makes what it writes durable"},
    {"FieldDelimiter", "mailsync uses ':' in Maildir file names"},
    {"InfoDelimiter", "mailsync uses ':' in Maildir file names"},
    {"BufferLimit", "mailsync streams messages and needs no such limit"},
    {"MapInbox", "mailsync has no alias for INBOX"},
    {"TrashNewOnly", "mailsync's trash takes every message deleted locally"},
    {"TrashRemoteNew", "mailsync has no local trash folder"},
    {"Remove", "mailsync has no setting for propagating folder deletions"},
    {NULL, NULL},
};

struct mb_spec {
    char *store;
    char *box; /* NULL: none given */
};

/* ":store:[box]" */
static bool mb_parse_spec(const char *v, struct mb_spec *out)
{
    memset(out, 0, sizeof *out);
    if (!v || v[0] != ':')
        return false;
    const char *colon = strchr(v + 1, ':');
    if (!colon) {
        out->store = xstrdup(v + 1);
    } else {
        out->store = xstrndup(v + 1, (size_t)(colon - v - 1));
        out->box = xstrdup(colon + 1);
    }
    return out->store[0] != '\0';
}

static void mb_spec_free(struct mb_spec *s)
{
    free(s->store);
    free(s->box);
}

struct mb_group {
    struct rc_section *store;   /* IMAPStore */
    struct rc_section *account; /* its IMAPAccount, or NULL */
    struct rc_section *local;   /* MaildirStore */
    struct rc_section **chans;
    size_t nchans;
};

/* A server setting: from the IMAPStore itself, else its IMAPAccount
 * (both marked used). */
static struct rc_line *mb_server(struct mb_group *g, const char *key)
{
    struct rc_line *a = sec_get(g->account, key), *s = sec_get(g->store, key);
    return s ? s : a;
}

static const char *arg0(const struct rc_line *l)
{
    return l && l->nargs ? l->args[0] : NULL;
}

/* A channel setting: the channel's own, else the global default. */
static struct rc_line *mb_chan(struct rc *rc, struct rc_section *ch, const char *key)
{
    struct rc_line *l = sec_get(ch, key);
    return l ? l : sec_get(&rc->secs[0], key);
}

enum { OP_NEW = 1, OP_DEL = 2, OP_FLAGS = 4, OP_ALL = 7 };

static int mb_op_word(const char *w, unsigned *op)
{
    static const struct { const char *w; unsigned op; } ops[] = {
        {"New", OP_NEW}, {"ReNew", 0}, {"Upgrade", 0}, {"Old", 0},
        {"Delete", OP_DEL}, {"Gone", OP_DEL}, {"Flags", OP_FLAGS},
    };
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        if (strcasecmp(w, ops[i].w) == 0) {
            *op = ops[i].op;
            return 0;
        }
    return -1;
}

/* mbsync's Sync words as the operations each direction does (OP_*), read
 * as its man page says: plain direction and type words select rows and
 * columns; a compound word (PullNew) sets one cell, and then plain words
 * set their whole row or column. -1 for a word it does not know. */
static int mb_sync_ops(const struct rc_line *l, unsigned *pull, unsigned *push)
{
    unsigned dirs = 0, types = 0, cpull = 0, cpush = 0;
    bool any_type = false, compound = false;
    for (size_t i = 0; i < l->nargs; i++) {
        const char *w = l->args[i];
        unsigned op = 0;
        if (strcasecmp(w, "None") == 0 || strcasecmp(w, "Noop") == 0) {
            *pull = *push = 0;
            return 0;
        }
        if (strcasecmp(w, "All") == 0 || strcasecmp(w, "Full") == 0) {
            *pull = *push = OP_ALL;
            return 0;
        }
        if (strcasecmp(w, "Pull") == 0)
            dirs |= 1;
        else if (strcasecmp(w, "Push") == 0)
            dirs |= 2;
        else if (mb_op_word(w, &op) == 0)
            types |= op, any_type = true;
        else if (strncasecmp(w, "Pull", 4) == 0 && mb_op_word(w + 4, &op) == 0)
            cpull |= op, compound = true;
        else if (strncasecmp(w, "Push", 4) == 0 && mb_op_word(w + 4, &op) == 0)
            cpush |= op, compound = true;
        else
            return -1;
    }
    if (compound) {
        *pull = cpull | (dirs & 1 ? OP_ALL : 0) | types;
        *push = cpush | (dirs & 2 ? OP_ALL : 0) | types;
        return 0;
    }
    unsigned d = dirs ? dirs : 3, t = any_type ? types : OP_ALL;
    *pull = d & 1 ? t : 0;
    *push = d & 2 ? t : 0;
    return 0;
}

static char *joined_args(const struct rc_line *l)
{
    struct sb t = {0};
    sb_str(&t, l->key);
    for (size_t i = 0; i < l->nargs; i++) {
        sb_str(&t, " ");
        sb_str(&t, l->args[i]);
    }
    return t.s;
}

static void mb_put_sync(struct sb *b, const struct rc_line *l, const char *name)
{
    if (!l)
        return;
    unsigned pull = 0, push = 0;
    char *what = joined_args(l);
    if (mb_sync_ops(l, &pull, &push) != 0) {
        lost(b, l->line, what, "a word mbsync's manual does not list");
    } else if (pull == OP_ALL && push == OP_ALL) {
        /* mailsync's sync */
    } else if (pull == (OP_NEW | OP_FLAGS) && push == (OP_NEW | OP_FLAGS)) {
        comment(b, "%s (line %d): no deletions either way", what, l->line);
        sb_str(b, "mode = backup\n");
    } else if (push == 0 && (pull & OP_NEW)) {
        char why[200];
        snprintf(why, sizeof why, "mailsync has no per-account direction: run `mailsync pull %s` instead of sync",
                 name);
        lost(b, l->line, what, why);
        if (!(pull & OP_DEL))
            sb_str(b, "mode = backup\n");
    } else if (pull == 0 && (push & OP_NEW)) {
        char why[200];
        snprintf(why, sizeof why, "mailsync has no per-account direction: run `mailsync push %s` instead of sync",
                 name);
        lost(b, l->line, what, why);
        if (!(push & OP_DEL))
            sb_str(b, "mode = backup\n");
    } else {
        lost(b, l->line, what,
             "mailsync syncs new messages, flags and deletions both ways (mode = backup leaves deletions out)");
    }
    free(what);
}

/* The far side's part of Expunge: None|Far|Near|Both (Master/Slave in
 * mbsync 1.3). mbsync's default is None; mailsync's is yes, so it is
 * always written. */
static void mb_put_expunge(struct sb *b, const struct rc_line *l)
{
    const char *v = arg0(l);
    if (!v) {
        comment(b, "mbsync's default Expunge None: messages deleted locally are only flagged \\Deleted on the "
                   "server");
        sb_str(b, "expunge = no\n");
        return;
    }
    if (word_is(v, "Far") || word_is(v, "Both") || word_is(v, "Master"))
        sb_str(b, "expunge = yes\n");
    else if (word_is(v, "None") || word_is(v, "Near") || word_is(v, "Slave"))
        sb_str(b, "expunge = no\n");
    else {
        char *what = joined_args(l);
        lost(b, l->line, what, "not None, Far, Near or Both");
        free(what);
    }
}

static void mb_put_create(struct sb *b, const struct rc_line *l)
{
    const char *v = arg0(l);
    if (v && word_is(v, "Both"))
        return;
    char *what = l ? joined_args(l) : xstrdup("Create None (mbsync's default)");
    lost(b, l ? l->line : 0, what, "mailsync creates a folder that is new on either side on the other side");
    free(what);
}

/* Maildir root and layout of a MaildirStore; INBOX where mailsync expects
 * it, or a comment saying where to move it. */
/* a == b, a leading ~ read as home (when known) on both sides */
static bool same_path(const char *a, const char *b, const char *home)
{
    char *x[2] = {NULL, NULL};
    const char *in[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        const char *p = in[i];
        if (home && p[0] == '~' && (p[1] == '\0' || p[1] == '/')) {
            if (asprintf(&x[i], "%s%s", home, p + 1) < 0)
                abort();
        } else {
            x[i] = xstrdup(p);
        }
    }
    bool same = strcmp(x[0], x[1]) == 0;
    free(x[0]);
    free(x[1]);
    return same;
}

static void mb_put_local(struct out *o, struct sb *b, struct mb_group *g)
{
    struct rc_section *m = g->local;
    int path_line = 0, inbox_line = 0, sub_line = 0, flat_line = 0;
    const char *path = sec_arg(m, "Path", &path_line);
    const char *inbox = sec_arg(m, "Inbox", &inbox_line);
    const char *sub = sec_arg(m, "SubFolders", &sub_line);
    const char *flatten = sec_arg(m, "Flatten", &flat_line);
    const char *layout = "verbatim";
    char *root = NULL;
    if (!inbox)
        inbox = "~/Maildir";
    if (flatten) {
        if (strcmp(flatten, ".") != 0) {
            char what[80];
            snprintf(what, sizeof what, "Flatten %s", flatten);
            lost(b, flat_line, what, "mailsync's flat layout (dotted) uses '.'");
        } else {
            layout = "dotted";
        }
        if (sub) {
            char what[80];
            snprintf(what, sizeof what, "SubFolders %s", sub);
            lost(b, sub_line, what, "has no effect with Flatten");
        }
    } else if (sub && word_is(sub, "Maildir++")) {
        layout = "maildir++";
        root = xstrdup(inbox); /* Maildir++: INBOX is the root */
    } else if (sub && word_is(sub, "Legacy")) {
        lost(b, sub_line, "SubFolders Legacy",
             "mailsync keeps sub-folders as Path/top/sub (verbatim), not Path/top/.sub; rename them before the first "
             "sync");
    } else if (sub && !word_is(sub, "Verbatim")) {
        char what[80];
        snprintf(what, sizeof what, "SubFolders %s", sub);
        lost(b, sub_line, what, "not Verbatim, Maildir++ or Legacy");
    }
    if (!root) {
        if (!path) {
            /* No Path: only INBOX; its parent is the root when it is named INBOX. */
            const char *slash = strrchr(inbox, '/');
            if (slash && strcmp(slash + 1, "INBOX") == 0)
                root = xstrndup(inbox, (size_t)(slash - inbox));
        } else {
            root = xstrdup(path);
            size_t n = strlen(root);
            if (n > 1 && root[n - 1] != '/')
                comment(b, "note: Path %s (line %d) has no trailing '/': mbsync put a folder X at %sX, mailsync "
                           "puts it at %s/X",
                        path, path_line, path, path);
            while (n > 1 && root[n - 1] == '/')
                root[--n] = '\0';
        }
    }
    if (!root) {
        lost(b, inbox_line, "Inbox",
             "mailsync needs a Maildir root (the MaildirStore has no Path); maildir = ~/Mail and move INBOX to "
             "~/Mail/INBOX");
        comment(b, "maildir = ~/Mail");
    } else if (put(b, "maildir", root, path_line ? path_line : inbox_line, "Path", true)) {
        /* Where mailsync will look for INBOX: MAILDIR/INBOX (the root
         * itself with maildir++). */
        char *want = NULL;
        if (asprintf(&want, "%s%s", root, strcmp(layout, "maildir++") == 0 ? "" : "/INBOX") < 0)
            abort();
        char *have = xstrdup(inbox);
        size_t n = strlen(have);
        while (n > 1 && have[n - 1] == '/')
            have[--n] = '\0';
        if (!same_path(want, have, o->opt->home)) {
            char what[300], why[700];
            snprintf(what, sizeof what, "Inbox %s", have);
            snprintf(why, sizeof why, "mailsync keeps INBOX at %s: move it there before the first sync (mv %s %s)",
                     want, have, want);
            lost(b, inbox_line, what, why);
        }
        free(want);
        free(have);
    }
    free(root);
    sb_str(b, "layout = ");
    sb_str(b, layout);
    sb_str(b, "\n");
}

/* The folders of a channel: its Patterns (the Far box then only a prefix),
 * else the one box pair. */
static void mb_collect_patterns(struct sb *b, struct rc_section *ch, char ***pats, size_t *n, int *line)
{
    struct mb_spec far, near;
    struct rc_line *fl = sec_get(ch, "Far"), *ml = sec_get(ch, "Master");
    struct rc_line *nl = sec_get(ch, "Near"), *sl = sec_get(ch, "Slave");
    mb_parse_spec(arg0(fl ? fl : ml), &far);
    mb_parse_spec(arg0(nl ? nl : sl), &near);
    bool any = false;
    for (size_t i = 0; i < ch->nlines; i++) {
        struct rc_line *l = &ch->lines[i];
        if (strcasecmp(l->key, "Patterns") != 0 && strcasecmp(l->key, "Pattern") != 0)
            continue;
        l->used = true;
        any = true;
        *line = l->line;
        for (size_t k = 0; k < l->nargs; k++) {
            *pats = xrealloc(*pats, (*n + 1) * sizeof **pats);
            (*pats)[(*n)++] = xstrdup(l->args[k]);
        }
    }
    int spec_line = fl ? fl->line : ml ? ml->line : ch->line;
    if (any) {
        if (far.box && far.box[0]) {
            char what[300];
            snprintf(what, sizeof what, "the Far box prefix %s of Channel %s", far.box, ch->name);
            lost(b, spec_line, what, "mailsync stores a server folder under its full name");
        }
        if (near.box && near.box[0]) {
            char what[300];
            snprintf(what, sizeof what, "the Near box prefix %s of Channel %s", near.box, ch->name);
            lost(b, nl ? nl->line : spec_line, what, "mailsync stores a server folder under its full name");
        }
    } else {
        const char *fbox = far.box && far.box[0] ? far.box : "INBOX";
        const char *nbox = near.box && near.box[0] ? near.box : "INBOX";
        bool same = strcmp(fbox, nbox) == 0 || (strcasecmp(fbox, "INBOX") == 0 && strcasecmp(nbox, "INBOX") == 0);
        if (!same) {
            char what[300], why[400];
            snprintf(what, sizeof what, "Channel %s stores %s as %s", ch->name, fbox, nbox);
            snprintf(why, sizeof why, "mailsync stores a server folder under its own name (%s)", fbox);
            lost(b, nl ? nl->line : spec_line, what, why);
        }
        *pats = xrealloc(*pats, (*n + 1) * sizeof **pats);
        (*pats)[(*n)++] = xstrdup(fbox);
        *line = spec_line;
    }
    mb_spec_free(&far);
    mb_spec_free(&near);
}

/* MaxSize of the near side: the channel's, else the MaildirStore's. */
static void mb_put_max_size(struct sb *b, struct rc_line *l)
{
    if (!l)
        return;
    bool zero = false;
    char *v = size_value(arg0(l) ? arg0(l) : "", &zero);
    char *what = joined_args(l);
    if (!v)
        lost(b, l->line, what, "not a size like 10m");
    else if (!zero) {
        sb_str(b, "max_size = ");
        sb_str(b, v);
        sb_str(b, "\n");
    }
    free(v);
    free(what);
}

static void mb_put_credentials(struct out *o, struct sb *b, struct mb_group *g)
{
    struct rc_line *mechs = mb_server(g, "AuthMechs");
    if (!mechs)
        mechs = mb_server(g, "AuthMech");
    const char *auth = NULL;
    if (mechs && mechs->nargs == 1 && strcmp(mechs->args[0], "*") != 0) {
        static const char *const known[] = {"LOGIN", "PLAIN", "XOAUTH2", "OAUTHBEARER", NULL};
        for (int i = 0; known[i]; i++)
            if (strcasecmp(mechs->args[0], known[i]) == 0)
                auth = known[i];
    }
    if (auth) {
        char lower[16];
        size_t i = 0;
        for (; auth[i] && i < sizeof lower - 1; i++)
            lower[i] = (char)tolower((unsigned char)auth[i]);
        lower[i] = '\0';
        sb_str(b, "auth = ");
        sb_str(b, lower);
        sb_str(b, "\n");
    } else if (mechs && !(mechs->nargs == 1 && strcmp(mechs->args[0], "*") == 0)) {
        char *what = joined_args(mechs);
        lost(b, mechs->line, what, "mailsync takes one of login, plain, xoauth2, oauthbearer, or picks the best itself");
        free(what);
    }
    bool oauth = auth && (strcmp(auth, "XOAUTH2") == 0 || strcmp(auth, "OAUTHBEARER") == 0);
    struct rc_line *cmd = mb_server(g, "PassCmd"), *pass = mb_server(g, "Pass");
    const char *key = oauth ? "oauth_token_command" : "password_command";
    if (cmd && arg0(cmd)) {
        const char *c = arg0(cmd);
        if (c[0] == '+') {
            c++;
            comment(b, "note: PassCmd (line %d) began with '+' (it talks to the terminal); mailsync runs it with "
                       "stdin from /dev/null",
                    cmd->line);
        }
        put(b, key, c, cmd->line, "PassCmd", false);
        if (pass)
            lost(b, pass->line, "Pass", "PassCmd is set too, and a mailsync account takes one of them");
    } else if (pass && arg0(pass)) {
        if (oauth)
            lost(b, pass->line, "Pass", "an OAuth2 token needs oauth_token_command");
        else
            put_password(o, b, arg0(pass), pass->line, "Pass");
    } else {
        comment(b, "%s = ...   <- set this: the rc has no PassCmd or Pass (mbsync asked at the terminal)", key);
    }
}

static void mb_put_server(struct out *o, struct sb *b, struct mb_group *g)
{
    struct rc_line *host = mb_server(g, "Host"), *port = mb_server(g, "Port");
    struct rc_line *tls = mb_server(g, "TLSType"), *ssl = mb_server(g, "SSLType");
    struct rc_line *user = mb_server(g, "User"), *ca = mb_server(g, "CertificateFile");
    struct rc_line *timeout = mb_server(g, "Timeout");
    if (!tls)
        tls = ssl;
    if (arg0(host))
        put(b, "host", arg0(host), host->line, "Host", false);
    else
        comment(b, "host = ...   <- set this: the rc names no Host");
    bool port_ok = false;
    if (arg0(port)) {
        char *end = NULL;
        long v = strtol(arg0(port), &end, 10);
        port_ok = isdigit((unsigned char)arg0(port)[0]) && !*end && v >= 1 && v <= 65535;
        if (port_ok)
            put(b, "port", arg0(port), port->line, "Port", false);
        else
            lost(b, port->line, "Port", "not a port number");
    }
    const char *t = arg0(tls);
    if (t && word_is(t, "IMAPS"))
        sb_str(b, "tls = implicit\n");
    else if (t && word_is(t, "STARTTLS"))
        sb_str(b, "tls = starttls\n");
    else if (t && word_is(t, "None"))
        put_plaintext(b, arg0(host));
    else if (t) {
        char *what = joined_args(tls);
        lost(b, tls->line, what, "not None, STARTTLS or IMAPS");
        free(what);
    } else if (port_ok && strcmp(arg0(port), "993") == 0) {
        sb_str(b, "tls = implicit\n");
    } else {
        comment(b, "mbsync's default SSLType STARTTLS");
        sb_str(b, "tls = starttls\n");
    }
    if (arg0(user))
        put(b, "user", arg0(user), user->line, "User", false);
    else
        comment(b, "user = ...   <- set this: the rc names no User");
    mb_put_credentials(o, b, g);
    if (arg0(ca))
        put(b, "ca_file", arg0(ca), ca->line, "CertificateFile", true);
    if (arg0(timeout)) {
        char *end = NULL;
        long v = strtol(arg0(timeout), &end, 10);
        if (isdigit((unsigned char)arg0(timeout)[0]) && !*end && v >= 1 && v <= 86400)
            put(b, "timeout", arg0(timeout), timeout->line, "Timeout", false);
        else
            lost(b, timeout->line, "Timeout", "mailsync takes 1 to 86400 seconds (0, no limit, is not possible)");
    }
    const char *spath = sec_arg(g->store, "Path", NULL);
    if (spath && spath[0]) {
        struct rc_line *l = sec_get(g->store, "Path");
        char what[300];
        snprintf(what, sizeof what, "IMAPStore Path %s", spath);
        lost(b, l->line, what, "mailsync names server folders from the top, without a prefix");
    }
    struct rc_line *trash = sec_get(g->store, "Trash");
    if (arg0(trash))
        put(b, "trash", arg0(trash), trash->line, "Trash", false);
    struct rc_line *smax = sec_get(g->store, "MaxSize");
    if (smax) {
        char *what = joined_args(smax);
        lost(b, smax->line, what, "mailsync's max_size limits downloads, not uploads");
        free(what);
    }
    struct rc_line *sflat = sec_get(g->store, "Flatten");
    if (sflat) {
        char *what = joined_args(sflat);
        lost(b, sflat->line, what, "mailsync takes the server's hierarchy as it is (layout flattens local names)");
        free(what);
    }
}

/* Compare a setting of two channels (as written in the rc). */
static bool mb_same_setting(struct rc *rc, struct rc_section *a, struct rc_section *c, const char *key)
{
    struct rc_line *x = mb_chan(rc, a, key), *y = mb_chan(rc, c, key);
    if (!x || !y)
        return x == y;
    if (x->nargs != y->nargs)
        return false;
    for (size_t i = 0; i < x->nargs; i++)
        if (strcasecmp(x->args[i], y->args[i]) != 0)
            return false;
    return true;
}

static void mb_put_group(struct out *o, struct rc *rc, struct mb_group *g)
{
    struct rc_section *first = g->chans[0];
    const char *base = g->nchans == 1 ? first->name : g->account ? g->account->name : g->store->name;
    char *name = account_name(o, base);
    struct sb *b = &o->body;
    sb_str(b, "\n[account ");
    sb_str(b, name);
    sb_str(b, "]\n");
    struct sb from = {0};
    for (size_t i = 0; i < g->nchans; i++) {
        char t[200];
        snprintf(t, sizeof t, "%sChannel %s (line %d)", i ? ", " : "", g->chans[i]->name, g->chans[i]->line);
        sb_str(&from, t);
        g->chans[i]->used = true;
    }
    comment(b, "from %s, IMAPStore %s%s%s, MaildirStore %s", from.s, g->store->name,
            g->account ? ", IMAPAccount " : "", g->account ? g->account->name : "", g->local->name);
    sb_free(&from);
    g->store->used = g->local->used = true;
    if (g->account)
        g->account->used = true;
    sec_get(g->store, "Account");
    mb_put_server(o, b, g);
    mb_put_local(o, b, g);
    char **pats = NULL;
    size_t npats = 0;
    int pat_line = 0;
    bool negated = false;
    for (size_t i = 0; i < g->nchans; i++) {
        size_t before = npats;
        mb_collect_patterns(b, g->chans[i], &pats, &npats, &pat_line);
        for (size_t k = before; k < npats; k++)
            negated = negated || pats[k][0] == '!';
    }
    if (g->nchans > 1 && negated)
        comment(b, "check: folders joins the Patterns of %zu channels; a '!' of one now applies to all", g->nchans);
    put_folders(b, pats, npats, pat_line, "Patterns");
    for (size_t i = 0; i < npats; i++)
        free(pats[i]);
    free(pats);
    /* The first channel's settings stand for the account. */
    struct rc_line *cmax = mb_chan(rc, first, "MaxSize");
    mb_put_max_size(b, cmax ? cmax : sec_get(g->local, "MaxSize"));
    mb_put_sync(b, mb_chan(rc, first, "Sync"), name);
    mb_put_expunge(b, mb_chan(rc, first, "Expunge"));
    mb_put_create(b, mb_chan(rc, first, "Create"));
    struct rc_line *remove = mb_chan(rc, first, "Remove");
    if (remove && !word_is(arg0(remove), "None")) {
        char *what = joined_args(remove);
        lost(b, remove->line, what, reason_for(mbsync_reasons, "Remove"));
        free(what);
    }
    mb_chan(rc, first, "CopyArrivalDate"); /* mailsync always keeps INTERNALDATE */
    static const char *const per_channel[] = {"MaxSize", "Sync", "Expunge", "Create", "Remove", NULL};
    for (size_t i = 1; i < g->nchans; i++)
        for (int k = 0; per_channel[k]; k++)
            if (!mb_same_setting(rc, first, g->chans[i], per_channel[k]))
                comment(b, "note: Channel %s (line %d) sets %s differently; this account follows Channel %s",
                        g->chans[i]->name, g->chans[i]->line, per_channel[k], first->name);
    for (size_t i = 0; i < g->nchans; i++)
        list_unused(b, g->chans[i], mbsync_reasons, false);
    list_unused(b, g->store, mbsync_reasons, false);
    if (g->account)
        list_unused(b, g->account, mbsync_reasons, false);
    list_unused(b, g->local, mbsync_reasons, false);
}

static int mbsync_translate(struct out *o, struct rc *rc, struct ms_error *err)
{
    struct mb_group *groups = NULL;
    size_t ngroups = 0;
    int rc_code = MS_OK;
    for (size_t i = 1; i < rc->nsecs; i++) {
        struct rc_section *ch = &rc->secs[i];
        if (ch->kind != SEC_CHANNEL)
            continue;
        struct rc_line *fl = sec_get(ch, "Far"), *ml = sec_get(ch, "Master");
        struct rc_line *nl = sec_get(ch, "Near"), *sl = sec_get(ch, "Slave");
        struct mb_spec far, near;
        bool far_ok = mb_parse_spec(arg0(fl ? fl : ml), &far); /* both parsed: both freed below */
        bool near_ok = mb_parse_spec(arg0(nl ? nl : sl), &near);
        bool ok = far_ok && near_ok;
        struct rc_section *fs = ok ? rc_find(rc, SEC_IMAPSTORE, far.store) : NULL;
        struct rc_section *ns = ok ? rc_find(rc, SEC_MAILDIRSTORE, near.store) : NULL;
        char what[200];
        snprintf(what, sizeof what, "Channel %s", ch->name);
        if (!ok)
            lost(&o->head, ch->line, what, "it needs Far :store: and Near :store:");
        else if (!fs || !ns)
            lost(&o->head, ch->line, what,
                 "mailsync joins an IMAPStore (Far) to a MaildirStore (Near), and this channel does not (or names a "
                 "store the file does not define)");
        mb_spec_free(&far);
        mb_spec_free(&near);
        if (!fs || !ns) {
            ch->used = true;
            continue;
        }
        struct mb_group *g = NULL;
        for (size_t k = 0; k < ngroups && !g; k++)
            if (groups[k].store == fs && groups[k].local == ns)
                g = &groups[k];
        if (!g) {
            groups = xrealloc(groups, (ngroups + 1) * sizeof *groups);
            g = &groups[ngroups++];
            memset(g, 0, sizeof *g);
            g->store = fs;
            g->local = ns;
            const char *acc = sec_arg(fs, "Account", NULL);
            g->account = acc ? rc_find(rc, SEC_IMAPACCOUNT, acc) : NULL;
            if (acc && !g->account) {
                rc_code = rc_error(rc, err, sec_get(fs, "Account")->line, "IMAPStore %s names IMAPAccount %s, which "
                                   "the file does not define", shown(fs->name), shown(acc));
                break;
            }
        }
        g->chans = xrealloc(g->chans, (g->nchans + 1) * sizeof *g->chans);
        g->chans[g->nchans++] = ch;
    }
    for (size_t i = 0; rc_code == MS_OK && i < ngroups; i++)
        mb_put_group(o, rc, &groups[i]);
    for (size_t i = 0; i < ngroups; i++)
        free(groups[i].chans);
    free(groups);
    if (rc_code != MS_OK)
        return rc_code;
    if (o->nnames == 0)
        return ms_error_set(err, MS_EUSAGE,
                            "%s: no Channel joins an IMAPStore (Far) to a MaildirStore (Near): nothing to import",
                            rc->path);
    list_unused(&o->head, &rc->secs[0], mbsync_reasons, false);
    for (size_t i = 1; i < rc->nsecs; i++) {
        struct rc_section *s = &rc->secs[i];
        if (s->used)
            continue;
        char what[200];
        snprintf(what, sizeof what, "%s %s", sec_words[s->kind], s->name);
        if (s->kind == SEC_GROUP)
            lost(&o->head, s->line, what,
                 "mailsync runs every account, or the ones named (mailsync sync NAME...)");
        else if (s->kind != SEC_CHANNEL)
            lost(&o->head, s->line, what, "no Channel joins it to a store of the other kind");
    }
    return MS_OK;
}

/* ---- OfflineIMAP: reading ------------------------------------------------------ */

/* s without blanks (and line breaks of a continued value) at either end */
static char *trim_blanks(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* Python's configparser as OfflineIMAP uses it: [section] (up to the last
 * ']'; [DEFAULT] holds defaults for all), "key = value" or "key: value"
 * (the first '=' or ':'; keys are case-insensitive), lines starting with
 * '#' or ';' are comments, an indented line continues the value above
 * (joined with a newline), and a section or key given twice is an error. */
static int ini_read(struct rc *rc, char *text, size_t len, struct ms_error *err)
{
    struct rc_section *cur = NULL;
    struct rc_line *last = NULL;
    rc_add_section(rc, SEC_GLOBAL, "DEFAULT", 0);
    char *pos = text, *end = text + len, *raw;
    int no = 0;
    bool nul = false;
    while ((raw = take_line(&pos, end, &nul)) != NULL) {
        no++;
        if (nul)
            return rc_error(rc, err, no, "contains a NUL byte (is this a text file?)");
        size_t rawlen = strlen(raw);
        if (rawlen > 0 && raw[rawlen - 1] == '\r')
            raw[rawlen - 1] = '\0';
        bool indented = raw[0] == ' ' || raw[0] == '\t';
        char *s = trim_blanks(raw);
        if (!*s) {
            last = NULL;
            continue;
        }
        if (*s == '#' || *s == ';')
            continue;
        if (indented && last) {
            struct sb v = {0};
            sb_str(&v, last->args[0]);
            sb_str(&v, "\n");
            sb_str(&v, s);
            explicit_bzero(last->args[0], strlen(last->args[0]));
            free(last->args[0]);
            last->args[0] = xstrdup(v.s);
            sb_free(&v);
            continue;
        }
        if (*s == '[') {
            char *close = strrchr(s, ']');
            if (!close || close == s + 1)
                return rc_error(rc, err, no, "a section header needs a name and ']'");
            *close = '\0';
            const char *name = s + 1;
            if (strcmp(name, "DEFAULT") == 0) {
                cur = &rc->secs[0];
            } else {
                struct rc_section *dup = rc_find(rc, SEC_INI, name);
                if (dup)
                    return rc_error(rc, err, no, "section [%s] appears twice (first on line %d)", shown(name),
                                    dup->line);
                cur = rc_add_section(rc, SEC_INI, name, no);
            }
            last = NULL;
            continue;
        }
        char *delim = strpbrk(s, "=:");
        if (!delim)
            return rc_error(rc, err, no, "expected \"key = value\" (the line is not shown: it may hold a secret)");
        if (!cur)
            return rc_error(rc, err, no, "a key before any [section]");
        *delim = '\0';
        char *key = trim_blanks(s);
        if (!*key)
            return rc_error(rc, err, no, "a line without a key before its '='");
        for (char *c = key; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        for (size_t i = 0; i < cur->nlines; i++)
            if (strcmp(cur->lines[i].key, key) == 0)
                return rc_error(rc, err, no, "%s is set twice in [%s] (first on line %d)", shown(key),
                                shown(cur->name), cur->lines[i].line);
        char *value = trim_blanks(delim + 1);
        last = rc_add_line(cur, key, no);
        rc_add_arg(last, value, strlen(value));
    }
    return MS_OK;
}

/* configparser's interpolation: %% is %, %(key)s the value of key in the
 * same section or [DEFAULT]. NULL (*bad set) on a broken reference. */
static char *ini_interpolate(struct rc *rc, struct rc_section *s, const char *v, int depth, bool *bad)
{
    struct sb out = {0};
    sb_str(&out, "");
    for (const char *c = v; *c; c++) {
        if (*c != '%') {
            sb_put(&out, c, 1);
            continue;
        }
        if (c[1] == '%') {
            sb_str(&out, "%");
            c++;
            continue;
        }
        const char *close = c[1] == '(' ? strstr(c + 2, ")s") : NULL;
        if (!close || depth > 10) {
            *bad = true;
            sb_free(&out);
            return NULL;
        }
        char *name = xstrndup(c + 2, (size_t)(close - c - 2));
        for (char *p = name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        const char *ref = NULL;
        for (int pass = 0; pass < 2 && !ref; pass++) {
            struct rc_section *in = pass == 0 ? s : &rc->secs[0];
            for (size_t i = 0; in && i < in->nlines && !ref; i++)
                if (strcmp(in->lines[i].key, name) == 0)
                    ref = in->lines[i].args[0];
        }
        free(name);
        char *sub = ref ? ini_interpolate(rc, s, ref, depth + 1, bad) : NULL;
        if (!sub) {
            *bad = true;
            sb_free(&out);
            return NULL;
        }
        sb_str(&out, sub);
        explicit_bzero(sub, strlen(sub));
        free(sub);
        c = close + 1;
    }
    return out.s;
}

/* The value of key in s (else [DEFAULT]), interpolated, marked used;
 * NULL if unset. A broken %(...)s becomes a comment in b and NULL. */
static char *ini_get(struct rc *rc, struct sb *b, struct rc_section *s, const char *key, int *line)
{
    struct rc_line *l = sec_get(s, key);
    if (!l)
        l = sec_get(&rc->secs[0], key);
    if (!l)
        return NULL;
    if (line)
        *line = l->line;
    bool bad = false;
    char *v = ini_interpolate(rc, s, l->args[0], 0, &bad);
    if (bad) {
        lost(b, l->line, key, "a '%' that is not %% or a %(key)s of an existing key (OfflineIMAP fails on it too)");
        return NULL;
    }
    return v;
}

static void free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* ---- OfflineIMAP: translating ---------------------------------------------------- */

#define OAUTH_WHY "mailsync takes an OAuth2 token from oauth_token_command (with auth = xoauth2)"
#define WATCH_WHY "`mailsync watch ACCOUNT` stays connected and waits for changes (NOTIFY or IDLE)"
#define EVAL_WHY "a Python expression; write its value out"

static const struct reason oimap_reasons[] = {
    {"metadata", "mailsync keeps its state database at state = (by default under $XDG_STATE_HOME)"},
    {"ui", "mailsync's output is chosen with -q, -v, --progress and --json"},
    {"maxsyncaccounts", "mailsync runs the accounts one after another"},
    {"pythonfile", "mailsync runs no Python"},
    {"fsync", "mailsync always makes what it writes durable"},
    {"socktimeout", "mailsync's timeout = N is per account"},
    {"autorefresh", "for repeated runs use `mailsync watch ACCOUNT` or the systemd timer (contrib/systemd)"},
    {"quick", "every mailsync run is incremental"},
    {"presynchook", "mailsync has no hooks"},
    {"postsynchook", "mailsync has no hooks"},
    {"newmail_hook", "mailsync has no hooks"},
    {"synclabels", "mailsync does not sync Gmail labels"},
    {"labelsheader", "mailsync does not sync Gmail labels"},
    {"ignorelabels", "mailsync does not sync Gmail labels"},
    {"maxage", "mailsync has no age limit for what it syncs"},
    {"startdate", "mailsync has no age limit for what it syncs"},
    {"utf8foldernames", "mailsync always names local folders in UTF-8"},
    {"decodefoldernames", "mailsync always names local folders in UTF-8"},
    {"nametrans", "mailsync names local folders from server names by its layout"},
    {"folderincludes", "mailsync syncs the folders the server lists, chosen by folders ="},
    {"foldersort", "mailsync chooses the order itself"},
    {"createfolders", "mailsync creates a folder that is new on either side on the other side"},
    {"readonly", "mailsync has no read-only side: run `mailsync pull` to change only the local side"},
    {"idlefolders", WATCH_WHY},
    {"holdconnectionopen", WATCH_WHY},
    {"keepalive", WATCH_WHY},
    {"subscribedonly", "mailsync syncs every folder its patterns select, subscribed or not"},
    {"reference", "mailsync names server folders from the top, without a prefix"},
    {"ssl_version", "mailsync picks the TLS versions itself"},
    {"tls_level", "mailsync picks the TLS versions itself"},
    {"sslclientcert", "mailsync sends no client certificate"},
    {"sslclientkey", "mailsync sends no client certificate"},
    {"remote_identity", "mailsync has no SASL authorisation identity"},
    {"restoreatime", "mailsync leaves directory times alone"},
    {"filename_use_mail_timestamp", "mailsync sets a file's time from the server's INTERNALDATE"},
    {"utime_from_header", "mailsync sets a file's time from the server's INTERNALDATE"},
    {"remotehosteval", EVAL_WHY " as host = NAME"},
    {"remoteusereval", EVAL_WHY " as user = NAME"},
    {"remoteporteval", EVAL_WHY " as port = N"},
    {"oauth2_request_url", OAUTH_WHY},
    {"oauth2_refresh_token", OAUTH_WHY},
    {"oauth2_refresh_token_eval", OAUTH_WHY},
    {"oauth2_client_id", OAUTH_WHY},
    {"oauth2_client_id_eval", OAUTH_WHY},
    {"oauth2_client_secret", OAUTH_WHY},
    {"oauth2_client_secret_eval", OAUTH_WHY},
    {"oauth2_access_token", OAUTH_WHY},
    {"oauth2_access_token_eval", OAUTH_WHY},
    {"ipv6", "mailsync uses the addresses the host name resolves to"},
    {"preauthtunnel", "mailsync connects over TCP only (host and port)"},
    {"transporttunnel", "mailsync connects over TCP only (host and port)"},
    {NULL, NULL},
};

/* A Python string literal at *p ('...' or "...", r/u/b prefixes), into
 * *out (malloc'd); p moves past it. false if there is none. */
static bool py_string(const char **p, char **out)
{
    const char *s = *p;
    bool rawstr = false;
    while (*s == 'r' || *s == 'R' || *s == 'u' || *s == 'U' || *s == 'b' || *s == 'B') {
        rawstr = rawstr || *s == 'r' || *s == 'R';
        s++;
    }
    char q = *s;
    if (q != '\'' && q != '"')
        return false;
    struct sb v = {0};
    sb_str(&v, "");
    for (s++; *s && *s != q; s++) {
        if (*s == '\\' && s[1]) {
            if (rawstr) { /* r'..': the backslash stays, and the next character with it */
                sb_put(&v, s, 2);
                s++;
                continue;
            }
            s++;
            if (*s != '\\' && *s != '\'' && *s != '"')
                sb_put(&v, "\\", 1);
        }
        sb_put(&v, s, 1);
    }
    if (*s != q) {
        sb_free(&v);
        return false;
    }
    *p = s + 1;
    *out = v.s;
    return true;
}

static void skip_space(const char **p)
{
    while (**p == ' ' || **p == '\t' || **p == '\n')
        (*p)++;
}

/* A list [ 'a', "b", ] or ( ... ) of string literals. */
static bool py_string_list(const char **p, char ***items, size_t *n)
{
    const char *s = *p;
    char close = *s == '[' ? ']' : *s == '(' ? ')' : 0;
    if (!close)
        return false;
    s++;
    for (;;) {
        skip_space(&s);
        if (*s == close)
            break;
        char *item = NULL;
        if (!py_string(&s, &item))
            return false;
        *items = xrealloc(*items, (*n + 1) * sizeof **items);
        (*items)[(*n)++] = item;
        skip_space(&s);
        if (*s == ',')
            s++;
        else if (*s != close)
            return false;
    }
    *p = s + 1;
    return true;
}

static bool py_word(const char **p, const char *w)
{
    size_t n = strlen(w);
    if (strncmp(*p, w, n) != 0 || isalnum((unsigned char)(*p)[n]) || (*p)[n] == '_')
        return false;
    *p += n;
    return true;
}

/* folderfilter = lambda NAME: NAME [not] in [ 'a', 'b' ] (the shapes
 * mailsync's folder patterns can say); false for anything else. */
static bool parse_folderfilter(const char *v, bool *negate, char ***items, size_t *n)
{
    const char *p = v;
    skip_space(&p);
    if (!py_word(&p, "lambda"))
        return false;
    skip_space(&p);
    const char *name = p;
    while (isalnum((unsigned char)*p) || *p == '_')
        p++;
    size_t nlen = (size_t)(p - name);
    if (nlen == 0)
        return false;
    skip_space(&p);
    if (*p++ != ':')
        return false;
    skip_space(&p);
    if (strncmp(p, name, nlen) != 0)
        return false;
    p += nlen;
    skip_space(&p);
    *negate = py_word(&p, "not");
    skip_space(&p);
    if (!py_word(&p, "in"))
        return false;
    skip_space(&p);
    if (!py_string_list(&p, items, n))
        return false;
    skip_space(&p);
    return *p == '\0';
}

static void free_list(char **items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
}

static void oimap_put_folderfilter(struct sb *b, const char *v, int line)
{
    bool negate = false;
    char **items = NULL;
    size_t n = 0;
    if (!parse_folderfilter(v, &negate, &items, &n)) {
        lost(b, line, "folderfilter",
             "only `lambda f: f in [...]` and `lambda f: f not in [...]` become folder patterns; write folders = "
             "PATTERNS yourself");
        free_list(items, n);
        return;
    }
    char **pats = NULL;
    size_t np = 0;
    if (negate) {
        pats = xrealloc(pats, sizeof *pats);
        pats[np++] = xstrdup("*");
    }
    for (size_t i = 0; i < n; i++) {
        if (strpbrk(items[i], "*%?") || !items[i][0] || items[i][0] == '!') {
            char what[200];
            snprintf(what, sizeof what, "folderfilter name '%s'", items[i]);
            lost(b, line, what, "a mailsync folder pattern would read '*', '%', '?' or a leading '!' as a wildcard");
            continue;
        }
        pats = xrealloc(pats, (np + 1) * sizeof *pats);
        if (negate) {
            char *q = NULL;
            if (asprintf(&q, "!%s", items[i]) < 0)
                abort();
            pats[np++] = q;
        } else {
            pats[np++] = xstrdup(items[i]);
        }
    }
    if (np == 0) {
        lost(b, line, "folderfilter", "no folder name is left to select");
    } else {
        put_folders(b, pats, np, line, "folderfilter");
    }
    free_list(pats, np);
    free_list(items, n);
}

/* remotepasseval: a call that runs a command, given as one string (a
 * shell command) or a list of strings (argv), becomes password_command;
 * anything else is a comment. */
static char *passeval_command(const char *v)
{
    static const char *const calls[] = {"subprocess.check_output(", "check_output(", "subprocess.getoutput(",
                                        "getoutput(", "subprocess.run(", "os.popen(", NULL};
    const char *p = v;
    skip_space(&p);
    while (strncmp(p, "str(", 4) == 0)
        p += 4;
    const char *after = NULL;
    for (int i = 0; calls[i] && !after; i++)
        if (strncmp(p, calls[i], strlen(calls[i])) == 0)
            after = p + strlen(calls[i]);
    if (!after)
        return NULL;
    skip_space(&after);
    char *s = NULL;
    if (py_string(&after, &s))
        return s;
    char **items = NULL;
    size_t n = 0;
    if (!py_string_list(&after, &items, &n) || n == 0) {
        free_list(items, n);
        return NULL;
    }
    struct sb c = {0};
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_str(&c, " ");
        shell_quote(&c, items[i]);
    }
    free_list(items, n);
    return c.s;
}

static bool is_type(const char *t, const char *a, const char *b2)
{
    return t && (strcasecmp(t, a) == 0 || (b2 && strcasecmp(t, b2) == 0));
}

static void oimap_put_credentials(struct out *o, struct rc *rc, struct sb *b, struct rc_section *r)
{
    int line = 0;
    char *mechs = ini_get(rc, b, r, "auth_mechanisms", &line);
    if (mechs) {
        static const char *const known[] = {"login", "plain", NULL};
        const char *auth = NULL;
        for (int i = 0; known[i]; i++)
            if (strcasecmp(mechs, known[i]) == 0)
                auth = known[i];
        if (auth) {
            sb_str(b, "auth = ");
            sb_str(b, auth);
            sb_str(b, "\n");
        } else {
            char what[200];
            snprintf(what, sizeof what, "auth_mechanisms = %s", mechs);
            lost(b, line, what,
                 "mailsync takes one of login or plain here (xoauth2 needs oauth_token_command), or picks the best "
                 "itself");
        }
        free(mechs);
    }
    char *eval = ini_get(rc, b, r, "remotepasseval", &line);
    if (eval) {
        char *cmd = passeval_command(eval);
        if (cmd) {
            comment(b, "from remotepasseval (line %d): the command it runs", line);
            put(b, "password_command", cmd, line, "remotepasseval", false);
        } else {
            lost(b, line, "remotepasseval",
                 "a Python expression mailsync cannot run; set password_command to a shell command that prints "
                 "the password");
        }
        free_secret(cmd);
        free_secret(eval);
        return;
    }
    char *pass = ini_get(rc, b, r, "remotepass", &line);
    if (pass) {
        put_password(o, b, pass, line, "remotepass");
        free_secret(pass);
        return;
    }
    char *file = ini_get(rc, b, r, "remotepassfile", &line);
    if (file) {
        struct sb c = {0};
        sb_str(&c, "head -n 1 -- ");
        if (file[0] == '~' && file[1] == '/') {
            sb_str(&c, "~/");
            shell_quote(&c, file + 2);
        } else {
            shell_quote(&c, file);
        }
        comment(b, "from remotepassfile (line %d): the file's first line", line);
        put(b, "password_command", c.s, line, "remotepassfile", false);
        sb_free(&c);
        free(file);
        return;
    }
    comment(b, "password_command = ...   <- set this: the rc has no remotepass, remotepasseval or remotepassfile "
               "(OfflineIMAP read ~/.netrc or asked)");
}

static void oimap_put_server(struct out *o, struct rc *rc, struct sb *b, struct rc_section *r, bool gmail)
{
    int line = 0;
    char *host = ini_get(rc, b, r, "remotehost", &line);
    if (host)
        put(b, "host", host, line, "remotehost", false);
    else if (gmail)
        sb_str(b, "host = imap.gmail.com\n");
    else
        comment(b, "host = ...   <- set this: the rc has no remotehost");
    char *port = ini_get(rc, b, r, "remoteport", &line);
    if (port) {
        char *end = NULL;
        long v = strtol(port, &end, 10);
        if (isdigit((unsigned char)port[0]) && !*end && v >= 1 && v <= 65535)
            put(b, "port", port, line, "remoteport", false);
        else
            lost(b, line, "remoteport", "not a port number");
        free(port);
    }
    int ssl_line = 0, starttls_line = 0;
    char *ssl = ini_get(rc, b, r, "ssl", &ssl_line), *starttls = ini_get(rc, b, r, "starttls", &starttls_line);
    int use_ssl = ssl ? boolean(ssl) : 1, use_starttls = starttls ? boolean(starttls) : 1;
    if (gmail)
        use_ssl = 1;
    if (use_ssl < 0)
        lost(b, ssl_line, "ssl", "not yes or no");
    else if (use_ssl)
        sb_str(b, "tls = implicit\n");
    else if (use_starttls < 0)
        lost(b, starttls_line, "starttls", "not yes or no");
    else if (use_starttls)
        sb_str(b, "tls = starttls\n");
    else
        put_plaintext(b, host);
    free(ssl);
    free(starttls);
    free(host);
    char *user = ini_get(rc, b, r, "remoteuser", &line);
    if (user)
        put(b, "user", user, line, "remoteuser", false);
    else
        comment(b, "user = ...   <- set this: the rc has no remoteuser");
    free(user);
    oimap_put_credentials(o, rc, b, r);
    char *ca = ini_get(rc, b, r, "sslcacertfile", &line);
    if (ca && strcmp(ca, "OS-DEFAULT") != 0)
        put(b, "ca_file", ca, line, "sslcacertfile", true);
    free(ca);
    char *fp = ini_get(rc, b, r, "cert_fingerprint", &line);
    if (fp) {
        /* comma-separated hex digests, colons allowed; SHA-256 ones pin */
        char hex[65];
        size_t n = 0;
        bool ok = true;
        for (const char *c = fp; *c && *c != ','; c++) {
            if (*c == ':' || *c == ' ')
                continue;
            if (!isxdigit((unsigned char)*c) || n >= 64) {
                ok = false;
                break;
            }
            hex[n++] = (char)toupper((unsigned char)*c);
        }
        hex[n] = '\0';
        if (ok && n == 64) {
            if (strchr(fp, ','))
                comment(b, "note: cert_fingerprint (line %d) lists several; mailsync pins the first", line);
            sb_str(b, "fingerprint = sha256:");
            sb_str(b, hex);
            sb_str(b, "\n");
        } else {
            lost(b, line, "cert_fingerprint",
                 "mailsync pins a SHA-256 fingerprint: openssl x509 -noout -fingerprint -sha256 < CERT");
        }
        free(fp);
    }
    char *conns = ini_get(rc, b, r, "maxconnections", &line);
    if (conns) {
        char *end = NULL;
        long v = strtol(conns, &end, 10);
        if (isdigit((unsigned char)conns[0]) && !*end && v >= 1) {
            char t[32];
            snprintf(t, sizeof t, "%ld", v > 16 ? 16 : v);
            if (v > 16)
                comment(b, "note: maxconnections %ld (line %d): mailsync takes at most 16", v, line);
            put(b, "connections", t, line, "maxconnections", false);
        } else {
            lost(b, line, "maxconnections", "not a number of connections");
        }
        free(conns);
    }
    char *expunge = ini_get(rc, b, r, "expunge", &line);
    if (expunge) {
        int e = boolean(expunge);
        if (e < 0)
            lost(b, line, "expunge", "not yes or no");
        else
            sb_str(b, e ? "expunge = yes\n" : "expunge = no\n");
        free(expunge);
    }
    char *usecomp = ini_get(rc, b, r, "usecompression", &line);
    if (usecomp) {
        int e = boolean(usecomp);
        if (e < 0)
            lost(b, line, "usecompression", "not yes or no");
        else
            sb_str(b, e ? "compress = yes\n" : "compress = no\n");
        free(usecomp);
    }
    char *filter = ini_get(rc, b, r, "folderfilter", &line);
    if (filter) {
        oimap_put_folderfilter(b, filter, line);
        free(filter);
    }
}

static void oimap_put_local(struct rc *rc, struct sb *b, struct rc_section *l)
{
    int line = 0;
    char *root = ini_get(rc, b, l, "localfolders", &line);
    if (root) {
        size_t n = strlen(root);
        while (n > 1 && root[n - 1] == '/')
            root[--n] = '\0';
        put(b, "maildir", root, line, "localfolders", true);
        free(root);
    } else {
        comment(b, "maildir = ...   <- set this: the rc has no localfolders");
    }
    char *sep = ini_get(rc, b, l, "sep", &line);
    const char *s = sep ? trim_blanks(sep) : ".";
    if (strcmp(s, ".") == 0) {
        if (!sep)
            comment(b, "OfflineIMAP's default sep = . (Projects/2026 is the directory Projects.2026)");
        sb_str(b, "layout = dotted\n");
    } else if (strcmp(s, "/") == 0) {
        sb_str(b, "layout = verbatim\n");
    } else {
        char what[80];
        snprintf(what, sizeof what, "sep = %s", s);
        lost(b, line, what, "mailsync's layouts separate folder levels with '/' (verbatim) or '.' (dotted)");
    }
    free(sep);
}

static void oimap_put_account(struct out *o, struct rc *rc, struct rc_section *acc, struct rc_section *remote,
                              struct rc_section *local, const char *name_in)
{
    char *name = account_name(o, name_in);
    struct sb *b = &o->body;
    sb_str(b, "\n[account ");
    sb_str(b, name);
    sb_str(b, "]\n");
    comment(b, "from [%s] (line %d), [%s] (line %d), [%s] (line %d)", acc->name, acc->line, remote->name,
            remote->line, local->name, local->line);
    acc->used = remote->used = local->used = true;
    char *rtype = ini_get(rc, b, remote, "type", NULL);
    bool gmail = is_type(rtype, "GmailIMAP", NULL);
    free(rtype);
    oimap_put_server(o, rc, b, remote, gmail);
    oimap_put_local(rc, b, local);
    int line = 0;
    char *max = ini_get(rc, b, acc, "maxsize", &line);
    if (max) {
        bool zero = false;
        char *v = size_value(max, &zero);
        if (!v)
            lost(b, line, "maxsize", "not a number of bytes");
        else if (!zero)
            put(b, "max_size", v, line, "maxsize", false);
        free(v);
        free(max);
    }
    list_unused(b, acc, oimap_reasons, true);
    list_unused(b, remote, oimap_reasons, true);
    list_unused(b, local, oimap_reasons, true);
}

static struct rc_section *oimap_repository(struct rc *rc, struct sb *b, struct rc_section *acc, const char *key,
                                           char **type)
{
    char *name = ini_get(rc, b, acc, key, NULL);
    if (!name)
        return NULL;
    char *sec = NULL;
    if (asprintf(&sec, "Repository %s", name) < 0)
        abort();
    free(name);
    struct rc_section *r = rc_find(rc, SEC_INI, sec);
    free(sec);
    *type = r ? ini_get(rc, b, r, "type", NULL) : NULL;
    return r;
}

static int oimap_translate(struct out *o, struct rc *rc, struct ms_error *err)
{
    struct rc_section *general = rc_find(rc, SEC_INI, "general");
    char *list = general ? ini_get(rc, &o->head, general, "accounts", NULL) : NULL;
    if (!list)
        return ms_error_set(err, MS_EUSAGE, "%s: no accounts = ... in a [general] section: nothing to import",
                            rc->path);
    if (general)
        general->used = true;
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *name = trim_blanks(tok);
        if (!*name)
            continue;
        char *sec = NULL;
        if (asprintf(&sec, "Account %s", name) < 0)
            abort();
        struct rc_section *acc = rc_find(rc, SEC_INI, sec);
        free(sec);
        char what[200];
        snprintf(what, sizeof what, "account %s", name);
        if (!acc) {
            lost(&o->head, 0, what, "the file has no [Account ...] section for it");
            continue;
        }
        char *rtype = NULL, *ltype = NULL;
        struct sb scratch = {0};
        struct rc_section *remote = oimap_repository(rc, &scratch, acc, "remoterepository", &rtype);
        struct rc_section *local = oimap_repository(rc, &scratch, acc, "localrepository", &ltype);
        sb_free(&scratch);
        bool ok = remote && local && is_type(rtype, "IMAP", "GmailIMAP") && is_type(ltype, "Maildir", "GmailMaildir");
        free(rtype);
        free(ltype);
        if (!ok) {
            lost(&o->head, acc->line, what,
                 "mailsync joins a remote repository of type IMAP (or GmailIMAP) to a local one of type Maildir, and "
                 "this account does not (or names a repository the file does not define)");
            acc->used = true;
            continue;
        }
        oimap_put_account(o, rc, acc, remote, local, name);
    }
    free(list);
    if (o->nnames == 0)
        return ms_error_set(err, MS_EUSAGE, "%s: no account joins an IMAP repository to a Maildir one: nothing to "
                            "import", rc->path);
    if (general)
        list_unused(&o->head, general, oimap_reasons, true);
    list_unused(&o->head, &rc->secs[0], oimap_reasons, true);
    for (size_t i = 1; i < rc->nsecs; i++) {
        struct rc_section *s = &rc->secs[i];
        if (s->used)
            continue;
        char what[200];
        snprintf(what, sizeof what, "[%s]", s->name);
        lost(&o->head, s->line, what,
             strcmp(s->name, "mbnames") == 0 ? "mailsync writes no mailbox list for mutt"
                                             : "no account listed in [general] accounts uses it");
    }
    return MS_OK;
}

/* ---- the whole ----------------------------------------------------------------- */

enum import_format import_guess_format(const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
            p++;
        if (p < end && (*p == '#' || *p == ';')) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            p = nl ? nl + 1 : end;
            continue;
        }
        break;
    }
    return p < end && *p == '[' ? IMPORT_OFFLINEIMAP : IMPORT_MBSYNC;
}

int import_translate(const char *path, const char *text, size_t len, const struct import_options *opt, char **out,
                     struct ms_error *err)
{
    *out = NULL;
    char *copy = xmalloc(len + 1);
    memcpy(copy, text, len);
    copy[len] = '\0';
    struct rc rc = {.path = path};
    struct out o = {.opt = opt, .path = path};
    bool mbsync = opt->format == IMPORT_MBSYNC;
    int code = mbsync ? mbsync_read(&rc, copy, len, err) : ini_read(&rc, copy, len, err);
    if (code == MS_OK)
        code = mbsync ? mbsync_translate(&o, &rc, err) : oimap_translate(&o, &rc, err);
    if (code == MS_OK) {
        struct sb all = {0};
        comment(&all, "mailsync config written by `mailsync import` from %s (%s).", path,
                mbsync ? "mbsync" : "OfflineIMAP");
        comment(&all, "Review it, then run `mailsync check` and `mailsync sync`. A \"not carried over\" line");
        comment(&all, "names a setting of the old file that mailsync does not take over, and why.");
        if (o.head.len) {
            sb_str(&all, "\n");
            sb_put(&all, o.head.s, o.head.len);
        }
        sb_put(&all, o.body.s, o.body.len);
        *out = xstrdup(all.s);
        sb_free(&all);
    }
    sb_free(&o.head);
    sb_free(&o.body);
    for (size_t i = 0; i < o.nnames; i++)
        free(o.names[i]);
    free(o.names);
    rc_free(&rc);
    explicit_bzero(copy, len + 1);
    free(copy);
    return code;
}

char *import_default_rc(const char *home, enum import_format *format)
{
    char *path = NULL;
    if (asprintf(&path, "%s/.mbsyncrc", home ? home : "") < 0)
        abort();
    if (access(path, F_OK) == 0) {
        *format = IMPORT_MBSYNC;
        return path;
    }
    free(path);
    if (asprintf(&path, "%s/.offlineimaprc", home ? home : "") < 0)
        abort();
    *format = IMPORT_OFFLINEIMAP;
    return path;
}

int import_read_rc(const char *path, char **text, size_t *len, struct ms_error *err)
{
    *text = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return ms_error_errno(err, MS_EUSAGE, errno, "%s: cannot read", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        bool reg = e == 0 || S_ISREG(st.st_mode);
        close(fd);
        if (!reg)
            return ms_error_set(err, MS_EUSAGE, "%s: cannot read: not a regular file", path);
        return ms_error_errno(err, MS_EUSAGE, e, "%s: cannot read", path);
    }
    char *buf = xmalloc(RC_MAX_BYTES + 1);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, RC_MAX_BYTES + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            explicit_bzero(buf, n);
            free(buf);
            return ms_error_errno(err, MS_EUSAGE, e, "%s: cannot read", path);
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > RC_MAX_BYTES) {
            close(fd);
            explicit_bzero(buf, n);
            free(buf);
            return ms_error_set(err, MS_EUSAGE, "%s: cannot read: larger than %d bytes", path, RC_MAX_BYTES);
        }
    }
    close(fd);
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return MS_OK;
}

/* mkdir -p of path's parent, new directories 0700. */
static int make_parents(const char *path, struct ms_error *err)
{
    char *dir = xstrdup(path);
    int rc = MS_OK;
    for (char *s = strchr(dir + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            rc = ms_error_errno(err, MS_ELOCAL, errno, "cannot create %s", dir);
            break;
        }
        *s = '/';
    }
    free(dir);
    return rc;
}

int import_write_config(const char *path, const char *text, struct ms_error *err)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        return ms_error_set(err, MS_EUSAGE,
                            "%s: exists; not overwritten (move it away, or print the config with "
                            "`mailsync import` and merge it by hand)",
                            path);
    int rc = make_parents(path, err);
    if (rc != MS_OK)
        return rc;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && errno == EEXIST)
        return ms_error_set(err, MS_EUSAGE, "%s: exists; not overwritten", path);
    if (fd < 0)
        return ms_error_errno(err, MS_ELOCAL, errno, "cannot create %s", path);
    size_t len = strlen(text), off = 0;
    int e = 0;
    if (fchmod(fd, 0600) != 0)
        e = errno;
    while (!e && off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            e = w < 0 ? errno : EIO;
        else
            off += (size_t)w;
    }
    if (!e && fsync(fd) != 0)
        e = errno;
    if (close(fd) != 0 && !e)
        e = errno;
    if (e) {
        unlink(path);
        return ms_error_errno(err, MS_ELOCAL, e, "cannot write %s", path);
    }
    return MS_OK;
}
