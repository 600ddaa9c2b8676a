"""A served request's objects are freed when it ends, by reference counting alone.

Were any of them part of a reference cycle, each request's connection, streams and
environ would stay in memory until the cycle collector ran (a pass every few dozen
requests, its cost paid on the request path)."""

import gc
import socket
import threading
import weakref

import pytest

from fcgikit.fastcgi import ClientConnection
from fcgikit.fastcgi.client import exchange
from fcgikit.worker.loop import serve
from fcgikit.worker.wsgi import wsgi_handler

PARAMS = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "SCRIPT_NAME": "/", "SERVER_NAME": "t", "SERVER_PORT": "80",
          "SERVER_PROTOCOL": "HTTP/1.1", "QUERY_STRING": ""}


class Marker:
    """Put in each request's environ, which is the request's own params dict."""


def app(environ, start_response):
    environ["test.marker"] = marker = Marker()
    MARKERS.append(weakref.ref(marker))
    body = environ["wsgi.input"].read()
    if environ["PATH_INFO"] == "/log":
        environ["wsgi.errors"].write("a line for the log\n")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"got " + body]


MARKERS: list = []


@pytest.fixture
def no_cycle_collector():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("keep_conn", [False, True])
def test_each_request_is_freed_as_soon_as_it_ends(no_cycle_collector, keep_conn):
    listener = socket.create_server(("127.0.0.1", 0))
    requests = [("/", b""), ("/log", b""), ("/", b"a body"), ("/log", b"x" * 70_000)]
    MARKERS.clear()
    worker = threading.Thread(target=serve, args=(listener, wsgi_handler(app)),
                              kwargs={"max_requests": len(requests)}, daemon=True)
    worker.start()
    answers = []
    sock, conn = None, None
    try:
        for path, body in requests:
            if sock is None or not keep_conn:
                if sock is not None:
                    sock.close()
                sock, conn = socket.create_connection(listener.getsockname(), timeout=10), ClientConnection()
            params = dict(PARAMS, SCRIPT_NAME=path, REQUEST_URI=path, CONTENT_LENGTH=str(len(body)))
            answers.append(exchange(sock, conn, params, body, keep_conn=keep_conn).stdout)
        sock.close()
        worker.join(10)
        assert not worker.is_alive()
    finally:
        listener.close()
    assert [answer.rpartition(b"\r\n\r\n")[2] for answer in answers] == [
        b"got ", b"got ", b"got a body", b"got " + b"x" * 70_000]
    assert len(MARKERS) == len(requests)
    assert [ref() for ref in MARKERS] == [None] * len(requests)


def test_wsgi_errors_kept_past_its_request_refuses_writes():
    from .worker_fakes import make_request

    kept = {}

    def keeping_app(environ, start_response):
        kept["errors"] = environ["wsgi.errors"]
        environ["wsgi.errors"].write("during the request\n")
        start_response("200 OK", [])
        return [b"ok"]

    request, conn = make_request(dict(PARAMS))
    wsgi_handler(keeping_app)(request)
    request.finish()
    assert conn.stderr == b"during the request\n"
    with pytest.raises(ValueError, match="after its request ended"):
        kept["errors"].write("too late\n")
