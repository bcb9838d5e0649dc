/* log.c - the daemon's log lines. Before it detaches they go to stderr; after, to the file of
 * -o log=FILE if given, else to syslog (fuse_daemonize points stderr at /dev/null, where they
 * would be lost). A log file gets them from the start, each with a UTC time. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "wcfs.h"

static FILE *log_file;
static int detached;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

int wcfs_log_open(const char *path) {
    if (!path) return 0;
    log_file = fopen(path, "ae"); /* before fuse_daemonize changes the directory to / */
    if (!log_file) return -1;
    setvbuf(log_file, NULL, _IOLBF, 0);
    return 0;
}

void wcfs_log_detached(void) {
    detached = 1;
    if (!log_file) openlog("wcodecfs", LOG_PID, LOG_DAEMON);
}

void wcfs_log_close(void) {
    if (log_file) fclose(log_file);
    else if (detached) closelog();
    log_file = NULL;
}

void wcfs_log(const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&lock);
    if (log_file) {
        char when[32];
        time_t now = time(NULL);
        struct tm tm;
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
        fprintf(log_file, "%s wcodecfs: %s\n", when, line);
    }
    if (!detached) fprintf(stderr, "wcodecfs: %s\n", line);
    else if (!log_file) syslog(LOG_WARNING, "%s", line);
    pthread_mutex_unlock(&lock);
}

void wcfs_log_result(atomic_int *last, int rc, const char *what, const char *msg) {
    int was = atomic_exchange(last, rc);
    if (rc && rc != was) wcfs_log("%s; serving %s", msg, rc == -ENOENT ? "ENOENT" : rc == -EACCES ? "EACCES" : "EIO");
    else if (!rc && was) wcfs_log("%s: answering again", what);
}
