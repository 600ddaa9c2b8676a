"""A kept connection whose request was answered before its input ended: the rest
of the input is skipped as it comes, within a bound (real sockets, in-process)."""

import socket
import threading
import time

from fcgikit.fastcgi import (
    FCGI_PARAMS,
    FCGI_STDIN,
    ClientConnection,
    ParamsReceived,
    RequestBegun,
    ServerConnection,
    StdinReceived,
    encode_params,
    encode_record,
)
from fcgikit.fastcgi.client import exchange, get_params
from fcgikit.fastcgi.protocol import encode_begin_request
from fcgikit.worker import connection
from fcgikit.worker.loop import serve
from fcgikit.worker.wsgi import wsgi_handler


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def test_the_protocol_skips_the_rest_of_an_answered_requests_input_then_takes_the_next():
    proto = ServerConnection()
    head = encode_begin_request(1, keep_conn=True) + encode_record(FCGI_PARAMS, 1, encode_params({"A": "b"})) \
        + encode_record(FCGI_PARAMS, 1)
    assert [type(e) for e in proto.receive(head)] == [RequestBegun, ParamsReceived]
    proto.end_request(1)
    proto.skip_rest_of_input(1)
    assert proto.skipping_input
    assert proto.receive(encode_record(FCGI_STDIN, 1, b"late body")) == []
    # the end of that input and the next request in one read
    events = proto.receive(encode_record(FCGI_STDIN, 1) + head + encode_record(FCGI_STDIN, 1))
    assert [type(e) for e in events] == [RequestBegun, ParamsReceived, StdinReceived]
    assert not proto.skipping_input


def test_a_kept_connection_whose_input_never_ends_is_closed_after_the_drain_timeout(monkeypatch, capfd):
    monkeypatch.setattr(connection, "DRAIN_TIMEOUT", 0.3)
    listener = socket.create_server(("127.0.0.1", 0))
    worker = threading.Thread(target=serve, args=(listener, wsgi_handler(app)), kwargs={"max_requests": 2},
                              daemon=True)
    worker.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as sock:
            client = ClientConnection()
            request = client.request(1, get_params("/"), keep_conn=True)
            sock.sendall(request[: -len(encode_record(FCGI_STDIN, 1))])  # all but the end marker
            answered = time.monotonic()
            data = b""
            while not any(getattr(e, "ended", False) for e in client.receive(data)):
                data = sock.recv(65536)
                assert data
            assert sock.recv(100) == b""  # closed: the end marker never came
            assert 0.25 <= time.monotonic() - answered < 5
        assert "did not come in time" in capfd.readouterr().err
        with socket.create_connection(listener.getsockname(), timeout=10) as sock:  # the worker goes on
            assert exchange(sock, ClientConnection(), get_params("/")).stdout.endswith(b"hello")
        worker.join(10)
        assert not worker.is_alive()
    finally:
        listener.close()
