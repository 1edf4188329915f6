/* SPDX-License-Identifier: MIT */
/*
 * imap_fetch.c: the UID FETCH machinery of the IMAP side (imap.h).
 *
 * Three UID FETCH shapes: flag listings (UID FLAGS RFC822.SIZE, with
 * CHANGEDSINCE for CONDSTORE), streamed bodies (BODY.PEEK[]) and identities
 * (the Message-ID header, for re-matching). All run with libetpan's
 * per-message handler, so no FETCH result list grows and a tagged NO is
 * never hidden, and with one body handler installed for the whole session
 * (imap_body_handler_install, at connect), so no body is ever held in
 * memory (libetpan would otherwise keep each literal whole).
 *
 * imap_read_tagged() reads the answer of a command sent by hand (pipelined
 * SELECTs and FETCHes of imap_qresync.c, plain commands of imap_session.c,
 * the flag listings of a UID range and their windows) through the same
 * handlers; the plain flag reports at the head of an answer it reads with
 * imap_flagline_parse, not libetpan's parser (half a big listing's CPU).
 * A callback or a check that stops a fetch mid-response leaves the session
 * out of step: imap_fetch_outcome() ends it.
 */
#include "sync/remote/imap.h"
#include "sync/remote/imap_int.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libetpan/libetpan.h>

#include "sync/flags.h"
#include "sync/message.h"
#include "sync/net/netstream.h"
#include "sync/util.h"

/* ======================================================================
 * FETCH machinery: the session-wide body handler and per-fetch handlers.
 * ==================================================================== */

static bool is_full_body(int type, const struct mailimap_msg_att_body_section *sec)
{
    if (type == MAILIMAP_MSG_ATT_RFC822)
        return true;
    return type == MAILIMAP_MSG_ATT_BODY_SECTION && sec && (!sec->sec_section || !sec->sec_section->sec_spec);
}

/* Stop the fetch: remember why and make the transport fail, so libetpan
 * stops reading at once instead of draining the rest of the response. */
static void fetch_abort(struct fetch_ctx *f, int rc, const char *why)
{
    if (f->rc)
        return;
    f->rc = rc;
    snprintf(f->why, sizeof f->why, "%s", why);
    if (f->s->ns)
        netstream_cancel(f->s->ns);
}

static bool on_body(int type, struct mailimap_msg_att_body_section *sec, const char *bytes, size_t len, void *ctx)
{
    struct imap_session *s = ctx;
    struct fetch_ctx *f = s->fetch;
    if (!f || s->body_mode == BODY_DISCARD)
        return true; /* nobody asked for it: drop it, keep memory flat */
    if (f->rc)
        return false;
    if (s->body_mode == BODY_SINK) {
        if (!is_full_body(type, sec))
            return true;
        f->body_started = true;
        int r = f->sink->chunk(f->sink->ctx, bytes, len);
        if (r != 0) {
            fetch_abort(f, r, "message data could not be stored");
            return false;
        }
        return true;
    }
    /* BODY_IDENTITY: keep the first bytes of the header section. */
    if (type == MAILIMAP_MSG_ATT_BODY_SECTION && !is_full_body(type, sec)) {
        size_t room = sizeof f->idbuf - f->idlen;
        size_t take = len < room ? len : room;
        memcpy(f->idbuf + f->idlen, bytes, take);
        f->idlen += take;
        f->id_seen = true;
    }
    return true;
}

void imap_body_handler_install(struct imap_session *s)
{
    s->body_mode = BODY_DISCARD;
    mailimap_set_msg_body_handler(s->imap, on_body, s);
}

/* libetpan calls the per-message handler only with a progress callback. */
static void on_items_progress(size_t current, size_t maximum, void *ctx)
{
    (void)current;
    (void)maximum;
    (void)ctx;
}

static int fetch_index(const struct fetch_ctx *f, uint32_t uid)
{
    const uint32_t *at = util_uid_find(f->batch, f->nbatch, uid);
    return at ? (int)(at - f->batch) : -1;
}

static time_t internaldate_to_time(const struct mailimap_date_time *d)
{
    if (!d || d->dt_year < 1970 || d->dt_year > 9999 || d->dt_month < 1 || d->dt_month > 12 || d->dt_day < 1 ||
        d->dt_day > 31 || d->dt_hour < 0 || d->dt_hour > 23 || d->dt_min < 0 || d->dt_min > 59 || d->dt_sec < 0 ||
        d->dt_sec > 60)
        return 0;
    struct tm tm = {.tm_year = d->dt_year - 1900,
                    .tm_mon = d->dt_month - 1,
                    .tm_mday = d->dt_day,
                    .tm_hour = d->dt_hour,
                    .tm_min = d->dt_min,
                    .tm_sec = d->dt_sec};
    time_t t = timegm(&tm);
    /* dt_zone is the signed +HHMM offset as a number, e.g. -130 for -0130. */
    if (d->dt_zone < -1459 || d->dt_zone > 1459)
        return t;
    int z = d->dt_zone < 0 ? -d->dt_zone : d->dt_zone;
    if (z % 100 > 59)
        return t;
    long off = (long)(z / 100) * 3600 + (long)(z % 100) * 60;
    return d->dt_zone < 0 ? t + off : t - off;
}

static void parse_flags(const struct mailimap_msg_att_dynamic *dyn, struct remote_msg *m)
{
    if (!dyn || !dyn->att_list)
        return;
    for (clistiter *it = clist_begin(dyn->att_list); it; it = clist_next(it)) {
        struct mailimap_flag_fetch *ff = clist_content(it);
        if (!ff || ff->fl_type != MAILIMAP_FLAG_FETCH_OTHER || !ff->fl_flag)
            continue; /* \Recent is not ours to keep */
        struct mailimap_flag *fl = ff->fl_flag;
        switch (fl->fl_type) {
        case MAILIMAP_FLAG_ANSWERED: m->flags |= FLAG_ANSWERED; break;
        case MAILIMAP_FLAG_FLAGGED: m->flags |= FLAG_FLAGGED; break;
        case MAILIMAP_FLAG_DELETED: m->flags |= FLAG_DELETED; break;
        case MAILIMAP_FLAG_SEEN: m->flags |= FLAG_SEEN; break;
        case MAILIMAP_FLAG_DRAFT: m->flags |= FLAG_DRAFT; break;
        case MAILIMAP_FLAG_KEYWORD: {
            unsigned bit = flags_from_imap_name(fl->fl_data.fl_keyword ? fl->fl_data.fl_keyword : "");
            if (bit)
                m->flags |= bit;
            else if (fl->fl_data.fl_keyword)
                imap_add_keyword(&m->keywords, fl->fl_data.fl_keyword, strlen(fl->fl_data.fl_keyword));
            break;
        }
        default: break; /* \Extension flags: not keywords, not ours */
        }
    }
}

/* What one FETCH response says. */
struct fetched {
    struct remote_msg m;
    bool has_uid;
    bool has_flags;
    bool has_body;
    int bodies; /* full-body items: more than one is hostile */
    bool partial_body;
    char objid[IMAP_OBJID_MAX + 1]; /* EMAILID or "gm:" X-GM-MSGID, "" if none */
};

static void parse_att(const struct mailimap_msg_att *att, struct fetched *out)
{
    memset(out, 0, sizeof *out);
    for (clistiter *it = att->att_list ? clist_begin(att->att_list) : NULL; it; it = clist_next(it)) {
        struct mailimap_msg_att_item *item = clist_content(it);
        if (item->att_type == MAILIMAP_MSG_ATT_ITEM_DYNAMIC) {
            parse_flags(item->att_data.att_dyn, &out->m);
            out->has_flags = true;
            continue;
        }
        if (item->att_type == MAILIMAP_MSG_ATT_ITEM_EXTENSION) {
            char id[IMAP_OBJID_MAX + 1];
            if (imap_objid_of_item(item, id))
                memcpy(out->objid, id, sizeof id);
            continue;
        }
        if (item->att_type != MAILIMAP_MSG_ATT_ITEM_STATIC || !item->att_data.att_static)
            continue;
        struct mailimap_msg_att_static *st = item->att_data.att_static;
        switch (st->att_type) {
        case MAILIMAP_MSG_ATT_UID:
            out->m.uid = st->att_data.att_uid;
            out->has_uid = st->att_data.att_uid != 0;
            break;
        case MAILIMAP_MSG_ATT_RFC822_SIZE: out->m.size = st->att_data.att_rfc822_size; break;
        case MAILIMAP_MSG_ATT_INTERNALDATE:
            out->m.internaldate = internaldate_to_time(st->att_data.att_internal_date);
            break;
        case MAILIMAP_MSG_ATT_RFC822:
            out->has_body = true;
            out->bodies++;
            break;
        case MAILIMAP_MSG_ATT_BODY_SECTION:
            if (is_full_body(MAILIMAP_MSG_ATT_BODY_SECTION, st->att_data.att_body_section)) {
                out->has_body = true;
                out->bodies++;
                if (st->att_data.att_body_section->sec_origin_octet != 0)
                    out->partial_body = true;
            }
            break;
        default: break;
        }
    }
}

/* How a command whose FETCH data went to f ended, libetpan saying r. */
int imap_fetch_outcome(struct imap_session *s, struct fetch_ctx *f, int r, const char *what, struct ms_error *err)
{
    if (f->rc) {
        /* A callback or a check stopped us mid-response: the session is
         * out of step with the server and cannot be reused. */
        int rc = f->rc;
        if (!err || err->code != rc || !err->msg[0])
            ms_error_set(err, rc, "%s: %s", what, f->why);
        imap_kill_stream(s);
        return rc;
    }
    if (r != MAILIMAP_NO_ERROR)
        return imap_fail_call(s, r, what, err);
    return MS_OK;
}

/* Run one UID FETCH through libetpan with the per-message handler h (the
 * flag listings of a range are sent by hand: fetch_flags_capped). */
static int run_fetch(struct imap_session *s, struct fetch_ctx *f, struct mailimap_set *set,
                     struct mailimap_fetch_type *ft, mailimap_msg_att_handler *h, enum body_mode mode, const char *what,
                     struct ms_error *err)
{
    s->fetch = f;
    s->body_mode = mode;
    mailimap_set_msg_att_handler(s->imap, h, f);
    mailimap_set_progress_callback(s->imap, NULL, on_items_progress, f);
    clist *result = NULL;
    int r = mailimap_uid_fetch(s->imap, set, ft, &result);
    mailimap_set_msg_att_handler(s->imap, NULL, NULL);
    mailimap_set_progress_callback(s->imap, NULL, NULL, NULL);
    s->body_mode = BODY_DISCARD;
    s->fetch = NULL;
    /* On failure libetpan has already freed the list it left in result. */
    if (r == MAILIMAP_NO_ERROR && result)
        mailimap_fetch_list_free(result);
    return imap_fetch_outcome(s, f, r, what, err);
}

struct mailimap_set *imap_set_from_ranges(const struct uid_range *r, size_t n)
{
    struct mailimap_set *set = mailimap_set_new_empty();
    for (size_t i = 0; set && i < n; i++) {
        if (mailimap_set_add_interval(set, r[i].first, r[i].last) != MAILIMAP_NO_ERROR) {
            mailimap_set_free(set);
            return NULL;
        }
    }
    return set;
}

static struct mailimap_fetch_type *fetch_type_of(struct mailimap_fetch_att **atts, size_t n)
{
    struct mailimap_fetch_type *ft = mailimap_fetch_type_new_fetch_att_list_empty();
    for (size_t i = 0; i < n; i++) {
        if (!ft || !atts[i] || mailimap_fetch_type_new_fetch_att_list_add(ft, atts[i]) != MAILIMAP_NO_ERROR) {
            for (size_t j = i; j < n; j++)
                if (atts[j])
                    mailimap_fetch_att_free(atts[j]);
            if (ft)
                mailimap_fetch_type_free(ft);
            return NULL;
        }
    }
    return ft;
}

/* The fetch type of atts and a zeroed context for session s. On out of
 * memory both are NULL and MS_ELOCAL is returned. */
static int start_fetch(struct imap_session *s, struct mailimap_fetch_att **atts, size_t n,
                       struct mailimap_fetch_type **ft, struct fetch_ctx **f, struct ms_error *err)
{
    *ft = fetch_type_of(atts, n);
    *f = calloc(1, sizeof **f);
    if (!*ft || !*f) {
        if (*ft)
            mailimap_fetch_type_free(*ft);
        free(*f);
        *ft = NULL;
        *f = NULL;
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    (*f)->s = s;
    return MS_OK;
}

/* Run a fetch over sorted uids in batches of at most per_cmd UIDs; each
 * batch's set and bookkeeping come from here, the per-message work from h. */
static int fetch_batches(struct imap_session *s, struct fetch_ctx *f, const uint32_t *uids, size_t n, size_t per_cmd,
                         struct mailimap_fetch_type *ft, mailimap_msg_att_handler *h, enum body_mode mode,
                         const char *what, struct ms_error *err)
{
    struct uid_range *ranges = malloc(per_cmd * sizeof *ranges);
    uint32_t *batch = malloc(per_cmd * sizeof *batch);
    bool *seen = malloc(per_cmd * sizeof *seen);
    int rc = MS_OK;
    if (!ranges || !batch || !seen)
        rc = ms_error_set(err, MS_ELOCAL, "out of memory");
    size_t i = 0;
    while (rc == MS_OK && i < n) {
        size_t nr = 0;
        size_t used = imap_uid_batch(uids + i, n - i, per_cmd, FETCH_SET_CHARS, ranges, per_cmd, &nr);
        size_t nb = 0;
        for (size_t k = 0; k < nr; k++)
            for (uint64_t u = ranges[k].first; u <= ranges[k].last; u++)
                batch[nb++] = (uint32_t)u;
        i += used;
        if (nr == 0)
            break;
        memset(seen, 0, nb * sizeof *seen);
        f->batch = batch;
        f->nbatch = nb;
        f->seen = seen;
        struct mailimap_set *set = imap_set_from_ranges(ranges, nr);
        if (!set) {
            rc = ms_error_set(err, MS_ELOCAL, "out of memory");
            break;
        }
        rc = run_fetch(s, f, set, ft, h, mode, what, err);
        mailimap_set_free(set);
    }
    free(ranges);
    free(batch);
    free(seen);
    return rc;
}

/* ======================================================================
 * imap_fetch_flags
 * ==================================================================== */

/* Reports the stash holds at most (3 MiB of entries): past it, none. */
#define STASH_MAX ((size_t)1 << 18)

/* Its reports freed, none held. */
static void stash_clear(struct imap_stash *st)
{
    for (size_t i = 0; i < st->nkw; i++)
        free(st->kw[i].keywords);
    free(st->kw);
    free(st->v);
    st->kw = NULL;
    st->v = NULL;
    st->n = st->cap = st->nkw = st->capkw = 0;
}

void imap_stash_free(struct imap_stash *st)
{
    if (!st)
        return;
    stash_clear(st);
    free(st->folder);
    free(st);
}

/* v with room for one more of size bytes (*cap of them, n used), or NULL
 * if out of memory (v unchanged). */
static void *stash_room(void *v, size_t *cap, size_t n, size_t size, size_t first)
{
    if (n < *cap)
        return v;
    size_t ncap = *cap ? *cap * 2 : first;
    void *p = realloc(v, ncap * size);
    if (p)
        *cap = ncap;
    return p;
}

bool imap_stash_add(struct imap_stash *st, struct remote_msg *m)
{
    if (!st->ok || (m->flags & FLAGS_MISSING) || st->n == STASH_MAX)
        return false;
    struct stash_entry *v = stash_room(st->v, &st->cap, st->n, sizeof *v, 4096);
    if (!v)
        return false;
    st->v = v;
    if (m->keywords) {
        struct stash_keywords *k = stash_room(st->kw, &st->capkw, st->nkw, sizeof *k, 64);
        if (!k)
            return false;
        st->kw = k;
        st->kw[st->nkw++] = (struct stash_keywords){m->uid, (uint32_t)st->n, m->keywords};
        m->keywords = NULL;
    }
    st->v[st->n] = (struct stash_entry){m->uid, (uint32_t)st->n, (uint32_t)m->flags};
    st->n++;
    return true;
}

/* By UID, then arrival: both kinds of entry start with uid and seq. */
static int cmp_uid_seq(const void *pa, const void *pb)
{
    const uint32_t *a = pa, *b = pb;
    if (a[0] != b[0])
        return a[0] < b[0] ? -1 : 1;
    return a[1] < b[1] ? -1 : a[1] > b[1];
}

void imap_stash_seal(struct imap_stash *st)
{
    if (st->n)
        qsort(st->v, st->n, sizeof *st->v, cmp_uid_seq);
    if (st->nkw)
        qsort(st->kw, st->nkw, sizeof *st->kw, cmp_uid_seq);
    size_t o = 0;
    for (size_t i = 0; i < st->n; i++) {
        if (o && st->v[o - 1].uid == st->v[i].uid)
            o--; /* a later report of the same UID replaces it */
        st->v[o++] = st->v[i];
    }
    st->n = o;
}

/* The keywords of entry e: those its own report carried, if any. */
static const char *stash_keywords_of(const struct imap_stash *st, const struct stash_entry *e)
{
    size_t lo = 0, hi = st->nkw;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct stash_keywords *k = &st->kw[mid];
        if (k->uid < e->uid || (k->uid == e->uid && k->seq < e->seq))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < st->nkw && st->kw[lo].uid == e->uid && st->kw[lo].seq == e->seq ? st->kw[lo].keywords : NULL;
}

void imap_stash_drop(struct imap_stash *st, const uint32_t *v, size_t n)
{
    size_t o = 0, j = 0;
    for (size_t i = 0; i < st->n; i++) {
        while (j < n && v[j] < st->v[i].uid)
            j++;
        if (j < n && v[j] == st->v[i].uid)
            continue;
        st->v[o++] = st->v[i];
    }
    st->n = o;
}

/* The index of the first entry (sealed: sorted) whose UID is uid or more. */
static size_t stash_bound(const struct imap_stash *st, uint64_t uid)
{
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->v[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool imap_stash_serves(const struct imap_stash *st, uint32_t first, uint32_t last, uint64_t modseq)
{
    if (!st || !st->ok || st->modseq != modseq || first == 0 || last < first)
        return false;
    /* the last entry within first..last: below known_uidnext? */
    size_t end = stash_bound(st, (uint64_t)last + 1);
    return end == 0 || st->v[end - 1].uid < first || st->v[end - 1].uid < st->known_uidnext;
}

bool imap_stash_take(const struct imap_stash *st, uint32_t first, uint32_t last, struct remote_msg **out, size_t *n)
{
    size_t lo = stash_bound(st, first), end = stash_bound(st, (uint64_t)last + 1);
    if (end < lo) /* (last below first: none) */
        end = lo;
    struct remote_msg *m = calloc(end - lo + 1, sizeof *m);
    if (!m)
        return false;
    size_t k = 0;
    for (size_t i = lo; i < end; i++, k++) {
        const char *kw = stash_keywords_of(st, &st->v[i]);
        m[k] = (struct remote_msg){.uid = st->v[i].uid, .flags = st->v[i].flags};
        if (kw && !(m[k].keywords = strdup(kw))) {
            remote_msgs_free(m, k);
            return false;
        }
    }
    *out = m;
    *n = k;
    return true;
}

/* The stash can hold no more: emptied, never used. */
static void stash_give_up(struct imap_stash *st)
{
    stash_clear(st);
    st->ok = false;
}

/* One report of a flag listing (its keywords now f's): kept in f->msgs
 * when it names a UID of the range asked for. */
static void keep_flags_report(struct fetch_ctx *f, struct remote_msg m, bool has_uid, bool has_flags)
{
    /* No UID: an unsolicited update we cannot place. Outside the range:
     * "first:*" also returns the highest message when it is below first. */
    if (!has_uid || m.uid < f->first || (f->last && m.uid > f->last)) {
        f->unplaced += !has_uid;
        if (!has_uid && f->stash)
            stash_give_up(f->stash); /* it would not know where */
        free(m.keywords);
        return;
    }
    if (!has_flags)
        m.flags |= FLAGS_MISSING; /* e.g. an unsolicited MODSEQ-only update */
    if (f->max && (f->overflow || f->nmsgs >= f->max)) {
        /* More than the caller wants whole: none kept, memory bounded
         * (those kept so far and the rest go to the stash, compact). */
        if (!f->overflow) {
            for (size_t i = 0; i < f->nmsgs && f->stash && f->stash->ok; i++)
                if (!imap_stash_add(f->stash, &f->msgs[i]))
                    stash_give_up(f->stash);
            remote_msgs_free(f->msgs, f->nmsgs);
            f->msgs = NULL;
            f->nmsgs = f->capmsgs = 0;
            f->overflow = true;
        }
        if (f->stash && f->stash->ok && !imap_stash_add(f->stash, &m))
            stash_give_up(f->stash);
        free(m.keywords);
        return;
    }
    if (f->nmsgs == f->capmsgs) {
        size_t ncap = f->capmsgs ? f->capmsgs * 2 : 256;
        struct remote_msg *n = realloc(f->msgs, ncap * sizeof *n);
        if (!n) {
            free(m.keywords);
            fetch_abort(f, MS_ELOCAL, "out of memory");
            return;
        }
        f->msgs = n;
        f->capmsgs = ncap;
    }
    f->msgs[f->nmsgs++] = m;
}

void imap_flagline_of_att(const struct mailimap_msg_att *att, struct imap_flagline *out)
{
    struct fetched x;
    parse_att(att, &x);
    out->m = x.m;
    out->has_uid = x.has_uid;
    out->has_flags = x.has_flags;
}

static void on_flags_att(struct mailimap_msg_att *att, void *ctx)
{
    struct fetch_ctx *f = ctx;
    if (f->rc)
        return;
    struct imap_flagline x;
    imap_flagline_of_att(att, &x);
    keep_flags_report(f, x.m, x.has_uid, x.has_flags);
}

/* A report and its arrival order, for imap_sort_dedupe. */
struct keyed_msg {
    struct remote_msg m;
    size_t idx;
};

static int cmp_keyed(const void *a, const void *b)
{
    const struct keyed_msg *x = a, *y = b;
    if (x->m.uid != y->m.uid)
        return x->m.uid < y->m.uid ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sort by UID; when a UID came twice (an unsolicited update after the
 * answer), the later report that carried FLAGS wins. Clears FLAGS_MISSING.
 * Returns the new count; on allocation failure the list is left as it is
 * and SIZE_MAX returned. */
size_t imap_sort_dedupe(struct remote_msg *m, size_t n)
{
    if (n < 2) {
        for (size_t i = 0; i < n; i++)
            m[i].flags &= ~FLAGS_MISSING;
        return n;
    }
    struct keyed_msg *k = malloc(n * sizeof *k);
    if (!k)
        return SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        k[i].m = m[i];
        k[i].idx = i;
    }
    qsort(k, n, sizeof *k, cmp_keyed);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t end = i + 1, pick = i;
        while (end < n && k[end].m.uid == k[i].m.uid)
            end++;
        for (size_t j = i; j < end; j++) /* the latest with FLAGS, else the latest */
            if (!(k[j].m.flags & FLAGS_MISSING) || (k[pick].m.flags & FLAGS_MISSING))
                pick = j;
        for (size_t j = i; j < end; j++)
            if (j != pick)
                free(k[j].m.keywords); /* superseded */
        m[o] = k[pick].m;
        m[o++].flags &= ~FLAGS_MISSING;
        i = end;
    }
    free(k);
    return o;
}

/* The fetch type (UID FLAGS RFC822.SIZE) and a context for it. */
static int start_flags_fetch(struct imap_session *s, struct mailimap_fetch_type **ft, struct fetch_ctx **f,
                             struct ms_error *err)
{
    struct mailimap_fetch_att *atts[] = {mailimap_fetch_att_new_uid(), mailimap_fetch_att_new_flags(),
                                         mailimap_fetch_att_new_rfc822_size()};
    int rc = start_fetch(s, atts, 3, ft, f, err);
    if (rc == MS_OK)
        (*f)->first = 1;
    return rc;
}

/* After a flags fetch that returned rc: its messages sorted and unique
 * into *out (never NULL on MS_OK); f is freed. */
int imap_finish_flags_fetch(struct fetch_ctx *f, int rc, struct remote_msg **out, size_t *n, struct ms_error *err)
{
    size_t kept = rc == MS_OK ? imap_sort_dedupe(f->msgs, f->nmsgs) : 0;
    if (rc == MS_OK && kept == SIZE_MAX)
        rc = ms_error_set(err, MS_ELOCAL, "out of memory");
    if (rc == MS_OK && !f->msgs && !(f->msgs = calloc(1, sizeof *f->msgs)))
        rc = ms_error_set(err, MS_ELOCAL, "out of memory");
    if (rc != MS_OK) {
        remote_msgs_free(f->msgs, f->nmsgs);
        free(f);
        return rc;
    }
    *out = f->msgs;
    *n = kept;
    free(f);
    return MS_OK;
}

static const char *flags_fetch_name(uint64_t modseq)
{
    return modseq ? "UID FETCH (FLAGS) (CHANGEDSINCE)" : "UID FETCH (FLAGS)";
}

/* A flag listing sent by hand needs an open folder, as libetpan's own
 * commands refuse it without one (MAILIMAP_ERROR_BAD_STATE, the session
 * kept): MS_OK, or that refusal for the command what. */
static int need_selected(struct imap_session *s, const char *what, struct ms_error *err)
{
    return s->imap->imap_state == MAILIMAP_STATE_SELECTED ? MS_OK
                                                          : imap_fail_call(s, MAILIMAP_ERROR_BAD_STATE, what, err);
}

/* Send UID FETCH first:last (UID FLAGS RFC822.SIZE) [(CHANGEDSINCE
 * modseq)] (last 0: '*'), its tag into *tag; the answer is not read. Sent
 * by hand and read by imap_read_tagged, whose own reader takes the plain
 * reports: libetpan's parser cost half the CPU of a big listing. */
static int send_flags_fetch(struct imap_session *s, uint32_t first, uint32_t last, uint64_t modseq, int *tag,
                            struct ms_error *err)
{
    int rc = need_selected(s, flags_fetch_name(modseq), err);
    if (rc != MS_OK)
        return rc;
    mailimap *imap = s->imap;
    char cmd[128], to[16] = "*", since[48] = "";
    if (last)
        snprintf(to, sizeof to, "%" PRIu32, last);
    if (modseq)
        snprintf(since, sizeof since, " (CHANGEDSINCE %" PRIu64 ")", modseq);
    snprintf(cmd, sizeof cmd, "UID FETCH %" PRIu32 ":%s (UID FLAGS RFC822.SIZE)%s\r\n", first, to, since);
    if (mailimap_send_current_tag(imap) != MAILIMAP_NO_ERROR || imap_stream_puts(imap->imap_stream, cmd) ||
        mailstream_flush(imap->imap_stream) != 0)
        return imap_fail_call(s, MAILIMAP_ERROR_STREAM, flags_fetch_name(modseq), err);
    *tag = imap->imap_tag;
    return MS_OK;
}

/* The answer (under tag) of the UID FETCH send_flags_fetch sent for
 * first..last, keeping at most max reports (0: all; *overflow, when not
 * NULL, says that more came and none were kept). */
static int read_flags_fetch(struct imap_session *s, int tag, uint32_t first, uint32_t last, uint64_t modseq,
                            size_t max, struct remote_msg **out, size_t *n, bool *overflow, struct ms_error *err)
{
    struct fetch_ctx *f = calloc(1, sizeof *f);
    if (!f)
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    f->s = s;
    f->first = first;
    f->last = last;
    f->max = max;
    int rc = imap_read_flags_answer(s, tag, f, flags_fetch_name(modseq), err);
    if (overflow)
        *overflow = f->overflow;
    return imap_finish_flags_fetch(f, rc, out, n, err);
}

/* UID FETCH first:last (UID FLAGS RFC822.SIZE) [(CHANGEDSINCE modseq)],
 * keeping at most max reports (0: all; *overflow, when not NULL, says
 * that more came and none were kept). */
static int fetch_flags_capped(struct imap_session *s, uint32_t first, uint32_t last, uint64_t modseq, size_t max,
                              struct remote_msg **out, size_t *n, bool *overflow, struct ms_error *err)
{
    *out = NULL;
    *n = 0;
    if (overflow)
        *overflow = false;
    if (first == 0)
        first = 1;
    struct window_ahead a = s->win_ahead;
    if (a.on && a.lo == first && a.hi == last && a.modseq == modseq && max == 0 && !s->dead) {
        s->win_ahead.on = false; /* this listing, sent ahead (imap_list_ahead) */
        return read_flags_fetch(s, a.tag, first, last, modseq, 0, out, n, NULL, err);
    }
    int rc = imap_ready(s, true, err);
    if (rc != MS_OK)
        return rc;
    if (last != 0 && last < first)
        return MS_OK;
    int tag = 0;
    if ((rc = send_flags_fetch(s, first, last, modseq, &tag, err)) != MS_OK)
        return rc;
    return read_flags_fetch(s, tag, first, last, modseq, max, out, n, overflow, err);
}

/* ---- a window's listing sent ahead ---- */

int imap_list_ahead(struct imap_session *s, uint32_t first, uint32_t last, uint64_t modseq, struct ms_error *err)
{
    if (imap_stash_serves(s->stash, first, last, modseq))
        return MS_OK; /* in hand already: the EXAMINE's answer */
    int rc = imap_ready(s, true, err); /* (drops one sent ahead before) */
    if (rc != MS_OK || first == 0 || last < first)
        return rc;
    int tag = 0;
    if ((rc = send_flags_fetch(s, first, last, modseq, &tag, err)) == MS_OK)
        s->win_ahead = (struct window_ahead){.on = true, .tag = tag, .lo = first, .hi = last, .modseq = modseq};
    return rc;
}

int imap_drop_window_ahead(struct imap_session *s, struct ms_error *err)
{
    if (!s->win_ahead.on)
        return MS_OK;
    s->win_ahead.on = false;
    /* Not asked for after all: its reports are dropped, and so is a tagged
     * NO (the window was never wanted); only a broken stream is an error. */
    int state = -1;
    int r = imap_read_tagged(s, s->win_ahead.tag, NULL, &state);
    return r == MAILIMAP_NO_ERROR ? MS_OK : imap_fail_call(s, r, "UID FETCH (FLAGS), sent ahead", err);
}

int imap_fetch_flags_modseq(struct imap_session *s, uint32_t first, uint32_t last, uint64_t modseq,
                            struct remote_msg **out, size_t *n, struct ms_error *err)
{
    return fetch_flags_capped(s, first, last, modseq, 0, out, n, NULL, err);
}

int imap_fetch_changes_windowed(struct imap_session *s, uint64_t modseq, uint32_t window, uint32_t uidnext,
                                bool top_only, struct remote_msg **out, size_t *n, uint32_t *from,
                                struct ms_error *err)
{
    *from = 0;
    if (!window || uidnext <= window + 1)
        return fetch_flags_capped(s, 1, 0, modseq, 0, out, n, NULL, err);
    bool overflow = top_only;
    if (!top_only) {
        int rc = fetch_flags_capped(s, 1, 0, modseq, window, out, n, &overflow, err);
        if (rc != MS_OK || !overflow)
            return rc;
        remote_msgs_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    /* More than a window changed ("mark all read" elsewhere): the top
     * window now, the rest when the caller asks for it. */
    *from = uidnext - window;
    return fetch_flags_capped(s, *from, 0, modseq, 0, out, n, NULL, err);
}

int imap_fetch_flags(struct imap_session *s, uint32_t first, uint32_t last, struct remote_msg **out, size_t *n,
                     struct ms_error *err)
{
    return imap_fetch_flags_modseq(s, first, last, 0, out, n, err);
}

int imap_fetch_flags_uids(struct imap_session *s, const uint32_t *uids, size_t n, struct remote_msg **out, size_t *nout,
                          struct ms_error *err)
{
    *out = NULL;
    *nout = 0;
    int rc = imap_ready(s, true, err);
    struct mailimap_fetch_type *ft;
    struct fetch_ctx *f;
    if (rc != MS_OK || (rc = start_flags_fetch(s, &ft, &f, err)) != MS_OK)
        return rc;
    rc = fetch_batches(s, f, uids, n, FETCH_BATCH_UIDS, ft, on_flags_att, BODY_DISCARD, "UID FETCH (FLAGS)", err);
    mailimap_fetch_type_free(ft);
    return imap_finish_flags_fetch(f, rc, out, nout, err);
}

static void on_discard_att(struct mailimap_msg_att *att, void *ctx)
{
    (void)att;
    (void)ctx;
}

/* ---- the answer's other lines, replayed to libetpan's parser ---- */

#define ASIDE_MAX ((size_t)1 << 20) /* bytes of other lines set aside at most */

/* A stream for libetpan's parser: the lines of an answer imap_read_tagged
 * set aside, then the session's own stream a byte at a time, so that
 * nothing past the answer is taken from it (what libetpan's parser reads
 * ahead stays in the session's buffer). */
struct replay {
    const char *data;
    size_t len, pos;
    mailstream *rest;
};

static ssize_t replay_read(mailstream_low *low, void *buf, size_t count)
{
    struct replay *r = low->data;
    if (!count)
        return 0;
    if (r->pos < r->len) {
        size_t n = r->len - r->pos < count ? r->len - r->pos : count;
        memcpy(buf, r->data + r->pos, n);
        r->pos += n;
        return (ssize_t)n;
    }
    ssize_t n = mailstream_read(r->rest, buf, 1);
    return n > 0 ? n : -1; /* never 0: libetpan spins on it (netstream.c) */
}

static ssize_t replay_write(mailstream_low *low, const void *buf, size_t count)
{
    (void)low, (void)buf, (void)count;
    return -1;
}

static int replay_close(mailstream_low *low)
{
    (void)low;
    return 0;
}

static int replay_fd(mailstream_low *low)
{
    (void)low;
    return -1;
}

static void replay_free(mailstream_low *low)
{
    free(low);
}

static mailstream_low_driver replay_driver = {
    .mailstream_read = replay_read,
    .mailstream_write = replay_write,
    .mailstream_close = replay_close,
    .mailstream_get_fd = replay_fd,
    .mailstream_free = replay_free,
};

/* libetpan's parse of the answer whose first line is in the session's line
 * buffer (the rest still on the stream), its FETCH data to f or dropped. */
static int parse_answer(struct imap_session *s, int tag, struct fetch_ctx *f, struct mailimap_response **resp)
{
    mailimap *imap = s->imap;
    int last = imap->imap_tag;
    s->fetch = f;
    mailimap_set_msg_att_handler(imap, f ? on_flags_att : on_discard_att, f);
    mailimap_set_progress_callback(imap, NULL, on_items_progress, f);
    imap->imap_tag = tag;
    int r = mailimap_parse_response(imap, resp);
    imap->imap_tag = last;
    s->fetch = NULL;
    mailimap_set_msg_att_handler(imap, NULL, NULL);
    mailimap_set_progress_callback(imap, NULL, NULL, NULL);
    return r;
}

/* The same when lines were set aside: they first, then the stream. */
static int parse_replayed(struct imap_session *s, int tag, struct fetch_ctx *f, const MMAPString *aside,
                          struct mailimap_response **resp)
{
    mailimap *imap = s->imap;
    struct replay r = {.data = aside->str, .len = aside->len, .rest = imap->imap_stream};
    mailstream_low *low = mailstream_low_new(&r, &replay_driver);
    mailstream *st = low ? mailstream_new(low, 8192) : NULL;
    if (!st) {
        if (low)
            mailstream_low_free(low);
        return MAILIMAP_ERROR_MEMORY;
    }
    imap->imap_stream = st;
    int rc = mailimap_read_line(imap) ? parse_answer(s, tag, f, resp) : MAILIMAP_ERROR_STREAM;
    imap->imap_stream = r.rest;
    mailstream_close(st);
    return rc;
}

/* A report imap_flagline_parse read: into f (keep_flags_report), or
 * dropped when the answer's FETCH data is not wanted. */
static void take_report(struct fetch_ctx *f, struct imap_flagline *x)
{
    if (f)
        keep_flags_report(f, x->m, x->has_uid, x->has_flags);
    else
        free(x->m.keywords);
}

/* The plain reports at the head of what st has read but not handed out,
 * taken where they lie and then dropped from its buffer in one move
 * (mailimap_read_line copies each line out and moves the rest of the 64 KiB
 * buffer down after every one). Stops at the first other line, or one not
 * whole yet, for mailimap_read_line. */
static void take_buffered_reports(mailstream *st, struct fetch_ctx *f)
{
    if (!st)
        return;
    size_t off = 0;
    while (!(f && f->rc)) {
        const char *p = st->read_buffer + off;
        const char *nl = memchr(p, '\n', st->read_buffer_len - off);
        struct imap_flagline x;
        if (!nl || imap_flagline_parse(p, (size_t)(nl - p) + 1, &x) != IMAP_FLAGLINE_OK)
            break;
        take_report(f, &x);
        off += (size_t)(nl - p) + 1;
    }
    if (off) {
        st->read_buffer_len -= off;
        memmove(st->read_buffer, st->read_buffer + off, st->read_buffer_len);
    }
}

/* Does the line end in "}" CRLF (or a bare LF), as one that opens a literal
 * does? Then its next bytes are no line of ours to read. */
static bool opens_literal(const char *line, size_t len)
{
    if (len >= 2 && line[len - 1] == '\n' && line[len - 2] == '}')
        return true;
    return len >= 3 && line[len - 1] == '\n' && line[len - 2] == '\r' && line[len - 3] == '}';
}

/* Read one response to the command sent under tag (libetpan checks the
 * tag against imap_tag, the last one sent: it is set to tag for the read
 * and back after), the FETCH data going to f (UID FLAGS [RFC822.SIZE], as
 * on_flags_att collects them) or dropped when f is NULL. The tagged state
 * through *state.
 *
 * The answer's plain flag reports (all of a flag listing; the changes
 * after the untagged data of a QRESYNC SELECT) are read line by line by
 * imap_flagline_parse, not libetpan's parser (which cost half a big
 * listing's CPU); every other line is set aside until the tagged one, or
 * until a line that may open a literal, and libetpan's parser reads the
 * lines set aside, in order, then the rest of the answer from the
 * stream. So it sees every untagged response but those reports, as
 * before (selection state, VANISHED, codes). Past ASIDE_MAX of such lines
 * libetpan reads the rest (a hostile server's flood costs no more memory
 * than it did). */
int imap_read_tagged(struct imap_session *s, int tag, struct fetch_ctx *f, int *state)
{
    mailimap *imap = s->imap;
    MMAPString *aside = NULL;
    int r = MAILIMAP_NO_ERROR;
    for (;;) {
        take_buffered_reports(imap->imap_stream, f);
        if (!mailimap_read_line(imap)) {
            r = MAILIMAP_ERROR_STREAM;
            break;
        }
        const MMAPString *line = imap->imap_stream_buffer;
        struct imap_flagline x;
        if (!(f && f->rc) && imap_flagline_parse(line->str, line->len, &x) == IMAP_FLAGLINE_OK) {
            take_report(f, &x);
            continue;
        }
        bool last = line->len < 2 || line->str[0] != '*' || line->str[1] != ' ' || opens_literal(line->str, line->len);
        if (!aside && last)
            break; /* nothing set aside: libetpan reads on from this line */
        if ((!aside && !(aside = mmap_string_new(""))) || !mmap_string_append_len(aside, line->str, line->len)) {
            r = MAILIMAP_ERROR_MEMORY;
            break;
        }
        if (last || aside->len > ASIDE_MAX)
            break; /* past ASIDE_MAX the rest goes to libetpan through the replay */
    }
    struct mailimap_response *resp = NULL;
    if (r == MAILIMAP_NO_ERROR)
        r = aside ? parse_replayed(s, tag, f, aside, &resp) : parse_answer(s, tag, f, &resp);
    if (aside)
        mmap_string_free(aside);
    if (r != MAILIMAP_NO_ERROR)
        return r;
    *state = resp->rsp_resp_done->rsp_data.rsp_tagged->rsp_cond_state->rsp_type;
    mailimap_response_free(resp);
    return MAILIMAP_NO_ERROR;
}

int imap_read_flags_answer(struct imap_session *s, int tag, struct fetch_ctx *f, const char *what,
                           struct ms_error *err)
{
    int state = -1;
    int r = imap_read_tagged(s, tag, f, &state);
    if (r == MAILIMAP_NO_ERROR && state != MAILIMAP_RESP_COND_STATE_OK)
        r = MAILIMAP_ERROR_UID_FETCH;
    return imap_fetch_outcome(s, f, r, what, err);
}

/* ======================================================================
 * imap_fetch_flags_windows
 * ==================================================================== */

#define WINDOWS_IN_FLIGHT 2

struct sent_window {
    uint32_t lo, hi;
    int tag;
};

/* The answer of the oldest window in flight, w, read into f; its messages
 * (those of w's UIDs: a server that runs the commands side by side may
 * send the reports of a later window first, as Dovecot does, before the
 * tagged OKs) taken out of f, sorted, into *out. */
static int read_window(struct imap_session *s, struct fetch_ctx *f, const struct sent_window *w,
                       struct remote_msg **out, size_t *n, struct ms_error *err)
{
    int rc = imap_read_flags_answer(s, w->tag, f, "UID FETCH (FLAGS)", err);
    if (rc != MS_OK)
        return rc;
    struct remote_msg *m = malloc((f->nmsgs + 1) * sizeof *m);
    if (!m)
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    size_t k = 0, o = 0;
    for (size_t i = 0; i < f->nmsgs; i++) {
        if (f->msgs[i].uid >= w->lo && f->msgs[i].uid <= w->hi)
            m[k++] = f->msgs[i];
        else
            f->msgs[o++] = f->msgs[i];
    }
    f->nmsgs = o;
    size_t kept = imap_sort_dedupe(m, k);
    if (kept == SIZE_MAX) {
        remote_msgs_free(m, k);
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    *out = m;
    *n = kept;
    return MS_OK;
}

int imap_fetch_flags_windows(struct imap_session *s, uint32_t below, uint32_t size, remote_window_fn *window,
                             void *ctx, struct ms_error *err)
{
    int rc = imap_ready(s, true, err);
    if (rc != MS_OK || below <= 1)
        return rc;
    if (size == 0)
        size = 1;
    if ((rc = need_selected(s, "UID FETCH (FLAGS)", err)) != MS_OK)
        return rc;
    mailimap *imap = s->imap;
    struct fetch_ctx *f = calloc(1, sizeof *f); /* every report of the windows in flight */
    if (!f)
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    f->s = s;
    f->last = below - 1;
    struct sent_window q[WINDOWS_IN_FLIGHT];
    size_t head = 0, nq = 0;
    uint32_t next = below - 1; /* the top of the next window to ask for; 0: none left */
    while (rc == MS_OK && (nq || next)) {
        bool sent = false;
        while (next && nq < WINDOWS_IN_FLIGHT) {
            struct sent_window *w = &q[(head + nq) % WINDOWS_IN_FLIGHT];
            w->hi = next;
            w->lo = next > size ? next - size + 1 : 1;
            char cmd[96];
            snprintf(cmd, sizeof cmd, "UID FETCH %" PRIu32 ":%" PRIu32 " (UID FLAGS)\r\n", w->lo, w->hi);
            if (mailimap_send_current_tag(imap) != MAILIMAP_NO_ERROR || imap_stream_puts(imap->imap_stream, cmd)) {
                rc = imap_fail_call(s, MAILIMAP_ERROR_STREAM, "UID FETCH (FLAGS)", err);
                break;
            }
            w->tag = imap->imap_tag;
            f->first = w->lo; /* reports from the lowest window sent up are kept */
            nq++;
            next = w->lo > 1 ? w->lo - 1 : 0;
            sent = true;
        }
        if (rc == MS_OK && sent && mailstream_flush(imap->imap_stream) != 0)
            rc = imap_fail_call(s, MAILIMAP_ERROR_STREAM, "UID FETCH (FLAGS)", err);
        if (rc != MS_OK)
            break;
        struct sent_window w = q[head];
        head = (head + 1) % WINDOWS_IN_FLIGHT;
        nq--;
        struct remote_msg *m = NULL;
        size_t n = 0;
        if ((rc = read_window(s, f, &w, &m, &n, err)) == MS_OK) {
            f->last = w.lo - 1; /* this window is done: later reports of it are dropped */
            rc = window(ctx, w.lo, w.hi, m, n, err);
        }
    }
    if (rc != MS_OK && nq)
        imap_kill_stream(s); /* answers still in flight: the session is out of step */
    remote_msgs_free(f->msgs, f->nmsgs);
    free(f);
    return rc;
}

/* ======================================================================
 * imap_fetch_bodies
 * ==================================================================== */

static void on_body_att(struct mailimap_msg_att *att, void *ctx)
{
    struct fetch_ctx *f = ctx;
    if (f->rc)
        return;
    struct fetched x;
    parse_att(att, &x);
    bool had_chunks = f->body_started;
    f->body_started = false;
    if (x.has_body || had_chunks) {
        int idx = x.has_uid ? fetch_index(f, x.m.uid) : -1;
        char why[120];
        if (idx < 0 || f->seen[idx] || x.partial_body || x.bodies > 1) {
            /* The chunks already went to the sink: without message() it
             * must drop them, so stop here rather than misfile them. */
            snprintf(why, sizeof why, "server sent %s body for UID %u",
                     x.partial_body ? "a partial"
                     : idx < 0      ? "an unrequested"
                                    : "a second",
                     x.m.uid);
            free(x.m.keywords);
            fetch_abort(f, MS_ENET, why);
            return;
        }
        f->seen[idx] = true;
    } else if (!x.has_uid) {
        free(x.m.keywords);
        return; /* an unsolicited update without UID: nothing to tell */
    }
    x.m.emailid = x.objid[0] ? x.objid : NULL;
    int r = f->sink->message(f->sink->ctx, &x.m, x.has_body);
    free(x.m.keywords);
    if (r != 0)
        fetch_abort(f, r, "message could not be stored");
}

int imap_fetch_bodies(struct imap_session *s, const uint32_t *uids, size_t n, const struct remote_body_sink *sink,
                      struct ms_error *err)
{
    int rc = imap_ready(s, true, err);
    if (rc != MS_OK || n == 0)
        return rc;
    if (err)
        ms_error_clear(err);
    /* With OBJECTID or X-GM-EXT-1, each message's id comes along (a few
     * bytes per download) and is recorded with its row, so that a later
     * move of it to another folder is recognised by the id alone. */
    enum imap_objid kind = imap_objid_kind(s);
    struct mailimap_fetch_att *atts[] = {mailimap_fetch_att_new_uid(),
                                         mailimap_fetch_att_new_flags(),
                                         mailimap_fetch_att_new_internaldate(),
                                         mailimap_fetch_att_new_rfc822_size(),
                                         mailimap_fetch_att_new_body_peek_section(mailimap_section_new(NULL)),
                                         kind != IMAP_OBJID_NONE ? imap_objid_fetch_att(kind) : NULL};
    struct mailimap_fetch_type *ft;
    struct fetch_ctx *f;
    if ((rc = start_fetch(s, atts, kind != IMAP_OBJID_NONE ? 6 : 5, &ft, &f, err)) != MS_OK)
        return rc;
    f->sink = sink;
    rc = fetch_batches(s, f, uids, n, FETCH_BODY_UIDS, ft, on_body_att, BODY_SINK, "UID FETCH (BODY.PEEK[])", err);
    mailimap_fetch_type_free(ft);
    free(f);
    return rc;
}

/* ======================================================================
 * imap_fetch_identity
 * ==================================================================== */

static void on_identity_att(struct mailimap_msg_att *att, void *ctx)
{
    struct fetch_ctx *f = ctx;
    struct fetched x;
    parse_att(att, &x);
    free(x.m.keywords);
    bool had_header = f->id_seen;
    size_t len = f->idlen;
    f->idlen = 0;
    f->id_seen = false;
    if (f->rc || !x.has_uid)
        return;
    int idx = fetch_index(f, x.m.uid);
    if (idx < 0 || f->seen[idx])
        return; /* unasked or repeated: identity must come from the answer */
    if (!had_header) {
        /* Some servers send an empty section as "" without calling us. */
        bool section = false;
        for (clistiter *it = clist_begin(att->att_list); it; it = clist_next(it)) {
            struct mailimap_msg_att_item *item = clist_content(it);
            if (item->att_type == MAILIMAP_MSG_ATT_ITEM_STATIC && item->att_data.att_static &&
                item->att_data.att_static->att_type == MAILIMAP_MSG_ATT_BODY_SECTION)
                section = true;
        }
        if (!section)
            return; /* a flag update, not our answer */
    }
    f->seen[idx] = true;
    if (f->found_oid) {
        char *id = message_header(f->idbuf, len, "Message-ID");
        f->found_oid(f->found_ctx, x.m.uid, x.m.size, id, x.objid[0] ? x.objid : NULL);
        free(id);
        return;
    }
    if (f->found_block) {
        f->found_block(f->found_ctx, x.m.uid, x.m.size, f->idbuf, len);
        return;
    }
    /* The Maildir side's parser: the same message has the same identity. */
    char *id = message_header(f->idbuf, len, "Message-ID");
    f->found(f->found_ctx, x.m.uid, x.m.size, id);
    free(id);
}

static void free_clist_item(void *item, void *unused)
{
    (void)unused;
    free(item);
}

/* How on_identity_att answers: one of the three is set. */
struct identity_answer {
    void (*found)(void *, uint32_t, uint64_t, const char *);
    void (*found_block)(void *, uint32_t, uint64_t, const char *, size_t);
    void (*found_oid)(void *, uint32_t, uint64_t, const char *, const char *);
};

/* UID FETCH (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (fields)] [objid]) of
 * uids, answered through on_identity_att (objid: the server's id item, or
 * IMAP_OBJID_NONE). */
static int fetch_header_fields(struct imap_session *s, const uint32_t *uids, size_t n, const char *const *fields,
                               size_t nfields, const struct identity_answer *to, enum imap_objid objid, void *ctx,
                               const char *what, struct ms_error *err)
{
    int rc = imap_ready(s, true, err);
    if (rc != MS_OK || n == 0)
        return rc;
    /* no fields: the whole header section (BODY.PEEK[HEADER]) */
    clist *hdrs = nfields ? clist_new() : NULL;
    struct mailimap_header_list *hl = NULL;
    bool ok = hdrs != NULL;
    for (size_t i = 0; ok && i < nfields; i++) {
        char *h = strdup(fields[i]);
        ok = h && clist_append(hdrs, h) == 0;
        if (!ok)
            free(h);
    }
    if (ok)
        hl = mailimap_header_list_new(hdrs);
    struct mailimap_section *sec = !nfields ? mailimap_section_new_header()
                                   : hl     ? mailimap_section_new_header_fields(hl)
                                            : NULL;
    if (!sec) {
        if (hl)
            mailimap_header_list_free(hl);
        else if (hdrs) {
            clist_foreach(hdrs, free_clist_item, NULL);
            clist_free(hdrs);
        }
        return ms_error_set(err, MS_ELOCAL, "out of memory");
    }
    struct mailimap_fetch_att *atts[] = {mailimap_fetch_att_new_uid(), mailimap_fetch_att_new_rfc822_size(),
                                         mailimap_fetch_att_new_body_peek_section(sec),
                                         objid != IMAP_OBJID_NONE ? imap_objid_fetch_att(objid) : NULL};
    struct mailimap_fetch_type *ft;
    struct fetch_ctx *f;
    if ((rc = start_fetch(s, atts, objid != IMAP_OBJID_NONE ? 4 : 3, &ft, &f, err)) != MS_OK)
        return rc;
    f->found = to->found;
    f->found_block = to->found_block;
    f->found_oid = to->found_oid;
    f->found_ctx = ctx;
    rc = fetch_batches(s, f, uids, n, FETCH_BATCH_UIDS, ft, on_identity_att, BODY_IDENTITY, what, err);
    mailimap_fetch_type_free(ft);
    free(f);
    return rc;
}

int imap_fetch_identity(struct imap_session *s, const uint32_t *uids, size_t n,
                        void (*found)(void *ctx, uint32_t uid, uint64_t size, const char *message_id), void *ctx,
                        struct ms_error *err)
{
    static const char *const fields[] = {"MESSAGE-ID"};
    struct identity_answer to = {.found = found, .found_block = NULL, .found_oid = NULL};
    return fetch_header_fields(s, uids, n, fields, 1, &to, IMAP_OBJID_NONE, ctx,
                               "UID FETCH (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])", err);
}

int imap_fetch_identity_oid(struct imap_session *s, const uint32_t *uids, size_t n,
                            void (*found)(void *ctx, uint32_t uid, uint64_t size, const char *message_id,
                                          const char *emailid),
                            void *ctx, struct ms_error *err)
{
    static const char *const fields[] = {"MESSAGE-ID"};
    struct identity_answer to = {.found = NULL, .found_block = NULL, .found_oid = found};
    enum imap_objid kind = imap_objid_kind(s);
    return fetch_header_fields(s, uids, n, fields, 1, &to, kind, ctx,
                               kind == IMAP_OBJID_XGM ? "UID FETCH (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)] X-GM-MSGID)"
                               : kind == IMAP_OBJID_EMAILID
                                   ? "UID FETCH (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)] EMAILID)"
                                   : "UID FETCH (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])",
                               err);
}

int imap_fetch_headers(struct imap_session *s, const uint32_t *uids, size_t n, const char *const *fields,
                       size_t nfields,
                       void (*found)(void *ctx, uint32_t uid, uint64_t size, const char *block, size_t len),
                       void *ctx, struct ms_error *err)
{
    struct identity_answer to = {.found = NULL, .found_block = found, .found_oid = NULL};
    return fetch_header_fields(s, uids, n, fields, nfields, &to, IMAP_OBJID_NONE, ctx,
                               nfields ? "UID FETCH (BODY.PEEK[HEADER.FIELDS (...)])" : "UID FETCH (BODY.PEEK[HEADER])",
                               err);
}
