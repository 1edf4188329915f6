/* SPDX-License-Identifier: MIT */
/*
 * help.h: the help of each command (`mailsync help CMD`, `mailsync CMD
 * --help`): its usage line, what it does, the options that apply to it and
 * an example or two. The general text (`mailsync --help`) and import's
 * stay in main.c beside the option parser.
 */
#ifndef MAILSYNC_HELP_H
#define MAILSYNC_HELP_H

/* The help text of command, printed as it stands (not a format), or NULL
 * when this file has none (an unknown command; import, whose text is
 * main.c's). */
const char *help_command_text(const char *command);

#endif
