"""Passing idle kept-alive connections between a retiring child and the manager.

A child that leaves (max_requests reached, or replaced after SIGHUP) must not
close the idle connections nginx keeps cached: nginx may be writing the next
request on one at that very moment, and a POST that meets a closed connection is
a failed request. The child sends them instead (SCM_RIGHTS over a Unix
SOCK_SEQPACKET pair, as nginx's binary upgrade passes its sockets) to the
manager, which gives them to a live child; whatever nginx wrote meanwhile waits
in the kernel's buffer.

One message = up to MAX_FDS_PER_MESSAGE descriptors plus a JSON body: the peer
address of each (for logs and the allow-list), and `last` when it is the
retiring child's final batch. The manager answers `last` by shutting its side
for writing: the child then knows no more connections can come its way.
"""

from __future__ import annotations

import json
import socket

MAX_FDS_PER_MESSAGE = 64  # the kernel allows 253 per SCM_RIGHTS message
MAX_MESSAGE = 64 * 1024  # JSON for 64 peers is ~3 KB


def encode_batch(peers: list, last: bool = False) -> bytes:
    return json.dumps({"peers": [_peer_to_json(p) for p in peers], "last": last}).encode()


def decode_batch(data: bytes) -> tuple[list, bool]:
    """(peer addresses, last); a malformed body is an empty, non-final batch."""
    try:
        message = json.loads(data)
        return [_peer_from_json(p) for p in message["peers"]], bool(message["last"])
    except (ValueError, KeyError, TypeError):
        return [], False


def _peer_to_json(addr):
    return list(addr) if isinstance(addr, tuple) else addr


def _peer_from_json(addr):
    return tuple(addr) if isinstance(addr, list) else addr


def batches(items: list, size: int = MAX_FDS_PER_MESSAGE) -> list[list]:
    """`items` in messages of at most `size`; always one message, empty if need be,
    so a `last` marker is sent even with no connection to pass."""
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


def send_connections(sock: socket.socket, conns: list[tuple[int, object]], last: bool = False) -> None:
    """Send (fd, peer address) pairs; the caller still owns (and closes) its fds."""
    chunks = batches(conns)
    for n, chunk in enumerate(chunks):
        body = encode_batch([addr for _, addr in chunk], last and n == len(chunks) - 1)
        socket.send_fds(sock, [body], [fd for fd, _ in chunk])


def receive_connections(sock: socket.socket) -> tuple[list[tuple[int, object]], bool, bool]:
    """One message: ([(fd, peer address)], last, eof). The fds are now the caller's.
    Raises BlockingIOError on a non-blocking socket with nothing to read."""
    data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS_PER_MESSAGE, socket.MSG_CMSG_CLOEXEC)
    if not data and not fds:
        return [], False, True
    peers, last = decode_batch(data)
    peers += [None] * (len(fds) - len(peers))  # a body that lost its addresses: fds are kept
    return list(zip(fds, peers, strict=False)), last, False  # more addresses than fds: the extra are dropped


def drain(sock: socket.socket):
    """Yields (connections, last) for every message waiting on the non-blocking
    handoff socket `sock`, and returns once nothing more is there now. Both ends
    (the manager collecting from a leaving child, a child adopting from the
    manager, and a leaving child returning what came late) read through it.
    Raises EOFError when the other end has closed (nothing more will ever come),
    OSError when the socket failed. On a blocking socket it waits for each message,
    so it ends only by EOFError or OSError (TimeoutError past the socket's timeout)."""
    while True:
        try:
            handed, last, eof = receive_connections(sock)
        except (BlockingIOError, InterruptedError):
            return
        if eof:
            raise EOFError("the other end closed the handoff socket")
        yield handed, last
