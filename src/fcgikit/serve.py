"""`python3 -m fcgikit.serve [pool flags] MODULE:APP`: the manager running WSGI workers.

The pool flags are fcgikit.spawn's (spawn-fcgi's -a/-p/-s/-F/... plus supervision).
Each child loads the app itself, after fork: an app that cannot be imported
makes the child exit with EXIT_APP_LOAD_ERROR and one line saying why, and the
manager stops instead of respawning it forever.

Started with a listening socket on fd 0 (FCGI_LISTENSOCK_FILENO: lighttpd's
`bin-path`, spawn-fcgi, fcgikit.spawn) and no -s/-p, or with --fd0, the process
serves that socket itself, as one worker: whoever started it manages the
processes.
"""

from __future__ import annotations

import argparse
import os
import sys

from .runtime.log import configure as configure_log
from .runtime.prctl import forbid_new_privileges, make_non_dumpable, no_new_privileges_wanted
from .worker import EXIT_APP_LOAD_ERROR, AppLoadError, load_app, serve, wsgi_handler
from .worker.loop import listening_socket_on_fd0


def build_parser() -> argparse.ArgumentParser:
    from .spawn import add_pool_arguments

    parser = argparse.ArgumentParser(
        prog="python3 -m fcgikit.serve",
        description="Serve a WSGI app over FastCGI with a pool of pre-forked workers.",
    )
    add_pool_arguments(parser)
    parser.add_argument(
        "--fd0",
        action="store_true",
        help="serve the listening socket inherited on fd 0 in this process, without a "
        "manager (lighttpd's bin-path, spawn-fcgi); the default when fd 0 is a "
        "listening socket and neither -s nor -p is given",
    )
    parser.add_argument(
        "--chdir", metavar="DIR", help="change to DIR before loading the app (it is importable from there)"
    )
    parser.add_argument(
        "app",
        metavar="MODULE:APP",
        help="the WSGI app, e.g. apps.hello_wsgi:application (MODULE alone: its 'application' or 'app')",
    )
    return parser


def make_child(app_spec: str, directory: str | None):
    """The callable the manager runs in each forked child."""

    def run_wsgi_child(ctx) -> int:
        make_non_dumpable()  # again: a change of user (-u) resets it
        if directory:
            os.chdir(directory)
        try:
            app = load_app(app_spec)
        except AppLoadError as exc:
            print(f"fcgikit.serve[{os.getpid()}]: {exc}", file=sys.stderr, flush=True)
            return EXIT_APP_LOAD_ERROR
        # Like any FastCGI program (libfcgi's), honour FCGI_WEB_SERVER_ADDRS from
        # the environment when --allow did not set the list.
        allowed = ctx.allowed_addrs or os.environ.get("FCGI_WEB_SERVER_ADDRS") or None
        return serve(
            ctx.listen_sock,
            wsgi_handler(app),
            slot=ctx.slot,
            max_requests=ctx.max_requests,
            allowed_addrs=allowed,
            handoff=ctx.handoff,
        )

    run_wsgi_child.__name__ = app_spec  # the pool's name in the manager's log and status
    return run_wsgi_child


# Pool flags that mean nothing to a process serving fd 0 on its own (dest: flag).
_MANAGER_ONLY = {
    "address": "-a",
    "port": "-p",
    "socket_path": "-s",
    "socket_mode": "-M",
    "socket_user": "-U",
    "socket_group": "-G",
    "children": "-F",
    "user": "-u",
    "group": "-g",
    "directory": "-d",
    "pidfile": "-P",
    "timeout": "--timeout",
    "status_file": "--status-file",
}


def serve_fd0(parser: argparse.ArgumentParser, options, directory: str | None) -> int:
    """One worker on the listening socket inherited on fd 0, in this process."""
    given = [flag for dest, flag in _MANAGER_ONLY.items() if getattr(options, dest, None) != parser.get_default(dest)]
    if given:
        parser.error(
            f"--fd0 serves fd 0 without a manager (the program that bound it starts the processes): "
            f"drop {', '.join(given)}"
        )
    listen_sock = listening_socket_on_fd0()
    if listen_sock is None:
        parser.error(
            "--fd0: fd 0 is not a listening socket (start this from lighttpd's bin-path, "
            "spawn-fcgi or fcgikit.spawn, or give -s/-p)"
        )
    from .spawn import ChildContext

    context = ChildContext(listen_sock, slot=None, max_requests=options.max_requests, allowed_addrs=options.allow)
    return make_child(options.app, directory)(context)


def main(argv: list[str] | None = None) -> int:
    from .spawn import run_manager

    parser = build_parser()
    options = parser.parse_args(argv)
    make_non_dumpable()  # the manager and its workers: /proc entries root-only (see runtime/prctl.py)
    if no_new_privileges_wanted(options.no_new_privileges):
        forbid_new_privileges()  # nothing it runs gains privileges by execve (see runtime/prctl.py)
    directory = os.path.abspath(options.chdir) if options.chdir else None
    if options.fd0 or (options.socket_path is None and options.port is None and _fd0_listens()):
        configure_log(options.log_format)
        return serve_fd0(parser, options, directory)
    return run_manager(options, make_child(options.app, directory))


def _fd0_listens() -> bool:
    sock = listening_socket_on_fd0()
    if sock is None:
        return False
    sock.detach()  # fd 0 stays open for serve_fd0
    return True


if __name__ == "__main__":
    sys.exit(main())
