"""A web server that leaves once it has the whole response (lighttpd over a Unix
socket closes as soon as the response's end arrives, before END_REQUEST) is no
failure: the worker says nothing. One that leaves with part of the body unsent is
one, and the worker logs it."""

import socket
import time

import pytest

from fcgikit.fastcgi import ClientConnection, ResponseReceived
from fcgikit.fastcgi.client import get_params

from .serve_support import serve_on_unix_socket

pytestmark = pytest.mark.integration


def read_body_then_close(path: str, uri: str, body_size: int) -> bytes:
    """Sends a GET, reads STDOUT until `body_size` bytes of body arrived, closes."""
    conn = ClientConnection()
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(path)
    sock.sendall(conn.request(1, get_params(uri), b"", keep_conn=True))
    stdout = b""
    while b"\r\n\r\n" not in stdout or len(stdout.split(b"\r\n\r\n", 1)[1]) < body_size:
        data = sock.recv(65536)
        assert data, f"the worker closed before the body came: {stdout!r}"
        stdout += b"".join(event.stdout for event in conn.receive(data) if isinstance(event, ResponseReceived))
    sock.close()
    return stdout.split(b"\r\n\r\n", 1)[1]


def test_a_peer_leaving_after_the_whole_body_is_not_warned_about(tmp_path):
    with serve_on_unix_socket(tmp_path, "-F", "1") as (path, log_path, _):
        for i in range(3):
            # The body is out (a block of its own); the response ends 0.3 s later.
            assert read_body_then_close(path, f"/parts?n=1&pause=0.3&i={i}", 7) == b"part 0\n"
        time.sleep(1.0)  # the three requests have ended by now
        fetched = read_body_then_close(path, "/n?i=9", len(b"n=9 pid="))  # the worker serves on
        assert fetched.startswith(b"n=9 pid="), fetched
        log = log_path.read_text()
    assert "WARNING" not in log and "/parts" not in log, log


def test_a_peer_leaving_with_part_of_the_body_unsent_is_warned_about(tmp_path):
    with serve_on_unix_socket(tmp_path, "-F", "1") as (path, log_path, _):
        # Two blocks 0.3 s apart: the client leaves after the first.
        assert read_body_then_close(path, "/parts?n=2&pause=0.3", 7) == b"part 0\n"
        deadline = time.monotonic() + 10
        while "during GET /parts" not in (log := log_path.read_text()):
            assert time.monotonic() < deadline, log
            time.sleep(0.05)
    assert "WARNING" in log and "sending failed" in log, log
