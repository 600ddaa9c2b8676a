"""Starting `python3 -m fcgikit.serve` for a test, and a concurrent HTTP client."""

from __future__ import annotations

import contextlib
import http.client
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from fcgikit.testing import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
TEST_APP = "tests.apps.wsgi_app:app"


@dataclass
class Served:
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the worker log within {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        return self.log()


@contextlib.contextmanager
def serve_app(tmp_path: Path, app: str = TEST_APP, children: int = 2, *flags: str):
    """The manager + WSGI workers on a free port, stopped (SIGTERM, then kill) afterwards."""
    with pool("serve", ["-F", str(children), *flags, app], tmp_path, name="serve") as served:
        yield served


@contextlib.contextmanager
def pool(module: str, flags: list[str], workdir: Path, name: str = "pool"):
    """`python3 -m fcgikit.<module> -n -a 127.0.0.1 -p PORT *flags` on a free port:
    fcgikit.serve, fcgikit.spawn or fcgikit.cgi; SIGTERM, then kill, afterwards."""
    port = free_port()
    log_path = workdir / f"{name}-{port}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", f"fcgikit.{module}", "-n", "-a", "127.0.0.1", "-p", str(port), *flags],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)
    served = Served(port, process, log_path)
    try:
        wait_for_port("127.0.0.1", port, timeout=15, process=process)
        yield served
    finally:
        stop(process)


@contextlib.contextmanager
def serve_on_unix_socket(tmp_path: Path, *flags: str, app: str = TEST_APP):
    """`python3 -m fcgikit.serve -n -s tmp_path/w.sock *flags app`: yields (socket path, log
    path, process) once the socket exists; SIGTERM, then kill, afterwards (the exit status
    is then the process's returncode)."""
    path = tmp_path / "w.sock"
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "fcgikit.serve", "-n", "-s", str(path), *flags, app],
                                   cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not path.exists():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        yield str(path), log_path, process
    finally:
        stop(process)


def stop(process: subprocess.Popen, timeout: float = 15) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def fastcgi_location(port: int, *, keep_conn: bool = True, upstream: str | None = None) -> str:
    target = upstream or f"127.0.0.1:{port}"
    return (
        "location / {\n"
        "    include fastcgi_params;\n"
        f"    fastcgi_pass {target};\n"
        f"    fastcgi_keep_conn {'on' if keep_conn else 'off'};\n"
        "}\n"
    )


def keepalive_upstream(name: str, port: int, keepalive: int = 16) -> str:
    return f"upstream {name} {{\n    server 127.0.0.1:{port};\n    keepalive {keepalive};\n}}\n"


@dataclass
class Outcome:
    index: int
    ok: bool
    seconds: float
    detail: str = ""
    body: bytes = field(default=b"", repr=False)


def numbered_response_ok(i: int, status: int, body: bytes) -> bool:
    """The test app's /n?i=N answers `n=N pid=...`: a response meant for another request fails."""
    return status == 200 and body.startswith(f"n={i} pid=".encode())


def load(base_url: str, total: int, parallel: int, path_for=lambda i: f"/n?i={i}",
         check=numbered_response_ok, *, body_for=None, stop: threading.Event | None = None) -> list[Outcome]:
    """`total` requests over `parallel` kept-alive HTTP connections; each response checked.

    GETs of path_for(i), or POSTs of body_for(i) when given; `stop` ends the load early.
    """
    parts = urlsplit(base_url)
    local = threading.local()

    def one(i: int) -> Outcome | None:
        if stop is not None and stop.is_set():
            return None
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        start = time.monotonic()
        try:
            if body_for is None:
                conn.request("GET", path_for(i))
            else:
                conn.request("POST", path_for(i), body=body_for(i),
                             headers={"Content-Type": "application/octet-stream"})
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            local.conn = None
            return Outcome(i, False, time.monotonic() - start, repr(exc))
        seconds = time.monotonic() - start
        ok = bool(check(i, response.status, body))
        return Outcome(i, ok, seconds, "" if ok else f"{response.status} {body[:200]!r}", body)

    with ThreadPoolExecutor(parallel) as pool:
        return [outcome for outcome in pool.map(one, range(total)) if outcome is not None]


def summary(outcomes: list[Outcome]) -> str:
    failed = [o for o in outcomes if not o.ok]
    slowest = max(outcomes, key=lambda o: o.seconds)
    return (f"{len(outcomes)} requests, {len(failed)} failed (first: {failed[:3]}), "
            f"slowest {slowest.seconds:.3f}s (#{slowest.index})")
