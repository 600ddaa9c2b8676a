"""The example WSGI app (stdlib only), served by `python3 -m fcgikit.serve apps.hello_wsgi`.

Routes:
  /          hello
  /echo      the POST body back, streamed as it is read
  /environ   the WSGI environ as text
  /sha256    the SHA-256 of the POST body (read in pieces: any size, little memory)
  /sleep?s=N sleeps N seconds (at most 60), then answers
"""

import hashlib
import os
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
    headers = [("Content-Type", environ.get("CONTENT_TYPE") or "application/octet-stream")]
    if environ.get("CONTENT_LENGTH"):
        headers.append(("Content-Length", environ["CONTENT_LENGTH"]))
    start_response("200 OK", headers)
    stream = environ["wsgi.input"]
    return iter(lambda: stream.read(CHUNK), b"")


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
