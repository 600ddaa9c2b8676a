"""One transport connection from the web server, between select() and the app.

Reading is non-blocking until a request's params are complete (a slow or
broken peer never holds the worker); after that the request's stdin is pulled
from the socket on demand, with a timeout, while the app runs.
"""

from __future__ import annotations

import _socket
import select
import socket
import struct
import time
from collections import deque
from time import monotonic

from ..fastcgi import (
    FCGI_REQUEST_COMPLETE,
    ParamsReceived,
    ProtocolError,
    RequestAborted,
    RequestBegun,
    ServerConnection,
    StdinReceived,
    WholeRequest,
)
from ..runtime.log import Log
from .request import Request

log = Log("fcgikit.worker")

RECV_SIZE = 64 * 1024
# nginx's own fastcgi_send_timeout / fastcgi_read_timeout default to 60 s: past
# that nginx has given up on the request too, so the worker may as well.
IO_TIMEOUT = 60.0
# A request that took longer than this is checked for a peer that left meanwhile.
PEER_CHECK_AFTER = 0.01
# How long a closing connection is drained of a body the app did not read.
LINGER_SECONDS = 2.0
# How long a kept connection whose request was answered before its input ended
# may take to send the rest (to the empty STDIN record) before it is closed.
DRAIN_TIMEOUT = IO_TIMEOUT
IOV_MAX = 1024
# POLLRDHUP (Linux): the peer shut its side down, even with data still unread.
_RDHUP = getattr(select, "POLLRDHUP", 0)
_HANGUP_EVENTS = select.POLLIN | _RDHUP
_MSG_MORE = getattr(socket, "MSG_MORE", 0)

# Connections one child keeps open (idle kept-alive ones included); reported as
# FCGI_MAX_CONNS and enforced by closing the longest-idle connection.
MAX_CONNS = 256


class ClientGone(ConnectionError):
    """The web server closed the connection (or aborted the request) before stdin ended."""


class PeerClosed(Exception):
    """The peer closed the connection between records."""


def describe_peer(addr) -> str:
    if isinstance(addr, tuple):
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"unix:{addr}" if addr else "unix"


def set_io_timeouts(sock: socket.socket, seconds: float = IO_TIMEOUT) -> None:
    """Kernel timeouts on a blocking socket: no extra poll() per recv/send as settimeout() costs."""
    timeval = struct.pack("ll", int(seconds), int((seconds % 1) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


class Connection:
    """One connection's state machine: between requests (`is_idle`), a request's
    params arriving, the request being served (`request`), its end (`finish`),
    an answered request's input still arriving (`draining`), closed (`close`).
    The loop only asks it what it is and tells it what to do; what a `Request`
    needs of it is `RequestChannel` (request.py)."""

    # The state of a connection between requests, as class attributes: a new
    # connection (one per request without FCGI_KEEP_CONN) stores only what changes.
    must_close = False  # after this request, whatever FCGI_KEEP_CONN says
    begun = False  # a request has begun and not ended
    keep_conn = False  # the begun request's FCGI_KEEP_CONN
    request: Request | None = None  # the one being served
    gone = False  # the peer went away while a request was being served
    aborted = False  # ABORT_REQUEST for the request being served: its output is dropped
    closed = False
    # Set when the loop ends the request and closes the connection at once (`finish`):
    # the answer may then wait for the FIN (MSG_MORE) and leave with it in one
    # segment. Not when the program ends the request itself (FCGX_Finish) and works on.
    close_follows = False
    # Set when a request on a kept connection was answered before its input
    # ended: the rest is skipped as it comes (see draining), until this time.
    drain_deadline = 0.0
    # Set while a request is ended with all of its output already sent: a peer
    # leaving now loses only the end records (empty STDOUT/STDERR, END_REQUEST),
    # as lighttpd does once the response's end has come. That is no failure.
    answered = False

    def __init__(self, sock: _socket.socket, addr) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.addr = addr
        self.proto = ServerConnection(MAX_CONNS)
        self.events: deque = deque()  # received, not yet taken by the request or the loop

    @property
    def peer(self) -> str:
        return describe_peer(self.addr)

    @property
    def lost(self) -> bool:
        """Whether the peer went away or aborted the request being served (no system call)."""
        return self.gone or self.aborted

    def is_idle(self) -> bool:
        """Between requests with nothing read ahead: the connection can move to another process."""
        return not (self.closed or self.gone or self.mid_request or self.request is not None
                    or self.proto.skipping_input)

    def finish(self, request: Request, closing: bool) -> bool:
        """Ends `request` (the rest of its output, END_REQUEST); `closing`: the
        loop closes the connection right after, so the answer may leave with the
        FIN. Returns whether the connection can carry another request (`reusable`)."""
        self.close_follows = closing
        request.finish()
        return not (self.gone or self.closed or self.must_close) and self.proto.keep_conn

    # --- receiving ---------------------------------------------------------------

    def receive(self, flags: int = 0) -> None:
        """One recv() fed to the protocol. Raises PeerClosed, ProtocolError, OSError."""
        data = self.sock.recv(RECV_SIZE, flags)
        if not data:
            raise PeerClosed()
        proto = self.proto
        try:
            events = proto.receive(data)
        finally:
            # Answers the protocol gave on its own (GET_VALUES, refusals) go out,
            # those queued before a ProtocolError too.
            if proto.output:
                self.sock.sendall(proto.take_output())
        if events:
            self.events.extend(events)

    @property
    def mid_request(self) -> bool:
        """Whether a close now cuts something off (a request begun or a record half read)."""
        return self.begun or bool(self.events) or self.proto.buffered > 0

    def next_request(self) -> Request | None:
        """The next request whose params are complete, from what was received."""
        events = self.events
        while events:
            event = events.popleft()
            kind = type(event)
            if kind is WholeRequest:  # the usual case: a body-less request in one read
                request_id, keep_conn, params = event
                self.begun, self.keep_conn = True, keep_conn
                request = self.request = Request(self, request_id, params, keep_conn, True)
                return request
            if kind is RequestBegun:
                self.begun, self.keep_conn = True, event.keep_conn
            elif kind is ParamsReceived:
                # No body (a GET): stdin is over before it began.
                ended = bool(events) and type(events[0]) is StdinReceived and not events[0].data
                if ended:
                    events.popleft()
                request = self.request = Request(self, event.request_id, event.params, self.keep_conn, ended)
                return request
            elif kind is RequestAborted:
                # Aborted before the app saw it: nothing to undo, just answer.
                self.begun = False
                self.send_buffers(self.proto.end_request(event.request_id))
                if not self.proto.keep_conn:
                    self.must_close = True
        return None

    @property
    def ends_here(self) -> bool:
        """Whether a request answered without the app (refused role, aborted before
        it began) lacked FCGI_KEEP_CONN: then the connection ends (spec 3.5)."""
        return self.must_close or self.proto.close_requested

    def _abort_queued(self) -> bool:
        """Takes a queued ABORT_REQUEST for the request being served, if any."""
        for event in self.events:
            if type(event) is RequestAborted:
                self.events.remove(event)
                self._note_abort()
                return True
        return False

    def _note_abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            request = self.request
            where = f" during {request.method} {request.uri}" if request is not None else ""
            log(f"{self.peer}: the web server aborted the request{where}")

    def pull_stdin(self, request_id: int) -> bytes:
        """The next piece of stdin (b"" at its end), reading the socket when none is queued."""
        events = self.events
        while True:
            while events:
                event = events.popleft()
                kind = type(event)
                if kind is StdinReceived:
                    return event.data
                if kind is RequestAborted:
                    self._note_abort()
            if self.aborted:
                raise ClientGone("the web server aborted the request")
            if self.gone:
                raise ClientGone("the web server closed the connection")
            try:
                self.receive()
            except PeerClosed:
                self.went_away("the web server closed the connection before the request body ended")
            except BlockingIOError:
                self.went_away(f"no request body data for {IO_TIMEOUT:.0f}s")
            except (OSError, ProtocolError) as exc:
                self.went_away(f"reading the request body failed: {exc}")

    def peer_closed(self) -> bool:
        """Whether the web server has closed the connection, without consuming anything."""
        if self.gone or self.closed or self.aborted or (self.events and self._abort_queued()):
            return True
        # poll() answers without raising, unlike a MSG_PEEK recv() that finds
        # nothing: this runs once per request.
        poller = select.poll()
        poller.register(self.fd, _HANGUP_EVENTS)
        ready = poller.poll(0)
        if not ready:
            return False
        events = ready[0][1]
        if events & (_RDHUP | select.POLLHUP | select.POLLERR):
            self.went_away("the web server closed the connection (its client went away)")
            return True
        if _RDHUP:
            return self._abort_arrived()  # only readable: the peer is still there
        return self._peek_closed()

    def _abort_arrived(self) -> bool:
        """Once stdin has ended, what the web server may still send about this
        request is ABORT_REQUEST; read it (without waiting) to find out."""
        request = self.request
        if request is None or not (request.stdin.at_eof or self._stdin_end_queued()):
            return False  # request body still coming: not read here, it may be large
        received = self._receive_without_waiting("the web server closed the connection (its client went away)",
                                                 "connection error")
        if received is None:
            return True
        return received and self._abort_queued()

    def _receive_without_waiting(self, closed: str, failed: str) -> bool | None:
        """One receive that does not wait: whether anything came, or None when the
        connection turned out dead (said once, with `closed` or `failed: error`)."""
        try:
            self.receive(socket.MSG_DONTWAIT)
            return True
        except BlockingIOError:
            return False
        except PeerClosed:
            self.went_away(closed)
        except (OSError, ProtocolError) as exc:
            self.went_away(f"{failed}: {exc}")
        return None

    def _peek_closed(self) -> bool:
        try:
            data = self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self.went_away(f"connection error: {exc}")
            return True
        if not data:
            self.went_away("the web server closed the connection (its client went away)")
            return True
        return False

    # --- sending -----------------------------------------------------------------

    def send(self, data: bytes, flags: int = 0) -> None:
        if self.gone or self.aborted:
            return
        try:
            self.sock.sendall(data, flags)
        except BlockingIOError:
            self.went_away(f"the web server read nothing for {IO_TIMEOUT:.0f}s")
        except OSError as exc:
            self.went_away(f"sending failed: {exc.strerror or exc}")

    def send_stream(self, rtype: int, request_id: int, chunks: list[bytes], size: int) -> None:
        self.send_buffers(self.proto.stream(rtype, request_id, chunks))

    def send_buffers(self, buffers: list, flags: int = 0) -> None:
        """sendall() for a list of buffers, without joining them first."""
        if len(buffers) == 1:
            self.send(buffers[0], flags)
            return
        if self.gone or self.aborted:
            return
        sendmsg = self.sock.sendmsg
        try:
            while buffers:
                sent = sendmsg(buffers[:IOV_MAX], (), flags)
                done = 0
                for buf in buffers:
                    size = len(buf)
                    if sent < size:
                        break
                    sent -= size
                    done += 1
                buffers = buffers[done:]
                if sent:
                    buffers[0] = memoryview(buffers[0])[sent:]
        except BlockingIOError:
            self.went_away(f"the web server read nothing for {IO_TIMEOUT:.0f}s")
        except OSError as exc:
            self.went_away(f"sending failed: {exc.strerror or exc}")

    def end_request(self, request: Request) -> None:
        """The rest of the output and END_REQUEST, in one sendall when the body was small."""
        try:
            if self.gone:
                return
            stdin = request.stdin  # stdin.at_eof, without a property call (this runs for every request)
            if stdin._eof and stdin._pos >= len(stdin._buf) and not (self.aborted or self.events) \
                    and monotonic() - request.started < PEER_CHECK_AFTER:
                # The usual case: the body was read (or there was none), and the
                # app answered too soon for its client to have left (see _may_have_left).
                self._send_rest(request)
            else:
                self._end_request(request)
        finally:
            self.request = None
            self.begun = False
            self.aborted = False
            self.answered = False

    def _end_request(self, request: Request) -> None:
        """Ending a request whose body was left unread, or whose peer may have left."""
        self.answered = not request.output_pending  # a streamed response: only the end records are left
        linger = drain = False
        if not request.stdin.at_eof and not self.aborted:
            # The app left part of the body unread, or its end (the empty STDIN
            # record) has not arrived yet. If it has arrived, read past it and the
            # connection can carry the next request. If not, do not wait for it here:
            # answer, then on a kept connection skip the rest as it comes (the loop
            # serves others meanwhile; Apache with enablereuse sends the end marker
            # apart and then reuses the connection); else close (nginx stops sending
            # the body once the response has begun).
            if self._read_to_stdin_end():
                request.stdin.discard_rest()
            elif not self.aborted:  # aborted: the web server sends no more of it
                drain = request.keep_conn and not self.must_close and not self.proto.skipping_input
                linger = not drain
        # nginx never sends ABORT_REQUEST: when its client leaves, it closes the
        # connection. Notice it here (one poll), say so once, send nothing.
        if self._may_have_left(request) and self.peer_closed():
            if self.aborted:
                request.stdin.mark_ended()
                self._end_aborted(request)
            return
        self._send_rest(request)
        if drain:
            self.proto.skip_rest_of_input(request.request_id)
            self.drain_deadline = monotonic() + DRAIN_TIMEOUT
        elif linger:
            self._linger_close()

    def _may_have_left(self, request: Request) -> bool:
        """Whether the peer may have gone while the app ran: worth a poll() to see.
        A request answered within PEER_CHECK_AFTER is not asked about, as its
        client had next to no time to leave, and the answer would cost a system
        call on every request; an abort already seen or queued is always acted on."""
        return self.aborted or bool(self.events) or monotonic() - request.started >= PEER_CHECK_AFTER

    def _end_aborted(self, request: Request) -> None:
        """An aborted request still gets END_REQUEST (spec 5.4), and a kept
        connection goes on; whatever the app wrote after the abort is dropped."""
        request.drop_output()
        self.aborted = False
        self.send_buffers(self.proto.end_request(request.request_id, request.app_status))

    def _send_rest(self, request: Request) -> None:
        stdout, stderr = request.take_output()
        if stdout is None and stderr is None:
            self.answered = True  # a streamed response: only the end records are left
        buffers = self.proto.end_request(request.request_id, request.app_status, FCGI_REQUEST_COMPLETE, stdout, stderr)
        if len(buffers) == 1:  # the usual case: the whole response and END_REQUEST in one small send
            self.send(buffers[0], _MSG_MORE if self.close_follows else 0)
        else:
            self.send_buffers(buffers)

    def _stdin_end_queued(self) -> bool:
        return any(type(event) is StdinReceived and not event.data for event in self.events)

    def _read_to_stdin_end(self) -> bool:
        """Reads what has already arrived, without waiting and dropping body data;
        True once the end of stdin is queued."""
        events = self.events
        while not self._stdin_end_queued():
            if self._abort_queued():
                return False  # no more stdin will come
            kept = [e for e in events if not (type(e) is StdinReceived and e.data)]
            events.clear()
            events.extend(kept)
            if not self._receive_without_waiting("the web server closed the connection before the request body ended",
                                                 "reading the request body failed"):
                return False
        return True

    def close_after_answer(self) -> None:
        """The END_REQUEST is out; the peer may still be sending the refused
        request's input, which must not turn our close into a reset."""
        self._linger_close()

    def _linger_close(self) -> None:
        """Shut our side, discard what still comes until the peer closes (bounded),
        so closing with unread data cannot reset the connection under the response."""
        self.must_close = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            deadline = time.monotonic() + LINGER_SECONDS
            while (left := deadline - time.monotonic()) > 0 and poller.poll(left * 1000):
                if not self.sock.recv(RECV_SIZE):
                    break
        except OSError:
            pass

    @property
    def draining(self) -> bool:
        """Whether the rest of an answered request's input is still to come (and be skipped)."""
        return self.drain_deadline != 0.0 and self.proto.skipping_input

    def drain_state(self, now: float) -> str:
        """"draining", "done" (the skipped input ended, or the connection closed:
        the deadline is cleared) or "overdue" (past DRAIN_TIMEOUT: to be closed)."""
        if self.closed or not self.draining:
            self.drain_deadline = 0.0
            return "done"
        return "overdue" if now >= self.drain_deadline else "draining"

    @property
    def reusable(self) -> bool:
        return not (self.gone or self.closed or self.must_close) and self.proto.keep_conn

    # --- ending ------------------------------------------------------------------

    def went_away(self, reason: str) -> None:
        """Marks the connection dead and logs it once; the request runs on, writing nowhere."""
        if self.gone:
            return
        self.gone = True
        request = self.request
        where = f" during {request.method} {request.uri}" if request is not None else ""
        # A peer that left once the whole response had reached it lost nothing it needed.
        log(f"{self.peer}: {reason}{where}" + (" (after the whole response was sent)" if self.answered else ""),
            "DEBUG" if self.answered else "WARNING")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass

