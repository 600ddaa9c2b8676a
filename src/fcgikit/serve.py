"""`python3 -m fcgikit.serve [pool flags] MODULE:APP`: the manager running WSGI workers.

The pool flags are fcgikit.spawn's (spawn-fcgi's -a/-p/-s/-F/... plus supervision).
Each child loads the app itself, after fork: an app that cannot be imported
makes the child exit with EXIT_APP_LOAD_ERROR and one line saying why, and the
manager stops instead of respawning it forever.
"""

from __future__ import annotations

import argparse
import os
import sys

from ._prctl import make_non_dumpable
from .worker import EXIT_APP_LOAD_ERROR, AppLoadError, load_app, serve, wsgi_handler


def build_parser() -> argparse.ArgumentParser:
    from .spawn import add_pool_arguments

    parser = argparse.ArgumentParser(
        prog="python3 -m fcgikit.serve",
        description="Serve a WSGI app over FastCGI with a pool of pre-forked workers.",
    )
    add_pool_arguments(parser)
    parser.add_argument("--chdir", metavar="DIR",
                        help="change to DIR before loading the app (it is importable from there)")
    parser.add_argument("app", metavar="MODULE:APP",
                        help="the WSGI app, e.g. apps.hello_wsgi:application (MODULE alone: its "
                             "'application' or 'app')")
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
        return serve(ctx.listen_sock, wsgi_handler(app), slot=ctx.slot,
                     max_requests=ctx.max_requests, allowed_addrs=allowed, handoff=ctx.handoff)

    run_wsgi_child.__name__ = app_spec  # the pool's name in the manager's log and status
    return run_wsgi_child


def main(argv: list[str] | None = None) -> int:
    from .spawn import run_manager

    options = build_parser().parse_args(argv)
    make_non_dumpable()  # the manager and its workers: /proc entries root-only (see _prctl.py)
    directory = os.path.abspath(options.chdir) if options.chdir else None
    return run_manager(options, make_child(options.app, directory))


if __name__ == "__main__":
    sys.exit(main())
