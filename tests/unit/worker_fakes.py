"""A fake RequestChannel for the worker's Request: stdin from a list, output recorded."""

from fcgikit.fastcgi import FCGI_STDOUT
from fcgikit.worker.connection import ClientGone
from fcgikit.worker.request import Request, RequestChannel


class FakeConnection(RequestChannel):
    def __init__(self, stdin_chunks=(), *, gone=False, stdin_error=False):
        self.stdin_chunks = list(stdin_chunks)
        self.pulls = 0
        self.stdout_sends: list[bytes] = []
        self.stderr_sends: list[bytes] = []
        self.ended: list[tuple[int, bytes, bytes, int]] = []  # (id, last stdout, last stderr, status)
        self.gone = gone
        self.aborted = False
        self.reasons: list[str] = []
        self.stdin_error = stdin_error

    @property
    def lost(self) -> bool:
        return self.gone or self.aborted

    def pull_stdin(self, request_id):
        self.pulls += 1
        if self.stdin_chunks:
            return self.stdin_chunks.pop(0)
        if self.stdin_error:
            raise ClientGone("the web server closed the connection")
        return b""

    def send_stream(self, rtype, request_id, chunks, size):
        data = b"".join(chunks)
        assert len(data) == size
        (self.stdout_sends if rtype == FCGI_STDOUT else self.stderr_sends).append(data)

    def peer_closed(self):
        return self.gone

    def went_away(self, reason):
        self.gone = True
        self.reasons.append(reason)

    def end_request(self, request):
        stdout, stderr = request.take_output()  # as Connection does: stderr is not made if unused
        self.ended.append((request.request_id, b"".join(stdout or ()), b"".join(stderr or ()), request.app_status))

    @property
    def stdout(self) -> bytes:
        """Everything the request sent on stdout, in order, the part sent with END_REQUEST included."""
        tail = b"".join(end[1] for end in self.ended)
        return b"".join(self.stdout_sends) + tail

    @property
    def stderr(self) -> bytes:
        return b"".join(self.stderr_sends) + b"".join(end[2] for end in self.ended)


def make_request(params=None, stdin_chunks=(), **kwargs):
    conn = FakeConnection(stdin_chunks, **kwargs)
    base = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "SCRIPT_NAME": "/"}
    base.update(params or {})
    return Request(conn, 1, base, keep_conn=True), conn
