"""The request body as a program gets it: exactly CONTENT_LENGTH bytes of FCGI_STDIN.

Why the body must be fully received before any response byte goes to nginx:
nginx stops sending the request body the moment it has the response header
(its upstream write handler becomes a no-op), yet it waits for END_REQUEST. So
a gateway that answers while the body is still arriving, then waits for the
rest of FCGI_STDIN, waits forever. The relay therefore holds the program's
output back until the body is in (streamed to the program as it comes); if
the program prints a lot before reading, the rest of the body is spooled
here (memory, then a temp file) so the output can flow.
"""

from __future__ import annotations

import tempfile

SPOOL_IN_MEMORY = 1024 * 1024


class RequestBody:
    def __init__(self, stdin, length: int | None) -> None:
        self.stdin = stdin  # the request's FCGI_STDIN stream (read1, discard_rest)
        self.left = length  # body bytes still to come; None: until FCGI_STDIN ends
        self.spool: tempfile.SpooledTemporaryFile[bytes] | None = None
        self.received = False  # FCGI_STDIN fully read: nginx has nothing more to send

    def read(self, size: int) -> bytes:
        """Up to `size` body bytes; b"" at the end of the body."""
        if self.spool is not None:
            return self.spool.read(size)
        if self.received:
            return b""
        if self.left is not None:
            size = min(size, self.left)
        data = self.stdin.read1(size) if size else b""
        if self.left is not None:
            self.left -= len(data)
        if not data or self.left == 0:
            self.finish_receiving()
        return data

    def finish_receiving(self) -> None:
        # Past CONTENT_LENGTH nothing is the program's; read up to the end of FCGI_STDIN
        # so the connection is ready for the next request.
        self.stdin.discard_rest()
        self.received = True

    def spool_rest(self) -> None:
        """Receives the rest of the body now, into memory or a temp file, for later reads."""
        if self.received:
            return
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        while True:
            chunk = self.read(65536)
            if not chunk:
                break
            spool.write(chunk)
        spool.seek(0)
        self.spool = spool

    def discard(self) -> None:
        """The program wants no (more) body: drop the rest."""
        if not self.received:
            self.finish_receiving()
        self.close()

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        self.received = True
