"""One FastCGI request as the application sees it: params, streamed stdin, buffered output.

The request talks to its connection through four methods (`pull_stdin`,
`send`, `peer_closed`, `client_went_away`), so it is tested with a fake
connection and no socket.
"""

from __future__ import annotations

# Output is held back until this much is queued (or the app flushes, or the
# request ends), so a response made of many small writes leaves in one sendall.
OUTPUT_FLUSH_SIZE = 256 * 1024


class RequestInput:
    """FCGI_STDIN as a readable binary stream that pulls records only on demand.

    Only what the socket delivered and the app has not read yet is held, so a
    large upload streams through in socket-sized pieces.
    """

    __slots__ = ("_pull", "_buf", "_eof")

    def __init__(self, pull) -> None:
        self._pull = pull  # () -> bytes; b"" once stdin has ended
        self._buf = b""
        self._eof = False

    def _more(self) -> bool:
        if self._eof:
            return False
        data = self._pull()
        if not data:
            self._eof = True
            return False
        self._buf = self._buf + data if self._buf else data
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            chunks = [self._buf]
            while not self._eof:
                data = self._pull()
                if not data:
                    self._eof = True
                chunks.append(data)
            self._buf = b""
            return b"".join(chunks)
        while len(self._buf) < size and self._more():
            pass
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def read1(self, size: int = -1) -> bytes:
        """At most `size` bytes with at most one pull: what streaming readers want."""
        if not self._buf:
            self._more()
        if size is None or size < 0:
            size = len(self._buf)
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end >= 0:
                cut = end + 1
                break
            if limit is not None and len(self._buf) >= limit:
                cut = limit
                break
            start = len(self._buf)
            if not self._more():
                cut = len(self._buf)
                break
        if limit is not None:
            cut = min(cut, limit)
        line, self._buf = self._buf[:cut], self._buf[cut:]
        return line

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines, total = [], 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def readable(self) -> bool:
        return True

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._buf

    def discard_rest(self) -> None:
        """Reads and drops what is left, so the connection can carry the next request."""
        self._buf = b""
        while self._more():
            self._buf = b""

    def close(self) -> None:
        pass


class RequestOutput:
    """FCGI_STDOUT or FCGI_STDERR: writes are batched, then sent as few records as possible."""

    __slots__ = ("_send", "_chunks", "_size", "closed")

    def __init__(self, send) -> None:
        self._send = send  # (data: bytes) -> None; encodes records and sends them
        self._chunks: list[bytes] = []
        self._size = 0
        self.closed = False

    def write(self, data) -> int:
        if self.closed:
            raise ValueError("write to a finished request")
        n = len(data)
        if n:
            self._chunks.append(bytes(data) if type(data) is not bytes else data)
            self._size += n
            if self._size >= OUTPUT_FLUSH_SIZE:
                self.flush()
        return n

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._chunks:
            self._send(self.take())

    def take(self) -> bytes:
        """What is queued and not sent yet (the request's last write goes out with END_REQUEST)."""
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._size = 0
        return data

    @property
    def pending(self) -> int:
        return self._size

    def writable(self) -> bool:
        return True


class Request:
    """A RESPONDER request: `params` (the CGI environment), `stdin`, `stdout`, `stderr`."""

    __slots__ = ("request_id", "params", "keep_conn", "stdin", "stdout", "stderr", "_conn", "finished", "app_status")

    def __init__(self, conn, request_id: int, params: dict[str, str], keep_conn: bool) -> None:
        self._conn = conn
        self.request_id = request_id
        self.params = params
        self.keep_conn = keep_conn
        self.stdin = RequestInput(lambda: conn.pull_stdin(request_id))
        self.stdout = RequestOutput(lambda data: conn.send_stdout(request_id, data))
        self.stderr = RequestOutput(lambda data: conn.send_stderr(request_id, data))
        self.finished = False
        self.app_status = 0

    @property
    def environ(self) -> dict[str, str]:
        """The params under the name CGI programs know them by."""
        return self.params

    @property
    def method(self) -> str:
        return self.params.get("REQUEST_METHOD", "")

    @property
    def uri(self) -> str:
        params = self.params
        return params.get("REQUEST_URI") or params.get("SCRIPT_NAME", "") + params.get("PATH_INFO", "")

    @property
    def connection_lost(self) -> bool:
        """Whether a send or read already found the connection dead (no system call)."""
        return self._conn.gone

    def client_gone(self) -> bool:
        """True once the web server closed the connection (its client went away)."""
        return self._conn.peer_closed()

    def finish(self, app_status: int | None = None) -> None:
        """Sends what is buffered and END_REQUEST; idempotent. The loop calls it for you."""
        if self.finished:
            return
        self.finished = True
        if app_status is not None:
            self.app_status = app_status
        self._conn.end_request(self)

    def abort(self, reason: str) -> None:
        """Drops the connection without END_REQUEST, so the web server sees the response fail."""
        self.finished = True
        self._conn.went_away(reason)

    def __repr__(self) -> str:
        return f"<Request {self.request_id} {self.method} {self.uri}>"
