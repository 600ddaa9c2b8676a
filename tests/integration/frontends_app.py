"""The WSGI app behind Apache, lighttpd and Caddy in test_frontends.py (stdlib only).

Every route runs inside `wsgiref.validate.validator`: an environ PEP 3333 does
not allow (`HTTP_CONTENT_LENGTH`, a negative `CONTENT_LENGTH`, ...) or a
misused `wsgi.input` fails the request with a 500 and the reason in the log.
"""

from __future__ import annotations

import hashlib
import os
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

CHUNK = 64 * 1024


def _query(environ) -> dict:
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _text(start_response, text: str, status: str = "200 OK"):
    data = text.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def environ_lines(environ, start_response):
    """The CGI-style variables the app got (str values only), one `KEY=value` a line."""
    lines = sorted(f"{k}={v}" for k, v in environ.items() if isinstance(v, str) and k.isupper())
    lines.append(f"wsgi.input_terminated={environ.get('wsgi.input_terminated', False)}")
    return _text(start_response, "\n".join(lines) + "\n")


def sha256(environ, start_response):
    """SHA-256 and size of the whole body, read in pieces until it ends."""
    digest, size, stream = hashlib.sha256(), 0, environ["wsgi.input"]
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return _text(start_response, f"{digest.hexdigest()} {size}\n")


def timing(environ, start_response):
    """When the app was called and when the body had all come (Unix times): a
    front-end that buffers the request body calls the app only once it has it."""
    called = time.time()
    stream, size = environ["wsgi.input"], 0
    while chunk := stream.read(CHUNK):
        size += len(chunk)
    return _text(start_response, f"called={called:.3f} read={time.time():.3f} size={size}\n")


def stream(environ, start_response):
    """`/stream?n=5&gap=0.4&pad=0`: n lines, one every `gap` seconds, each its own
    block, padded with `pad` dots."""
    query = _query(environ)
    count, gap, pad = int(query.get("n", "5")), float(query.get("gap", "0.4")), int(query.get("pad", "0"))
    start_response("200 OK", [("Content-Type", "text/plain")])

    def lines():
        for i in range(count):
            if i:
                time.sleep(gap)
            yield f"line {i} at {time.time():.3f} {'.' * pad}\n".encode()

    return lines()


def numbered(environ, start_response):
    """`/n?i=N` answers N: every concurrent response can be checked against its request."""
    return _text(start_response, f"n={_query(environ).get('i', '')} pid={os.getpid()}\n")


ROUTES = {"/env": environ_lines, "/timing": timing, "/sha256": sha256, "/stream": stream, "/n": numbered}


def _app(environ, start_response):
    route = ROUTES.get(environ.get("PATH_INFO", ""))
    if route is None:
        return _text(start_response, f"not found: {environ.get('PATH_INFO')!r}\n", "404 Not Found")
    return route(environ, start_response)


app = validator(_app)
