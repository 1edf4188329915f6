/* SPDX-License-Identifier: MIT */
/*
 * imap_objectid.c: the server's own id of a message's content, as two
 * IMAP extensions give it in a FETCH response: EMAILID (RFC 8474,
 * capability OBJECTID) and Gmail's X-GM-MSGID (capability X-GM-EXT-1).
 * The same message keeps it across folders (a MOVE or COPY keeps it), so
 * a message that vanished from one folder and appeared in another with
 * the same id was moved there (sync/engine/moves_server.c).
 *
 * libetpan 1.9.4 parses X-GM-MSGID inside a FETCH (its internal
 * extension, a uint64_t) but not EMAILID: an unknown FETCH item fails the
 * whole response. So an extension parser of ours is registered once per
 * process: it reads `EMAILID (objectid)` straight from libetpan's line
 * buffer (the item is short and never a literal), checking every byte
 * against RFC 8474's grammar (1-255 of ALPHA, DIGIT, "_", "-"). Anything
 * else is not ours: MAILIMAP_ERROR_PARSE, so libetpan fails the response
 * as it would without us (a hostile value ends the session, it does not
 * become an identity).
 *
 * Both ids are kept as one string: EMAILID as sent, X-GM-MSGID as "gm:"
 * and its decimal value (':' is not in an objectid, so the two never
 * collide).
 */
#include "sync/remote/imap.h"
#include "sync/remote/imap_int.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libetpan/libetpan.h>

static bool objectid_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

size_t imap_emailid_parse(const char *p, size_t len, char out[IMAP_OBJID_MAX + 1])
{
    static const char key[] = "EMAILID (";
    const size_t klen = sizeof key - 1;
    out[0] = '\0';
    if (len < klen + 2 || strncasecmp(p, key, klen) != 0)
        return 0;
    size_t i = klen, n = 0;
    while (i < len && n <= IMAP_OBJID_MAX && objectid_char((unsigned char)p[i])) {
        i++;
        n++;
    }
    if (n == 0 || n > IMAP_OBJID_MAX || i >= len || p[i] != ')')
        return 0;
    memcpy(out, p + klen, n);
    out[n] = '\0';
    return i + 1;
}

/* ---- the libetpan extension ---------------------------------------------- */

enum { EMAILID_TYPE = 0 };

static int emailid_ext_parse(int calling_parser, mailstream *fd, MMAPString *buffer,
                             struct mailimap_parser_context *parser_ctx, size_t *indx,
                             struct mailimap_extension_data **result, size_t progr_rate, progress_function *progr_fun);
static void emailid_ext_free(struct mailimap_extension_data *ext_data);

static struct mailimap_extension_api emailid_extension = {
    .ext_name = "EMAILID",
    .ext_id = -1, /* not one of libetpan's */
    .ext_parser = emailid_ext_parse,
    .ext_free = emailid_ext_free,
};

static int emailid_ext_parse(int calling_parser, mailstream *fd, MMAPString *buffer,
                             struct mailimap_parser_context *parser_ctx, size_t *indx,
                             struct mailimap_extension_data **result, size_t progr_rate, progress_function *progr_fun)
{
    (void)fd, (void)parser_ctx, (void)progr_rate, (void)progr_fun;
    if (calling_parser != MAILIMAP_EXTENDED_PARSER_FETCH_DATA || !buffer || !buffer->str || *indx >= buffer->len)
        return MAILIMAP_ERROR_PARSE;
    char id[IMAP_OBJID_MAX + 1];
    size_t used = imap_emailid_parse(buffer->str + *indx, buffer->len - *indx, id);
    if (!used)
        return MAILIMAP_ERROR_PARSE;
    char *copy = strdup(id);
    struct mailimap_extension_data *ext = copy ? mailimap_extension_data_new(&emailid_extension, EMAILID_TYPE, copy)
                                               : NULL;
    if (!ext) {
        free(copy);
        return MAILIMAP_ERROR_MEMORY;
    }
    *indx += used;
    *result = ext;
    return MAILIMAP_NO_ERROR;
}

static void emailid_ext_free(struct mailimap_extension_data *ext_data)
{
    if (!ext_data)
        return;
    free(ext_data->ext_data);
    free(ext_data);
}

static pthread_once_t registered = PTHREAD_ONCE_INIT;

/* libetpan 1.9.4's ANNOTATEMORE parser frees an uninitialised list when an
 * untagged "* ANNOTATION" it cannot finish parsing comes in (a hostile
 * server crashes the client; fuzz_imap_fetch found it). mailsync never
 * asks for annotations: its parser is replaced by one that claims no
 * response, so such a line is a plain parse error that ends the session. */
static int no_annotatemore(int calling_parser, mailstream *fd, MMAPString *buffer,
                           struct mailimap_parser_context *parser_ctx, size_t *indx,
                           struct mailimap_extension_data **result, size_t progr_rate, progress_function *progr_fun)
{
    (void)calling_parser;
    (void)fd;
    (void)buffer;
    (void)parser_ctx;
    (void)indx;
    (void)result;
    (void)progr_rate;
    (void)progr_fun;
    return MAILIMAP_ERROR_PARSE;
}

static void register_once(void)
{
    mailimap_extension_register(&emailid_extension); /* out of memory: EMAILID is then a parse error */
    mailimap_extension_annotatemore.ext_parser = no_annotatemore;
}

void imap_objectid_register(void)
{
    pthread_once(&registered, register_once);
}

/* ---- use ---------------------------------------------------------------- */

enum imap_objid imap_objid_kind(struct imap_session *s)
{
    if (imap_has_capability(s, "OBJECTID"))
        return IMAP_OBJID_EMAILID;
    if (imap_has_capability(s, "X-GM-EXT-1"))
        return IMAP_OBJID_XGM;
    return IMAP_OBJID_NONE;
}

struct mailimap_fetch_att *imap_objid_fetch_att(enum imap_objid kind)
{
    if (kind == IMAP_OBJID_XGM)
        return mailimap_fetch_att_new_xgmmsgid();
    char *kw = strdup("EMAILID");
    struct mailimap_fetch_att *att = kw ? mailimap_fetch_att_new_extension(kw) : NULL;
    if (!att)
        free(kw);
    return att;
}

bool imap_objid_of_item(const struct mailimap_msg_att_item *item, char out[IMAP_OBJID_MAX + 1])
{
    if (!item || item->att_type != MAILIMAP_MSG_ATT_ITEM_EXTENSION || !item->att_data.att_extension_data)
        return false;
    const struct mailimap_extension_data *e = item->att_data.att_extension_data;
    if (e->ext_extension == &emailid_extension && e->ext_data) {
        snprintf(out, IMAP_OBJID_MAX + 1, "%s", (const char *)e->ext_data);
        return out[0] != '\0';
    }
    if (e->ext_extension == &mailimap_extension_xgmmsgid && e->ext_data) {
        snprintf(out, IMAP_OBJID_MAX + 1, "gm:%" PRIu64, *(const uint64_t *)e->ext_data);
        return true;
    }
    return false;
}
