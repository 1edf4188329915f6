/* SPDX-License-Identifier: MIT */
/*
 * views.c: the three views of a folder (state rows, local scan, server
 * listing) as the planner takes them, and the scan looked up by unique
 * name: what pull, push, the delivery, rematch and status share.
 */
#include "sync/engine/engine_int.h"

#include <stdlib.h>
#include <string.h>

#include "sync/local/maildir.h"
#include "sync/plan/plan.h"
#include "sync/util.h"

static int cmp_key_local(const void *key, const void *elem)
{
    return strcmp(key, ((const struct local_msg *)elem)->uniq);
}

struct local_msg *views_local_by_uniq(struct local_msg *l, size_t n, const char *uniq)
{
    return n ? bsearch(uniq, l, n, sizeof *l, cmp_key_local) : NULL;
}

void views_plan_input(struct plan_input *in, const struct account *a, const struct engine_options *opt,
                      const struct state_msg *s, size_t ns, const struct local_msg *l, size_t nl,
                      const struct remote_msg *rm, size_t nr)
{
    struct plan_state *ps = xcalloc(ns, sizeof *ps);
    struct plan_local *pl = xcalloc(nl, sizeof *pl);
    struct plan_remote *pr = xcalloc(nr, sizeof *pr);
    for (size_t i = 0; i < ns; i++)
        ps[i] = (struct plan_state){s[i].uid, s[i].uniq, s[i].flags, s[i].keywords};
    for (size_t i = 0; i < nl; i++)
        pl[i] = (struct plan_local){l[i].uniq, l[i].flags};
    for (size_t i = 0; i < nr; i++)
        pr[i] = (struct plan_remote){rm[i].uid, rm[i].flags, rm[i].keywords, rm[i].size};
    *in = (struct plan_input){.state = ps, .nstate = ns, .local = pl, .nlocal = nl, .remote = pr,
                              .nremote = nr, .mode = a->mode, .max_size = a->max_size,
                              .placeholders = a->placeholders, .newest_first = false,
                              .max_delete = a->max_delete, .force = opt->force};
}

void views_plan_input_free(struct plan_input *in)
{
    free((void *)in->state);
    free((void *)in->local);
    free((void *)in->remote);
    memset(in, 0, sizeof *in);
}
