"""One request from plain CGI: what libfcgi's FCGI_Accept() does when fd 0 is no socket.

A program written as an accept loop then also runs as a CGI script (under
fcgiwrap or fcgikit.cgi): the loop gets exactly one request, built from the
environment and stdio, and ends.
"""

from __future__ import annotations

import os
import sys

from .request import RequestBase, RequestInput, RequestOutput

STDIN_PIECE = 64 * 1024


def started_as_cgi(environ=os.environ) -> bool:
    """A CGI/1.1 server sets GATEWAY_INTERFACE for the programs it runs (RFC 3875 4.1.4)."""
    return environ.get("GATEWAY_INTERFACE", "").upper().startswith("CGI/")


class CGIRequest(RequestBase):
    """The `Request` interface over os.environ, stdin and stdout."""

    request_id = 1
    keep_conn = False

    def __init__(self, environ=None, stdin=None, stdout=None, stderr=None) -> None:
        self.params = dict(os.environ if environ is None else environ)
        self._stdin = stdin if stdin is not None else sys.stdin.buffer
        self._out = stdout if stdout is not None else sys.stdout.buffer
        self._err = stderr if stderr is not None else sys.stderr.buffer
        length = self.params.get("CONTENT_LENGTH", "")
        # RFC 3875 4.2: the script reads no more than CONTENT_LENGTH bytes.
        self._left = int(length) if length.isdigit() else 0
        self.stdin = RequestInput(self._read_piece)
        self.stdout = RequestOutput(lambda chunks, size: self._write(self._out, chunks))
        self.stderr = RequestOutput(lambda chunks, size: self._write(self._err, chunks))
        self.finished = False
        self.app_status = 0

    def _read_piece(self) -> bytes:
        if self._left <= 0:
            return b""
        data = self._stdin.read(min(self._left, STDIN_PIECE))
        self._left -= len(data)
        if not data:
            self._left = 0
        return data

    @staticmethod
    def _write(stream, chunks: list[bytes]) -> None:
        for chunk in chunks:
            stream.write(chunk)
        stream.flush()

    @property
    def connection_lost(self) -> bool:
        return False

    def client_gone(self) -> bool:
        return False

    def _end(self) -> None:
        self.stdout.flush()
        self.stderr.flush()

    def abort(self, reason: str) -> None:
        self.finished = True
        self.stdout.take_chunks()  # a CGI program that fails sends nothing more


def serve_one_cgi_request():
    """The accept loop's single round when the program runs as a CGI script."""
    request = CGIRequest()
    try:
        yield request
    finally:
        request.finish()
