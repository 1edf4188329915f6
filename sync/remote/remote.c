/* SPDX-License-Identifier: MIT */
/*
 * remote.c: what every remote side shares (see remote.h): the frees of the
 * plain data and the factory that picks the side by the account's type.
 */
#include "sync/remote/remote.h"

#include "sync/remote/remote_imap.h"
#include "sync/remote/remote_pop3.h"

#include <stdlib.h>
#include <string.h>

void remote_msgs_free(struct remote_msg *m, size_t n)
{
    for (size_t i = 0; m && i < n; i++) {
        free(m[i].keywords);
        free(m[i].id);
    }
    free(m);
}

void remote_folders_free(struct remote_folder *f, size_t n)
{
    for (size_t i = 0; f && i < n; i++)
        free(f[i].name);
    free(f);
}

void remote_listing_free(struct remote_listing *l)
{
    remote_msgs_free(l->msgs, l->nmsgs);
    free(l->uids);
    memset(l, 0, sizeof *l);
}

int remote_connect(const struct account *acct, const char *password, struct remote **out, struct ms_error *err)
{
    return remote_connect_hinted(acct, password, NULL, out, err);
}

const char *remote_memo(struct remote *r)
{
    return r && r->ops->memo ? r->ops->memo(r) : NULL;
}

int remote_connect_hinted(const struct account *acct, const char *password, const struct remote_hint *hint,
                          struct remote **out, struct ms_error *err)
{
    *out = NULL;
    switch (acct->type) {
    case ACCOUNT_IMAP:
        return remote_imap_connect_hinted(acct, password, hint, out, err);
    case ACCOUNT_POP3:
        return remote_pop3_connect(acct, password, out, err);
    default:
        return ms_error_set(err, MS_EUSAGE, "%s: no remote side for this account type", acct->name);
    }
}

unsigned remote_caps_possible(const struct account *acct)
{
    switch (acct->type) {
    case ACCOUNT_IMAP:
        return REMOTE_FOLDERS | REMOTE_WRITE | REMOTE_UIDS | REMOTE_CHANGES | REMOTE_AHEAD | REMOTE_MOVE |
               REMOTE_EXACT | REMOTE_WATCH | REMOTE_WATCH_ALL | REMOTE_EXTRA | REMOTE_AGE;
    case ACCOUNT_POP3:
        return REMOTE_EXACT | REMOTE_COMMIT;
    default:
        return 0;
    }
}
