"""What a request costs on the wire: without FCGI_KEEP_CONN the answer leaves in
the same TCP segment as the FIN that closes the connection (one segment fewer for
the kernel and the web server to handle per request)."""

import socket
import struct
import threading

from fcgikit.fastcgi import ClientConnection, RecordReader
from fcgikit.fastcgi.protocol import FCGI_END_REQUEST, FCGI_STDOUT
from fcgikit.worker.core import serve
from fcgikit.worker.wsgi import wsgi_handler

# struct tcp_info (linux/tcp.h): tcpi_segs_in, a u32 at this offset since Linux 4.2
TCPI_SEGS_IN = 140


def segments_received(sock: socket.socket) -> int:
    return struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256), TCPI_SEGS_IN)[0]


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
                sock.sendall(ClientConnection().request(1, {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/"}, b""))
                received = b""
                while data := sock.recv(65536):
                    received += data
                records = RecordReader().feed(received)
                assert records[-1][0] == FCGI_END_REQUEST
                stdout = b"".join(content for rtype, _, content in records if rtype == FCGI_STDOUT)
                assert stdout.endswith(b"\r\n\r\nhello")
                # SYN-ACK, the ACK of the request (Linux acks at once on a new connection),
                # then the answer and the FIN together: not a fourth segment for the FIN.
                assert segments_received(sock) == 3
        worker.join(10)
        assert not worker.is_alive()
    finally:
        listener.close()
