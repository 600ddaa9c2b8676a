"""The example WSGI app (stdlib only), served by `python3 -m fcgikit.serve apps.hello_wsgi`.

Routes:
  /          hello
  /echo      the POST body back (any size: spooled to disk past 1 MiB)
  /environ   the WSGI environ as text
  /sha256    the SHA-256 of the POST body (read in pieces: any size, little memory)
  /sleep?s=N sleeps N seconds (at most 60), then answers
"""

import hashlib
import os
import tempfile
import time
from urllib.parse import parse_qs

CHUNK = 64 * 1024


def _text(start_response, body: str, status: str = "200 OK"):
    data = body.encode("utf-8")
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


def hello(environ, start_response):
    return _text(start_response, f"Hello from fcgikit (pid {os.getpid()})\n")


def echo(environ, start_response):
    # The body is read to the end before the response starts: nginx stops sending
    # the request body once the response has begun. Spooled to disk past 1 MiB,
    # so any size echoes back in little memory.
    spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)
    stream = environ["wsgi.input"]
    while chunk := stream.read(CHUNK):
        spool.write(chunk)
    size = spool.tell()
    spool.seek(0)
    start_response("200 OK", [("Content-Type", environ.get("CONTENT_TYPE") or "application/octet-stream"),
                              ("Content-Length", str(size))])
    return environ["wsgi.file_wrapper"](spool, CHUNK)


def show_environ(environ, start_response):
    lines = [f"{key}={value!r}" for key, value in sorted(environ.items(), key=lambda item: item[0])]
    return _text(start_response, "\n".join(lines) + "\n")


def sha256(environ, start_response):
    digest, size, stream = hashlib.sha256(), 0, environ["wsgi.input"]
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return _text(start_response, f"{digest.hexdigest()} {size}\n")


def sleep(environ, start_response):
    try:
        seconds = min(float(parse_qs(environ.get("QUERY_STRING", "")).get("s", ["1"])[0]), 60.0)
    except ValueError:
        return _text(start_response, "s must be a number\n", "400 Bad Request")
    time.sleep(max(seconds, 0.0))
    return _text(start_response, f"slept {seconds:g}s\n")


ROUTES = {"/": hello, "/echo": echo, "/environ": show_environ, "/sha256": sha256, "/sleep": sleep}


def application(environ, start_response):
    route = ROUTES.get(environ.get("PATH_INFO") or "/")
    if route is None:
        return _text(start_response, "not found\n", "404 Not Found")
    return route(environ, start_response)


app = application
