/* SPDX-License-Identifier: MIT */
/*
 * placeholders_gone.c: a placeholder moved where this run does not look.
 *
 * A placeholder (placeholders.c) is not its message: the server holds the
 * only whole copy. moves_local.c pairs a placeholder moved into another
 * folder of the run with its gone row and moves the message on the server.
 * A reader may also move it into a local folder the account does not sync
 * (outside `folders`), or into a synced folder this run leaves out
 * (`--folder INBOX`): the run sees only a row whose file is gone, which for
 * a whole message is right to delete on the server (its bytes are still on
 * disk), but for a placeholder would lose the message.
 *
 * So a gone row marked as a placeholder (rare: only those) is looked for
 * in the Maildir root's other folders before it may be deleted: a file
 * there that still carries a placeholder's marks
 * (message_has_placeholder_marks) with the row's Message-ID (and, when its
 * field says one, the row's size) HOLDS the row: its message stays on the
 * server, and every sync warns where the placeholder is, until the user
 * moves it back (then it is the row's file again, or paired as a move) or
 * removes it (then the deletion goes to the server, as for any message).
 *
 * Held rather than fetched in full into that file's place: nothing is
 * downloaded without the user asking, nothing is written into a folder the
 * account does not manage, and the user keeps both choices (`mailsync
 * fetch` can only replace placeholders of synced folders; a flagged
 * placeholder there is not one this account looks at).
 *
 * Cost: only for gone placeholder rows; each file of the other folders up
 * to PLACEHOLDER_WINDOW bytes is read once (larger files are no
 * placeholder), and the search ends when every such row is held.
 */
#include "sync/engine/push_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sync/log.h"
#include "sync/message.h"
#include "sync/util.h"

static bool in_run(const struct selected *sel, size_t nsel, const char *path)
{
    for (size_t i = 0; i < nsel; i++)
        if (strcmp(sel[i].path, path) == 0)
            return true;
    return false;
}

/* Holds the wanted rows (gone placeholder rows nothing paired) that the
 * placeholder in buf[0..n) stands for; returns how many. */
static size_t hold_for(struct lmove **want, size_t nwant, const char *folder, const struct local_msg *m,
                       const char *buf, size_t n)
{
    if (!message_has_placeholder_marks(buf, n))
        return 0;
    char *mid = message_header(buf, n, "Message-ID");
    uint64_t size = message_placeholder_size(buf, n);
    size_t held = 0;
    for (size_t i = 0; i < nwant; i++) {
        struct lmove *g = want[i];
        if (g->state == LMOVE_HELD || !push_same_id(g->message_id, mid) ||
            (size && g->size != size) || (!size && !(mid && mid[0])))
            continue;
        g->state = LMOVE_HELD;
        held++;
        log_msg(LOG_WARN, "%s: UID %u (gone from there locally) has its placeholder in %s, a folder this run does not "
                          "sync (%s): that message stays on the server, its only whole copy; move the placeholder "
                          "back to fetch it, or remove the placeholder to delete the message",
                g->src->name, g->uid, log_escape(folder, strlen(folder), 100),
                log_escape(m->name, strlen(m->name), 100));
    }
    free(mid);
    return held;
}

size_t placeholders_hold_elsewhere(struct run *r, const struct selected *sel, size_t nsel, struct lmove *gone,
                                   size_t ngone)
{
    struct lmove **want = xcalloc(ngone + 1, sizeof *want);
    size_t nwant = 0, held = 0;
    for (size_t i = 0; i < ngone; i++)
        if (gone[i].placeholder && !gone[i].dst && gone[i].state == LMOVE_PENDING)
            want[nwant++] = &gone[i];
    char **paths = NULL;
    size_t np = 0;
    if (nwant && r->rootfd >= 0)
        folders_find_local(r, &paths, &np);
    char *buf = np ? xmalloc(PLACEHOLDER_WINDOW) : NULL;
    for (size_t i = 0; i < np; i++) {
        struct maildir_folder *mf = NULL;
        struct local_msg *local = NULL;
        size_t nlocal = 0;
        struct ms_error e = {0};
        if (held < nwant && !in_run(sel, nsel, paths[i]) &&
            maildir_folder_open(r->rootfd, paths[i], false, &mf, &e) == MS_OK &&
            maildir_scan_names(mf, &local, &nlocal, &e) == MS_OK)
            for (size_t k = 0; k < nlocal && held < nwant; k++) {
                ssize_t n = placeholder_head_of(mf, &local[k], buf, true);
                if (n > 0)
                    held += hold_for(want, nwant, paths[i], &local[k], buf, (size_t)n);
            }
        maildir_msgs_free(local, nlocal);
        maildir_folder_close(mf);
        free(paths[i]);
    }
    free(paths);
    free(buf);
    free(want);
    return held;
}
