"""What a request costs on the wire: without FCGI_KEEP_CONN the answer leaves in
the same TCP segment as the FIN that closes the connection (one segment fewer for
the kernel and the web server to handle per request), but an answer the program
finishes early is never held back for a close that comes later."""

import socket
import struct
import threading

from fcgikit.fastcgi import ClientConnection
from fcgikit.fastcgi.client import exchange
from fcgikit.worker.loop import accept, serve
from fcgikit.worker.wsgi import wsgi_handler

# struct tcp_info (linux/tcp.h): u32 fields at these offsets (Linux 4.2 and 4.6 on)
TCPI_SEGS_IN = 140
TCPI_NOTSENT_BYTES = 144


def tcp_info_field(sock: socket.socket, offset: int) -> int:
    return struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256), offset)[0]


def segments_received(sock: socket.socket) -> int:
    return tcp_info_field(sock, TCPI_SEGS_IN)


PARAMS = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/"}


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def test_without_keep_conn_the_answer_arrives_with_the_close():
    listener = socket.create_server(("127.0.0.1", 0))
    count = 3
    worker = threading.Thread(target=serve, args=(listener, wsgi_handler(app)), kwargs={"max_requests": count},
                              daemon=True)
    worker.start()
    try:
        for _ in range(count):
            with socket.create_connection(listener.getsockname(), timeout=10) as sock:
                assert exchange(sock, ClientConnection(), PARAMS).stdout.endswith(b"\r\n\r\nhello")
                assert sock.recv(1) == b""  # the close, whichever segment brought it
                # SYN-ACK, the ACK of the request (Linux acks at once on a new connection),
                # then the answer and the FIN together: not a fourth segment for the FIN.
                assert segments_received(sock) == 3
        worker.join(10)
        assert not worker.is_alive()
    finally:
        listener.close()


def test_an_answer_finished_early_leaves_at_once_while_the_program_works_on():
    """libfcgi's FCGX_Finish / PHP's fastcgi_finish_request: the answer goes out when
    the program finishes the request, not when the loop closes the connection later."""
    listener = socket.create_server(("127.0.0.1", 0))
    held_back = []

    def program():
        for request in accept(listener, max_requests=1):
            request.stdout.write(b"Content-Type: text/plain\r\n\r\nearly")
            request.finish()
            # What the kernel still holds of it (MSG_MORE would keep it until the close,
            # or 200 ms); the program goes on with work after the answer.
            held_back.append(tcp_info_field(request._channel.sock, TCPI_NOTSENT_BYTES))

    worker = threading.Thread(target=program, daemon=True)
    worker.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as sock:
            assert exchange(sock, ClientConnection(), PARAMS).stdout.endswith(b"\r\n\r\nearly")
        worker.join(10)
        assert held_back == [0]
    finally:
        listener.close()
