"""fcgikit.spawn against clients and faults that once stopped a pool for good:
clients that leave in the middle of a request, programs that die after serving,
and a manager killed with SIGKILL (issue 12, points 1 and 5)."""

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from fcgikit.fastcgi import FCGI_STDIN, ClientConnection, encode_record
from fcgikit.fastcgi.client import exchange, fcgi_request, get_params
from tests.integration.spawn_support import wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HELLO_ACCEPT = str(REPO / "apps" / "hello_accept.py")
LISTEN = ["-a", "127.0.0.1", "-p", "0"]


def cut_post(port: int, reset: bool) -> None:
    """A POST announcing 100,000 bytes whose client leaves after 10 of them."""
    params = get_params("/upload", "POST", CONTENT_LENGTH="100000")
    full = ClientConnection().request(1, params, b"", keep_conn=False)
    head = full[: full.rindex(encode_record(FCGI_STDIN, 1))]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head + encode_record(FCGI_STDIN, 1, b"0123456789"))
        time.sleep(0.01)  # the child is reading the body now
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def keepalive_probes(port: int, count: int) -> list[bytes]:
    """`count` GETs on one kept-alive connection; each answer's body."""
    bodies = []
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        conn = ClientConnection()
        for n in range(count):
            answer = exchange(sock, conn, get_params(f"/probe?n={n}"), keep_conn=True)
            bodies.append(answer.stdout.partition(b"\r\n\r\n")[2])
    return bodies


def test_clients_leaving_mid_post_stop_neither_the_example_accept_app_nor_the_pool(pools):
    """The repro of issue 12 #1: 40 POSTs cut in the middle of the body used to kill
    every child of `python3 apps/hello_accept.py` and make the manager give up."""
    pool = pools(LISTEN + ["-F", "4"], [sys.executable, HELLO_ACCEPT])
    pool.wait_children(4)
    port = pool.port
    for n in range(40):
        cut_post(port, reset=bool(n % 2))
    bodies = keepalive_probes(port, 20)
    assert all(b"Hello from an accept loop" in body for body in bodies), bodies
    time.sleep(0.5)  # a child that died would show in the log and the counters by now
    assert pool.process.poll() is None, pool.log()
    log = pool.log()
    assert "giving up" not in log and "Traceback" not in log and "replacing it" not in log, log
    assert pool.status()["restarts"] == 0, log
    assert log.count("before the request body ended") + log.count("reading the request body failed") == 40, log


DIES_AFTER_SERVING = """\
import os
import fcgikit

for request in fcgikit.accept():
    request.stdout.write(b"Content-Type: text/plain\\r\\n\\r\\nserved by %d\\n" % os.getpid())
    request.finish()  # the answer is out
    os._exit(1)  # then it dies, as a program that crashes after every request
"""


def test_a_program_that_dies_after_every_request_is_respawned_not_given_up_on(pools, tmp_path):
    """Children that served are no boot failures, however soon they die: the pool
    backs off but never stops (a client able to kill a child cannot stop the pool)."""
    program = tmp_path / "dies_after_serving.py"
    program.write_text(DIES_AFTER_SERVING)
    pool = pools(LISTEN + ["-F", "2"], [sys.executable, str(program)])
    pool.wait_children(2)
    port = pool.port
    time.sleep(1.5)  # the pool has shown it boots: its children lived past their first second
    served_by = set()
    for n in range(8):  # the first manager gave up at the 7th
        answer = fcgi_request(("127.0.0.1", port), get_params(f"/n{n}"), timeout=30)
        assert answer.complete and b"served by" in answer.stdout, pool.log()
        served_by.add(answer.stdout.rsplit(b" ", 1)[1])
    assert len(served_by) == 8  # each by a new child: every one died after its request
    # The last children's exits are seen at the manager's next look (a quarter second, more
    # while it backs off): read the log once all 8 are in it, not right after the 8th answer
    # (the 7th and 8th child were started together and can both still be unreaped then).
    wait_for(lambda: pool.log().count("replacing it") >= 8 or "giving up" in pool.log(), 15,
             "the manager to see all 8 children exit", pool.log)
    assert pool.process.poll() is None, pool.log()
    log = pool.log()
    assert "giving up" not in log and log.count("replacing it") >= 8, log


def test_a_program_that_never_boots_is_still_given_up_on(pools, tmp_path):
    program = tmp_path / "broken.py"
    program.write_text("raise SystemExit('cannot start: no config')\n")
    pool = pools(LISTEN + ["-F", "2"], [sys.executable, str(program)])
    assert pool.wait(30) == 1
    assert "giving up: children die at boot: 5 in a row" in pool.log()


# -- point 5: children never outlive their manager ------------------------------

WSGI_APP = """\
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello from wsgi"]
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.settimeout(2)
            sock.sendall(ClientConnection().request(1, get_params("/"), b""))
            return sock.recv(1) == b""  # connected to a dying socket: closed, nothing answered
    except OSError:
        return True


@pytest.mark.parametrize("kind", ["libfcgi", "accept", "serve"])
def test_children_exit_when_their_manager_is_killed_with_sigkill(pools, hello_fcgi, tmp_path, kind):
    if kind == "libfcgi":
        pool = pools(LISTEN + ["-F", "3"], [hello_fcgi])
    elif kind == "accept":
        pool = pools(LISTEN + ["-F", "3"], [sys.executable, HELLO_ACCEPT])
    else:
        (tmp_path / "wsgi_hello.py").write_text(WSGI_APP)
        pool = pools(LISTEN + ["-F", "3", "-d", str(tmp_path), "wsgi_hello:app"],
                     command=[sys.executable, "-m", "fcgikit.serve"])
    pool.wait_children(3)
    port = pool.port
    children = pool.pids()
    answer = fcgi_request(("127.0.0.1", port), get_params("/"), timeout=10)
    assert answer.complete and b"hello" in answer.stdout.lower()
    pool.process.kill()  # SIGKILL: the manager cannot tell anyone
    pool.process.wait()
    try:
        wait_for(lambda: not any(_alive(pid) for pid in children), 5.0,
                 f"children {sorted(children)} to exit after their manager died", pool.log)
        assert _refused(port), "something still accepts on the pool's port"
    finally:
        for pid in children:  # when the test fails: leave no orphan behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
