"""python3 -m fcgikit.cgi [pool flags] --root DIR --timeout S --max-procs N [--user USER]

The fork-CGI gateway: fcgikit.spawn's manager (same bind and pool flags)
pre-forks gateway processes, each a fcgikit.worker serving the CGI handler.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys

from ..runtime.log import write as write_log
from ..runtime.orphans import become_subreaper
from ..runtime.prctl import forbid_new_privileges, make_non_dumpable, no_new_privileges_wanted
from ..spawn import add_pool_arguments, run_manager
from .fallback import FALLBACK_PARAM, make_fallback
from .gateway import Gateway, make_config
from .process import keep_descriptors_private
from .redirect import MAX_LOCAL_REDIRECTS, MODES
from .slots import Slots, Unlimited, make_slot_dir

DEFAULT_QUEUE_TIMEOUT = 10.0
DEFAULT_PROGRAM_USER = "nobody"
# The manager kills a gateway process busy in one request past its --timeout; a
# gateway waiting for its program must outlive the program's own deadline, so
# that the client gets our 504 (and the program's group is killed by us).
MANAGER_GRACE = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m fcgikit.cgi",
        description="FastCGI gateway that runs CGI/1.1 programs, one process per request. "
        "--timeout S is the time a program may run (then its process group is killed, 504).",
    )
    add_pool_arguments(parser)
    for action in parser._actions:
        if action.dest == "timeout":  # the pool's flag, given this front end's meaning
            action.help = (
                "a program may run S seconds, then its process group is killed and the client gets 504 (0: no limit)"
            )
    cgi = parser.add_argument_group("CGI")
    cgi.add_argument(
        "--root", metavar="DIR", help="only executable files under DIR run (default: each request's DOCUMENT_ROOT)"
    )
    cgi.add_argument(
        "--max-procs", type=int, default=0, metavar="N", help="at most N programs at once across the pool (0: no limit)"
    )
    cgi.add_argument(
        "--queue-timeout",
        type=float,
        default=DEFAULT_QUEUE_TIMEOUT,
        metavar="S",
        help=f"how long a request waits for a --max-procs slot before 503 (default {DEFAULT_QUEUE_TIMEOUT:g})",
    )
    cgi.add_argument(
        "--user",
        dest="cgi_user",
        metavar="USER",
        help="when the gateway runs as root, programs run as USER (default nobody)",
    )
    cgi.add_argument(
        "--local-redirect",
        choices=MODES,
        default="auto",
        help="a program's `Location: /path` (RFC 3875 local redirect): x-accel = answer "
        "X-Accel-Redirect (nginx serves the path); follow = run the program the path "
        f"names here (GET, at most {MAX_LOCAL_REDIRECTS} hops), a client redirect (302) "
        "for any other path; client = always a client redirect; auto (default) = "
        "x-accel when SERVER_SOFTWARE says nginx, else follow",
    )
    fallback = parser.add_argument_group("WSGI fallback")
    fallback.add_argument(
        "--wsgi-fallback",
        metavar="MODULE:APP",
        help=f"requests with the FastCGI param {FALLBACK_PARAM} (set by the edge's nginx) "
        "run this WSGI app once, as a CGI program (one process per request)",
    )
    fallback.add_argument(
        "--wsgi-fallback-dir",
        metavar="DIR",
        help="the app's directory: its working directory and first on sys.path "
        "(default: the current directory; the gateway's PYTHONPATH follows)",
    )
    fallback.add_argument(
        "--wsgi-fallback-python", metavar="PATH", help="the interpreter that runs the app (default: the gateway's own)"
    )
    return parser


def choose_program_user(options) -> None:
    """As root, the gateway processes, and so the programs they start, run as --user.

    The manager binds the socket as root and its children drop to the user (the
    pool's -u) before serving: no request is ever handled by root, and the per-
    request spawn needs no setuid.
    """
    if os.geteuid() != 0:
        if options.cgi_user:
            write_log(
                "fcgikit.cgi",
                f"not root: --user {options.cgi_user} ignored, programs run as the gateway's own user",
                "WARNING",
            )
        return
    user = options.cgi_user or DEFAULT_PROGRAM_USER
    if options.user and options.cgi_user and options.user != options.cgi_user:
        sys.exit(f"fcgikit.cgi: -u {options.user} and --user {options.cgi_user} disagree; give one")
    options.user = options.user or user


def make_child(gateway: Gateway):
    def child(ctx) -> int:
        from ..worker import serve

        # A program that exits before reading its whole body must give us EPIPE,
        # not kill the gateway (the manager restores SIGPIPE's default in children).
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        # Inherited from the manager, but a change of user (-u/--user) resets it:
        # a program (same uid) must not read our /proc environ, memory or fds.
        make_non_dumpable()
        # What a program leaves outside its process group is adopted here, to be
        # killed with it at the timeout (see process.py).
        become_subreaper()
        # Programs start by posix_spawn, which closes nothing: none of ours may leak.
        keep_descriptors_private()
        return serve(
            ctx.listen_sock,
            gateway,
            slot=ctx.slot,
            max_requests=ctx.max_requests,
            allowed_addrs=ctx.allowed_addrs,
            handoff=ctx.handoff,
        )

    child.__name__ = "fcgikit.cgi"  # the pool's name in the manager's log and status
    return child


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.max_procs < 0:
        parser.error("--max-procs: must be 0 (no limit) or more")
    if options.root is not None and not os.path.isdir(options.root):
        parser.error(f"--root: not a directory: {options.root}")
    if options.wsgi_fallback_dir is not None and not os.path.isdir(options.wsgi_fallback_dir):
        parser.error(f"--wsgi-fallback-dir: not a directory: {options.wsgi_fallback_dir}")
    for name in ("dir", "python"):
        if getattr(options, f"wsgi_fallback_{name}") is not None and not options.wsgi_fallback:
            parser.error(f"--wsgi-fallback-{name}: needs --wsgi-fallback MODULE:APP")
    python = options.wsgi_fallback_python
    if python is not None and not (os.path.isfile(python) and os.access(python, os.X_OK)):
        parser.error(f"--wsgi-fallback-python: not an executable file: {python}")
    if options.wsgi_fallback is not None and not options.wsgi_fallback.partition(":")[0]:
        parser.error(f"--wsgi-fallback: expected MODULE:APP, e.g. hello_wsgi:app, not {options.wsgi_fallback!r}")
    choose_program_user(options)
    program_timeout = options.timeout or 0.0
    fallback = (
        make_fallback(options.wsgi_fallback, options.wsgi_fallback_dir, options.wsgi_fallback_python)
        if options.wsgi_fallback
        else None
    )
    config = make_config(options.root, program_timeout, options.queue_timeout, options.local_redirect, fallback)
    if program_timeout:
        options.timeout = program_timeout + options.queue_timeout + MANAGER_GRACE
    slot_dir = make_slot_dir(options.max_procs) if options.max_procs else None
    slots = Slots(slot_dir, options.max_procs) if slot_dir else Unlimited()
    # A gateway process the manager kills (or that dies) must not leave its
    # running program behind: the manager adopts and kills it.
    options.kill_orphans = True
    # Before any fork: the manager and everything it forks (the gateway processes)
    # keep their /proc entries from the programs (see fcgikit/runtime/prctl.py).
    make_non_dumpable()
    # Asked for (--no-new-privileges, or the image's FCGIKIT_NO_NEW_PRIVILEGES=1): no program
    # the gateway runs gains privileges by execve (see runtime/prctl.py).
    if no_new_privileges_wanted(options.no_new_privileges):
        forbid_new_privileges()
    creator = os.getpid()
    try:
        return run_manager(options, make_child(Gateway(config, slots)))
    finally:
        # Without -n, the launching process returns at once while the daemonized
        # manager (another pid) goes on using the slots: only the manager removes them.
        if slot_dir and (options.foreground or os.getpid() != creator):
            shutil.rmtree(slot_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
