"""Record framing for output, and the vectored send with partial writes (a socketpair)."""

import socket
import threading

import pytest

from fcgikit.fastcgi import (
    FCGI_STDERR,
    FCGI_STDOUT,
    MAX_CONTENT,
    ClientConnection,
    RecordReader,
    ResponseReceived,
    stream_buffers,
)
from fcgikit.worker.connection import Connection


def decode(buffers) -> tuple[bytes, list[int]]:
    records = RecordReader().feed(b"".join(bytes(b) for b in buffers))
    return b"".join(content for _, _, content in records), [len(content) for _, _, content in records]


@pytest.mark.parametrize(
    "sizes",
    [[1], [10, 20, 30], [MAX_CONTENT], [MAX_CONTENT + 1], [100, 40_000, 7, 1_000_000, 3, 5], [32 * 1024] * 5],
)
def test_stream_buffers_frame_any_mix_of_chunks(sizes):
    chunks = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    data, lengths = decode(stream_buffers(FCGI_STDOUT, 1, chunks))
    assert data == b"".join(chunks)
    assert all(0 < n <= MAX_CONTENT for n in lengths)


def test_big_chunks_are_framed_in_place_not_copied():
    body = b"x" * 1_000_000
    buffers = stream_buffers(FCGI_STDOUT, 1, [body])
    views = [b for b in buffers if isinstance(b, memoryview)]
    assert views and all(v.obj is body for v in views)


def test_send_buffers_survives_partial_writes():
    left, right = socket.socketpair()
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    received = bytearray()

    def reader():
        while data := right.recv(7000):
            received.extend(data)

    thread = threading.Thread(target=reader)
    thread.start()
    conn = Connection(left, "")
    body = bytes(range(256)) * 8000  # 2 MB: many partial sendmsg() calls
    conn.send_stream(FCGI_STDOUT, 1, [b"Status: 200 OK\r\n\r\n", body], len(body) + 19)
    conn.send_stream(FCGI_STDERR, 1, [b"warning"], 7)
    left.close()
    thread.join(10)
    events = ClientConnection().receive(bytes(received))
    out = b"".join(e.stdout for e in events if isinstance(e, ResponseReceived))
    err = b"".join(e.stderr for e in events if isinstance(e, ResponseReceived))
    assert out == b"Status: 200 OK\r\n\r\n" + body and err == b"warning"
    assert not conn.gone


def test_a_send_to_a_closed_peer_marks_the_connection_gone_once(capfd):
    left, right = socket.socketpair()
    right.close()
    conn = Connection(left, "")
    conn.send_stream(FCGI_STDOUT, 1, [b"x" * 200_000], 200_000)
    conn.send(b"more")
    assert conn.gone
    assert capfd.readouterr().err.count("sending failed") == 1
    left.close()


def test_client_gone_reports_an_abort_and_the_request_still_ends_with_end_request(capfd):
    from fcgikit.fastcgi import FCGI_ABORT_REQUEST, FCGI_REQUEST_COMPLETE, encode_record
    from fcgikit.fastcgi.client import get_params

    left, right = socket.socketpair()
    right.settimeout(5)
    conn = Connection(left, "")
    client = ClientConnection()
    right.sendall(client.request(1, get_params("/slow"), keep_conn=True))
    conn.receive()
    request = conn.next_request()
    assert not request.client_gone()
    right.sendall(encode_record(FCGI_ABORT_REQUEST, 1))
    assert request.client_gone() and request.connection_lost
    request.stdout.write(b"Content-Type: text/plain\r\n\r\ntoo late\n")
    request.finish()
    events = client.receive(right.recv(65536))
    assert b"".join(e.stdout for e in events) == b""  # what the app wrote after the abort is dropped
    assert events[-1].ended and events[-1].protocol_status == FCGI_REQUEST_COMPLETE
    assert conn.reusable
    assert "the web server aborted the request during GET /slow" in capfd.readouterr().err
    left.close()
    right.close()


def _served_request(uri: str):
    from fcgikit.fastcgi.client import get_params

    left, right = socket.socketpair()
    right.settimeout(5)
    conn = Connection(left, "")
    client = ClientConnection()
    right.sendall(client.request(1, get_params(uri), keep_conn=True))
    conn.receive()
    return conn, conn.next_request(), client, left, right


def test_a_peer_leaving_once_the_body_is_out_loses_only_the_end_records_and_is_not_warned_about(capfd):
    """lighttpd over a Unix socket: it closes when the response's STDOUT has come,
    before END_REQUEST; the send of the end records then fails with EPIPE."""
    conn, request, client, left, right = _served_request("/n?i=2")
    request.stdout.write(b"Content-Type: text/plain\r\nContent-Length: 4\r\n\r\nn=2\n")
    request.stdout.flush()
    events = client.receive(right.recv(65536))
    assert b"".join(e.stdout for e in events).endswith(b"n=2\n")
    right.close()
    request.finish()
    assert conn.gone and not conn.reusable
    assert "WARNING" not in capfd.readouterr().err
    left.close()


def test_a_peer_leaving_before_the_body_is_out_is_warned_about(capfd):
    conn, request, client, left, right = _served_request("/n?i=3")
    right.close()
    request.stdout.write(b"Content-Type: text/plain\r\nContent-Length: 4\r\n\r\nn=3\n")
    request.finish()
    assert conn.gone
    assert "WARNING unix: sending failed: Broken pipe during GET /n?i=3" in capfd.readouterr().err
    left.close()
