/* A small static launcher for RSS measurements. ru_maxrss after an exec still reports the memory
 * of the process that called exec — for anything the benchmark spawns, the benchmark's own — so
 * the shim forks (from its own tiny image) and execs the plugin, waits, and writes the plugin's
 * peak RSS in KiB to the file named by $CNM_BENCH_RSS_FILE. stdin/stdout pass through; the exit
 * status is the plugin's. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

int main(int argc, char** argv)
{
    if (argc < 2)
        return 127;
    pid_t pid = fork();
    if (pid == 0) {
        execve(argv[1], argv + 1, environ);
        _exit(127);
    }
    int status = 0;
    struct rusage usage;
    if (pid < 0 || wait4(pid, &status, 0, &usage) < 0)
        return 127;
    const char* out = getenv("CNM_BENCH_RSS_FILE");
    if (out) {
        FILE* f = fopen(out, "w");
        if (f) {
            fprintf(f, "%ld\n", usage.ru_maxrss);
            fclose(f);
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}
