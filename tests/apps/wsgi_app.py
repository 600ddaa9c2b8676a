"""The WSGI app the worker's integration tests run (stdlib only)."""

import hashlib
import os
import resource
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

CHUNK = 64 * 1024


def _reply(start_response, text: str, status: str = "200 OK", extra=()):
    data = text.encode("utf-8")
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data))),
                            *extra])
    return [data]


def _query(environ) -> dict:
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def echo_request(environ, start_response):
    """What the app saw: method, paths, query and the X- headers, one per line."""
    lines = [f"{key}={environ.get(key, '')}" for key in
             ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "wsgi.url_scheme")]
    lines += sorted(f"{k}={v}" for k, v in environ.items() if k.startswith("HTTP_X_"))
    return _reply(start_response, "\n".join(lines) + "\n")


def sha256(environ, start_response):
    """SHA-256 and size of the body, read in pieces, and this process's peak RSS."""
    digest, size, stream = hashlib.sha256(), 0, environ["wsgi.input"]
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _reply(start_response, f"{digest.hexdigest()} {size} {peak_kb}\n")


def first_chunk(environ, start_response):
    """Answers (and flushes) as soon as the first piece of the body arrives, then reads the rest."""
    stream = environ["wsgi.input"]
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    first = stream.read1(CHUNK)
    write(f"first {len(first)}\n".encode())
    rest = len(stream.read())
    return [f"total {len(first) + rest}\n".encode()]


def body_and_length(environ, start_response):
    """What a framework that honours wsgi.input_terminated sees: the body read to its
    end (`read()`), the length it was told, and the variables PEP 3333 forbids."""
    body = environ["wsgi.input"].read()
    forbidden = sorted(k for k in ("HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_PROXY") if k in environ)
    return _reply(start_response, f"{hashlib.sha256(body).hexdigest()} {len(body)} "
                                  f"length={environ.get('CONTENT_LENGTH', 'none')} "
                                  f"terminated={environ.get('wsgi.input_terminated')} forbidden={forbidden}\n")


def read_length(environ, start_response):
    """Reads CONTENT_LENGTH bytes and no further, as Django does: the answer can leave
    before the empty STDIN record that ends the body has arrived."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    return _reply(start_response, f"read {len(body)}\n")


def _read_in_pieces(environ, start_response):
    digest, size, stream = hashlib.sha256(), 0, environ["wsgi.input"]
    while chunk := stream.read(CHUNK):  # wsgiref.validate allows read(size) only
        digest.update(chunk)
        size += len(chunk)
    return _reply(start_response, f"{digest.hexdigest()} {size} length={environ.get('CONTENT_LENGTH', 'none')}\n")


validated = validator(_read_in_pieces)


def boom(environ, start_response):
    raise RuntimeError("the test app failed on purpose")


def pid(environ, start_response):
    return _reply(start_response, f"{os.getpid()}\n")


def sleep(environ, start_response):
    seconds = float(_query(environ).get("s", "1"))
    environ["wsgi.errors"].write(f"sleep {seconds:g} started\n")  # tests wait for this line
    environ["wsgi.errors"].flush()
    time.sleep(seconds)
    return _reply(start_response, f"slept {seconds:g}\n")


def numbered(environ, start_response):
    """/n?i=N answers N: every concurrent response can be checked against its request."""
    number = _query(environ).get("i", "")
    return _reply(start_response, f"n={number} pid={os.getpid()}\n")


def parts(environ, start_response):
    """`/parts?n=2&pause=0.3`: n blocks of 'part N\\n', each sent on its own, a pause
    after each (after the last too: the response ends `pause` seconds after its body)."""
    query = _query(environ)
    count, pause = int(query.get("n", "2")), float(query.get("pause", "0.3"))
    blocks = [f"part {i}\n".encode() for i in range(count)]
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(sum(map(len, blocks))))])

    def paced():
        for block in blocks:
            yield block
            time.sleep(pause)

    return paced()


ROUTES = {"/": echo_request, "/parts": parts, "/sha256": sha256, "/first-chunk": first_chunk, "/boom": boom, "/pid": pid,
          "/sleep": sleep, "/n": numbered, "/body": body_and_length, "/validated": validated,
          "/read-length": read_length}


def app(environ, start_response):
    route = ROUTES.get(environ["PATH_INFO"])
    if route is None:
        return _reply(start_response, "not found\n", "404 Not Found")
    return route(environ, start_response)
