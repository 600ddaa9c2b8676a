"""`python3 -m bench.inprocess [--src DIR]`: fcgikit.serve's instructions per request, deterministic.

`bench.instructions` sends its requests one after another from another process, so
whether the worker's second accept of a burst finds the next connection already
there is a race: its count swings by several thousand instructions from run to run,
more than most changes to the request path move it. This counts, under callgrind,
one process that queues 50 hello requests, each on its own connection (as nginx
without keep_conn), serves them with `RequestLoop` and the WSGI handler, and so on
for 1,000 requests (their REMOTE_PORT changing, as nginx's do: a new client port
per connection): every accept of a burst finds its connection, no run races
another, and the count repeats to within a few dozen instructions. The client's
share (connect, send, receive) is in the count too, the same on both sides of an A/B.

    python3 -m bench.inprocess                  # this tree's src/
    python3 -m bench.inprocess --src DIR        # another checkout's src/ (A/B)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from .instructions import real_program
from .scenarios import APPS_DIR

BATCH = 50
TOTAL = re.compile(rb"^(?:summary|totals): (\d+)", re.MULTILINE)


def serve_requests(count: int) -> None:
    """The measured program: `count` hello requests, BATCH connections queued at a time."""
    import socket

    from hello_wsgi import app

    from fcgikit.fastcgi.client import ClientConnection
    from fcgikit.worker import wsgi_handler
    from fcgikit.worker.loop import RequestLoop

    from .instructions import NGINX_LIKE_PARAMS

    # REMOTE_PORT is the client's port, a new one on each connection nginx gets (wrk's
    # 64 connections in the benchmark): the same 64 requests in both runs of a count.
    wires = [ClientConnection().request(1, {**NGINX_LIKE_PARAMS, "REMOTE_PORT": str(40000 + port)}, b"",
                                        keep_conn=False) for port in range(64)]
    sent = 0
    listen = socket.socket()
    listen.bind(("127.0.0.1", 0))
    listen.listen(128)
    address = listen.getsockname()
    handler = wsgi_handler(app)

    def queue(n: int) -> list:
        nonlocal sent
        clients = []
        for _ in range(n):
            client = socket.create_connection(address)
            client.sendall(wires[sent % len(wires)])
            sent += 1
            clients.append(client)
        return clients

    previous, current = [], queue(min(BATCH, count))
    done = 0
    for request in RequestLoop(listen, max_requests=count):
        request.app_status = handler(request) or 0
        done += 1
        if done % BATCH == 0 and done < count:
            for client in previous:  # answered: the loop finished them before this batch
                client.close()
            previous, current = current, queue(min(BATCH, count - done))
    for client in previous + current:
        if b"Hello, world!" not in client.recv(65536):
            raise RuntimeError("unexpected answer")


def count(requests: int, src: str | None, work: Path) -> int:
    out = work / f"cg.{requests}"
    root = Path(__file__).parent.parent
    # This tree's src/ unless told otherwise: not the fcgikit installed in site-packages,
    # which may be another checkout's.
    env = dict(os.environ, PYTHONHASHSEED="0",
               PYTHONPATH=os.pathsep.join([src or str(root / "src"), str(APPS_DIR), str(root)]))
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
           *real_program([sys.executable, "-m", "bench.inprocess", "--serve", str(requests)])]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    match = TOTAL.search(out.read_bytes())
    if match is None:
        raise RuntimeError("callgrind wrote no total")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.inprocess", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", help="import fcgikit from this directory (A/B of a change)")
    parser.add_argument("--requests", type=int, default=1000, help="the extra requests of the second run")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the measured process itself
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve_requests(args.serve)
        return 0
    with tempfile.TemporaryDirectory(prefix="fcgikit-inprocess-") as work:
        few, many = (count(n, args.src, Path(work)) for n in (BATCH, BATCH + args.requests))
    print(f"fcgikit.serve  {(many - few) / args.requests:10.0f} instructions per request (in-process, deterministic)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
