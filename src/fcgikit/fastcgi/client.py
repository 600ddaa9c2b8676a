"""A small blocking FastCGI client: what the web server does, for probes and tests."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, cast

from .protocol import FCGI_REQUEST_COMPLETE, ClientConnection, ProtocolError, ResponseReceived


@dataclass
class FastCGIResponse:
    stdout: bytes
    stderr: bytes
    app_status: int
    protocol_status: int

    @property
    def complete(self) -> bool:
        return self.protocol_status == FCGI_REQUEST_COMPLETE

    def http(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """The CGI response in stdout as (status, headers, body)."""
        return parse_cgi_response(self.stdout)


def parse_cgi_response(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
        if not sep:
            raise ProtocolError("the response has no end of its header block")
    status, headers = 200, []
    for line in head.decode("latin-1").splitlines():
        name, colon, value = line.partition(":")
        if not colon:
            raise ProtocolError(f"malformed response header line {line!r}")
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            status = int(value.split(None, 1)[0])
        else:
            headers.append((name, value))
    if status == 200 and any(n.lower() == "location" for n, _ in headers):
        status = 302
    return status, headers, body


def parse_address(address) -> tuple[int, object]:
    """'host:port', '[::1]:port', ('host', port), '/path' or 'unix:/path' -> (family, sockaddr)."""
    if isinstance(address, tuple):
        return socket.AF_INET6 if ":" in address[0] else socket.AF_INET, address
    if address.startswith("unix:"):
        return socket.AF_UNIX, address[5:]
    if address.startswith("/"):
        return socket.AF_UNIX, address
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address {address!r}: expected HOST:PORT or a socket path")
    if host.startswith("["):
        return socket.AF_INET6, (host.strip("[]"), int(port))
    return socket.AF_INET, (host, int(port))


def connect(address, timeout: float = 5.0) -> socket.socket:
    family, sockaddr = parse_address(address)
    sockaddr = cast(Any, sockaddr)  # a path for AF_UNIX, (host, port) otherwise
    if family == socket.AF_UNIX:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection(sockaddr, timeout=timeout)


def fcgi_request(address, params, stdin: bytes = b"", timeout: float = 5.0, request_id: int = 1) -> FastCGIResponse:
    """Sends one request on a new connection and reads the whole response.

    Raises ProtocolError for a malformed answer, OSError (socket.timeout among them)
    when the application cannot be reached or does not answer in time.
    """
    with connect(address, timeout) as sock:
        return exchange(sock, ClientConnection(), params, stdin, request_id)


def exchange(
    sock: socket.socket,
    conn: ClientConnection,
    params,
    stdin: bytes = b"",
    request_id: int = 1,
    keep_conn: bool = False,
) -> FastCGIResponse:
    """One request on an open connection (kept open if keep_conn)."""
    sock.sendall(conn.request(request_id, params, stdin, keep_conn=keep_conn))
    stdout: list[bytes] = []
    stderr: list[bytes] = []
    while True:
        data = sock.recv(65536)
        if not data:
            raise ProtocolError("the application closed the connection before END_REQUEST")
        for event in conn.receive(data):
            if type(event) is not ResponseReceived or event.request_id != request_id:
                continue  # management answers (ValuesReceived, UnknownTypeReceived), other requests
            if event.ended:
                return FastCGIResponse(b"".join(stdout), b"".join(stderr), event.app_status, event.protocol_status)
            stdout.append(event.stdout)
            stderr.append(event.stderr)


# Sent by `fcgikit.probe` (health checks, `fcgikit up` waiting): an application may answer it
# without logging it. nginx sends only the params its config names, so clients cannot set it.
PROBE_PARAM = "FCGIKIT_PROBE"


def get_params(uri: str = "/", method: str = "GET", **extra: str) -> dict[str, str]:
    """The params nginx would send for a simple request to `uri`."""
    path, _, query = uri.partition("?")
    params = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "fcgikit-client",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "0",
        "REQUEST_METHOD": method,
        "REQUEST_URI": uri,
        "DOCUMENT_URI": path,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_TYPE": "",
        "CONTENT_LENGTH": "",
    }
    params.update(extra)
    return params
