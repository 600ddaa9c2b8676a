"""Kept connections spread over the children: one holding more than its share of the
pool's (as the scoreboard says) passes the surplus to the manager over its handoff
socket; the manager gives them to the children holding fewest, never back to the
sender, and not to one stuck in a long request."""

import os
import select
import socket
import threading
import time

from fcgikit.fastcgi import ClientConnection
from fcgikit.runtime.handoff import receive_connections
from fcgikit.spawn.manager import ChildRecord, Manager
from fcgikit.spawn.scoreboard import Scoreboard
from fcgikit.worker.loop import RequestLoop


def kept_request(client: socket.socket, uri: str) -> bytes:
    client.sendall(ClientConnection().request(1, {"REQUEST_METHOD": "GET", "REQUEST_URI": uri}, b"", keep_conn=True))
    data = b""
    while b"\x03\x00\x01" not in data:  # END_REQUEST (version 1, type 3, id 1)
        data += client.recv(65536)
    return data


def test_a_child_holding_more_than_its_share_passes_the_surplus_on():
    listener = socket.create_server(("127.0.0.1", 0))
    board = Scoreboard(slots=2)
    slot, sibling = board.claim(), board.claim()  # the sibling holds none
    ours, manager_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    loop = RequestLoop(listener, slot=slot, handoff=ours)
    loop._next_heartbeat = time.monotonic() + 3600  # noqa: SLF001 - no comparison before all 6 are held

    def serve():
        for request in loop:
            request.stdout.write(b"Content-Type: text/plain\r\n\r\nok")

    worker = threading.Thread(target=serve)
    worker.start()
    clients = [socket.create_connection(listener.getsockname(), timeout=5) for _ in range(6)]
    try:
        for n, client in enumerate(clients):
            assert b"ok" in kept_request(client, f"/{n}")
        loop._next_heartbeat = 0.0  # noqa: SLF001 - due when its wait next ends (within a second)
        # 6 held, 2 children: 3 are its share, and 6 is over 3 plus the slack
        assert select.select([manager_end], [], [], 5)[0], "no connections passed on"
        handed, last, eof = receive_connections(manager_end)
        assert (len(handed), last, eof) == (3, False, False)
        passed = [socket.socket(fileno=fd) for fd, _ in handed]
        deadline = time.monotonic() + 5
        while slot.connections() != 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert slot.connections() == 3 and sibling.connections() == 0
        # the most recently used went: they are nginx's first choice
        moved = {sock.getpeername() for sock in passed}
        assert moved == {c.getsockname() for c in clients[3:]}
        for sock in passed:
            sock.close()
        for client in clients[:3]:  # the others are still served here
            assert b"ok" in kept_request(client, "/again")
    finally:
        loop.stopping = True
        manager_end.shutdown(socket.SHUT_WR)  # the manager's goodbye: the leaving loop need not wait for it
        worker.join(5)
        for sock in (*clients, listener, ours, manager_end):
            sock.close()


def manager_with(children: list[ChildRecord]) -> Manager:
    manager = Manager.__new__(Manager)  # only the handoff part: no pool, no signals
    manager.children = {c.pid: c for c in children}
    manager.held, manager.held_since = [], 0.0
    return manager


def child(pid: int, slot, connections: int) -> tuple[ChildRecord, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    slot.set_connections(connections)
    return ChildRecord(pid, slot, 1, 0.0, 0.0, handoff=ours), theirs


def received(sock: socket.socket) -> int:
    count = 0
    sock.setblocking(False)
    try:
        while True:
            handed, _, _ = receive_connections(sock)
            count += len(handed)
            for fd, _ in handed:
                os.close(fd)
    except BlockingIOError:
        return count


def test_the_manager_gives_a_surplus_to_the_children_holding_fewest_never_back():
    board = Scoreboard(slots=4)
    (source, source_end), (few, few_end), (more, more_end), (stuck, stuck_end) = (
        child(1, board.claim(), 10), child(2, board.claim(), 1), child(3, board.claim(), 3), child(4, board.claim(), 0))
    stuck.slot.request_started("GET", "/report")
    manager = manager_with([source, few, more, stuck])
    pairs = [socket.socketpair() for _ in range(4)]
    try:
        time.sleep(0.2)  # the stuck child's request is now older than the limit
        manager.spread([(os.dup(a.fileno()), None) for a, _ in pairs], source)  # it closes what it sent
        assert (received(source_end), received(few_end), received(more_end), received(stuck_end)) == (0, 3, 1, 0)
        assert manager.held == []
        manager.children = {1: source, 4: stuck}  # nobody else free: back to the sender
        manager.spread([(os.dup(pairs[0][0].fileno()), None)], source)
        assert received(source_end) == 1
    finally:
        for a, b in pairs:
            a.close()
            b.close()
        for record, end in ((source, source_end), (few, few_end), (more, more_end), (stuck, stuck_end)):
            record.handoff.close()
            end.close()
