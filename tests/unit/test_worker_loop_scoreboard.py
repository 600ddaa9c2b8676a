"""What a worker's scoreboard slot says while it serves: busy with the request's
method and URI while the app runs, idle once the loop waits again, every request
counted (the manager's `status` and hang detection read it)."""

import socket
import threading
import time

from fcgikit.fastcgi import ClientConnection
from fcgikit.spawn.scoreboard import SLOT_BUSY, SLOT_IDLE, Scoreboard
from fcgikit.worker.loop import RequestLoop


def send_request(listener, uri: str) -> socket.socket:
    client = socket.create_connection(listener.getsockname(), timeout=5)
    client.sendall(ClientConnection().request(1, {"REQUEST_METHOD": "GET", "REQUEST_URI": uri}, b""))
    return client


def test_busy_while_the_app_runs_idle_once_the_loop_waits_again():
    listener = socket.create_server(("127.0.0.1", 0))
    slot = Scoreboard(slots=1).claim()
    loop = RequestLoop(listener, slot=slot)
    requests = iter(loop)
    clients = [send_request(listener, "/first"), send_request(listener, "/second?x=1")]
    try:
        first = next(requests)
        seen = slot.snapshot()
        assert (seen.state, seen.method, seen.uri, seen.requests) == (SLOT_BUSY, "GET", "/first", 1)
        second = next(requests)  # both were waiting: served one after the other
        seen = slot.snapshot()
        assert (seen.state, seen.uri, seen.requests) == (SLOT_BUSY, "/second?x=1", 2)
        assert first.finished and not second.finished
        clients.append(send_request(listener, "/third"))
        assert next(requests).uri == "/third"
        assert slot.snapshot().requests == 3
    finally:
        requests.close()
        for sock in (*clients, listener):
            sock.close()
    assert slot.snapshot().state == SLOT_IDLE  # the loop is over: not left busy


def test_a_worker_waiting_for_work_shows_idle():
    listener = socket.create_server(("127.0.0.1", 0))
    slot = Scoreboard(slots=1).claim()
    loop = RequestLoop(listener, slot=slot)

    def serve():
        for request in loop:
            request.stdout.write(b"Content-Type: text/plain\r\n\r\nok")

    worker = threading.Thread(target=serve)
    worker.start()
    try:
        for uri in ("/a", "/b"):
            client = send_request(listener, uri)
            assert b"ok" in read_all(client)
            client.close()
        deadline = time.monotonic() + 5
        while slot.snapshot().state != SLOT_IDLE and time.monotonic() < deadline:
            time.sleep(0.01)
        seen = slot.snapshot()
        assert (seen.state, seen.requests, seen.uri) == (SLOT_IDLE, 2, "/b")
    finally:
        loop.stopping = True  # seen when its wait ends (within a second)
        worker.join(5)
        listener.close()


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data
