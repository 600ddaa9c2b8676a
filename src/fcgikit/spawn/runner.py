"""run_manager: validate, bind, (daemonize,) supervise. The entry point every
front end (fcgikit.spawn, fcgikit.serve, fcgikit.cgi) calls with its child."""

import logging
import os
import select
import stat
import sys

from ..runtime import log as runtime_log
from .manager import Manager
from .options import OptionsError, resolve_program, validate_pool_options
from .sockets import BindError, bind_listener

log = logging.getLogger("fcgikit.spawn")

EXIT_USAGE = 2  # bad flags: nothing was bound
EXIT_STARTUP = 1  # the socket could not be bound, or the daemon did not come up
READY_TIMEOUT = 30.0


def _setup_logging() -> None:
    """The manager's lines in the runtime's one format (runtime/log.py: text or JSON)."""
    # Front ends that configured logging keep their format.
    if logging.getLogger().handlers or log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(runtime_log.Formatter("fcgikit.spawn"))
    log.addHandler(handler)
    log.setLevel(runtime_log.threshold())
    log.propagate = False


def _pool_name(config, child) -> str:
    if config.pool_name:
        return config.pool_name
    if callable(child):
        return getattr(child, "__name__", "python")
    return os.path.basename(child[0])


def _check_pidfile(path: str | None) -> None:
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise OptionsError(f"-P: cannot write a pid file in {directory}")


def _check_status_file(path: str | None) -> None:
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise OptionsError(f"--status-file: cannot write in {directory}")


def _error(message: str) -> None:
    print(f"fcgikit.spawn: error: {message}", file=sys.stderr, flush=True)


def run_manager(options, child) -> int:
    """Supervise a pool of `child`: an argv list to exec with the listening socket
    on fd 0, or a callable child(ctx: ChildContext) -> int run in each forked child.
    Returns the exit status: 0 after a stop by signal, 2 for bad flags, 1 when the
    socket cannot be bound or the children die at boot, 4 when the app cannot load."""
    runtime_log.configure(getattr(options, "log_format", None))  # before any line, children's included
    try:
        config = validate_pool_options(options)
        if not callable(child):
            resolve_program(list(child), config.directory)
        _check_pidfile(config.pidfile)
        _check_status_file(config.status_file)
    except OptionsError as error:
        _error(str(error))
        return EXIT_USAGE
    try:
        listener = bind_listener(config)
    except BindError as error:
        _error(str(error))
        return EXIT_STARTUP
    _setup_logging()
    ready_fd = None
    if not config.foreground:
        launcher_status, ready_fd = _daemonize()
        if launcher_status is not None:
            listener.close()
            return launcher_status
    return Manager(config, child, listener, _pool_name(config, child), ready_fd).run()


def _daemonize() -> tuple[int | None, int | None]:
    """Fork into the background as spawn-fcgi does without -n.

    Returns (status, None) in the launching process, which waits until the
    manager reports its pool started, and (None, ready_fd) in the manager.
    """
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() > 0:
        os.close(write_fd)
        return _wait_until_ready(read_fd), None
    os.close(read_fd)
    os.setsid()  # no controlling terminal, its own session
    if os.fork() > 0:
        os._exit(0)  # the session leader leaves; the manager can never get a terminal back
    _detach_stdio()
    return None, write_fd


def _wait_until_ready(read_fd: int) -> int:
    ready, _, _ = select.select([read_fd], [], [], READY_TIMEOUT)
    data = os.read(read_fd, 64) if ready else b""
    os.close(read_fd)
    try:
        os.wait()  # the intermediate process, which exits at once
    except ChildProcessError:
        pass
    if not data:
        _error("the manager did not come up (run with -n to see its log)")
        return EXIT_STARTUP
    print(f"fcgikit.spawn: manager started, pid {data.decode().strip()}", flush=True)
    return 0


def _detach_stdio() -> None:
    """As spawn-fcgi: stdin, stdout and stderr to /dev/null, so no terminal or pipe
    is held open by the daemon. Unlike spawn-fcgi, an output redirected to a
    regular file is kept: it is the log (`2>>/var/log/fcgikit.log`)."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    for fd in (1, 2):
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.dup2(null, fd)
    os.close(null)
