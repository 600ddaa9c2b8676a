"""The handoff wire format, and which connections may move to another process."""

import os
import socket

import pytest

from fcgikit.fastcgi import FCGI_BEGIN_REQUEST, FCGI_RESPONDER, encode_record
from fcgikit.runtime.handoff import (
    MAX_FDS_PER_MESSAGE,
    batches,
    decode_batch,
    encode_batch,
    receive_connections,
    send_connections,
)
from fcgikit.worker.connection import Connection


def test_peer_addresses_and_last_survive_the_round_trip():
    peers = [("127.0.0.1", 40000), ("::1", 40001, 0, 0), "", None]
    assert decode_batch(encode_batch(peers, last=True)) == (peers, True)
    assert decode_batch(encode_batch([], last=False)) == ([], False)


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b'{"peers": 3, "last": true}'])
def test_a_malformed_body_is_an_empty_batch_that_is_not_last(data):
    assert decode_batch(data) == ([], False)


@pytest.mark.parametrize("count, sizes", [(0, [0]), (1, [1]), (64, [64]), (65, [64, 1]), (200, [64, 64, 64, 8])])
def test_batches_never_exceed_the_limit_and_always_send_one_message(count, sizes):
    assert [len(b) for b in batches(list(range(count)))] == sizes
    assert MAX_FDS_PER_MESSAGE == 64


def test_connections_cross_a_socket_pair_in_batches_and_stay_usable():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pairs = [socket.socketpair() for _ in range(70)]
    try:
        send_connections(ours, [(a.fileno(), ("127.0.0.1", 1000 + n)) for n, (a, _) in enumerate(pairs)], last=True)
        first, last1, _ = receive_connections(theirs)
        second, last2, _ = receive_connections(theirs)
        assert (len(first), last1, len(second), last2) == (64, False, 6, True)
        assert [addr for _, addr in first + second] == [("127.0.0.1", 1000 + n) for n in range(70)]
        fd, _ = second[-1]
        pairs[-1][1].sendall(b"written while in transit")
        assert os.read(fd, 100) == b"written while in transit"
        for fd, _ in first + second:
            os.close(fd)
        ours.close()
        assert receive_connections(theirs) == ([], False, True)
    finally:
        for a, b in pairs:
            a.close()
            b.close()
        ours.close()
        theirs.close()


def test_only_a_connection_between_requests_with_nothing_read_ahead_is_idle():
    a, b = socket.socketpair()
    try:
        conn = Connection(a, "")
        assert conn.is_idle()
        b.sendall(encode_record(FCGI_BEGIN_REQUEST, 1, bytes([0, FCGI_RESPONDER, 1, 0, 0, 0, 0, 0]))[:5])
        conn.receive()
        assert not conn.is_idle()  # half a record in our buffer: it cannot move
        conn.close()
        assert not conn.is_idle()
    finally:
        a.close()
        b.close()


def test_held_connections_are_dealt_round_robin_starting_with_a_new_child_each_turn():
    from fcgikit.spawn.manager import round_robin_shares

    assert round_robin_shares([1, 2, 3, 4, 5], 2, 0) == [[1, 3, 5], [2, 4]]
    assert round_robin_shares([1], 3, 0) == [[1], [], []]
    assert round_robin_shares([1], 3, 4) == [[], [1], []]
    assert round_robin_shares([], 2, 1) == [[], []]


def test_drain_yields_every_waiting_batch_then_stops_and_says_when_the_other_end_closed():
    from fcgikit.runtime.handoff import drain

    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    right.setblocking(False)
    passed = [socket.socket() for _ in range(MAX_FDS_PER_MESSAGE + 2)]
    send_connections(left, [(s.fileno(), ("127.0.0.1", 40000 + n)) for n, s in enumerate(passed)], last=True)
    got = list(drain(right))
    assert [len(handed) for handed, _ in got] == [MAX_FDS_PER_MESSAGE, 2]
    assert [last for _, last in got] == [False, True]
    assert list(drain(right)) == []  # nothing waits now: no batch, no error
    left.close()
    with pytest.raises(EOFError):
        list(drain(right))
    for handed, _ in got:
        for fd, _ in handed:
            os.close(fd)
    for s in passed:
        s.close()
    right.close()
