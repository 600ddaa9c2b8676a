"""The listening socket the manager binds for its children."""

import select
import socket

import pytest

from fcgikit.spawn.__main__ import build_parser
from fcgikit.spawn.options import validate_pool_options
from fcgikit.spawn.sockets import bind_listener

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_DEFER_ACCEPT"), reason="Linux only")


def test_a_connection_is_handed_to_a_child_only_once_its_first_bytes_arrived():
    options = build_parser().parse_args(["-a", "127.0.0.1", "-p", "0", "--", "prog"])
    listener = bind_listener(validate_pool_options(options, am_root=False))
    try:
        client = socket.create_connection(listener.getsockname(), timeout=5)
        # Connected (the handshake is done), but nothing sent: no child is woken for it.
        assert select.select([listener], [], [], 0.3)[0] == []
        client.sendall(b"\x01\x01")
        assert select.select([listener], [], [], 5)[0] == [listener]
        accepted, _ = listener.accept()
        assert accepted.recv(2) == b"\x01\x01"
        accepted.close()
        client.close()
    finally:
        listener.close()
