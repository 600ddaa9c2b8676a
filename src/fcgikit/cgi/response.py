"""A CGI program's output as the response nginx gets (RFC 3875 section 6), sans I/O.

Bytes in, bytes out: `feed()` holds output back only until the header block is
complete, checks and translates that block, then passes the body straight on,
so a response is streamed, never gathered.

- document response: the header block as the program wrote it (CRLF line ends);
- local redirect (`Location: /path`, no other status): handed to nginx as
  `X-Accel-Redirect`, so nginx serves the new path internally (6.2.2); or, with
  `defer_local_redirect`, nothing is output and `location` is left for the
  gateway to follow (gateway.py); any body the program printed is dropped;
- client redirect (`Location:` an absolute URI): `Status: 302 Found` unless the
  program chose a status;
- NPH program (`nph-` name): its HTTP status line becomes `Status:`, since nginx
  speaks FastCGI to us and writes the status line itself;
- anything else (no header block, a line that is not a header, a bad status):
  BadResponse, which the gateway answers with 502 and logs.
"""

from __future__ import annotations

import re

MAX_HEADER_BYTES = 64 * 1024
HEADER_END = re.compile(rb"\r?\n\r?\n")
LINE_END = re.compile(rb"\r?\n")
FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*")
STATUS_VALUE = re.compile(rb"([1-5][0-9][0-9])(?:[ \t]+([^\r\n]*))?")
NPH_STATUS_LINE = re.compile(rb"HTTP/[0-9]\.[0-9][ \t]+([1-5][0-9][0-9])(?:[ \t]+([^\r\n]*))?")
# Hop-by-hop headers an NPH program may print; the connection to the client is nginx's.
NPH_DROPPED = frozenset({b"connection", b"keep-alive"})


class BadResponse(Exception):
    """The program's output is not a CGI response; the reason goes to the log."""


class ResponseParser:
    """Feed program output; get the bytes to send as FCGI_STDOUT."""

    def __init__(
        self,
        nph: bool = False,
        max_header_bytes: int = MAX_HEADER_BYTES,
        defer_local_redirect: bool = False,
        extra_headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self.nph = nph
        self.defer_local_redirect = defer_local_redirect
        self.extra_headers = extra_headers  # added to every response the program makes
        self.location: bytes | None = None  # a deferred local redirect's target
        self.max_header_bytes = max_header_bytes
        self.head = bytearray()
        self.headers_done = False
        self.kind = ""  # "document", "local-redirect", "client-redirect" once headers_done
        self.status = 0  # the HTTP status the response will carry (0 until known)
        self.discard_body = False

    @property
    def head_sent(self) -> bool:
        """Response bytes went out (a deferred local redirect sends none)."""
        return self.headers_done and self.location is None

    def feed(self, data: bytes) -> bytes:
        if self.headers_done:
            return b"" if self.discard_body else data
        self.head += data
        end = HEADER_END.search(self.head, max(0, len(self.head) - len(data) - 3))
        if end is None:
            self.check_partial_head()
            return b""
        block, body = bytes(self.head[: end.start()]), bytes(self.head[end.end() :])
        self.head = bytearray()
        self.headers_done = True
        out = self.translate(block)
        return out if self.discard_body else out + body

    def close(self) -> bytes:
        """The program's output ended; raises BadResponse when no header block came."""
        if self.headers_done:
            return b""
        if not self.head:
            raise BadResponse("the program printed nothing")
        raise BadResponse(f"output ended inside the header block: {bytes(self.head[:200])!r}")

    def check_partial_head(self) -> None:
        if self.head[:1] in (b"\n", b"\r") and LINE_END.match(self.head):
            raise BadResponse("output starts with an empty line: no header block")
        if len(self.head) > self.max_header_bytes:
            raise BadResponse(f"header block longer than {self.max_header_bytes} bytes")

    def translate(self, block: bytes) -> bytes:
        lines = LINE_END.split(block)
        if not lines[0]:
            raise BadResponse("output starts with an empty line: no header block")
        status_line = self.nph_status(lines[0]) if self.nph else None
        if status_line is not None:
            lines = lines[1:]
        fields = [parse_field(line) for line in lines]
        if self.nph:
            fields = [(n, v) for n, v in fields if n.lower() not in NPH_DROPPED]
        if status_line is not None:
            fields.insert(0, (b"Status", status_line))
        return self.render(fields + list(self.extra_headers) if self.extra_headers else fields)

    def nph_status(self, first_line: bytes) -> bytes | None:
        match = NPH_STATUS_LINE.fullmatch(first_line)
        if match is None:
            return None
        code, reason = match.groups()
        return code + b" " + (reason or b"")

    def render(self, fields: list[tuple[bytes, bytes]]) -> bytes:
        status = location = None
        for name, value in fields:
            lname = name.lower()
            if lname == b"status":
                status = check_status(value)
            elif lname == b"location":
                location = value
        if location is not None and is_local_path(location) and status in (None, 200):
            return self.local_redirect(location)
        if location is not None and status is None:
            self.kind, self.status = "client-redirect", 302
            fields = [(b"Status", b"302 Found")] + fields
        else:
            self.kind = "client-redirect" if location is not None else "document"
            self.status = status or 200
        return b"".join(name + b": " + value + b"\r\n" for name, value in fields) + b"\r\n"

    def local_redirect(self, location: bytes) -> bytes:
        self.kind, self.status, self.discard_body = "local-redirect", 200, True
        if self.defer_local_redirect:  # the gateway decides what to do with it
            self.location = location
            return b""
        # nginx re-runs the request for this URI (as GET) and never shows it to the client.
        return b"X-Accel-Redirect: " + location + b"\r\n\r\n"


def is_local_path(location: bytes) -> bool:
    """An abs-path ("/x"), not a network-path ("//host/x", which is a client redirect)."""
    return location.startswith(b"/") and not location.startswith(b"//")


def parse_field(line: bytes) -> tuple[bytes, bytes]:
    match = FIELD.fullmatch(line)
    if match is None:
        raise BadResponse(f"not a header line: {line[:200]!r}")
    return match.group(1), match.group(2)


def check_status(value: bytes) -> int:
    match = STATUS_VALUE.fullmatch(value)
    if match is None:
        raise BadResponse(f"bad Status header: {value[:100]!r}")
    return int(match.group(1))


def error_response(status: int, message: str, extra_headers: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """A small text/plain CGI response the gateway sends itself (403, 404, 502, 503, 504)."""
    reason = REASONS.get(status, "Error")
    body = f"{status} {reason}: {message}\n".encode("latin-1", "replace")
    extra = b"".join(name + b": " + value + b"\r\n" for name, value in extra_headers)
    return (
        (f"Status: {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n").encode("latin-1")
        + extra
        + b"\r\n"
        + body
    )


REASONS = {
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def client_redirect(location: bytes, method: str) -> bytes:
    """A local redirect handed to the client: it asks the web server for `location`
    itself, through all of the server's own rules. 302 after a GET or HEAD; 303 (See
    Other: fetch it with GET) after any other method, as a local redirect is a GET."""
    status = b"302 Found" if method in ("GET", "HEAD") else b"303 See Other"
    return b"Status: " + status + b"\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
