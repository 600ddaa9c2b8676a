"""`python3 -m bench.profile`: where fcgikit.serve's (or .cgi's) processes spend their CPU under load.

Runs one of our scenarios as the benchmark does (same nginx, same app, wrk at 64
connections) and samples every process of the server with py-spy meanwhile (`pip install
py-spy`; it reads the processes from outside, so the workers run at full speed). Idle
samples are dropped, so the shares are of CPU time. The function that called a system
call (sendall, recv, accept, close) holds that call's time as its own.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from .runner import Settings, measure_all, start_scenario, stop_all
from .scenarios import SCENARIOS, Paths
from .servers import become_subreaper

# py-spy's raw format: "frame;frame;...;leaf COUNT", a frame being "function (file.py:line)".
LINE_NUMBER = re.compile(r":\d+\)$")


def frame_name(frame: str) -> str:
    """`serve (fcgikit/worker/loop.py:352)` -> `serve (fcgikit/worker/loop.py)`: lines apart, one function."""
    return LINE_NUMBER.sub(")", frame.strip())


def summarise_stacks(raw: str) -> tuple[Counter, Counter, int]:
    """Samples per function: as the leaf (own time), anywhere on the stack (inclusive), and in all."""
    own, inclusive, total = Counter(), Counter(), 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        # py-spy --subprocesses puts a "process PID:CMDLINE" pseudo-frame first: not a function.
        frames = [frame_name(f) for f in stack.split(";") if f.strip() and not f.startswith("process ")]
        if not frames:
            continue
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for name in set(frames):
            inclusive[name] += samples
    return own, inclusive, total


def table(title: str, counts: Counter, total: int, limit: int) -> str:
    lines = [f"{title} (share of {total} CPU samples)"]
    for name, samples in counts.most_common(limit):
        lines.append(f"  {100 * samples / total:5.1f}%  {name}")
    return "\n".join(lines)


def record(manager_pid: int, seconds: int, out: Path) -> subprocess.Popen:
    return subprocess.Popen(["py-spy", "record", "--pid", str(manager_pid), "--subprocesses", "--format", "raw",
                             "--rate", "250", "--duration", str(seconds), "--nonblocking", "--output", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.profile", description=__doc__)
    parser.add_argument("--scenario", default="serve-hello",
                        choices=[s.name for s in SCENARIOS if s.ours and s.server.name != "fcgikit.spawn"],
                        help="one of our Python servers' scenarios (default serve-hello)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--limit", type=int, default=25, help="functions listed per table")
    args = parser.parse_args(argv)
    if not shutil.which("py-spy"):
        print("bench.profile needs py-spy: pip install py-spy", file=sys.stderr)
        return 2
    become_subreaper()
    scenario = next(s for s in SCENARIOS if s.name == args.scenario)
    with tempfile.TemporaryDirectory(prefix="fcgikit-profile-") as work:
        live = [start_scenario(scenario, Paths(work_dir=Path(work)))]
        out = Path(work) / "stacks.txt"
        try:
            spy = record(live[0].server.process.pid, args.seconds + 1, out)
            settings = Settings(warmup_s=1, round_s=args.seconds, rounds=1, concurrencies=(args.connections,))
            measure_all(live, settings, progress=lambda text: None)
            spy_output, _ = spy.communicate(timeout=60)
            live[0].finish()
        finally:
            stop_all(live)
        run = live[0].result.runs[0]
        print(f"{args.scenario}: {run['requests_per_s']:.0f} req/s at {args.connections} connections "
              f"while sampled, {run['non_2xx_3xx'] + run['socket_errors']} errors")
        if not out.exists():
            print(f"py-spy wrote nothing:\n{spy_output}", file=sys.stderr)
            return 1
        own, inclusive, total = summarise_stacks(out.read_text())
        print(table("own time", own, total, args.limit))
        print(table("inclusive time", inclusive, total, args.limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
