"""fcgikit.accept(): a client that leaves in the middle of a request cannot end
the program's loop. Its stdin just ends, one line is logged, and the next
request is served, as libfcgi's FCGI_Accept() loop goes on."""

import socket
import threading
import time

from fcgikit.fastcgi import FCGI_STDIN, ClientConnection, encode_record
from fcgikit.fastcgi.client import exchange
from fcgikit.worker.loop import accept

PARAMS = {"REQUEST_METHOD": "POST", "SCRIPT_NAME": "/", "REQUEST_URI": "/upload", "CONTENT_LENGTH": "100000"}


def cut_post() -> bytes:
    """Begin, params and 10 bytes of a 100,000-byte body; then the client leaves."""
    full = ClientConnection().request(1, PARAMS, b"", keep_conn=False)
    head = full[: full.rindex(encode_record(FCGI_STDIN, 1))]
    return head + encode_record(FCGI_STDIN, 1, b"0123456789")


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)  # and into its read


def run_accept_loop(listener, started, seen, errors, count):
    try:
        for request in accept(listener, max_requests=count):
            started.append(request)
            body = request.stdin.read()  # what a program does: read the body, then answer
            seen.append((len(body), request.connection_lost))
            request.stdout.write(b"Content-Type: text/plain\r\n\r\n" + b"got %d" % len(body))
    except BaseException as exc:  # noqa: BLE001 - any escape is the failure under test
        errors.append(exc)


def test_clients_leaving_mid_body_do_not_end_the_accept_loop(capfd):
    listener = socket.create_server(("127.0.0.1", 0))
    started, seen, errors = [], [], []
    leaving = 6
    worker = threading.Thread(target=run_accept_loop, args=(listener, started, seen, errors, leaving + 1), daemon=True)
    worker.start()
    try:
        for n in range(leaving):
            sock = socket.create_connection(listener.getsockname(), timeout=10)
            sock.sendall(cut_post())
            wait_until(lambda n=n: len(started) > n or errors)  # the program is reading the body: now leave
            if n % 2:  # half close with a reset, half with a FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
        with socket.create_connection(listener.getsockname(), timeout=10) as sock:
            answer = exchange(sock, ClientConnection(), {**PARAMS, "CONTENT_LENGTH": "3"}, b"abc")
        assert answer.stdout.endswith(b"got 3")
        worker.join(10)
        assert not errors, f"the loop raised into the program: {errors!r}"
        assert not worker.is_alive()
        assert seen[-1] == (3, False)
        assert len(seen) == leaving + 1 and all(lost for _, lost in seen[:-1]), seen
        assert all(size <= 10 for size, _ in seen[:-1])  # what arrived, then the end of input
    finally:
        listener.close()
    log = capfd.readouterr().err
    assert log.count("before the request body ended") + log.count("reading the request body failed") == leaving, log
