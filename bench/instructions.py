"""`python3 -m bench.instructions`: CPU instructions one worker spends per request, by callgrind.

Seconds are what users feel, but on a shared 2-core machine they swing with everyone
else's load; instructions counted by valgrind's callgrind do not (the same program, input
and environment give the same count). Each Python server runs with one worker process
under callgrind, is sent a few hundred, then a thousand more, hello requests straight over
FastCGI (a new connection each, as nginx without keep_conn does), and the difference
between two runs divided by the extra requests is its cost per request, user space only
(the kernel's share, about the same for all, is not counted).

    python3 -m bench.instructions                 # fcgikit.serve, flup, uWSGI
    python3 -m bench.instructions --src DIR       # fcgikit.serve from another checkout's src/
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .scenarios import APPS_DIR, HOST

# What nginx sends for `GET /` with the benchmark's config (bench/nginxconf.py).
NGINX_LIKE_PARAMS = {
    "QUERY_STRING": "", "REQUEST_METHOD": "GET", "CONTENT_TYPE": "", "CONTENT_LENGTH": "",
    "REQUEST_URI": "/", "DOCUMENT_URI": "/", "DOCUMENT_ROOT": str(APPS_DIR / "www"),
    "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_SCHEME": "http", "GATEWAY_INTERFACE": "CGI/1.1",
    "SERVER_SOFTWARE": "nginx", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "HTTP_PROXY": "",
    "SERVER_ADDR": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_NAME": "localhost",
    "HTTP_HOST": "127.0.0.1", "SCRIPT_NAME": "", "PATH_INFO": "/", "HTTP_USER_AGENT": "wrk",
}
TOTAL = re.compile(rb"^(?:summary|totals): (\d+)", re.MULTILINE)


def server_commands(port: int) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "fcgikit.serve": [python, "-m", "fcgikit.serve", "-n", "-a", HOST, "-p", str(port), "-F", "1",
                          "hello_wsgi:app"],
        "flup": [python, str(APPS_DIR / "run_flup.py"), HOST, str(port), "1"],
        "uwsgi": ["uwsgi", "--fastcgi-socket", f"{HOST}:{port}", "--wsgi-file", str(APPS_DIR / "hello_wsgi.py"),
                  "--callable", "app", "--master", "--processes", "1", "--disable-logging", "--die-on-term"],
    }


def real_program(argv: list[str]) -> list[str]:
    """valgrind must see the interpreter itself, not a wrapper script such as pyenv's shim."""
    path = os.path.realpath(argv[0] if os.path.isabs(argv[0]) else subprocess.check_output(
        ["sh", "-c", f'command -v "{argv[0]}"'], text=True).strip())
    with open(path, "rb") as f:
        if f.read(2) == b"#!":
            path = os.path.realpath(sys.executable) if "python" in argv[0] else path
    return [path, *argv[1:]]


def send_requests(port: int, count: int) -> None:
    from fcgikit.fastcgi.client import fcgi_request

    for _ in range(count):
        response = fcgi_request((HOST, port), params=NGINX_LIKE_PARAMS, timeout=60.0)
        status, _, body = response.http()
        if status != 200 or body != b"Hello, world!\n":
            raise RuntimeError(f"unexpected answer {status} {body[:100]!r}")


def worker_instructions(argv: list[str], port: int, requests: int, out_dir: Path, env: dict) -> int:
    """The largest per-process instruction count (the worker) after `requests` requests."""
    from fcgikit.testing import wait_for_port

    for old in out_dir.glob("cg.*"):
        old.unlink()
    cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={out_dir}/cg.%p",
           *real_program(argv)]
    process = subprocess.Popen(cmd, cwd=APPS_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        wait_for_port(HOST, port, 120, process=process)
        send_requests(port, 1)
        time.sleep(1.0)  # every worker up (prefork servers start theirs after listening)
        send_requests(port, requests)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    counts = [int(m.group(1)) for path in out_dir.glob("cg.*") for m in [TOTAL.search(path.read_bytes())] if m]
    if not counts:
        raise RuntimeError(f"callgrind wrote no profile for {argv[0]} (killed before it could?)")
    return max(counts)


def run_once(name: str, requests: int, out_dir: Path, env: dict) -> int:
    from fcgikit.testing import free_port

    port = free_port()
    return worker_instructions(server_commands(port)[name], port, requests, out_dir, env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.instructions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="fcgikit.serve,flup,uwsgi")
    parser.add_argument("--requests", type=int, default=1000, help="the extra requests of the second run")
    parser.add_argument("--src", help="import fcgikit from this directory (A/B of a change)")
    args = parser.parse_args(argv)
    # A fixed hash seed: dict layouts, hence instruction counts, the same from run to run.
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=os.pathsep.join(filter(None, [args.src, str(APPS_DIR)])))
    base = 200
    with tempfile.TemporaryDirectory(prefix="fcgikit-instructions-") as work:
        for name in args.servers.split(","):
            # The first run also writes the .pyc files a changed source needs: not counted.
            _, few, many = [run_once(name, count, Path(work), env) for count in (1, base, base + args.requests)]
            print(f"{name:14} {(many - few) / args.requests:10.0f} instructions per request", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
