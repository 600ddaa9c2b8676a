"""The example accept-loop program: libfcgi's `while (FCGI_Accept() >= 0)` in Python.

Run it the way any FastCGI program is run, with the listening socket on fd 0:
    python3 -m fcgikit.spawn -p 9000 -F 2 -n -- python3 apps/hello_accept.py
(or spawn-fcgi -p 9000 -n -- /usr/bin/python3 apps/hello_accept.py).
"""

import os

import fcgikit


def main() -> None:
    count = 0
    for request in fcgikit.accept():
        count += 1
        env = request.environ
        # The POST body, if any. A client that leaves half-way cannot stop this loop:
        # the body then just ends early (request.connection_lost says so), what is
        # written goes nowhere, and the loop goes on to the next request.
        body = request.stdin.read()
        request.stdout.write(b"Content-Type: text/plain\r\n\r\n")
        request.stdout.write(
            f"Hello from an accept loop (pid {os.getpid()}, request {count})\n"
            f"{env.get('REQUEST_METHOD')} {env.get('REQUEST_URI')}\n"
            f"query: {env.get('QUERY_STRING', '')}\n"
            f"body: {len(body)} bytes\n".encode()
        )


if __name__ == "__main__":
    main()
