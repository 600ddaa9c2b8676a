"""Hostile FastCGI streams against a runtime's socket, valid probes in between.

Each hostile stream is one connection that sends something a broken or hostile
web server (or anyone who reaches the port) could send, then leaves with a FIN
or a reset without reading the answer. Every `probe_every` streams a valid
request goes over one kept-alive FCGI_KEEP_CONN connection, as nginx's upstream
keepalive would send it; its answer must be complete and right. Only loopback
or Unix socket addresses are used.

    result = fuzz(("127.0.0.1", port), probe, lambda out: b"hello" in out, seconds=15)
    assert result.failed == [], result.summary()
"""

from __future__ import annotations

import os
import random
import socket
import struct
import time
from dataclasses import dataclass, field

from fcgikit.fastcgi import (
    FCGI_ABORT_REQUEST,
    FCGI_BEGIN_REQUEST,
    FCGI_DATA,
    FCGI_GET_VALUES,
    FCGI_PARAMS,
    FCGI_STDIN,
    ClientConnection,
    encode_record,
)
from fcgikit.fastcgi.client import exchange, get_params

RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


def _begin(request_id: int, role: int = 1, flags: int = 0) -> bytes:
    return encode_record(FCGI_BEGIN_REQUEST, request_id, struct.pack("!HB5x", role, flags))


def _header(version: int, rtype: int, request_id: int, length: int, padding: int) -> bytes:
    return struct.pack("!BBHHBx", version, rtype, request_id, length, padding)


def _post(params: dict, body: bytes) -> bytes:
    return ClientConnection().request(1, {**params, "REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body))}, body)


class Streams:
    """The hostile streams, drawn from a seeded generator (a failure can be replayed)."""

    def __init__(self, params: dict, seed: int) -> None:
        self.rng = random.Random(seed)
        self.params = params
        self.valid = ClientConnection().request(1, params, b"")
        self.post = _post(params, b"x" * 3000)
        self.kinds = [getattr(self, name) for name in dir(self) if name.startswith("k_")]

    def next(self) -> tuple[str, bytes]:
        kind = self.rng.choice(self.kinds)
        return kind.__name__[2:], kind()

    def k_random_bytes(self) -> bytes:
        return self.rng.randbytes(self.rng.randint(1, 400))

    def k_valid_request_cut_anywhere(self) -> bytes:
        return self.valid[: self.rng.randint(1, len(self.valid) - 1)]

    def k_post_cut_in_the_body(self) -> bytes:
        head = self.post[: self.post.index(encode_record(FCGI_STDIN, 1, b"x" * 3000)[:8])]
        return head + encode_record(FCGI_STDIN, 1, b"x" * self.rng.randint(0, 2999))

    def k_valid_request_with_bytes_flipped(self) -> bytes:
        data = bytearray(self.rng.choice((self.valid, self.post)))
        for _ in range(self.rng.randint(1, 8)):
            data[self.rng.randrange(len(data))] = self.rng.randrange(256)
        return bytes(data)

    def k_bad_record_header(self) -> bytes:
        rng = self.rng
        header = _header(rng.choice((0, 2, 255)), rng.randint(0, 255), rng.randint(0, 65535),
                         rng.randint(0, 65535), rng.randint(0, 255))
        return rng.choice((b"", _begin(1))) + header + rng.randbytes(rng.randint(0, 64))

    def k_record_claiming_a_large_body(self) -> bytes:
        return _begin(1) + _header(1, FCGI_PARAMS, 1, 65535, 255) + self.rng.randbytes(self.rng.randint(0, 100))

    def k_param_lengths_claiming_gigabytes(self) -> bytes:
        pairs = struct.pack("!II", 0xFFFFFFF0, 0x80000010) + b"name"
        return _begin(1) + encode_record(FCGI_PARAMS, 1, pairs) + encode_record(FCGI_PARAMS, 1)

    def k_other_roles_and_request_ids(self) -> bytes:
        rng = self.rng
        out = b""
        for _ in range(rng.randint(1, 4)):
            out += _begin(rng.choice((0, 1, 2, 65535)), rng.choice((1, 2, 3, 9)), rng.choice((0, 1)))
        return out + self.valid[16:]

    def k_abort_during_the_request(self) -> bytes:
        cut = self.post[: self.rng.randint(17, len(self.post) - 1)]
        return cut + encode_record(FCGI_ABORT_REQUEST, 1) + self.rng.choice((b"", self.valid))

    def k_management_records(self) -> bytes:
        rng = self.rng
        body = rng.choice((b"\x0e\x00FCGI_MAX_CONNS", rng.randbytes(rng.randint(0, 50)),
                           struct.pack("!BI", 5, 0x7FFFFFFF)))
        return encode_record(FCGI_GET_VALUES, 0, body) + encode_record(rng.choice((FCGI_DATA, 12, 200)), 0, b"x")

    def k_many_small_records(self) -> bytes:
        head = _begin(1)
        records = b"".join(encode_record(FCGI_PARAMS, 1, b"") for _ in range(self.rng.randint(1, 3)))
        stdin = b"".join(encode_record(FCGI_STDIN, 1, b"a") for _ in range(self.rng.randint(0, 200)))
        return head + encode_record(FCGI_PARAMS, 1, self.valid[24:40]) + records + stdin

    def k_whole_request_left_unread(self) -> bytes:
        return self.rng.choice((self.valid, self.post))  # answered into a closed or reset connection


@dataclass
class FuzzResult:
    streams: int = 0
    probes: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    kinds: dict = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.streams} hostile streams, {self.probes} probes, {len(self.failed)} failed "
                f"in {self.seconds:.1f}s; first failures: {self.failed[:5]}")


def _connect(address, timeout: float) -> socket.socket:
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
        return sock
    return socket.create_connection(address, timeout=timeout)


def send_hostile(address, data: bytes, rng: random.Random) -> None:
    try:
        sock = _connect(address, 5.0)
    except OSError:
        return  # the backlog is full for a moment: a real client would see that too
    with sock:
        try:
            sock.sendall(data)
            how = rng.random()
            if how < 0.1:  # stay a moment, reading what comes, then leave
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(0.2)
                while sock.recv(65536):
                    pass
            elif how < 0.55:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST)
        except OSError:
            pass  # the runtime closed it first: fine


class Prober:
    """Valid requests on one kept-alive connection; a new one only after a failure."""

    def __init__(self, address, params: dict, check, timeout: float = 10.0) -> None:
        self.address, self.params, self.check, self.timeout = address, params, check, timeout
        self.sock: socket.socket | None = None
        self.conn = ClientConnection()
        self.sent = 0

    def probe(self) -> str | None:
        """None when the answer was right, else what went wrong."""
        self.sent += 1
        try:
            if self.sock is None:
                self.sock = _connect(self.address, self.timeout)
                self.conn = ClientConnection()
            answer = exchange(self.sock, self.conn, self.params, keep_conn=True)
            if answer.complete and self.check(answer.stdout):
                return None
            problem = f"probe {self.sent}: wrong answer {answer.stdout[:200]!r} (status {answer.protocol_status})"
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            problem = f"probe {self.sent}: {type(exc).__name__}: {exc}"
        self.close()
        return problem

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def fuzz(address, params: dict, check, *, seconds: float | None = None, streams: int | None = None,
         probe_every: int = 10, seed: int = 12, alive=lambda: True) -> FuzzResult:
    """Hostile streams until `seconds` pass or `streams` were sent, a probe every
    `probe_every`; stops early when `alive()` turns False (the runtime died)."""
    source = Streams(params, seed)
    prober = Prober(address, params, check)
    result = FuzzResult()
    start = time.monotonic()
    try:
        while True:
            if seconds is not None and time.monotonic() - start >= seconds:
                break
            if streams is not None and result.streams >= streams:
                break
            kind, data = source.next()
            send_hostile(address, data, source.rng)
            result.streams += 1
            result.kinds[kind] = result.kinds.get(kind, 0) + 1
            if result.streams % probe_every == 0:
                result.probes += 1
                problem = prober.probe()
                if problem:
                    result.failed.append(problem)
                if not alive():
                    result.failed.append(f"the runtime died after {result.streams} streams")
                    break
        result.probes += 1
        problem = prober.probe()  # and one at the end
        if problem:
            result.failed.append(problem)
    finally:
        prober.close()
        result.seconds = time.monotonic() - start
    return result


def process_figures(pid: int) -> tuple[int, int]:
    """(resident set in kB, open descriptors) of a process, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


__all__ = ["FuzzResult", "Streams", "fuzz", "get_params", "process_figures"]
