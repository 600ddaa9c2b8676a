"""Broken peers straight on the worker port, while nginx traffic goes on: each bad
connection is closed and logged, and every request through nginx still succeeds."""

import random
import socket
import struct
import threading
import time

import pytest

from fcgikit.fastcgi import (
    FCGI_BEGIN_REQUEST,
    FCGI_PARAMS,
    FCGI_STDIN,
    ClientConnection,
    encode_begin_request,
    encode_record,
)
from fcgikit.testing.nginx import Nginx

from .serve_support import fastcgi_location, load, serve_app, summary

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path):
    with serve_app(tmp_path, children=2) as served, Nginx(fastcgi_location(served.port)) as ngx:
        yield served, ngx


class BackgroundLoad:
    """nginx traffic running while a test misbehaves on the worker port."""

    def __init__(self, url: str) -> None:
        self.url, self.outcomes, self._stop = url, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.outcomes += load(self.url, total=40, parallel=8)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)


def raw_connection(served) -> tuple[socket.socket, str]:
    sock = socket.create_connection(served.address, timeout=5)
    return sock, f"127.0.0.1:{sock.getsockname()[1]}"


def closed_by_worker(sock: socket.socket) -> bool:
    """True when the worker closes the connection (EOF or reset) within the timeout."""
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def request_head(path: str, content_length: int, method: str = "POST") -> bytes:
    params = {"REQUEST_METHOD": method, "SCRIPT_NAME": path, "REQUEST_URI": path, "QUERY_STRING": "",
              "CONTENT_LENGTH": str(content_length), "SERVER_NAME": "t", "SERVER_PORT": "80",
              "SERVER_PROTOCOL": "HTTP/1.1"}
    full = ClientConnection().request(1, params, b"", keep_conn=True)
    return full[: full.rindex(encode_record(FCGI_STDIN, 1))]  # begin + params, no stdin yet


def assert_all_ok(load_run, served, ngx) -> None:
    assert load_run.outcomes and all(o.ok for o in load_run.outcomes), (
        summary(load_run.outcomes) + f"\n{served.log()}\n{ngx.error_log()}")


def test_garbage_bytes_close_that_connection_only(stack):
    served, ngx = stack
    with BackgroundLoad(ngx.url("")) as run:
        sock, peer = raw_connection(served)
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: worker\r\n\r\n")
            assert closed_by_worker(sock)
        log = served.wait_for_log(f"{peer}: protocol error")
        assert log.count(f"{peer}:") == 1, log
        time.sleep(0.5)
    assert_all_ok(run, served, ngx)


def test_a_record_length_claiming_gigabytes_is_refused_without_allocating(stack):
    served, ngx = stack
    with BackgroundLoad(ngx.url("")) as run:
        sock, peer = raw_connection(served)
        with sock:
            huge_pair = struct.pack("!II", 0x80000000 | 2**30, 0x80000000 | 2**30) + b"x" * 16
            sock.sendall(encode_begin_request(1, keep_conn=True) + encode_record(FCGI_PARAMS, 1, huge_pair)
                         + encode_record(FCGI_PARAMS, 1))
            assert closed_by_worker(sock)
        served.wait_for_log(f"{peer}: protocol error")
        time.sleep(0.5)
    assert_all_ok(run, served, ngx)


def test_a_truncated_record_holds_no_worker_and_is_logged_when_dropped(stack):
    served, ngx = stack
    with BackgroundLoad(ngx.url("")) as run:
        socks = [raw_connection(served) for _ in range(4)]  # more than the children: none may stall
        for sock, _ in socks:
            record = encode_begin_request(1, keep_conn=True)
            sock.sendall(record[:5])  # half a header, then nothing
        time.sleep(1.0)  # nginx traffic flows meanwhile
        for sock, _ in socks:
            sock.close()
        for _, peer in socks:
            served.wait_for_log(f"{peer}: closed the connection mid-request")
        time.sleep(0.3)
    assert_all_ok(run, served, ngx)


def test_a_record_cut_short_by_a_close_is_logged(stack):
    served, ngx = stack
    sock, peer = raw_connection(served)
    header = struct.pack("!BBHHBx", 1, FCGI_BEGIN_REQUEST, 1, 8, 0)
    sock.sendall(header + b"\x00\x01")  # 2 of 8 content bytes
    time.sleep(0.2)
    sock.close()
    served.wait_for_log(f"{peer}: closed the connection mid-request")


def test_a_connection_dropped_mid_body_is_logged_once_and_the_worker_goes_on(stack):
    served, ngx = stack
    with BackgroundLoad(ngx.url("")) as run:
        sock, peer = raw_connection(served)
        sock.sendall(request_head("/sha256", 1_000_000) + encode_record(FCGI_STDIN, 1, b"x" * 4000))
        time.sleep(0.3)  # the app is reading the body now
        sock.close()
        log = served.wait_for_log(f"{peer}: the web server closed the connection before the request body ended")
        assert "during POST /sha256" in log
        time.sleep(0.5)
        assert served.log().count(f"{peer}:") == 1, served.log()
    assert_all_ok(run, served, ngx)


def test_a_connection_dropped_while_the_app_works_is_logged_once(stack):
    served, ngx = stack
    sock, peer = raw_connection(served)
    params = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/sleep", "REQUEST_URI": "/sleep?s=0.5",
              "QUERY_STRING": "s=0.5"}
    sock.sendall(ClientConnection().request(1, params, b"", keep_conn=True))
    time.sleep(0.1)
    sock.close()
    log = served.wait_for_log(f"{peer}: the web server closed the connection (its client went away)")
    assert "during GET /sleep?s=0.5" in log
    time.sleep(0.3)
    assert served.log().count(f"{peer}:") == 1


def test_random_garbage_and_cut_requests_leave_the_workers_serving(stack):
    served, ngx = stack
    rng = random.Random(1234)
    valid = request_head("/sha256", 10) + encode_record(FCGI_STDIN, 1, b"0123456789") + encode_record(FCGI_STDIN, 1)
    with BackgroundLoad(ngx.url("")) as run:
        for i in range(40):
            sock, _ = raw_connection(served)
            with sock:
                if i % 2:
                    payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
                else:
                    payload = valid[: rng.randint(1, len(valid) - 1)]  # a valid request, cut anywhere
                try:
                    sock.sendall(payload)
                except OSError:
                    pass  # the worker may already have closed it
        sock, _ = raw_connection(served)
        with sock:
            client = ClientConnection()
            sock.sendall(valid)
            events = []
            while not any(getattr(e, "ended", False) for e in events):
                data = sock.recv(65536)
                assert data, served.log()
                events += client.receive(data)
        assert b"".join(getattr(e, "stdout", b"") for e in events).split(b"\r\n\r\n")[1].startswith(
            b"84d89877f0d4041efb6bf91a16f0248f2fd573e6af05c19f96bedb9f882f7882 10 ")
    assert_all_ok(run, served, ngx)
