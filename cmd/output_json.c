/* SPDX-License-Identifier: MIT */
/*
 * output_json.c: the versioned frame of the --json documents
 * (output_json.h). The members after "command" are written by output.c.
 */
#include "cmd/output_json.h"

#include "cmd/output.h"

void output_json_open(FILE *out, const char *command)
{
    fputs("{\"schema_version\":\"" OUTPUT_JSON_SCHEMA_VERSION "\",\"command\":", out);
    output_json_string(out, command);
}
