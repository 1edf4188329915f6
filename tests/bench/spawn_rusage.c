/* SPDX-License-Identifier: MIT */
/* spawn_rusage.c: run a command, report its wall time and peak RSS.
 *
 *   spawn_rusage RESULT_FILE PROGRAM [ARG...]
 *
 * Used by bench.py. Peak RSS (ru_maxrss) counts the largest RSS a process
 * ever had, including the moment it was forked: a tool forked straight from
 * the Python benchmark would inherit Python's RSS as its "peak". This small
 * helper forks the tool from a process of a few hundred KiB instead, waits
 * for it with wait4() and writes one line to RESULT_FILE:
 *
 *   <exit status as from waitpid> <ru_maxrss KiB> <wall nanoseconds> <CPU nanoseconds>
 *
 * (CPU: ru_utime + ru_stime, all of the tool's threads and the children it
 * waited for: the tool's own work, which the machine's load does not inflate
 * the way it does the wall time.)
 * (a program that cannot be started shows as exit status 127). Its own exit
 * code: 0 when the line was written, 125 when the helper itself failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: spawn_rusage RESULT_FILE PROGRAM [ARG...]\n");
        return 125;
    }
    long long t0 = now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        perror("spawn_rusage: fork");
        return 125;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        fprintf(stderr, "spawn_rusage: %s: %s\n", argv[2], strerror(errno));
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("spawn_rusage: wait4");
            return 125;
        }
    }
    long long wall = now_ns() - t0;
    FILE *f = fopen(argv[1], "w");
    if (f == NULL) {
        perror("spawn_rusage: result file");
        return 125;
    }
    long long cpu = ((long long)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
                    ((long long)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
    fprintf(f, "%d %ld %lld %lld\n", status, ru.ru_maxrss, wall, cpu);
    if (fclose(f) != 0) {
        perror("spawn_rusage: result file");
        return 125;
    }
    return 0;
}
