"""Running one CGI program: posix_spawn (no shell), body in, response out, at the same time.

The program's stdin is written non-blocking and only when the pipe has room,
while its stdout and stderr are read in the same poll loop, so a program that
prints more than a pipe holds before it reads its input cannot deadlock us
(fcgiwrap writes the whole body first and does). The program gets its own
process group, so a timeout kills it together with everything it forked; what
left the group (setsid, a double fork) is found through /proc and killed too,
since the gateway process adopts orphans as a subreaper (see runtime/orphans.py).
"""

from __future__ import annotations

import errno
import math
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..runtime.log import write as write_log
from ..runtime.orphans import children_of, descendants_of, kill_children_except, kill_with_group
from .body import RequestBody
from .resolve import Script
from .response import BadResponse, ResponseParser, error_response

CHUNK = 64 * 1024
# Output waits this long for more before it is sent on its own: a program that is
# about to exit then leaves in one write with END_REQUEST; one that streams slowly
# is delayed by no more than this.
FLUSH_DELAY = 0.02
# Output held back while the body is still arriving (see body.py); past this, the
# rest of the body is spooled so the output can go.
HOLD_LIMIT = 1024 * 1024
MAX_STDERR_LINE = 4096
# A program that never pauses never lets the output wait (where the web server's
# presence is checked): check it after this much output too.
CHECK_PEER_EVERY = 1024 * 1024


@dataclass
class Outcome:
    status: int  # HTTP status the client got (0 if the response was cut short)
    reason: str = ""  # why the gateway answered itself, or cut the response
    exit_status: int | None = None
    redirect: bytes | None = None  # a deferred local redirect's target (nothing was sent)


# Signals a gateway process ignores (Python: SIGXFSZ; the worker: SIGPIPE and the
# terminal ones). An ignored signal stays ignored across exec: the program gets
# them back at their defaults, as a program started from a shell has them.
SIGNALS_RESET = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ", "SIGTTIN", "SIGTTOU") if hasattr(signal, name)
)


class Program:
    """A started program: its pid and our ends of its three pipes, as descriptors
    (read and written with os.read/os.write; -1 once closed)."""

    def __init__(self, pid: int, stdin: int, stdout: int, stderr: int) -> None:
        self.pid = pid
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.returncode: int | None = None

    def close_pipe(self, name: str) -> None:
        fd = getattr(self, name)
        if fd >= 0:
            setattr(self, name, -1)
            os.close(fd)

    def poll(self) -> int | None:
        """The exit status if it has exited (reaped now), else None."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        """Reaps it: its exit code, or -N when signal N ended it."""
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal.SIGKILL)


def spawn(script: Script, env: dict[bytes, bytes], argv: list[bytes] | None = None) -> Program:
    """Starts the program directly (argv[0] is its path, or `argv`), in its own process group,
    in its own directory, with three pipes as stdin, stdout and stderr.

    posix_spawn (vfork and exec in the C library) costs a fraction of what
    subprocess.Popen does in Python per request. It has no chdir: this process
    moves to the program's directory first (it serves one request at a time and
    names every file by its absolute path). It closes no descriptors either:
    every one the gateway holds is close-on-exec (see keep_descriptors_private),
    so the program gets exactly the three pipes. No user switch happens here: the
    gateway process itself already runs as the unprivileged user (see __main__).
    """
    os.chdir(script.directory)
    program = os.fsencode(script.filename)
    pipes: list[tuple[int, int]] = []
    try:
        for _ in range(3):
            pipes.append(os.pipe())  # Python makes both ends close-on-exec
        (stdin_r, stdin_w), (stdout_r, stdout_w), (stderr_r, stderr_w) = pipes
        pid = os.posix_spawn(
            program,
            argv or [program],
            env,
            setpgroup=0,
            setsigmask=(),
            setsigdef=SIGNALS_RESET,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, stdin_r, 0),
                (os.POSIX_SPAWN_DUP2, stdout_w, 1),
                (os.POSIX_SPAWN_DUP2, stderr_w, 2),
            ],
        )
    except BaseException:  # out of descriptors, or the program cannot be executed: nothing leaks
        for read_end, write_end in pipes:
            os.close(read_end)
            os.close(write_end)
        raise
    for fd in (stdin_r, stdout_w, stderr_w):  # the program's ends, now its own
        os.close(fd)
    return Program(pid, stdin_w, stdout_r, stderr_r)


def keep_descriptors_private() -> None:
    """Called once when a gateway process starts: any descriptor it inherited
    that would survive exec becomes close-on-exec, and a closed 0, 1 or 2 is
    opened on /dev/null (else a pipe could land there and not survive the dup2
    onto itself). Descriptors Python opens later are close-on-exec already."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # closed meanwhile (the directory listing's own descriptor)


class Adopted:
    """The gateway process's children besides the running program: orphans it
    adopted as a subreaper. Those a program leaves running when it ends by itself
    are let be (a CGI program may start a background job, as under fcgiwrap) and
    reaped when they end; any other is what a killed program left behind."""

    def __init__(self) -> None:
        self.tolerated: frozenset[int] = frozenset()

    def settle(self) -> None:
        """After each request (its program reaped): reap adopted orphans that ended,
        let be those still running. Usually one waitpid() that finds no child."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.tolerated = frozenset()
                return
            if pid == 0:
                break
        self.tolerated = frozenset(children_of(os.getpid()))

    def kill_left_behind(self) -> None:
        """After a killed program is reaped: kill what escaped its process group."""
        kill_children_except(self.tolerated)


ADOPTED = Adopted()  # per gateway process (each forked child has its own copy)


def content_length(params: dict[str, str]) -> int | None:
    """How many body bytes the program gets; None: all of FCGI_STDIN (no CONTENT_LENGTH)."""
    value = params.get("CONTENT_LENGTH", "").strip()
    return int(value) if value.isdigit() else None


class ProgramRun:
    """Relays one request to one running program and its answer back."""

    def __init__(
        self,
        request,
        script: Script,
        proc: Program,
        timeout: float,
        log=None,
        adopted: Adopted | None = None,
        *,
        deadline: float | None = None,
        no_body: bool = False,
        defer_local_redirect: bool = False,
        extra_headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        """`deadline` (monotonic) overrides `timeout`; `no_body`: the program gets an
        empty stdin (a followed local redirect is a GET)."""
        self.request = request
        self.adopted = adopted or ADOPTED
        self.killed = False
        self.script = script
        self.proc = proc
        if deadline is None and timeout > 0:
            deadline = time.monotonic() + timeout
        self.deadline = deadline
        self.log = log  # a stream for the log lines; None: stderr
        self.parser = ResponseParser(
            nph=script.is_nph, defer_local_redirect=defer_local_redirect, extra_headers=extra_headers
        )
        self.body = RequestBody(request.stdin, 0 if no_body else content_length(request.params))
        self.pending = b""  # body bytes read from FastCGI, not yet taken by the program
        self.held: list[bytes] = []  # output held back until the body is received
        self.held_size = 0
        self.unchecked = 0  # output bytes since we last checked the web server is there
        self.stderr_tail = b""
        self.poller = select.poll()
        self.handlers: dict[int, Callable[[], object]] = {}  # fd -> what to do when it is ready
        self.open_streams = 0

    # -- the loop ---------------------------------------------------------------

    def run(self) -> Outcome:
        try:
            try:
                self.register()
                outcome = self.relay()
            except BadResponse as exc:
                outcome = self.fail(502, f"invalid response: {exc}")
        except OSError as exc:  # the web server went away (its client left): nobody to answer
            self.kill_group()
            outcome = Outcome(0, f"lost the web server, killed the program: {exc}")
            self.log_gateway_line(outcome.reason)
        except BaseException:  # SIGINT/SIGQUIT unwinding the worker: take the program along
            self.kill_group()
            raise
        finally:
            self.close_pipes()
            self.handlers.clear()  # bound methods of ours: no cycle left behind on an error path
            self.body.close()
        outcome.exit_status = self.reap()
        if self.killed:
            self.adopted.kill_left_behind()
        self.adopted.settle()
        self.flush_stderr_tail()
        return outcome

    def register(self) -> None:
        for fd, handler in ((self.proc.stdout, self.on_stdout), (self.proc.stderr, self.on_stderr)):
            self.watch(fd, select.POLLIN, handler)
            self.open_streams += 1
        if self.body.left == 0 or self.request.stdin.at_eof:  # no body (a GET): stdin closed at once
            self.close_stdin()
            self.body.discard()
        else:
            os.set_blocking(self.proc.stdin, False)
            self.watch(self.proc.stdin, select.POLLOUT, self.on_stdin_writable)

    def watch(self, fd: int, events: int, handler) -> None:
        self.poller.register(fd, events)
        self.handlers[fd] = handler

    def unwatch(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            self.poller.unregister(fd)

    def relay(self) -> Outcome:
        while self.open_streams:
            events = self.wait()
            if events is None:
                return self.time_out()
            for fd, _ in events:
                handler = self.handlers.get(fd)
                if handler is not None:  # not closed by an earlier one of these
                    handler()
        return self.finish()

    def wait(self):
        """Ready streams ([] if none yet), or None once the deadline passed.

        Output is sent before we block, but only after FLUSH_DELAY without news:
        a program about to exit then costs one write, together with END_REQUEST.
        """
        events = self.poll(0)
        if events is None or events:
            return events
        self.release_if_received()
        if self.request.stdout.pending:
            events = self.poll(FLUSH_DELAY)
            if events is None or events:
                return events
            self.send_output()
        return self.poll(None)

    def poll(self, at_most: float | None):
        """poll() bounded by the deadline: [(fd, events)], None once the deadline has passed."""
        left = None if self.deadline is None else self.deadline - time.monotonic()
        if left is not None and left <= 0:
            return None
        if at_most is not None:
            left = at_most if left is None else min(left, at_most)
        return self.poller.poll(None if left is None else math.ceil(left * 1000))

    def send_output(self) -> None:
        self.request.stdout.flush()
        self.check_peer()

    def check_peer(self) -> None:
        """Raises when nginx has gone (its client went away): the program is killed."""
        self.unchecked = 0
        if self.request.client_gone():
            raise ConnectionAbortedError("the web server closed the connection")

    # -- the three pipes ------------------------------------------------------

    def read_output(self, fd: int) -> bytes:
        """A piece of the program's stdout or stderr; b"" once it closed that pipe."""
        data = os.read(fd, CHUNK)
        if not data:
            self.unwatch(fd)
            self.open_streams -= 1
        return data

    def on_stdout(self) -> None:
        data = self.read_output(self.proc.stdout)
        if not data:
            return
        out = self.parser.feed(data)
        if out:
            self.emit(out)

    def on_stderr(self) -> None:
        data = self.read_output(self.proc.stderr)
        if not data:
            return
        *lines, self.stderr_tail = (self.stderr_tail + data).split(b"\n")
        if len(self.stderr_tail) > MAX_STDERR_LINE:
            lines.append(self.stderr_tail)
            self.stderr_tail = b""
        for line in lines:
            self.log_program_line(line)

    def on_stdin_writable(self) -> None:
        if not self.pending:
            self.pending = self.read_body()
            if not self.pending:
                self.close_stdin()
                return
        try:
            written = os.write(self.proc.stdin, self.pending)
        except BrokenPipeError:
            # The program exited (or closed stdin) without reading its whole body: fine for CGI.
            self.close_stdin()
            self.body.discard()
            return
        except BlockingIOError:
            return
        self.pending = self.pending[written:]

    def read_body(self) -> bytes:
        return self.body.read(CHUNK)

    def emit(self, out: bytes) -> None:
        """Response bytes for nginx: sent, or held while nginx is still sending the body."""
        if self.body.received and not self.held:
            self.request.stdout.write(out)
            self.unchecked += len(out)
            if self.unchecked > CHECK_PEER_EVERY:
                self.check_peer()
            return
        self.held.append(out)
        self.held_size += len(out)
        if self.held_size > HOLD_LIMIT:
            self.body.spool_rest()
        self.release_if_received()

    def release_if_received(self) -> None:
        if self.held and self.body.received:
            for out in self.held:
                self.request.stdout.write(out)
            self.held, self.held_size = [], 0

    def close_stdin(self) -> None:
        if self.proc.stdin < 0:
            return
        self.unwatch(self.proc.stdin)
        self.proc.close_pipe("stdin")
        self.pending = b""

    # -- endings --------------------------------------------------------------

    def finish(self) -> Outcome:
        """stdout and stderr are closed: the response is complete, or never came."""
        try:
            tail = self.parser.close()
        except BadResponse as exc:
            return self.fail(502, f"invalid response: {exc}")
        self.body.discard()
        self.release_if_received()
        if tail:
            self.request.stdout.write(tail)
        return Outcome(self.parser.status, redirect=self.parser.location)

    def time_out(self) -> Outcome:
        return self.fail(504, "timed out: killed the program's process group")

    def fail(self, status: int, reason: str) -> Outcome:
        """Kills the program; answers `status` if no header was sent yet, else cuts the response."""
        self.kill_group()
        self.log_gateway_line(reason)
        self.body.discard()
        self.release_if_received()
        if self.parser.head_sent:
            return Outcome(0, reason + " (after the headers: response cut short)")
        self.request.stdout.write(
            error_response(status, REASONS_FOR_CLIENT.get(status, "error"), self.parser.extra_headers)
        )
        return Outcome(status, reason)

    def kill_group(self) -> None:
        """SIGKILL to the program's group and to descendants that left it (setsid);
        those already orphaned are ours (subreaper): kill_left_behind() takes them."""
        self.killed = True
        strays = descendants_of(self.proc.pid)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:  # a setuid program: at least the leader
            self.proc.kill()
        for pid in strays:
            kill_with_group(pid)

    def reap(self) -> int:
        """The program's exit status; kills its group if it lingers after closing its output."""
        remaining = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        if not exited_within(self.proc, remaining):
            self.kill_group()
        return self.proc.wait()

    def close_pipes(self) -> None:
        self.close_stdin()
        self.proc.close_pipe("stdout")
        self.proc.close_pipe("stderr")

    # -- logging --------------------------------------------------------------

    def flush_stderr_tail(self) -> None:
        if self.stderr_tail:
            self.log_program_line(self.stderr_tail)
            self.stderr_tail = b""
        try:
            self.request.stderr.flush()
        except OSError:
            pass

    def log_program_line(self, line: bytes) -> None:
        tagged = b"[" + os.fsencode(self.script.label) + b"] " + line.rstrip(b"\r") + b"\n"
        # What a CGI program writes on stderr is its diagnostics (Apache logs them as errors).
        write_log("fcgikit.cgi", tagged[:-1].decode("latin-1"), "WARNING", self.log)
        try:
            self.request.stderr.write(tagged)
        except (OSError, ValueError):
            pass

    def log_gateway_line(self, text: str) -> None:
        write_log("fcgikit.cgi", f"{self.script.label}: {text}", "WARNING", self.log)
        try:
            self.request.stderr.write(f"fcgikit.cgi: {self.script.label}: {text}\n".encode("latin-1", "replace"))
        except (OSError, ValueError):
            pass


def exited_within(proc: Program, timeout: float | None) -> bool:
    """Waits for the program to exit, at most `timeout` s (None: no limit).

    A pidfd wakes us the moment it exits; without one, we poll with short sleeps.
    """
    if proc.poll() is not None:
        return True
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux >= 5.3
        deadline = None if timeout is None else time.monotonic() + timeout
        while proc.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else timeout * 1000))
    finally:
        os.close(pidfd)


# What the client is told; the details (paths, errno) stay in the logs.
REASONS_FOR_CLIENT = {
    403: "the program may not run",
    404: "no such program",
    502: "the program did not give a valid CGI response",
    503: "too many programs running, try again later",
    504: "the program took too long",
}


def start_failure_status(exc: OSError) -> int:
    """Status for a program that could not start: permission problems are 403, the rest 502."""
    return 403 if exc.errno in (errno.EACCES, errno.EPERM) else 502
