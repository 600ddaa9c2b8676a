"""wrk as the load generator: the Lua script that makes it report JSON, and its parsing.

wrk's own text summary rounds latencies and hides the error counters behind prose, so a
`done()` hook prints one machine-readable line instead; `parse_wrk_output` reads it back.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass

RESULT_MARKER = "BENCH_RESULT "

# %s is replaced by the request part of the script (method, body, headers).
LUA_TEMPLATE = """\
%s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%%d,"duration_us":%%d,"bytes":%%d,' ..
    '"connect_errors":%%d,"read_errors":%%d,"write_errors":%%d,"timeouts":%%d,"non_2xx_3xx":%%d,' ..
    '"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d,"mean_us":%%.1f}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_us: int
    bytes: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int
    non_2xx_3xx: int
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int
    mean_us: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    def as_dict(self) -> dict:
        return asdict(self)


def request_lua(method: str = "GET", body_size: int = 0) -> str:
    """The request part of the script: a GET, or a POST of `body_size` bytes."""
    if method == "GET" and not body_size:
        return ""
    lines = [f'wrk.method = "{method}"']
    if body_size:
        lines.append(f'wrk.body = string.rep("x", {body_size})')
        lines.append('wrk.headers["Content-Type"] = "application/octet-stream"')
    return "\n".join(lines)


def render_script(method: str = "GET", body_size: int = 0) -> str:
    return LUA_TEMPLATE % (request_lua(method, body_size), RESULT_MARKER)


def parse_wrk_output(stdout: str) -> WrkResult:
    """The figures from the `done()` line; ValueError when wrk printed none (it failed)."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return WrkResult(**json.loads(line[len(RESULT_MARKER):]))
    raise ValueError(f"wrk printed no result line; its output was:\n{stdout[-2000:]}")


def wrk_command(url: str, script_path: str, *, connections: int, seconds: int,
                threads: int = 2, timeout_s: int = 10) -> list[str]:
    # The timeout is generous: fork-CGI at 64 connections on 2 cores is slow, not broken.
    return ["wrk", f"-t{min(threads, connections)}", f"-c{connections}",
            f"-d{max(1, int(seconds))}s", f"--timeout={timeout_s}s", "-s", script_path, url]


class WrkHung(RuntimeError):
    """wrk ran far past its duration and was killed; `diagnosis` is what /proc said of it."""

    def __init__(self, cmd: list[str], waited_s: float, diagnosis: str) -> None:
        super().__init__(f"{' '.join(cmd)} still running {waited_s:.0f} s after it started; killed. {diagnosis}")
        self.diagnosis = diagnosis


# wrk's --timeout: generous, fork-CGI at 64 connections on 2 cores is slow, not broken.
REQUEST_TIMEOUT_S = 10
# How long past its duration plus its timeout a wrk run may take before it is called hung.
HANG_SLACK_S = 15


def run_wrk(url: str, script_path: str, *, connections: int, seconds: int) -> WrkResult:
    """One wrk run. wrk stops by itself after `seconds` plus at most its request timeout;
    one still running well past that is stuck in wrk itself (a slow server only makes it
    count timeouts), so it is killed and raised as WrkHung, with its threads' states."""
    cmd = wrk_command(url, script_path, connections=connections, seconds=seconds, timeout_s=REQUEST_TIMEOUT_S)
    limit = max(1, int(seconds)) + REQUEST_TIMEOUT_S + HANG_SLACK_S
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        diagnosis = thread_states(process.pid)
        process.kill()
        process.communicate()
        raise WrkHung(cmd, limit, diagnosis) from None
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {process.returncode}: {stderr.strip()}")
    return parse_wrk_output(stdout)


def thread_states(pid: int) -> str:
    """Each thread's state, CPU ticks and wait channel, from /proc: enough to tell a thread
    spinning (R, ticks growing) from one asleep in the kernel (S and where)."""
    rows = []
    try:
        for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
            base = f"/proc/{pid}/task/{tid}"
            with open(f"{base}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"{base}/wchan") as f:
                wchan = f.read().strip() or "-"
            rows.append(f"thread {tid}: state {fields[0]}, utime {fields[11]}, stime {fields[12]} ticks, wchan {wchan}")
    except OSError as exc:
        rows.append(f"/proc unreadable: {exc}")
    return "; ".join(rows)
