"""One FastCGI request as the application sees it: params, streamed stdin, buffered output.

The request talks to its connection only through `RequestChannel`, so it is
tested with a fake channel and no socket (tests/unit/worker_fakes.py).
"""

from __future__ import annotations

from time import monotonic
from typing import Any, Protocol

from ..fastcgi import FCGI_STDERR, FCGI_STDOUT


class RequestChannel(Protocol):
    """What a Request needs of the connection that carries it (worker/connection.py's
    `Connection`). The channel in turn uses of the request only its public face:
    `request_id`, `keep_conn`, `started`, `app_status`, `method`/`uri` (for its log
    lines), `stdin` (whether it was read to its end, to read or drop the rest),
    `output_pending`, `take_output()` and `drop_output()`."""

    @property
    def lost(self) -> bool:
        """Whether the peer went away or aborted the request (no system call)."""
        ...

    def pull_stdin(self, request_id: int) -> bytes:
        """The next piece of the request body, b"" at its end; raises ClientGone."""
        ...

    def send_stream(self, rtype: int, request_id: int, chunks: list[bytes], size: int) -> None:
        """Sends `chunks` (`size` bytes) as FCGI_STDOUT or FCGI_STDERR records now."""
        ...

    def end_request(self, request: Request) -> None:
        """Sends what the request has not sent yet, then ends it (END_REQUEST)."""
        ...

    def peer_closed(self) -> bool:
        """Whether the web server has gone (one poll, nothing consumed)."""
        ...

    def went_away(self, reason: str) -> None:
        """Drops the connection: the request's output goes nowhere, `reason` is logged once."""
        ...

# Output is held back until this much is queued (or the app flushes, or the
# request ends), so a response made of many small writes leaves in one sendall.
OUTPUT_FLUSH_SIZE = 256 * 1024


class RequestInput:
    """FCGI_STDIN as a readable binary stream that pulls records only on demand.

    Only what the socket delivered and the app has not read yet is held, so a
    large upload streams through in socket-sized pieces. Unread data is kept as
    one piece plus an offset: reads slice it once, never re-copy the rest.
    """

    __slots__ = ("_pull", "_buf", "_pos", "_eof")

    def __init__(self, pull, ended: bool = False) -> None:
        self._pull = pull  # () -> bytes; b"" once stdin has ended
        self._buf = b""
        self._pos = 0
        self._eof = ended

    def _next_piece(self) -> bytes:
        if self._eof:
            return b""
        data = self._pull()
        if not data:
            self._eof = True
        return data

    def _rest(self) -> bytes:
        buf, pos = self._buf, self._pos
        self._buf, self._pos = b"", 0
        return buf[pos:] if pos else buf

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            chunks = [self._rest()]
            while data := self._next_piece():
                chunks.append(data)
            return b"".join(chunks)
        buf, pos = self._buf, self._pos
        end = pos + size
        if end <= len(buf):
            self._pos = end
            return buf[pos:end]
        rest = self._rest()
        chunks = [rest] if rest else []  # an empty first piece would cost a join
        have = len(rest)
        while have < size:
            data = self._next_piece()
            if not data:
                break
            chunks.append(data)
            have += len(data)
        if not chunks:
            return b""
        return self._keep_tail(chunks, max(have - size, 0))

    def _keep_tail(self, chunks: list[bytes], extra: int) -> bytes:
        """Joins `chunks` but the last `extra` bytes, which stay unread."""
        last = chunks[-1]
        cut = len(last) - extra
        if extra:
            chunks[-1] = last[:cut]
            self._buf, self._pos = last, cut
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def read1(self, size: int = -1) -> bytes:
        """At most `size` bytes with at most one pull: what streaming readers want."""
        if self._pos >= len(self._buf):
            self._buf, self._pos = self._next_piece(), 0
        if size is None or size < 0:
            return self._rest()
        return self.read(min(size, len(self._buf) - self._pos))

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        buf, pos = self._buf, self._pos
        newline = buf.find(b"\n", pos)
        if newline >= 0 and (limit is None or newline + 1 - pos <= limit):
            self._pos = newline + 1
            return buf[pos : newline + 1]
        if limit is not None and len(buf) - pos >= limit:
            self._pos = pos + limit
            return buf[pos : pos + limit]
        # The line goes on in later pieces (rare): gather them in a list.
        chunks = [self._rest()]
        have = len(chunks[0])
        while data := self._next_piece():
            newline = data.find(b"\n")
            end = newline + 1 if newline >= 0 else len(data)
            if limit is not None and have + end > limit:
                end = limit - have
            if end < len(data) or newline >= 0:
                chunks.append(data)
                return self._keep_tail(chunks, len(data) - end)
            chunks.append(data)
            have += len(data)
        return b"".join(chunks)

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
        return self._eof and self._pos >= len(self._buf)

    def mark_ended(self) -> None:
        """Nothing more will be read: the end was seen, or the request is over."""
        self._eof = True
        self._buf, self._pos = b"", 0

    def discard_rest(self) -> None:
        """Reads and drops what is left, so the connection can carry the next request."""
        self._buf, self._pos = b"", 0
        while self._next_piece():
            pass

    def close(self) -> None:
        pass


# The stdin of every request without a body (nginx's GET): ended, nothing to read,
# never anything to pull; reading, marking ended or discarding it changes nothing.
NO_INPUT = RequestInput(None, ended=True)


class RequestOutput:
    """FCGI_STDOUT or FCGI_STDERR: writes are batched, then sent as few records as possible."""

    __slots__ = ("_send", "_chunks", "pending", "closed", "sent")

    def __init__(self, send) -> None:
        self._send = send  # (chunks: list[bytes], size: int) -> None; encodes records and sends them
        self._chunks: list[bytes] = []
        self.pending = 0  # bytes written and not sent yet
        self.closed = False
        self.sent = False  # whether anything left already (so nothing written can be taken back)

    def write(self, data) -> int:
        if self.closed:
            raise ValueError("write to a finished request")
        n = len(data)
        if n:
            self._chunks.append(bytes(data) if type(data) is not bytes else data)
            self.pending += n
            if self.pending >= OUTPUT_FLUSH_SIZE:
                self.flush()
        return n

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._chunks:
            size = self.pending
            self.sent = True
            self._send(self.take_chunks(), size)

    def take_chunks(self) -> list[bytes]:
        """What is queued and not sent yet, as written (the caller sends it)."""
        chunks = self._chunks
        self._chunks = []
        self.pending = 0
        return chunks

    def take(self) -> bytes:
        """take_chunks(), joined (once per request: its body, written on in one call)."""
        chunks = self._chunks
        self._chunks = []
        self.pending = 0
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def writable(self) -> bool:
        return True


class RequestBase:
    """What a request is, whatever carries it: FastCGI (`Request`) or, for a
    program started as a CGI script, the environment and stdio (`CGIRequest`)."""

    __slots__ = ()
    # Each subclass has these (in its own __slots__ or as attributes).
    request_id: int
    params: dict[str, str]
    stdout: Any
    stderr: Any
    finished: bool
    app_status: int

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

    def finish(self, app_status: int | None = None) -> None:
        """Sends what is buffered and ends the request; idempotent. The loop calls it for you."""
        if self.finished:
            return
        self.finished = True  # type: ignore[misc]  # a slot of every subclass
        if app_status is not None:
            self.app_status = app_status  # type: ignore[misc]
        self._end()
        self._close_streams()

    def _close_streams(self) -> None:
        self.stdout.closed = self.stderr.closed = True

    def _end(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request_id} {self.method} {self.uri}>"


class Request(RequestBase):
    """A RESPONDER request: `params` (the CGI environment), `stdin`, `stdout`, `stderr`."""

    __slots__ = ("request_id", "params", "keep_conn", "stdin", "stdout", "_stderr", "_channel", "finished",
                 "app_status", "started")

    def __init__(self, conn: RequestChannel, request_id: int, params: dict[str, str], keep_conn: bool,
                 stdin_ended: bool = False) -> None:
        self.started = monotonic()
        self._channel = conn
        self.request_id = request_id
        self.params = params
        self.keep_conn = keep_conn
        # A body-less request's stdin never reads the connection: they all share one ended stream.
        self.stdin = NO_INPUT if stdin_ended else RequestInput(lambda: conn.pull_stdin(request_id))
        self.stdout = RequestOutput(lambda chunks, size: conn.send_stream(FCGI_STDOUT, request_id, chunks, size))
        self._stderr: RequestOutput | None = None  # made on first use: few requests write to it
        self.finished = False
        self.app_status = 0

    @property
    def stderr(self) -> RequestOutput:
        stderr = self._stderr
        if stderr is None:
            conn, request_id = self._channel, self.request_id
            stderr = self._stderr = RequestOutput(
                lambda chunks, size: conn.send_stream(FCGI_STDERR, request_id, chunks, size))
            stderr.closed = self.finished
        return stderr

    @property
    def output_pending(self) -> bool:
        """Whether anything written to stdout or stderr is not sent yet (stderr is not made to say)."""
        return bool(self.stdout.pending or self._stderr is not None and self._stderr.pending)

    def take_output(self) -> tuple[list[bytes] | None, list[bytes] | None]:
        """What was written and not sent yet, to send now: stdout's and stderr's
        chunks, None for a stream with nothing."""
        stdout, stderr = self.stdout, self._stderr
        out = err = None
        if stdout.pending:  # take_chunks(), without a call: this runs for every request
            out, stdout._chunks, stdout.pending = stdout._chunks, [], 0
        if stderr is not None and stderr.pending:
            err = stderr.take_chunks()
        return out, err

    def drop_output(self) -> None:
        """Forgets what was written and not sent (the request was aborted)."""
        self.stdout.take_chunks()
        if self._stderr is not None:
            self._stderr.take_chunks()

    def _close_streams(self) -> None:
        self.stdout.closed = True
        if self._stderr is not None:
            self._stderr.closed = True

    @property
    def connection_lost(self) -> bool:
        """Whether a send or read already found the connection dead or the request
        aborted (no system call)."""
        return self._channel.lost

    def client_gone(self) -> bool:
        """True once the web server closed the connection (its client went away)."""
        return self._channel.peer_closed()

    def _end(self) -> None:
        """What is buffered, then END_REQUEST."""
        self._channel.end_request(self)
        # What follows on the connection belongs to the next request: stdin.mark_ended(),
        # without a call (this runs for every request).
        stdin = self.stdin
        stdin._eof, stdin._buf, stdin._pos = True, b"", 0

    def abort(self, reason: str) -> None:
        """Drops the connection without END_REQUEST, so the web server sees the response fail."""
        self.finished = True
        self._channel.went_away(reason)
