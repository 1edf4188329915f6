/* SPDX-License-Identifier: MIT */
/*
 * sdnotify.h: telling systemd how a `watch` service is doing (the
 * sd_notify(3) protocol, spoken directly: one datagram per message to the
 * socket named by $NOTIFY_SOCKET; no libsystemd needed). Outside systemd
 * (no $NOTIFY_SOCKET) every call does nothing.
 */
#ifndef MAILSYNC_CMD_SDNOTIFY_H
#define MAILSYNC_CMD_SDNOTIFY_H

#include <stdbool.h>

/* Read $NOTIFY_SOCKET and $WATCHDOG_USEC / $WATCHDOG_PID once, then unset
 * them (a password_command or hook must not talk to systemd for us).
 * True when systemd listens. */
bool sdnotify_init(void);
/* Send one message ("READY=1", "STATUS=...", "STOPPING=1"). */
void sdnotify_send(const char *msg);
/* The watchdog interval systemd asked for, in ms (0: none). */
int sdnotify_watchdog_ms(void);
/* "WATCHDOG=1", at most every quarter of the watchdog interval (callers
 * may call it as often as they like). */
void sdnotify_alive(void);

#endif
