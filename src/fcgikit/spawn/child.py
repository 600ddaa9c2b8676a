"""What a freshly forked child does: shed the manager's state, then exec the
program with the socket on fd 0, or run the callable worker."""

import os
import signal
import socket
import sys
import traceback
from dataclasses import dataclass

from ..runtime.log import Log
from ..runtime.orphans import die_with_parent
from .options import PoolConfig
from .policy import EXIT_EXEC_FAILED

log = Log("fcgikit.spawn")

FCGI_LISTENSOCK_FILENO = 0

# Signals the manager catches, and the two Python itself ignores: all go back to
# their defaults so the child (or the exec'd program) starts as from a shell.
MANAGER_SIGNALS = (
    signal.SIGHUP,
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
    signal.SIGUSR1,
)
PYTHON_IGNORED = (signal.SIGPIPE, signal.SIGXFSZ)


@dataclass
class ChildContext:
    """What a callable child gets: the shared socket, its scoreboard slot, its
    (already jittered) request limit, and the web server addresses it may accept
    connections from (None: any). `handoff` is the child's end of a Unix socket
    pair to the manager: a retiring child passes its idle kept-alive connections
    there, and connections other children left come from there
    (fcgikit.runtime.handoff)."""

    listen_sock: socket.socket
    slot: object
    max_requests: int
    allowed_addrs: list[str] | None
    handoff: socket.socket | None = None


def reset_signals() -> None:
    """Undo the manager's signal setup; called in the child while signals are blocked."""
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass
    for signum in MANAGER_SIGNALS + PYTHON_IGNORED:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def drop_privileges(config: PoolConfig) -> None:
    identity = config.identity
    if identity.gid is not None:
        if identity.user is not None:
            os.initgroups(identity.user, identity.gid)
        else:
            os.setgroups([identity.gid])
        os.setgid(identity.gid)
    if identity.uid is not None:
        os.setuid(identity.uid)


def program_environment(config: PoolConfig, max_requests: int) -> dict[str, str]:
    """The exec'd program's environment: the manager's, plus what tells a FastCGI program
    the pool's settings. php-cgi recycles itself after PHP_FCGI_MAX_REQUESTS requests (others
    ignore the variable): `--max-requests N` sets it to N; with `--max-requests 0` ("never")
    it is 0 unless the user's environment sets it, since php-cgi's own default is 500 and
    under load its restarts cost more than the requests (php-fpm's default is never too)."""
    env = dict(os.environ)
    if config.allowed_addrs:
        env["FCGI_WEB_SERVER_ADDRS"] = ",".join(config.allowed_addrs)
    if max_requests:
        env["PHP_FCGI_MAX_REQUESTS"] = str(max_requests)
    else:
        env.setdefault("PHP_FCGI_MAX_REQUESTS", "0")
    return env


def exec_program(argv: list[str], listen_sock: socket.socket, env: dict[str, str]) -> None:
    """Replace this process with the FastCGI program, the socket on fd 0."""
    os.dup2(listen_sock.fileno(), FCGI_LISTENSOCK_FILENO, inheritable=True)
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 1024)
    os.execvpe(argv[0], argv, env)


def run_child(
    config: PoolConfig,
    target,
    listen_sock: socket.socket,
    slot,
    max_requests: int,
    manager_fds: list[int],
    handoff: socket.socket | None = None,
    manager_pid: int | None = None,
) -> None:
    """The body of a forked child. Never returns: the process ends with _exit."""
    code = 1
    try:
        for fd in manager_fds:
            os.close(fd)
        slot.attach(os.getpid())
        reset_signals()
        if config.directory:
            os.chdir(config.directory)
        drop_privileges(config)
        # After the uid change, which clears it. SIGTERM: a Python worker stops
        # accepting at once and finishes the request it is in; an exec'd program
        # stops as when the manager stops fast.
        if manager_pid is not None and not die_with_parent(manager_pid, signal.SIGTERM):
            log("the manager is gone; not starting", "WARNING")
            code = 0
            return
        if callable(target):
            allowed = list(config.allowed_addrs) if config.allowed_addrs else None
            context = ChildContext(listen_sock, slot, max_requests, allowed, handoff)
            code = _run_callable(target, context)
        else:
            code = EXIT_EXEC_FAILED
            exec_program(list(target), listen_sock, program_environment(config, max_requests))
    except BaseException:
        log(f"child failed:\n{traceback.format_exc().rstrip()}", "ERROR")
    finally:
        _flush_stdio()
        os._exit(code)


def _run_callable(target, context: ChildContext) -> int:
    try:
        result = target(context)
    except SystemExit as leaving:
        result = leaving.code
    if result is None:
        return 0
    return result if isinstance(result, int) else 1


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
