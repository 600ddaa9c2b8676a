"""The worker behind FastCGI clients other than nginx (Apache mod_proxy_fcgi,
lighttpd, Caddy), on the wire with real sockets: what they send that nginx does
not, and how they send it."""

import hashlib
import threading
import time

import pytest

from fcgikit.fastcgi import FCGI_PARAMS, FCGI_STDIN, ClientConnection, encode_params, encode_record
from fcgikit.fastcgi.client import exchange as fcgi_exchange
from fcgikit.fastcgi.client import parse_cgi_response
from fcgikit.fastcgi.protocol import encode_begin_request

from .serve_support import serve_app
from .test_serve_core import connect, exchange, params_for, read_response, worker

pytestmark = pytest.mark.integration

MB = 1024 * 1024


def answer(sock, params, body=b"", keep_conn=True) -> tuple[int, bytes]:
    response = fcgi_exchange(sock, ClientConnection(), params, body, keep_conn=keep_conn)
    status, _, text = response.http()
    return status, text


def test_a_chunked_upload_from_caddy_is_read_whole(tmp_path):
    """Caddy sends CONTENT_LENGTH=-1 for a chunked upload: the app gets no bogus
    length, wsgi.input_terminated, and read() gives the whole body."""
    body = bytes(range(256)) * (4 * 1024)  # 1 MiB
    digest = hashlib.sha256(body).hexdigest()
    params = dict(params_for("/body", method="POST"), CONTENT_LENGTH="-1", CONTENT_TYPE="application/octet-stream",
                  HTTP_TRANSFER_ENCODING="chunked")
    with worker(tmp_path) as proc, connect(proc) as sock:
        status, text = answer(sock, params, body)
        assert status == 200
        assert text.decode() == f"{digest} {MB} length=none terminated=True forbidden=[]\n"
        # wsgiref.validate refuses a negative CONTENT_LENGTH: the same request through it
        status, text = answer(sock, dict(params, SCRIPT_NAME="/validated"), body)
        assert (status, text.decode()) == (200, f"{digest} {MB} length=none\n"), proc.log()


@pytest.mark.parametrize("extra", [
    {"HTTP_CONTENT_LENGTH": "11"},  # lighttpd
    {"HTTP_CONTENT_LENGTH": "11", "HTTP_CONTENT_TYPE": "text/plain"},  # Caddy
], ids=["lighttpd", "caddy"])
def test_what_lighttpd_and_caddy_send_passes_wsgiref_validate(tmp_path, extra):
    params = dict(params_for("/validated", method="POST", length=11), CONTENT_TYPE="text/plain", **extra)
    with worker(tmp_path) as proc, connect(proc) as sock:
        status, text = answer(sock, params, b"hello world")
        assert (status, text.decode()) == (200, f"{hashlib.sha256(b'hello world').hexdigest()} 11 length=11\n"), \
            proc.log()
        status, text = answer(sock, dict(params, SCRIPT_NAME="/body"), b"hello world")
        assert text.endswith(b" length=11 terminated=True forbidden=[]\n")


def test_httpoxy_a_proxy_header_never_reaches_the_app(tmp_path):
    """`Proxy: http://evil:1/` arrives as HTTP_PROXY, which many HTTP clients take
    for their outbound proxy: fcgikit.serve on its own (no nginx to strip it)."""
    with serve_app(tmp_path, children=1) as served, connect(served) as sock:
        status, text = answer(sock, dict(params_for("/body"), HTTP_PROXY="http://evil:1/"))
        assert status == 200 and text.endswith(b" length=none terminated=True forbidden=[]\n"), text


# --- a kept connection whose request was answered before its input ended ---------


def request_records(params, body_pieces=(), request_id=1) -> list[bytes]:
    """A keep_conn request as separate records; the last is the empty STDIN record."""
    return [encode_begin_request(request_id, keep_conn=True),
            encode_record(FCGI_PARAMS, request_id, encode_params(params)),
            encode_record(FCGI_PARAMS, request_id),
            *(encode_record(FCGI_STDIN, request_id, piece) for piece in body_pieces),
            encode_record(FCGI_STDIN, request_id)]


def read_answer(sock, client=None):
    """The answer's body, or an AssertionError naming what came instead of END_REQUEST."""
    body, end = read_response(sock, client or ClientConnection())
    assert end is not None, f"the worker closed the connection; got {body!r}"
    return parse_cgi_response(body)[2]


LATE_END_CASES = [
    ("GET", params_for("/n", "i=1"), (), b"n=1 "),
    ("POST", params_for("/read-length", method="POST", length=10_000), (b"a" * 4000, b"b" * 6000), b"read 10000\n"),
]


@pytest.mark.parametrize("method, params, pieces, expected", LATE_END_CASES, ids=[c[0] for c in LATE_END_CASES])
def test_the_end_of_the_input_sent_after_the_answer_keeps_the_connection(tmp_path, method, params, pieces,
                                                                         expected):
    """Apache's mod_proxy_fcgi with enablereuse=on: the empty STDIN record leaves in
    a later write than the rest, here after the answer; the next request on the
    kept connection must be answered (it saw EOF: Apache's 503 AH01067). The
    request is split across two writes at every record boundary first."""
    records = request_records(params, pieces)
    with worker(tmp_path) as proc:
        for split in range(1, len(records) - 1):
            with connect(proc) as sock:
                sock.sendall(b"".join(records[:split]))
                time.sleep(0.02)
                sock.sendall(b"".join(records[split:-1]))
                assert read_answer(sock).startswith(expected)  # answered without the end marker
                time.sleep(0.2)
                sock.sendall(records[-1])  # last and alone
                body, end = exchange(sock, params_for("/n", "i=2"))
                assert end is not None and b"n=2 " in body, f"split at record {split}: {body!r}\n{proc.log()}"
                # and the end marker in the same write as the next request
                sock.sendall(b"".join(records[:-1]))
                assert read_answer(sock).startswith(expected)
                client = ClientConnection()
                sock.sendall(records[-1] + client.request(1, params_for("/n", "i=3"), keep_conn=True))
                assert b"n=3 " in read_answer(sock, client)
        assert "protocol error" not in proc.log() and "mid-request" not in proc.log(), proc.log()


def test_every_record_in_its_own_write_with_the_end_marker_late(tmp_path):
    records = request_records(params_for("/read-length", method="POST", length=3000), (b"x" * 1000,) * 3)
    with worker(tmp_path) as proc, connect(proc) as sock:
        for record in records[:-1]:
            sock.sendall(record)
            time.sleep(0.02)
        assert read_answer(sock) == b"read 3000\n"
        time.sleep(0.2)
        sock.sendall(records[-1])
        for i in range(2, 5):  # the connection carries request after request
            body, end = exchange(sock, params_for("/n", f"i={i}"))
            assert end is not None and f"n={i} ".encode() in body


def test_a_large_body_the_app_never_reads_on_a_kept_connection(tmp_path):
    """The app answers at once and never reads its 8 MB body: the worker skips the
    body as it comes (the client is still sending), and the connection goes on."""
    size = 8 * MB
    params = params_for("/n", "i=1", method="POST", length=size)
    records = request_records(params, [b"z" * 65528] * (size // 65528) + [b"z" * (size % 65528)])
    with worker(tmp_path) as proc, connect(proc) as sock:
        sender = threading.Thread(target=sock.sendall, args=(b"".join(records),))
        sender.start()
        assert read_answer(sock).startswith(b"n=1 ")
        sender.join(30)
        assert not sender.is_alive()
        body, end = exchange(sock, params_for("/n", "i=2"))
        assert end is not None and b"n=2 " in body, proc.log()


def test_a_connection_waiting_for_the_end_of_its_input_holds_no_worker(tmp_path):
    """The end marker is not waited for in place: one worker process answers
    another connection meanwhile."""
    records = request_records(params_for("/n", "i=1"))
    with worker(tmp_path) as proc, connect(proc) as first:
        first.sendall(b"".join(records[:-1]))
        assert read_answer(first).startswith(b"n=1 ")
        with connect(proc) as second:
            start = time.monotonic()
            body, end = exchange(second, params_for("/n", "i=2"))
            assert end is not None and b"n=2 " in body
            assert time.monotonic() - start < 1.5  # the old linger held the worker for 2 s
        first.sendall(records[-1])
        body, end = exchange(first, params_for("/n", "i=3"))
        assert end is not None and b"n=3 " in body


def test_a_retiring_child_waits_for_the_end_marker_then_hands_the_connection_on(tmp_path):
    """--max-requests 1: the child that answered early leaves at once; the late end
    marker is still read, and the kept connection goes to the next child instead
    of being closed under the web server."""
    records = request_records(params_for("/n", "i=1"))
    with serve_app(tmp_path, "tests.apps.wsgi_app:app", 1, "--max-requests", "1") as served, \
            connect(served) as sock:
        sock.sendall(b"".join(records[:-1]))
        first = read_answer(sock)
        assert first.startswith(b"n=1 ")
        time.sleep(0.3)
        sock.sendall(records[-1])
        # by the leaving child if it came in time, else by the next one: either way answered
        for i in (2, 3):
            body, end = exchange(sock, params_for("/n", f"i={i}"))
            assert end is not None and f"n={i} ".encode() in body, served.log()
