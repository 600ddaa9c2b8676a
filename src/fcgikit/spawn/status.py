"""python3 -m fcgikit.spawn.status FILE [--json]: print a pool's status report
the way php-fpm prints its status page (the file is written by --status-file)."""

import argparse
import json
import sys

from .report import format_status, read_status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m fcgikit.spawn.status", description="Print a fcgikit.spawn status file."
    )
    parser.add_argument("file")
    parser.add_argument("--json", action="store_true", help="print the raw JSON")
    args = parser.parse_args(argv)
    try:
        status = read_status(args.file)
    except (OSError, ValueError) as error:
        print(f"fcgikit.spawn.status: cannot read {args.file}: {error}", file=sys.stderr)
        return 1
    try:
        print(json.dumps(status, indent=2) if args.json else format_status(status))
        sys.stdout.flush()
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        sys.stdout = None  # nothing more to flush at exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
