"""The worker's loop: one child process, one request at a time, many connections.

The child waits on the listening socket and on every idle kept-alive connection
at once and serves whichever is ready. A libfcgi-style child instead sits on one
connection until the web server closes it, so nginx's `keepalive` pool of N
connections in front of fewer children stalls; this loop does not.

`RequestLoop` yields requests; `serve()` (handler per request, for WSGI) and
`accept()` (libfcgi's `while (FCGI_Accept() >= 0)` as a for loop) both drive it.
"""

from __future__ import annotations

import _socket
import errno
import ipaddress
import os
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from ..fastcgi import ProtocolError
from ..runtime.handoff import MAX_FDS_PER_MESSAGE, drain, send_connections
from ..runtime.log import Log
from .cgi_request import serve_one_cgi_request, started_as_cgi
from .connection import IO_TIMEOUT, MAX_CONNS, ClientGone, Connection, PeerClosed, describe_peer, set_io_timeouts

log = Log("fcgikit.worker")

EXIT_OK = 0
EXIT_APP_LOAD_ERROR = 4
EXIT_LISTEN_FAILED = 1
FCGI_LISTENSOCK_FILENO = 0

HEARTBEAT_INTERVAL = 1.0  # also the longest an idle child sleeps in poll()
# New connections a child takes one after another without polling again, when each
# was served and closed at once (nginx without keep_conn): under load the next one
# is usually waiting already, and kept-alive connections wait for at most this many.
ACCEPT_BURST = 8
# How long a child on its way out waits for the rest of an answered request's input.
EXIT_DRAIN_WAIT = 1.0
HANDOFF_GOODBYE_TIMEOUT = 5.0  # a retiring child waits this long for the manager's last word
# A child passes kept connections on when it holds more than its share of the pool's
# by more than this many plus an eighth (see _spread_connections).
SPREAD_SLACK = 1


class StopNow(BaseException):
    """SIGINT/SIGQUIT in the child: unwind out of whatever runs, app included."""


class _Poller:
    """epoll where there is one, poll() elsewhere; only readability matters here."""

    _impl: Any
    wait: Callable[[float], list[tuple[int, int]]]

    def __init__(self) -> None:
        if hasattr(select, "epoll"):
            self._impl = select.epoll()
            self._flag = select.EPOLLIN
            # Children share the listening socket: wake one idle child per new
            # connection, not all of them (the thundering herd).
            self._exclusive = getattr(select, "EPOLLEXCLUSIVE", 0)
            # wait(timeout in seconds) -> [(fd, events)]: epoll's own, once per request
            self.wait = self._impl.poll
        else:
            self._impl = select.poll()
            self._flag = select.POLLIN
            self._exclusive = 0
            self.wait = lambda timeout: self._impl.poll(timeout * 1000.0)  # poll() counts milliseconds

    def register(self, fd: int, exclusive: bool = False) -> None:
        self._impl.register(fd, self._flag | (self._exclusive if exclusive else 0))

    def unregister(self, fd: int) -> None:
        try:
            self._impl.unregister(fd)
        except (KeyError, OSError, ValueError):
            pass

    def to_back_of_queue(self, fd: int) -> None:
        """An exclusive wakeup goes to the first idle child in the socket's wait
        queue, in the order the children registered: without this the same child
        would take every new connection, even while it holds one whose request
        is on its way, and another child sits idle."""
        if self._exclusive:
            self._impl.unregister(fd)
            self._impl.register(fd, self._flag | self._exclusive)

    def close(self) -> None:
        if hasattr(self._impl, "close"):
            self._impl.close()


def parse_allowed_addrs(allowed) -> frozenset[str] | None:
    """FCGI_WEB_SERVER_ADDRS semantics: None or empty means anyone; else a set of IPs."""
    if not allowed:
        return None
    if isinstance(allowed, str):
        allowed = allowed.split(",")
    addrs = set()
    for addr in allowed:
        addr = addr.strip()
        if addr:
            addrs.add(_normalize_ip(addr))
    return frozenset(addrs) or None


def _normalize_ip(addr: str) -> str:
    try:
        ip = ipaddress.ip_address(addr.strip("[]"))
    except ValueError:
        return addr
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def is_allowed(allowed: frozenset[str] | None, addr) -> bool:
    """Unix-socket peers have no address and are always allowed, as in libfcgi."""
    if allowed is None or not isinstance(addr, tuple):
        return True
    return _normalize_ip(addr[0]) in allowed


class RequestLoop:
    """Iterating yields one `Request` at a time; the next iteration finishes it.

    After the loop, `exit_status` is what the child should exit with.
    """

    def __init__(self, listen_sock: socket.socket, *, slot=None, max_requests: int = 0,
                 allowed_addrs=None, stop_exception: Callable[[], BaseException] = StopNow,
                 handoff: socket.socket | None = None, client_gone_ends_input: bool = False) -> None:
        self.listen_sock = listen_sock
        # accept(): the program's own code reads stdin, out of the loop's reach, so a
        # client that leaves must not raise there (see _input_ends_when_client_leaves).
        self.client_gone_ends_input = client_gone_ends_input
        self.handoff = handoff  # to the manager: idle connections go there on exit, and come from there
        self.slot = slot
        self.max_requests = max_requests or 0
        self.allowed = parse_allowed_addrs(allowed_addrs)
        self.stop_exception = stop_exception
        self.served = 0
        self._idle_due = False  # a request ended since the scoreboard last said idle
        self.stopping = False  # SIGTERM, or max_requests reached: finish and return
        self.stop_now = False  # SIGINT/SIGQUIT
        self.exit_status = EXIT_OK
        self.conns: dict[int, Connection] = {}
        self._watched: set[int] = set()  # the connections' fds under poll()
        # Kept connections whose request was answered before its input ended (rare):
        # closed if the rest does not come within DRAIN_TIMEOUT.
        self._draining: dict[int, Connection] = {}
        self._poller: _Poller | None = None
        self._wake_r = self._wake_w = -1
        self._saved_signals: dict | None = None
        self._saved_wakeup = -1
        self._next_heartbeat = 0.0
        self._accept_error_logged = False
        self._raw_accept: Callable[[], tuple[int, Any]] | None = None
        self._listen_fd = -1
        self._family = socket.AF_INET
        self._options_inherited: bool | None = False  # None: not known yet

    def __iter__(self):
        return self._requests()

    # --- the loop ----------------------------------------------------------------

    def _requests(self):
        self._setup()
        try:
            conns, listen_fd, wake_fd = self.conns, self.listen_sock.fileno(), self._wake_r
            handoff_fd = self.handoff.fileno() if self.handoff is not None else -2
            wait = self._poller.wait
            while not self.stopping:
                for fd, _ in wait(HEARTBEAT_INTERVAL):
                    if fd == listen_fd:
                        conn = self._accept()
                        taken = 0
                        while conn is not None:
                            # nginx sends the request right after connecting: read
                            # it now rather than after another trip through poll().
                            yield from self._serve_connection(conn)
                            taken += 1
                            if taken >= ACCEPT_BURST or self.stopping or not conn.closed:
                                break
                            conn = self._accept()
                    elif fd == wake_fd:
                        self._drain_wakeup()
                    elif fd == handoff_fd:
                        self._adopt_handed_connections()
                    else:
                        conn = conns.get(fd)
                        if conn is not None:
                            yield from self._serve_connection(conn)
                    if self.stopping:
                        break
                if self.slot is not None:
                    self._mark_idle()
                    self._heartbeat_if_due()
                if self._draining:
                    self._end_stale_drains()
            yield from self._serve_arrived_requests()
            if self.handoff is not None and not self.stop_now:
                self._hand_over_idle_connections()
        finally:
            if self.slot is not None:
                self._mark_idle()
            self._teardown()

    def _serve_arrived_requests(self):
        """On the way out: requests already sent on idle connections are served,
        not dropped with the connection (nginx would have to retry them)."""
        if self.handoff is not None:
            self._adopt_handed_connections()  # already ours: they go back with the others
        for fd, _ in self._poller.wait(0):
            conn = self.conns.get(fd)
            if conn is not None and not self.stop_now:
                yield from self._serve_connection(conn)
        yield from self._finish_drains()

    def _finish_drains(self):
        """On the way out: a kept connection still skipping an answered request's
        input cannot move to another process; the rest is usually on its way (a
        separate write), so it is waited for, briefly, rather than the connection
        closed under a web server that means to reuse it."""
        draining = {fd: conn for fd, conn in self._draining.items() if conn.draining and not conn.closed}
        if not draining or self.stop_now:
            return
        poller = select.poll()
        for fd in draining:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + EXIT_DRAIN_WAIT
        while draining and (left := deadline - time.monotonic()) > 0 and not self.stop_now:
            for fd, _ in poller.poll(left * 1000):
                conn = draining[fd]
                yield from self._serve_connection(conn)
                if conn.closed or not conn.draining:
                    poller.unregister(fd)
                    del draining[fd]

    def _serve_connection(self, conn: Connection):
        if not self._receive(conn):
            return
        slot = self.slot
        request = conn.next_request()
        while request is not None:
            if self.client_gone_ends_input:
                _input_ends_when_client_leaves(request)
            if slot is not None:
                params = request.params  # request.method and .uri, without two calls
                slot.request_started(params.get("REQUEST_METHOD", ""), params.get("REQUEST_URI") or request.uri)
            reusable = False
            try:
                yield request
            finally:
                if not self.stop_now:  # else unwinding at once: nothing more is sent
                    # Without FCGI_KEEP_CONN the connection is closed right below.
                    reusable = conn.finish(request, closing=not conn.keep_conn)
                    self.served += 1
                    # The scoreboard says idle when the loop next waits (_mark_idle), not
                    # now: under load the next request is often served first.
                    self._idle_due = True
                    if self.max_requests and self.served >= self.max_requests:
                        self.stopping = True
            if not reusable:
                self._close(conn)
                return
            if conn.drain_deadline:  # answered before its input ended (rare)
                self._draining[conn.fd] = conn
            if self.stopping:
                return
            request = conn.next_request()
        if conn.ends_here:
            conn.close_after_answer()
            self._close(conn)
            return
        self.conns[conn.fd] = self.conns.pop(conn.fd)  # most recently used last: eviction takes the first
        self._keep(conn)

    def _receive(self, conn: Connection) -> bool:
        """Reads what arrived; False when the connection is closed or has nothing after all."""
        try:
            # Never wait here: a connection with nothing to read goes back under poll().
            conn.receive(socket.MSG_DONTWAIT)
            return True
        except BlockingIOError:
            self._keep(conn)
        except (PeerClosed, ConnectionResetError) as exc:
            # nginx resets its idle cached connections when it stops or reloads:
            # between requests a reset is a close, not news.
            # Nor while the rest of an answered request's input was skipped: nginx
            # closes a connection whose request body it did not send whole.
            how = "reset" if isinstance(exc, ConnectionResetError) else "closed"
            self._close(conn, f"{how} the connection mid-request" if conn.mid_request and not conn.draining
                        else None)
        except ProtocolError as exc:
            self._close(conn, f"protocol error: {exc}")
        except OSError as exc:
            self._close(conn, f"connection error: {exc.strerror or exc}")
        return False

    def _end_stale_drains(self) -> None:
        """A kept connection is ready for its next request once the answered one's
        input has ended; one whose input does not end in time is closed."""
        now = time.monotonic()
        for fd, conn in list(self._draining.items()):
            state = conn.drain_state(now)
            if state != "draining":
                del self._draining[fd]
            if state == "overdue":
                self._close(conn, "the end of an answered request's body did not come in time; "
                                  "connection closed")

    def _mark_idle(self) -> None:
        if self._idle_due:
            self._idle_due = False
            self.slot.request_finished()

    def _heartbeat_if_due(self) -> None:
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + HEARTBEAT_INTERVAL
            self.slot.heartbeat()
            if self.handoff is not None:
                self._spread_connections()

    def _spread_connections(self) -> None:
        """Which child holds a kept connection is decided once, by the accept race,
        and the child already running wins it: when nginx opens its connections in
        a burst of cheap requests, one child can take them all, and later, when the
        requests get heavy, it works alone on one core. Once a second each child
        says how many connections it holds (the scoreboard) and compares with the
        pool's; one holding more than its share (plus slack) passes the surplus,
        most recently used first, to the manager, which gives them to the children
        holding fewest (runtime/handoff.py, as when a child retires). No cost per
        request: the heartbeat's, when the loop waits."""
        slot, conns = self.slot, self.conns
        held = len(conns)
        slot.set_connections(held)
        if self.stopping:
            return
        total, children = slot.pool_connections()
        if children < 2:
            return
        share = -(-total // children)
        if held <= share + SPREAD_SLACK + share // 8:
            return
        surplus = [conn for conn in reversed(conns.values()) if conn.is_idle()]
        del surplus[min(held - share, MAX_FDS_PER_MESSAGE) :]
        if not surplus:
            return
        try:  # one message: passed whole or not at all
            send_connections(self.handoff, [(conn.fd, conn.addr) for conn in surplus])
        except OSError:
            return  # the manager's queue is full, or it is gone: they stay here
        for conn in surplus:
            self._close(conn)
        slot.set_connections(len(conns))

    # --- connections -------------------------------------------------------------

    def _accept(self) -> Connection | None:
        try:
            fd, addr = self._raw_accept()  # no Python socket wrapper: a hot path
        except (BlockingIOError, InterruptedError):
            return None  # another child took it
        except OSError as exc:
            self._accept_failed(exc)
            return None
        if self.allowed is not None and not is_allowed(self.allowed, addr):
            log(f"{describe_peer(addr)}: refused, not in FCGI_WEB_SERVER_ADDRS")
            os.close(fd)
            return None
        sock = _socket.socket(self._family, socket.SOCK_STREAM, 0, fd)
        if self._options_inherited is not True:
            self._options_for(sock)
        conn = Connection(sock, addr)
        self.conns[fd] = conn
        if len(self.conns) > MAX_CONNS:
            self._close(next(iter(self.conns.values())))  # the longest-idle one
        return conn

    def _accept_failed(self, exc: OSError) -> None:
        if exc.errno in (errno.EBADF, errno.ENOTSOCK, errno.EINVAL):
            log(f"the listening socket is unusable ({exc}); this child stops", "ERROR")
            self.stopping = True
            self.exit_status = EXIT_LISTEN_FAILED
            return
        if not self._accept_error_logged:  # EMFILE and friends: say it once, back off
            log(f"accept failed: {exc}")
            self._accept_error_logged = True
        time.sleep(0.05)

    def _set_connection_options(self, sock) -> None:
        set_io_timeouts(sock)
        if self._family != socket.AF_UNIX:
            # Headers and END_REQUEST sometimes leave in separate writes; Nagle
            # plus delayed ACK would hold the second one for 40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _keep(self, conn: Connection) -> None:
        """An open connection with nothing to serve now goes back under poll().

        A child holding connections that wait for their next request goes to
        the back of the listening socket's queue too: its next wakeup may be one
        of those, and new connections should go to an idle child first.
        """
        fd = conn.fd
        if fd not in self._watched and not conn.closed:
            self._poller.register(fd)
            self._watched.add(fd)
            self._poller.to_back_of_queue(self._listen_fd)

    def _close(self, conn: Connection, reason: str | None = None) -> None:
        if reason and not conn.gone:
            log(f"{conn.peer}: {reason}")
        fd = conn.fd
        self.conns.pop(fd, None)
        if fd in self._watched:
            self._watched.discard(fd)
            self._poller.unregister(fd)
        conn.close()

    # --- handoff: idle connections to and from the manager -------------------------

    def _adopt_handed_connections(self) -> None:
        """Idle connections another child left: served from now on like our own."""
        try:
            for handed, _ in drain(self.handoff):
                for fd, addr in handed:
                    self._adopt(fd, addr)
            if self.slot is not None:
                self.slot.set_connections(len(self.conns))  # before the pool's next comparison
        except EOFError:
            self._poller.unregister(self.handoff.fileno())
        except OSError as exc:
            log(f"handoff socket failed ({exc}); no more connections from the manager")
            self._poller.unregister(self.handoff.fileno())

    def _adopt(self, fd: int, addr) -> None:
        conn = Connection(socket.socket(fileno=fd), addr)  # options (timeouts, NODELAY) came with it
        self.conns[fd] = conn
        self._keep(conn)
        if len(self.conns) > MAX_CONNS:
            self._close(next(iter(self.conns.values())))

    def _hand_over_idle_connections(self) -> None:
        """On the way out: idle connections go to the manager for another child
        instead of being closed under nginx's feet. One with part of a record
        already read into our buffer cannot move and is closed as before."""
        idle = [conn for conn in self.conns.values() if conn.is_idle()]
        self.handoff.setblocking(True)
        self.handoff.settimeout(HANDOFF_GOODBYE_TIMEOUT)
        try:
            send_connections(self.handoff, [(conn.fd, conn.addr) for conn in idle], last=True)
        except OSError as exc:
            log(f"cannot hand idle connections to the manager ({exc}); closing them")
            return
        for conn in idle:
            self._close(conn)
        self._return_late_arrivals()

    def _return_late_arrivals(self) -> None:
        """Connections the manager sent before it read our `last` are passed back;
        its shutdown (EOF) says nothing more is on the way."""
        try:
            for handed, _ in drain(self.handoff):  # blocking (with a timeout) here: waits for each message
                send_connections(self.handoff, handed)
                for fd, _ in handed:
                    os.close(fd)
        except EOFError:
            return
        except OSError as exc:
            log(f"no goodbye from the manager ({exc}); leaving anyway")

    # --- setup and signals -------------------------------------------------------

    def _setup(self) -> None:
        listen_sock = self.listen_sock
        listen_sock.setblocking(False)  # children race for each connection
        self._raw_accept = listen_sock._accept  # type: ignore[attr-defined]
        self._listen_fd = listen_sock.fileno()
        self._family = listen_sock.family
        self._options_inherited = self._set_inherited_options(listen_sock)
        self._poller = _Poller()
        self._poller.register(listen_sock.fileno(), exclusive=True)
        if self.handoff is not None:
            self.handoff.setblocking(False)
            self._poller.register(self.handoff.fileno())
        if threading.current_thread() is threading.main_thread():
            self._install_signals()

    def _set_inherited_options(self, listen_sock) -> bool | None:
        """Set the connection options once on the listening socket: Linux copies
        them into every TCP connection it accepts, saving three system calls per
        connection. None: not known yet (accepted connections tell, see _options_for)."""
        if self._family == socket.AF_UNIX:
            return False  # Unix connections are not cloned from the listener
        try:
            self._set_connection_options(listen_sock)
        except OSError:
            return False
        return None

    def _options_for(self, sock) -> None:
        """Options for a connection that may not have inherited them. Connections
        established before they were set on the listening socket (a health check
        probing, or nginx's first burst, while the first child started) lack them
        although later ones have them: such a connection must not decide for all,
        so each one is checked (one getsockopt) until one has them; from then on
        none is."""
        if self._options_inherited is None and self._check_inherited(sock):
            self._options_inherited = True
            return
        self._set_connection_options(sock)

    def _check_inherited(self, sock) -> bool:
        timeval = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
        return struct.unpack("ll", timeval)[0] == int(IO_TIMEOUT)

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller.register(self._wake_r)
        self._saved_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        handlers: dict[signal.Signals, Any] = {
            signal.SIGTERM: self._on_graceful,
            signal.SIGHUP: self._on_graceful,
            # libfcgi's graceful stop, which managers (spawn-fcgi's users,
            # fcgikit.spawn) send to exec'd FastCGI programs such as accept loops.
            signal.SIGUSR1: self._on_graceful,
            signal.SIGINT: self._on_stop_now,
            signal.SIGQUIT: self._on_stop_now,
            # EPIPE from send() is how a vanished client is noticed; the default
            # action would kill the child instead (a manager resets it before fork).
            signal.SIGPIPE: signal.SIG_IGN,
            signal.SIGCHLD: signal.SIG_DFL,  # not the manager's handler: the app may run subprocesses
            signal.SIGTTIN: signal.SIG_IGN,
            signal.SIGTTOU: signal.SIG_IGN,
        }
        self._saved_signals = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}

    def _on_graceful(self, signum, frame) -> None:
        self.stopping = True

    def _on_stop_now(self, signum, frame) -> None:
        self.stopping = self.stop_now = True
        raise self.stop_exception()

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except (BlockingIOError, OSError):
            pass

    def _teardown(self) -> None:
        for conn in list(self.conns.values()):
            self._close(conn)
        if self._saved_signals is not None:
            for signum, handler in self._saved_signals.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(self._saved_wakeup)
            self._saved_signals = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        if self._poller is not None:
            self._poller.close()
            self._poller = None


def _input_ends_when_client_leaves(request) -> None:
    """The request's stdin ends, instead of raising ClientGone, when the web server
    closes the connection or aborts the request before the body is all there.

    In a WSGI worker the loop calls the app and catches ClientGone itself; in an
    accept loop the program's own code reads stdin, and an exception there would
    end the program (`for request in accept()` cannot catch what its body raises).
    libfcgi does the same: FCGX_GetStr returns what arrived, then end of input;
    the program goes on to the next FCGI_Accept(). The connection's log line
    ("... closed the connection before the request body ended during POST /x")
    is the one line said about it; `request.connection_lost` tells the program,
    whose output now goes nowhere.
    """
    stdin = request.stdin
    pull = stdin._pull
    if pull is None:
        return  # no body: nothing is read from the connection

    def pull_or_end() -> bytes:
        try:
            return pull()
        except ClientGone:
            return b""

    stdin._pull = pull_or_end


def serve(listen_sock: socket.socket, handler, *, slot=None, max_requests: int = 0, allowed_addrs=None,
          handoff: socket.socket | None = None) -> int:
    """Serves FastCGI requests on `listen_sock` with `handler(request) -> app status`.

    Returns the child's exit status: 0 after SIGTERM (the current request done),
    SIGINT/SIGQUIT (at once) or `max_requests` requests. With `handoff` (the
    manager's socket, `ChildContext.handoff`) idle connections are passed on, not closed.
    """
    loop = RequestLoop(listen_sock, slot=slot, max_requests=max_requests, allowed_addrs=allowed_addrs,
                       handoff=handoff)
    requests = iter(loop)
    try:
        for request in requests:
            try:
                request.app_status = handler(request) or 0
            except Exception as exc:  # the handler's own safety net failed: keep serving
                log(f"handler failed on {request.method} {request.uri}: {exc!r}")
                request.abort("the handler raised; response dropped")
    except StopNow:
        pass
    finally:
        requests.close()
    return loop.exit_status


def listening_socket_on_fd0() -> socket.socket | None:
    """fd 0 as a socket when it is one that listens (FCGI_LISTENSOCK_FILENO), else None."""
    try:
        sock = socket.socket(fileno=FCGI_LISTENSOCK_FILENO)
    except OSError:
        return None
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return sock
    except OSError:
        pass
    sock.detach()  # not ours to close: fd 0 stays what it was
    return None


def accept(listen_sock: socket.socket | None = None, *, max_requests: int = 0, allowed_addrs=None, slot=None):
    """Yields requests, as libfcgi's `while (FCGI_Accept() >= 0)` loop does.

        for request in fcgikit.accept():
            request.stdout.write(b"Content-Type: text/plain\\r\\n\\r\\nhello\\n")

    Each request is finished when the loop asks for the next one. Without
    `listen_sock` it uses fd 0 (how spawn-fcgi and fcgikit.spawn hand the socket
    over) and FCGI_WEB_SERVER_ADDRS from the environment; when fd 0 is no socket
    but the program was started as a CGI script, it yields that one request (from
    the environment and stdio) and ends, as libfcgi does. SIGTERM/SIGUSR1 end the
    loop after the current request; SIGINT/SIGQUIT exit at once.

    A client that goes away in the middle of a request cannot end the loop: its
    request's stdin just ends (what arrived, then b""), what the program writes
    goes nowhere, one line is logged, and the next iteration takes the next
    request. `request.connection_lost` says whether that happened, for a program
    that must not act on a body cut short (compare with CONTENT_LENGTH too).
    """
    if listen_sock is None:
        listen_sock = listening_socket_on_fd0()
        if listen_sock is None:
            if started_as_cgi():
                yield from serve_one_cgi_request()  # as libfcgi: one request, then the loop ends
                return
            raise RuntimeError(
                "fd 0 is not a listening socket: run this program under fcgikit.spawn or spawn-fcgi "
                "(or as a CGI script), or pass accept() a listening socket"
            )
    if allowed_addrs is None:
        allowed_addrs = os.environ.get("FCGI_WEB_SERVER_ADDRS")
    loop = RequestLoop(listen_sock, slot=slot, max_requests=max_requests, allowed_addrs=allowed_addrs,
                       stop_exception=_exit_now, client_gone_ends_input=True)
    yield from loop


def _exit_now() -> SystemExit:
    return SystemExit(0)
