/* SPDX-License-Identifier: MIT */
/*
 * remote_pop3.h: the POP3 side of remote.h, over sync/remote/pop3.c.
 */
#ifndef MAILSYNC_REMOTE_POP3_H
#define MAILSYNC_REMOTE_POP3_H

#include "sync/remote/remote.h"

/* pop3_connect (TLS verified, USER/PASS with password, not kept), wrapped
 * as a remote side. */
int remote_pop3_connect(const struct account *acct, const char *password, struct remote **out, struct ms_error *err);

#endif
