/* SPDX-License-Identifier: MIT */
/*
 * output_json.h: the versioned frame of every --json document.
 *
 * Each document (pull, push, sync, watch's passes, status, check, folders,
 * the error document, and the copy a hook reads on its stdin) starts with
 * "schema_version" and "command". contrib/json/mailsync.schema.json
 * describes every document of this version; the integration tests
 * validate what the program prints against it.
 *
 * Bump rules (also in the schema's description and mailsync(1)): the
 * version is "MAJOR.MINOR". MINOR grows when members are added (a script
 * that ignores members it does not know keeps working); MAJOR grows, and
 * MINOR goes back to 0, when a member is removed or renamed or its type or
 * meaning changes. The schema file changes in the same commit, its
 * "schema_version" const included.
 */
#ifndef MAILSYNC_OUTPUT_JSON_H
#define MAILSYNC_OUTPUT_JSON_H

#include <stdio.h>

#define OUTPUT_JSON_SCHEMA_VERSION "1.2"

/* Open a document: {"schema_version":"1.1","command":command (or null).
 * The caller writes the other members and the closing brace. */
void output_json_open(FILE *out, const char *command);

#endif
