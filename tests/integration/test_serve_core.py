"""The worker loop as one real process on a real socket, without the manager:
idle connections, signals, max_requests, allowed addresses, GET_VALUES, streaming,
and the accept-loop API through nginx."""

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from fcgikit.fastcgi import (
    FCGI_ABORT_REQUEST,
    FCGI_AUTHORIZER,
    FCGI_PARAMS,
    FCGI_REQUEST_COMPLETE,
    FCGI_STDIN,
    FCGI_UNKNOWN_ROLE,
    ClientConnection,
    ResponseReceived,
    encode_params,
    encode_record,
)
from fcgikit.fastcgi.protocol import encode_begin_request
from fcgikit.testing.nginx import Nginx

from .serve_support import REPO, fastcgi_location, serve_app

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def worker(tmp_path, *args: str, argv=None):
    """A worker process with a listening socket on fd 0, as spawn-fcgi hands it over."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(argv or [sys.executable, "-m", "tests.apps.one_worker", *args], cwd=REPO,
                                   stdin=listener.fileno(), stdout=log_file, stderr=subprocess.STDOUT)
    process.address = listener.getsockname()
    process.log = log_path.read_text
    listener.close()
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def params_for(path: str, query: str = "", method: str = "GET", length: int | None = None) -> dict:
    params = {"REQUEST_METHOD": method, "SCRIPT_NAME": path, "QUERY_STRING": query,
              "REQUEST_URI": path + ("?" + query if query else ""), "SERVER_NAME": "t", "SERVER_PORT": "80",
              "SERVER_PROTOCOL": "HTTP/1.1"}
    if length is not None:
        params["CONTENT_LENGTH"] = str(length)
    return params


def read_response(sock: socket.socket, client: ClientConnection, request_id: int = 1):
    """stdout and the END_REQUEST event; None as the end when the worker closed first."""
    stdout = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(stdout), None
        for event in client.receive(data):
            if isinstance(event, ResponseReceived) and event.request_id == request_id:
                stdout.append(event.stdout)
                if event.ended:
                    return b"".join(stdout), event


def exchange(sock, params, stdin=b"", keep_conn=True):
    client = ClientConnection()
    sock.sendall(client.request(1, params, stdin, keep_conn=keep_conn))
    return read_response(sock, client)


def connect(process) -> socket.socket:
    deadline = time.monotonic() + 10
    while True:
        try:
            return socket.create_connection(process.address, timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_for_log(process, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.log():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{process.log()}"
        time.sleep(0.02)


def test_one_child_serves_new_connections_while_kept_ones_idle(tmp_path):
    with worker(tmp_path) as proc:
        first = connect(proc)
        body, end = exchange(first, params_for("/n", "i=1"))
        assert end is not None and b"n=1 " in body
        # `first` stays open and idle; a libfcgi child would now ignore everyone else.
        second = connect(proc)
        body, end = exchange(second, params_for("/n", "i=2"))
        assert end is not None and b"n=2 " in body
        body, end = exchange(first, params_for("/n", "i=3"))  # and the kept one is served again
        assert end is not None and b"n=3 " in body
        first.close()
        second.close()


def test_without_keep_conn_the_worker_closes_after_the_response(tmp_path):
    with worker(tmp_path) as proc, connect(proc) as sock:
        body, end = exchange(sock, params_for("/n", "i=1"), keep_conn=False)
        assert end is not None and end.app_status == 0
        assert sock.recv(100) == b""


def test_get_values_is_answered_truthfully(tmp_path):
    with worker(tmp_path) as proc, connect(proc) as sock:
        sock.sendall(ClientConnection().get_values([b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"]))
        (answer,) = ClientConnection().receive(sock.recv(65536))
        values = answer.values
        assert values[b"FCGI_MAX_REQS"] == b"1" and values[b"FCGI_MPXS_CONNS"] == b"0"
        assert int(values[b"FCGI_MAX_CONNS"]) >= 16


def test_unknown_role_is_refused_and_the_worker_goes_on(tmp_path):
    with worker(tmp_path) as proc:
        with connect(proc) as sock:
            client = ClientConnection()
            sock.sendall(client.request(1, params_for("/"), role=FCGI_AUTHORIZER, keep_conn=True))
            _, end = read_response(sock, client)
            assert end is not None and end.protocol_status == FCGI_UNKNOWN_ROLE
        with connect(proc) as sock:
            body, end = exchange(sock, params_for("/n", "i=5"))
            assert b"n=5 " in body


def test_a_role_refused_without_keep_conn_closes_the_connection(tmp_path):
    with worker(tmp_path) as proc, connect(proc) as sock:
        client = ClientConnection()
        sock.sendall(client.request(1, params_for("/"), b"input", role=FCGI_AUTHORIZER, keep_conn=False))
        _, end = read_response(sock, client)
        assert end is not None and end.protocol_status == FCGI_UNKNOWN_ROLE
        assert sock.recv(100) == b""  # spec 3.5: closed after END_REQUEST, no timeout


def send_body_start(sock, client, path: str, total: int, keep_conn: bool) -> None:
    """BEGIN, PARAMS and the first 1000 bytes of a `total`-byte body."""
    full = client.request(1, params_for(path, method="POST", length=total), b"", keep_conn=keep_conn)
    head = full[: full.rindex(encode_record(FCGI_STDIN, 1))]
    sock.sendall(head + encode_record(FCGI_STDIN, 1, b"a" * 1000))


def read_until(sock, client, text: bytes) -> bytes:
    seen = b""
    while text not in seen:
        data = sock.recv(65536)
        assert data, f"the worker closed the connection before sending {text!r}; got {seen!r}"
        seen += b"".join(e.stdout for e in client.receive(data) if isinstance(e, ResponseReceived))
    return seen


def test_abort_while_the_app_reads_the_body_ends_the_request_and_keeps_the_connection(tmp_path):
    with worker(tmp_path) as proc, connect(proc) as sock:
        client = ClientConnection()
        send_body_start(sock, client, "/first-chunk", 4 * 1024 * 1024, keep_conn=True)
        read_until(sock, client, b"first 1000")  # the app now waits for the rest of the body
        sock.sendall(encode_record(FCGI_ABORT_REQUEST, 1))
        rest, end = read_response(sock, client)
        assert end is not None, f"no END_REQUEST after ABORT_REQUEST:\n{proc.log()}"
        assert end.protocol_status == FCGI_REQUEST_COMPLETE
        assert b"total" not in rest  # output after the abort is dropped
        body, end = exchange(sock, params_for("/n", "i=2"))  # the same connection goes on
        assert end is not None and b"n=2 " in body
    assert "aborted the request during POST /first-chunk" in proc.log()


def test_abort_while_the_app_runs_drops_its_output_and_keeps_the_connection(tmp_path):
    with worker(tmp_path) as proc, connect(proc) as sock:
        client = ClientConnection()
        sock.sendall(client.request(1, params_for("/sleep", "s=0.5"), keep_conn=True))
        wait_for_log(proc, "sleep 0.5 started")
        sock.sendall(encode_record(FCGI_ABORT_REQUEST, 1))
        body, end = read_response(sock, client)
        assert end is not None, f"no END_REQUEST after ABORT_REQUEST:\n{proc.log()}"
        assert end.protocol_status == FCGI_REQUEST_COMPLETE and b"slept" not in body
        body, end = exchange(sock, params_for("/n", "i=3"))
        assert end is not None and b"n=3 " in body


def test_abort_without_keep_conn_ends_the_request_then_the_connection(tmp_path):
    with worker(tmp_path) as proc, connect(proc) as sock:
        client = ClientConnection()
        send_body_start(sock, client, "/first-chunk", 4 * 1024 * 1024, keep_conn=False)
        read_until(sock, client, b"first 1000")
        sock.sendall(encode_record(FCGI_ABORT_REQUEST, 1))
        _, end = read_response(sock, client)
        assert end is not None and end.protocol_status == FCGI_REQUEST_COMPLETE
        assert sock.recv(100) == b""


@pytest.mark.parametrize("keep_conn", [True, False])
def test_abort_before_the_params_ended_is_answered_without_the_app(tmp_path, keep_conn):
    with worker(tmp_path) as proc, connect(proc) as sock:
        client = ClientConnection()
        # BEGIN_REQUEST and a params record, but not the empty one that ends them.
        sock.sendall(encode_begin_request(1, keep_conn=keep_conn)
                     + encode_record(FCGI_PARAMS, 1, encode_params(params_for("/n", "i=1"))))
        time.sleep(0.2)
        sock.sendall(encode_record(FCGI_ABORT_REQUEST, 1))
        body, end = read_response(sock, client)
        assert end is not None and end.protocol_status == FCGI_REQUEST_COMPLETE and body == b""
        if keep_conn:
            body, end = exchange(sock, params_for("/n", "i=2"))
            assert end is not None and b"n=2 " in body
        else:
            assert sock.recv(100) == b""  # closed after END_REQUEST (spec 3.5)


def test_the_app_sees_the_body_before_the_client_finished_sending(tmp_path):
    with worker(tmp_path) as proc, connect(proc) as sock:
        total = 4 * 1024 * 1024
        client = ClientConnection()
        full = client.request(1, params_for("/first-chunk", method="POST", length=total), b"", keep_conn=True)
        head = full[: full.rindex(encode_record(FCGI_STDIN, 1))]
        sock.sendall(head + encode_record(FCGI_STDIN, 1, b"a" * 1000))
        first = b""
        while b"first" not in first:  # the app answered while 99.9% of the body is unsent
            first += b"".join(e.stdout for e in client.receive(sock.recv(65536)) if isinstance(e, ResponseReceived))
        assert b"first 1000" in first
        rest = b"b" * (total - 1000)
        for i in range(0, len(rest), 65528):
            sock.sendall(encode_record(FCGI_STDIN, 1, rest[i : i + 65528]))
        sock.sendall(encode_record(FCGI_STDIN, 1))
        body, end = read_response(sock, client)
        assert end is not None and f"total {total}".encode() in first + body


def test_sigterm_finishes_the_current_request_then_exits_0(tmp_path):
    with worker(tmp_path) as proc:
        idle = connect(proc)
        exchange(idle, params_for("/n", "i=1"))  # a kept-alive connection left idle
        result = {}
        busy = connect(proc)
        thread = threading.Thread(target=lambda: result.update(r=exchange(busy, params_for("/sleep", "s=0.8"))))
        thread.start()
        wait_for_log(proc, "sleep 0.8 started")
        proc.send_signal(signal.SIGTERM)
        thread.join(10)
        body, end = result["r"]
        assert end is not None and b"slept 0.8" in body  # the request in flight completed
        assert proc.wait(5) == 0
        assert idle.recv(100) == b""  # and the idle connection was closed


def test_sigint_returns_at_once(tmp_path):
    with worker(tmp_path) as proc:
        busy = connect(proc)
        exchange(busy, params_for("/n", "i=1"))
        client = ClientConnection()
        busy.sendall(client.request(1, params_for("/sleep", "s=5"), keep_conn=True))
        wait_for_log(proc, "sleep 5 started")
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) == 0
        assert time.monotonic() - started < 2.0
        body, end = read_response(busy, client)
        assert end is None  # no END_REQUEST: it was not finished


def test_max_requests_then_exit_0(tmp_path):
    with worker(tmp_path, "--max-requests", "3") as proc:
        for i in range(3):
            with connect(proc) as sock:
                body, end = exchange(sock, params_for("/n", f"i={i}"))
                assert end is not None
        assert proc.wait(5) == 0


def test_connections_from_addresses_not_allowed_are_closed_at_once(tmp_path):
    with worker(tmp_path, "--allow", "10.11.12.13,192.0.2.1") as proc, connect(proc) as sock:
        sock.sendall(ClientConnection().request(1, params_for("/n", "i=1"), keep_conn=True))
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass  # closed with our request unread: a reset, as good as a close
        time.sleep(0.2)
        assert "refused, not in FCGI_WEB_SERVER_ADDRS" in proc.log()


def test_allowed_addresses_are_served(tmp_path):
    with worker(tmp_path, "--allow", "10.11.12.13,127.0.0.1") as proc, connect(proc) as sock:
        body, end = exchange(sock, params_for("/n", "i=1"))
        assert end is not None and b"n=1 " in body


def test_accept_loop_program_behind_nginx(tmp_path):
    argv = [sys.executable, str(REPO / "apps" / "hello_accept.py")]
    with worker(tmp_path, argv=argv) as proc:
        with Nginx(fastcgi_location(proc.address[1])) as ngx:
            first = requests.get(ngx.url("/hello?x=1"), timeout=10)
            second = requests.post(ngx.url("/upload"), data=b"z" * 100_000, timeout=10)
            assert first.status_code == 200, proc.log() + ngx.error_log()
            assert "request 1)" in first.text and "GET /hello?x=1" in first.text and "query: x=1" in first.text
            assert "request 2)" in second.text and "body: 100000 bytes" in second.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_accept_loop_finishes_the_current_request_on_graceful_signals(tmp_path, signum):
    """fcgikit.spawn (like libfcgi's users) stops exec'd programs with SIGUSR1."""
    argv = [sys.executable, "-c", ACCEPT_SLOW]
    with worker(tmp_path, argv=argv) as proc:
        sock = connect(proc)
        result = {}
        thread = threading.Thread(target=lambda: result.update(r=exchange(sock, params_for("/slow"))))
        thread.start()
        wait_for_log(proc, "request started")  # the signal must land mid-request
        proc.send_signal(signum)
        thread.join(10)
        body, end = result["r"]
        assert end is not None and body.endswith(b"done\n"), proc.log()
        assert proc.wait(5) == 0


ACCEPT_SLOW = """
import sys, time, fcgikit
for request in fcgikit.accept():
    print("request started", file=sys.stderr, flush=True)
    time.sleep(0.5)
    request.stdout.write(b"Content-Type: text/plain\\r\\n\\r\\ndone\\n")
"""


def test_accept_loop_without_a_socket_on_fd0_says_why(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "apps" / "hello_accept.py")], cwd=REPO,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "fd 0 is not a listening socket" in result.stderr


def test_serve_stops_with_exit_4_when_the_app_cannot_load(tmp_path):
    from fcgikit.testing import free_port

    result = subprocess.run(
        [sys.executable, "-m", "fcgikit.serve", "-n", "-a", "127.0.0.1", "-p", str(free_port()), "-F", "2",
         "no_such_module_xyz:app"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 4, result.stderr
    assert "cannot import 'no_such_module_xyz'" in result.stderr


def test_a_socket_that_does_not_listen_ends_the_child_with_status_1(capfd):
    from fcgikit.worker import serve

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # never listen(): accept() fails with EINVAL
    try:
        assert serve(sock, lambda request: 0) == 1
    finally:
        sock.close()
    assert "the listening socket is unusable" in capfd.readouterr().err


def test_accept_loop_runs_as_a_plain_cgi_script_too():
    """libfcgi's FCGI_Accept() serves one CGI request when fd 0 is no socket."""
    env = {"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "POST", "REQUEST_URI": "/cgi?q=1",
           "QUERY_STRING": "q=1", "CONTENT_LENGTH": "3", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, str(REPO / "apps" / "hello_accept.py")], cwd=REPO,
                            input=b"abcdef", env=env, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head == b"Content-Type: text/plain"
    assert b"request 1)" in body and b"POST /cgi?q=1" in body and b"body: 3 bytes" in body


def test_sigterm_still_serves_a_request_already_sent_on_an_idle_connection(tmp_path):
    with worker(tmp_path) as proc:
        idle = connect(proc)
        exchange(idle, params_for("/n", "i=1"))
        busy = connect(proc)
        result = {}
        thread = threading.Thread(target=lambda: result.update(r=exchange(busy, params_for("/sleep", "s=0.5"))))
        thread.start()
        wait_for_log(proc, "sleep 0.5 started")
        client = ClientConnection()
        idle.sendall(client.request(1, params_for("/n", "i=2"), keep_conn=True))  # arrives while the child is busy
        proc.send_signal(signal.SIGTERM)
        thread.join(10)
        body, end = read_response(idle, client)
        assert end is not None and b"n=2 " in body, proc.log()
        assert result["r"][1] is not None
        assert proc.wait(5) == 0


def test_params_over_64_kib_and_duplicates_reach_the_app(tmp_path):
    pairs = list(params_for("/").items()) + [
        ("HTTP_X_BIG", "b" * 100_000),  # longer than one record: 4-byte lengths, several PARAMS records
        ("HTTP_X_DUP", "first"),
        ("HTTP_X_DUP", "second"),  # duplicate names: the last one wins
    ]
    with worker(tmp_path) as proc, connect(proc) as sock:
        client = ClientConnection()
        sock.sendall(client.request(1, pairs, keep_conn=True))
        body, end = read_response(sock, client)
        assert end is not None
        lines = body.split(b"\r\n\r\n", 1)[1].decode().splitlines()
        assert "HTTP_X_BIG=" + "b" * 100_000 in lines
        assert "HTTP_X_DUP=second" in lines


@pytest.mark.parametrize("allowed, served", [("192.0.2.7", False), ("192.0.2.7,127.0.0.1", True)])
def test_serve_honours_fcgi_web_server_addrs_from_the_environment(tmp_path, allowed, served):
    import os

    from fcgikit.testing import free_port, wait_for_port

    port = free_port()
    log_path = tmp_path / "serve.log"
    env = dict(os.environ, FCGI_WEB_SERVER_ADDRS=allowed)
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "fcgikit.serve", "-n", "-a", "127.0.0.1", "-p", str(port),
                                    "tests.apps.wsgi_app:app"], cwd=REPO, env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port, timeout=15, process=process)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            try:
                body, end = exchange(sock, params_for("/n", "i=1"))
            except ConnectionResetError:
                body, end = b"", None
        assert (end is not None) == served, log_path.read_text()
        if served:
            assert b"\r\n\r\nn=1 " in body, body  # the app's answer, not only an END_REQUEST
        else:
            time.sleep(0.2)
            assert "refused, not in FCGI_WEB_SERVER_ADDRS" in log_path.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)


def test_an_idle_connection_reset_by_the_web_server_is_not_logged(tmp_path):
    """What nginx does to its cached connections on stop or reload."""
    import struct as _struct

    with worker(tmp_path) as proc:
        sock = connect(proc)
        exchange(sock, params_for("/n", "i=1"))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _struct.pack("ii", 1, 0))
        sock.close()  # RST
        second = connect(proc)
        body, end = exchange(second, params_for("/n", "i=2"))
        assert end is not None
        time.sleep(0.2)
        assert "WARNING" not in proc.log(), proc.log()


def test_a_child_waiting_for_a_request_does_not_take_the_next_connection_from_an_idle_one(tmp_path):
    """The first connection sends its request late (as a busy nginx may); the second
    sends at once. Both sleep 1 s: on 2 children they end together, in about 1 s,
    unless one child accepted both and serves them one after the other (2 s)."""
    with serve_app(tmp_path, children=2) as served:
        time.sleep(0.5)  # both children up and waiting
        late = socket.create_connection(served.address, timeout=10)
        time.sleep(0.2)  # accepted by now, its request not sent yet
        started = time.monotonic()
        prompt = socket.create_connection(served.address, timeout=10)
        results = {}

        def ask(name, sock):
            results[name] = exchange(sock, params_for("/sleep", "s=1"), keep_conn=False)

        threads = [threading.Thread(target=ask, args=("prompt", prompt))]
        threads[0].start()
        time.sleep(0.1)
        threads.append(threading.Thread(target=ask, args=("late", late)))
        threads[1].start()
        for thread in threads:
            thread.join(15)
        elapsed = time.monotonic() - started
        late.close()
        prompt.close()
        for name in ("prompt", "late"):
            body, end = results[name]
            assert end is not None and b"slept 1" in body, (name, served.log())
        assert elapsed < 1.7, f"served one after the other ({elapsed:.2f}s for two 1 s requests)\n{served.log()}"
