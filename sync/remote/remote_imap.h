/* SPDX-License-Identifier: MIT */
/*
 * remote_imap.h: the IMAP side of remote.h, over the IMAP protocol code (imap.h, imap_*.c).
 */
#ifndef MAILSYNC_REMOTE_IMAP_H
#define MAILSYNC_REMOTE_IMAP_H

#include "sync/remote/remote.h"

/* imap_connect (TLS verified, logged in with password, not kept), wrapped
 * as a remote side. */
int remote_imap_connect(const struct account *acct, const char *password, struct remote **out, struct ms_error *err);
/* The same with a hint (remote.h, struct remote_hint; NULL: none). */
int remote_imap_connect_hinted(const struct account *acct, const char *password, const struct remote_hint *hint,
                               struct remote **out, struct ms_error *err);

#endif
