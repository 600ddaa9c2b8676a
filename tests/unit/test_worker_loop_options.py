"""The 60 s kernel I/O timeouts every connection a worker serves must carry.

They are set once on the listening socket, from which Linux copies them into each
connection it accepts, except into connections established before they were set
(a health check, or nginx's first burst, while the first child started)."""

import socket
import struct

from fcgikit.fastcgi import ClientConnection
from fcgikit.worker.connection import IO_TIMEOUT
from fcgikit.worker.loop import RequestLoop


def receive_timeout(sock: socket.socket) -> int:
    return struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))[0]


def test_a_connection_older_than_the_child_gets_the_timeouts_and_does_not_decide_for_the_rest():
    listener = socket.create_server(("127.0.0.1", 0))
    request = ClientConnection().request(1, {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/"}, b"")
    early = socket.create_connection(listener.getsockname(), timeout=5)  # before the loop set anything
    early.sendall(request)
    loop = RequestLoop(listener)
    requests = iter(loop)
    late = None
    try:
        first = next(requests)
        assert receive_timeout(first._channel.sock) == int(IO_TIMEOUT)  # set on it, as it had none
        late = socket.create_connection(listener.getsockname(), timeout=5)
        late.sendall(request)
        second = next(requests)
        assert receive_timeout(second._channel.sock) == int(IO_TIMEOUT)
        # The late one had them from the listening socket: no more per-connection setting.
        assert loop._options_inherited is True
    finally:
        requests.close()
        for sock in (early, late, listener):
            if sock is not None:
                sock.close()
