"""wrk as the load generator: the Lua script that makes it report JSON, and its parsing.

wrk's own text summary rounds latencies and hides the error counters behind prose, so a
`done()` hook prints one machine-readable line instead; `parse_wrk_output` reads it back.
"""

from __future__ import annotations

import json
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


def run_wrk(url: str, script_path: str, *, connections: int, seconds: int) -> WrkResult:
    cmd = wrk_command(url, script_path, connections=connections, seconds=seconds)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()}")
    return parse_wrk_output(done.stdout)
