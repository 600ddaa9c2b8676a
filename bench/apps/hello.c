/* The benchmark's libfcgi C hello: run unchanged under spawn-fcgi and fcgikit.spawn. */
#include <fcgi_stdio.h>

int main(void)
{
    while (FCGI_Accept() >= 0) {
        printf("Content-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, world!\n");
    }
    return 0;
}
