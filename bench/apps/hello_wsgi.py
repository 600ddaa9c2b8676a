"""The benchmark's WSGI app: the same logic behind every Python server.

GET  /        -> "Hello, world!\\n" (the hello scenarios)
POST /echo    -> the request body, echoed (the 64 KiB POST scenario)
GET  /big     -> 1 MiB of "x" (the large-response scenario)
"""

HELLO = b"Hello, world!\n"
BIG = b"x" * (1 << 20)


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/echo":
        return echo(environ, start_response)
    body = BIG if path == "/big" else HELLO
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def echo(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]


application = app  # the name uWSGI and other servers look for by default
