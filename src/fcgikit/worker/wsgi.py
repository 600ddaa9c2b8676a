"""WSGI (PEP 3333) on top of a FastCGI `Request`.

`build_environ` and `render_headers` are pure; `WSGIResponse` drives one app
call through the request's streams, so all of it is tested with a fake request.
"""

from __future__ import annotations

import sys
import traceback
from operator import itemgetter
from typing import Any

from ..runtime.log import Log

log = Log("fcgikit.worker")

WSGI_VERSION = (1, 0)
FILE_BLOCK_SIZE = 64 * 1024
JOIN_BODY_MAX = 16 * 1024  # a body up to this size is joined to its headers rather than written apart

INTERNAL_ERROR = (
    b"Status: 500 Internal Server Error\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 22\r\n\r\n"
    b"Internal Server Error\n"
)

# CGI variables PEP 3333 requires; nginx's fastcgi_params send all but PATH_INFO.
_REQUIRED_DEFAULTS = (
    ("REQUEST_METHOD", "GET"),
    ("SCRIPT_NAME", ""),
    ("QUERY_STRING", ""),
    ("SERVER_NAME", "localhost"),
    ("SERVER_PORT", "80"),
    ("SERVER_PROTOCOL", "HTTP/1.0"),
)
_NON_EMPTY = itemgetter(*(name for name, default in _REQUIRED_DEFAULTS if default))
# Request headers that never reach the app as variables (see build_environ).
_NOT_FROM_THE_CLIENT = ("HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_PROXY")


def url_scheme(params: dict[str, str]) -> str:
    https = params.get("HTTPS")
    if not https and params.get("REQUEST_SCHEME") == "http":
        return "http"  # what nginx sends for plain HTTP
    if https and https.lower() in ("on", "1", "yes", "true"):
        return "https"
    scheme = params.get("REQUEST_SCHEME", "").lower()
    return scheme if scheme in ("http", "https") else "http"


def split_script_name(params: dict[str, str]) -> None:
    """SCRIPT_NAME and PATH_INFO as nginx sends them.

    When nginx sends PATH_INFO (fastcgi_split_path_info, or a fastcgi_param)
    both are taken as they are. The stock fastcgi_params send none, and put the
    whole path in SCRIPT_NAME; an app mounted at the root must then see it as
    PATH_INFO, or every route would be the app's own root.
    """
    if "PATH_INFO" not in params:
        params["PATH_INFO"] = params.get("SCRIPT_NAME", "")
        params["SCRIPT_NAME"] = ""
    elif params.get("SCRIPT_NAME") == "/":
        params["SCRIPT_NAME"] = ""  # "/" + PATH_INFO would double the slash


def build_environ(params: dict[str, str], wsgi_input, wsgi_errors) -> dict:
    """The WSGI environ, built in place from the request's params (native latin-1 strings)."""
    environ = params
    # Checked by C code in one go first (itemgetter, then `in`: no method call): nginx
    # sends all of them.
    try:
        complete = all(_NON_EMPTY(environ)) and "SCRIPT_NAME" in environ and "QUERY_STRING" in environ
    except KeyError:
        complete = False
    if not complete:
        for name, default in _REQUIRED_DEFAULTS:
            if not environ.get(name):
                environ[name] = default
    if "PATH_INFO" not in environ:  # split_script_name(), without a call for nginx's usual params
        environ["PATH_INFO"] = environ.get("SCRIPT_NAME", "")
        environ["SCRIPT_NAME"] = ""
    elif environ["SCRIPT_NAME"] == "/":  # there, from here on
        environ["SCRIPT_NAME"] = ""
    # nginx sends CONTENT_TYPE/CONTENT_LENGTH even when empty; PEP 3333 allows
    # them absent but not empty-and-meaningless for LENGTH. Caddy sends "-1" for
    # a chunked upload: a length that is not one is dropped too, and the app reads
    # wsgi.input to its end (wsgi.input_terminated: FCGI_STDIN always ends).
    # Latin-1 text holds no decimal digits but 0-9: isdecimal() is what int() takes.
    if "CONTENT_LENGTH" in environ:
        length = environ["CONTENT_LENGTH"]
        if length == "" or not length.isdecimal():  # "": a GET from nginx, without a call
            del environ["CONTENT_LENGTH"]
    if "CONTENT_TYPE" in environ and environ["CONTENT_TYPE"] == "":
        del environ["CONTENT_TYPE"]
    # lighttpd and Caddy also pass Content-Length/-Type as HTTP_ variables, which
    # PEP 3333 forbids (wsgiref.validate refuses them). A Proxy: header would
    # arrive as HTTP_PROXY, which many HTTP clients take for their proxy (httpoxy);
    # the stack's nginx sends it empty on purpose, so it is there nearly always.
    if "HTTP_PROXY" in environ:
        del environ["HTTP_PROXY"]
    if "HTTP_CONTENT_LENGTH" in environ or "HTTP_CONTENT_TYPE" in environ:
        for name in _NOT_FROM_THE_CLIENT:
            environ.pop(name, None)
    environ.update(_WSGI_CONSTANTS)
    # url_scheme(), without a call for what nginx sends for plain HTTP
    environ["wsgi.url_scheme"] = (
        "http"
        if "REQUEST_SCHEME" in environ and environ["REQUEST_SCHEME"] == "http" and not environ.get("HTTPS")
        else url_scheme(environ)
    )
    environ["wsgi.input"] = wsgi_input
    environ["wsgi.errors"] = wsgi_errors
    return environ


class HeaderError(ValueError):
    """The app's status or headers cannot be sent as they are."""


# Status lines already found well-formed: an app answers with a handful of them.
_GOOD_STATUSES: set[str] = set()
_GOOD_STATUSES_MAX = 256


def _check_status(status) -> None:
    if type(status) is not str or len(status) < 4 or not status[:3].isdigit() or status[3] != " ":
        raise HeaderError(f"status {status!r} is not '<3 digits> <reason>'")
    if "\n" in status or "\r" in status:
        raise HeaderError("the status line contains a line break")
    if len(_GOOD_STATUSES) < _GOOD_STATUSES_MAX:
        _GOOD_STATUSES.add(status)


_STATUS_200_LEN = len("Status: 200 OK\r\n")


def render_headers(status: str, headers) -> bytes:
    """The CGI response head: `Status:` from the WSGI status line, then the headers.

    `200 OK` goes without a Status line: a CGI response without one is 200 OK
    (RFC 3875 6.3.3), as nginx, Apache and lighttpd take it, and Caddy would pass
    the line on to the client as a header. Not when there is no header at all (a
    CGI response has at least one), nor with a Location header (without Status
    that is a redirect, 302)."""
    if type(status) is not str or status not in _GOOD_STATUSES:
        _check_status(status)
    lines = ["Status: ", status, "\r\n"]
    for name, value in headers:
        lines += (name, ": ", value, "\r\n")
    lines.append("\r\n")
    text = "".join(lines)  # TypeError for a non-str name or value, as PEP 3333 requires
    # One newline per line we wrote: any other is header injection.
    expected = len(headers) + 2
    if text.count("\n") != expected or text.count("\r") != expected:
        raise HeaderError("a header name or value contains a line break")
    if status == "200 OK" and headers and "location" not in text.lower():
        text = text[_STATUS_200_LEN:]
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise HeaderError(f"headers must be latin-1: {exc}") from None


class FileWrapper:
    """wsgi.file_wrapper: reads the file in blocks; close() closes it."""

    def __init__(self, filelike, blksize: int = FILE_BLOCK_SIZE) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        read, size = self.filelike.read, self.blksize
        while block := read(size):
            yield block


# What every environ holds whatever the request (one dict.update per request).
_WSGI_CONSTANTS: dict[str, Any] = {
    "wsgi.version": WSGI_VERSION,
    "wsgi.input_terminated": True,  # input ends at FCGI_STDIN's end, whatever the length says
    "wsgi.multithread": False,
    "wsgi.multiprocess": True,
    "wsgi.run_once": False,
    "wsgi.file_wrapper": FileWrapper,
}


class ErrorStream:
    """wsgi.errors: text to FCGI_STDERR (the web server's error log) and to the worker's log.

    The environ holding it is the request's params, so its reference to the request
    is a cycle: it is let go when the app's response is done (`detach`), and the
    request's objects are freed there and then rather than by the cycle collector.
    """

    __slots__ = ("_request",)

    def __init__(self, request) -> None:
        self._request = request  # its stderr is made when first written

    def detach(self) -> None:
        self._request = None

    def _stderr(self):
        if self._request is None:
            raise ValueError("wsgi.errors written after its request ended")
        return self._request.stderr

    def write(self, text: str) -> int:
        self._stderr().write(text.encode("utf-8", "replace"))
        try:
            sys.stderr.write(text)
        except (OSError, ValueError):
            pass
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stderr().flush()
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


class WSGIResponse:
    """One app call: start_response, write(), the iterable, close(), errors."""

    __slots__ = ("request", "status", "headers", "headers_sent")

    def __init__(self, request) -> None:
        self.request = request
        self.status: str | None = None
        self.headers = None
        self.headers_sent = False

    def start_response(self, status, headers, exc_info=None):
        if exc_info:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        self.status, self.headers = status, headers
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333's write(): the block goes out before write() returns."""
        if type(data) is not bytes:
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        self._send_block(data)

    def _head(self) -> bytes:
        if self.status is None:
            raise AssertionError("the app returned a body before calling start_response")
        self.headers_sent = True
        return render_headers(self.status, self.headers)

    def _send_block(self, data: bytes) -> None:
        stdout = self.request.stdout
        if not self.headers_sent:
            stdout.write(self._head())
        if data:
            stdout.write(data)
        stdout.flush()

    def run(self, app) -> int:
        request = self.request
        errors = ErrorStream(request)
        environ = build_environ(request.params, request.stdin, errors)
        try:
            result = app(environ, self.start_response)
            if type(result) is list:  # the usual answer (a list has no close())
                self._send_whole(result)
                return 0
            try:
                self._send_body(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:
            return self._fail(sys.exc_info())
        finally:
            errors.detach()
        return 0

    def _send_whole(self, result) -> None:
        """The whole body is known: it leaves with END_REQUEST, in one sendall."""
        body = b"".join(result)
        stdout = self.request.stdout
        if self.headers_sent:
            stdout.write(body)
        elif len(body) <= JOIN_BODY_MAX:
            stdout.write(self._head() + body)  # one write; a copy of a small body costs less
        else:
            stdout.write(self._head())
            stdout.write(body)

    def _send_body(self, result) -> None:
        request = self.request
        if isinstance(result, (list, tuple)):
            self._send_whole(result)
            return
        # An iterator: each block is sent before the next is asked for (PEP 3333).
        # Headers wait for the first non-empty block.
        for block in result:
            if type(block) is not bytes:
                raise TypeError(f"the app yielded {type(block).__name__}, not bytes")
            if block:
                self._send_block(block)
                if request.connection_lost:
                    return  # logged once already; producing more would be wasted work
        if not self.headers_sent:
            request.stdout.write(self._head())

    def _fail(self, exc_info) -> int:
        request = self.request
        if request.connection_lost:
            return 1  # the client went away and the app noticed; already logged
        text = "".join(traceback.format_exception(*exc_info))
        log(f"app error on {request.method} {request.uri}:\n{text.rstrip()}", "ERROR")
        request.stderr.write(f"app error: {exc_info[0].__name__}: {exc_info[1]}".encode("utf-8", "replace"))
        if request.stdout.sent:
            request.abort("the app failed after its response had begun; response cut off")
        else:
            request.stdout.take_chunks()  # drop whatever part of a response was queued, not sent
            request.stdout.write(INTERNAL_ERROR)
        return 1


def wsgi_handler(app):
    """A `serve()` handler that runs the WSGI `app` for each request."""

    def handle_wsgi(request) -> int:
        return WSGIResponse(request).run(app)

    handle_wsgi.app = app
    return handle_wsgi
