/* A minimal libfcgi responder for the fcgikit.spawn tests.
 *
 * Answers every request with its pid and how many requests this process has
 * served, so a test can tell the children apart. "?sleep=MS" in the query
 * string makes it sleep that long first (the drain and reload tests keep
 * requests in flight with it); the sleep survives signals, as a real request
 * being worked on would.
 *
 * Build: gcc -O2 -o hello_fcgi hello_fcgi.c -lfcgi
 */
#include <fcgi_stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long requested_sleep_ms(const char *query)
{
    const char *found = query ? strstr(query, "sleep=") : NULL;
    return found ? atol(found + strlen("sleep=")) : 0;
}

static void sleep_through_signals(long ms)
{
    struct timespec left = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&left, &left) == -1 && errno == EINTR)
        ;
}

int main(void)
{
    long served = 0;

    while (FCGI_Accept() >= 0) {
        const char *uri = getenv("REQUEST_URI");
        long sleep_ms = requested_sleep_ms(getenv("QUERY_STRING"));

        served++;
        if (sleep_ms > 0)
            sleep_through_signals(sleep_ms);
        printf("Content-Type: text/plain\r\n\r\n");
        printf("hello pid=%d requests=%ld uri=%s\n", (int)getpid(), served, uri ? uri : "");
    }
    return 0;
}
