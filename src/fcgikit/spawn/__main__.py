"""python3 -m fcgikit.spawn [flags] -- PROGRAM ARGS...: run any FastCGI program
(libfcgi C programs, php-cgi, fcgiwrap) under a resident, supervising manager."""

import argparse
import sys

from ..runtime.prctl import forbid_new_privileges, make_non_dumpable, no_new_privileges_wanted
from .options import add_pool_arguments
from .runner import EXIT_USAGE, run_manager


class OneLineErrorParser(argparse.ArgumentParser):
    """Bad flags: one line on stderr, exit 2 (argparse would print the usage too)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"fcgikit.spawn: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="python3 -m fcgikit.spawn",
        usage="%(prog)s [flags] -- PROGRAM [ARGS...]",
        description="Bind a FastCGI socket once, pre-fork PROGRAM with it on fd 0, "
        "and supervise the children (see docs/spawn.md).",
    )
    add_pool_arguments(parser)
    parser.add_argument("program", nargs="+", metavar="PROGRAM", help="the FastCGI program and its arguments, after --")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    make_non_dumpable()  # the manager's /proc entries root-only (see fcgikit/runtime/prctl.py)
    if no_new_privileges_wanted(options.no_new_privileges):
        forbid_new_privileges()  # the program it runs gains no privileges by execve
    return run_manager(options, options.program)


if __name__ == "__main__":
    sys.exit(main())
