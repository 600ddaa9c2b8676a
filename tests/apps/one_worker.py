"""One worker child without a manager, the listening socket on fd 0:

    python3 -m tests.apps.one_worker [--max-requests N] [--allow ADDR,...]
"""

import argparse
import sys

from fcgikit.worker import serve, wsgi_handler
from fcgikit.worker.loop import listening_socket_on_fd0
from tests.apps.wsgi_app import app


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-requests", type=int, default=0)
    parser.add_argument("--allow")
    options = parser.parse_args()
    sock = listening_socket_on_fd0()
    if sock is None:
        print("fd 0 is not a listening socket", file=sys.stderr)
        return 1
    return serve(sock, wsgi_handler(app), max_requests=options.max_requests, allowed_addrs=options.allow)


if __name__ == "__main__":
    sys.exit(main())
