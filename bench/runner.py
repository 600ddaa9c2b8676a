"""Runs the scenarios: each server with nginx in front, a correctness check, warm-up, then wrk.

Every selected scenario is started first and stays up for the whole run; the measuring
then goes round the scenarios several times, a short wrk run each, and adds the rounds
up. The machine is shared and its load comes and goes, so measuring scenario A for the
whole of one minute and its peer B during the next would compare two machines; with
interleaved rounds each side sees the same mix of quiet and busy moments.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import wrk
from .nginxconf import render_http_conf, render_server_conf
from .procfs import Conntrack, MemoryPeak, conntrack, parent_map, process_tree, rss_bytes, tree_cpu_seconds
from .scenarios import HOST, Paths, Scenario, Workload
from .servers import RunningServer


@dataclass(frozen=True)
class Settings:
    warmup_s: int
    round_s: int  # one wrk run, per scenario and concurrency, per round
    rounds: int
    concurrencies: tuple[int, ...] = (16, 64)
    quick: bool = False  # the scenarios marked quick_brief run at the highest concurrency only, unwarmed

    @property
    def measure_s(self) -> int:
        return self.round_s * self.rounds


ROUND_CAP_S = 2
RETRY_S = 5  # a round that got no answer at all is run again this long
# Before a wrk run, a host connection-tracking table fuller than CONNTRACK_BUSY of its size is
# waited for (up to CONNTRACK_WAIT_S: a closed connection's entry goes 120 s after it closed)
# until it is down to CONNTRACK_ROOM: the next run's connects would otherwise time out.
CONNTRACK_BUSY, CONNTRACK_ROOM, CONNTRACK_WAIT_S = 0.75, 0.5, 130

FULL = Settings(warmup_s=1, round_s=1, rounds=4)
QUICK = Settings(warmup_s=1, round_s=1, rounds=1, quick=True)


def concurrencies_for(scenario: Scenario, settings: Settings) -> tuple[int, ...]:
    """The concurrencies a scenario is measured at in this run."""
    if settings.quick and scenario.quick_brief:
        return (max(settings.concurrencies),)
    return tuple(settings.concurrencies)


def warms_up(scenario: Scenario, settings: Settings) -> bool:
    return not (settings.quick and scenario.quick_brief)


@dataclass
class ScenarioResult:
    name: str
    title: str
    ours: bool
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    runs: list[dict] = field(default_factory=list)  # one per concurrency
    concurrencies: list[int] = field(default_factory=list)  # those it is measured at in this run
    peak_rss_bytes: int | None = None
    max_child_rss_bytes: int | None = None
    max_processes: int | None = None
    nginx_errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what went wrong in the harness and was handled

    @property
    def errors(self) -> int:
        """Every failed request and every error nginx logged: the harness wants zero."""
        failed = sum(run["non_2xx_3xx"] + run["socket_errors"] for run in self.runs)
        return failed + len(self.nginx_errors)

    def fail(self, reason: str) -> None:
        self.status, self.reason = "failed", reason


def fetch(url: str, workload: Workload, timeout: float = 10.0) -> tuple[int, bytes]:
    data = b"x" * workload.body_size if workload.body_size else None
    request = urllib.request.Request(url, data=data, method=workload.method)
    if data:
        request.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def check_answer(url: str, workload: Workload, attempts: int = 20) -> None:
    """One real request must give the expected answer before any load; retried while the
    server's children come up."""
    reason = ""
    for _ in range(attempts):
        try:
            reason = workload.check(*fetch(url, workload))
        except OSError as exc:
            reason = f"{workload.method} {url}: {exc}"
        if not reason:
            return
        time.sleep(0.25)
    raise RuntimeError(reason)


def combine_rounds(connections: int, rounds: list[wrk.WrkResult]) -> dict:
    """One concurrency's figures over all rounds: totals for throughput and errors, the
    median round for latency (a round hit by someone else's burst does not set it)."""
    requests = sum(r.requests for r in rounds)
    seconds = sum(r.duration_us for r in rounds) / 1e6
    return {
        "connections": connections,
        "requests_per_s": round(requests / seconds, 1) if seconds else 0.0,
        "p50_ms": statistics.median(r.p50_us for r in rounds) / 1000,
        "p99_ms": statistics.median(r.p99_us for r in rounds) / 1000,
        "max_ms": max(r.max_us for r in rounds) / 1000,
        "requests": requests,
        "non_2xx_3xx": sum(r.non_2xx_3xx for r in rounds),
        "socket_errors": sum(r.socket_errors for r in rounds),
        "rounds_requests_per_s": [round(r.requests_per_s, 1) for r in rounds],
    }


def error_lines(log: str) -> list[str]:
    """nginx's complaints during the run (upstream resets, timeouts, bad headers)."""
    levels = ("[error]", "[crit]", "[alert]", "[emerg]")
    return [line for line in log.splitlines() if any(level in line for level in levels)]


class LiveScenario:
    """A scenario whose server and nginx are up, with its wrk rounds so far."""

    def __init__(self, scenario: Scenario, url: str, script: Path, result: ScenarioResult,
                 server: RunningServer | None = None, ngx=None, stack=None) -> None:
        self.scenario, self.url, self.script, self.result = scenario, url, script, result
        self.server, self.ngx = server, ngx
        self.stack = stack  # --containers without a URL: a bench.stacks.Stack, its containers' processes
        self.rounds: dict[int, list[wrk.WrkResult]] = {}
        self.cpu_seconds: dict[int, float] = {}  # per concurrency, over all rounds
        self.nginx_cpu_seconds: dict[int, float] = {}  # the same for nginx (the edge's cost of the protocol)
        self.warm_requests_per_s = 0.0
        manager = server.process.pid if server else (min(stack.app_pids) if stack and stack.app_pids else None)
        self.memory = MemoryPeak(manager_pid=manager)
        script.write_text(wrk.render_script(scenario.workload.method, scenario.workload.body_size))

    def root_pids(self) -> set[int]:
        if self.stack:
            return set(self.stack.app_pids)
        if self.server:
            return self.server.root_pids()
        return {self.ngx.process.pid} if self.ngx else set()

    def load(self, connections: int, seconds: int) -> wrk.WrkResult:
        """One wrk run. wrk itself has hung, rarely (once in CI, past its 1 s duration for
        a minute, while every other scenario of the run measured cleanly): such a run is
        reported in the result's notes and run once more; a second hang fails the scenario.

        A run in which the host's connection-tracking table overflowed (its failed requests
        are the kernel's doing, not the server's) says so in the result's notes."""
        before = wait_for_conntrack_room(self.scenario.name)
        try:
            return wrk.run_wrk(self.url, str(self.script), connections=connections, seconds=seconds)
        except wrk.WrkHung as hung:
            self.note(f"wrk hung at {connections} connections and was run again: {hung}")
            self.wait_idle()
            return wrk.run_wrk(self.url, str(self.script), connections=connections, seconds=seconds)
        finally:
            after = conntrack()
            if before and after and after.drops > before.drops:
                self.note(f"the host's connection-tracking table was full during the run at {connections} "
                          f"connections: the kernel dropped {after.drops - before.drops} packets of new "
                          f"connections, which wait a second for the kernel to send them again or time out "
                          f"(nginx: 'upstream timed out ... while connecting'); it holds {after.count} of "
                          f"net.netfilter.nf_conntrack_max = {after.limit} entries: raise that (setup.sh sets 1048576)")

    def note(self, note: str) -> None:
        print(f"bench: note: {self.scenario.name}: {note}", file=sys.stderr, flush=True)
        self.result.notes.append(note)

    def warm_up(self, connections: int, seconds: int) -> None:
        self.warm_requests_per_s = self.load(connections, seconds).requests_per_s
        self.wait_idle()

    def round_seconds(self, connections: int, base: int) -> int:
        """A slow server (fork-CGI) gets longer rounds, up to ROUND_CAP_S, so that a round
        holds a few times `connections` requests rather than the first few of a queue."""
        if not self.warm_requests_per_s:
            return base
        wanted = math.ceil(2 * connections / self.warm_requests_per_s)
        return max(base, min(wanted, ROUND_CAP_S))

    def measure(self, connections: int, base_seconds: int) -> None:
        """One round at `connections`, with the server's CPU time spent on it.

        A round in which no answer came back measured nothing (a slow peer's queue on a
        busy machine: flup's 1 MiB answers at 64 connections in a 1 s `--quick` round); it
        is run again once, for RETRY_S, rather than reported as 0 req/s."""
        seconds = self.round_seconds(connections, base_seconds)
        while True:
            parents = parent_map()  # one /proc pass for both trees
            cpu_before, nginx_before = tree_cpu_seconds(self.root_pids(), parents), self.nginx_cpu(parents)
            result = self.load(connections, seconds)
            parents = parent_map()
            cpu = tree_cpu_seconds(self.root_pids(), parents) - cpu_before
            nginx_cpu = self.nginx_cpu(parents) - nginx_before
            if result.requests or seconds >= RETRY_S:
                break
            self.wait_idle()
            seconds = RETRY_S
        self.rounds.setdefault(connections, []).append(result)
        self.cpu_seconds[connections] = self.cpu_seconds.get(connections, 0.0) + cpu
        self.nginx_cpu_seconds[connections] = self.nginx_cpu_seconds.get(connections, 0.0) + nginx_cpu
        self.wait_idle()

    def nginx_cpu(self, parents: dict[int, int]) -> float:
        """CPU seconds of our nginx (master and worker) so far; 0 for --containers URL."""
        if self.stack:
            return tree_cpu_seconds(set(self.stack.edge_pids), parents)
        return tree_cpu_seconds({self.ngx.process.pid}, parents) if self.ngx else 0.0

    def wait_idle(self, quiet_s: float = 0.1, limit_s: float = 5.0) -> None:
        """Waits for the requests wrk left in flight to drain. nginx gives up on them when
        wrk closes, but a server works through those it has already queued; a fork-CGI
        gateway can take seconds, which would otherwise be charged to the next round."""
        if not self.server and not self.stack:
            return
        deadline, quiet, last = time.monotonic() + limit_s, 0, tree_cpu_seconds(self.root_pids())
        while quiet < 2 and time.monotonic() < deadline:
            time.sleep(quiet_s)
            now = tree_cpu_seconds(self.root_pids())
            quiet = quiet + 1 if now - last < 0.05 * quiet_s else 0
            last = now

    def finish(self) -> None:
        """Figures into the result; a server that died under load fails the scenario."""
        result = self.result
        result.runs = [combine_rounds(c, rounds) for c, rounds in self.rounds.items()]
        for run in result.runs:
            measured = self.server or self.ngx or self.stack
            if measured and run["requests"] and not self.scenario.server.forks_per_request:
                run["cpu_ms_per_request"] = round(1000 * self.cpu_seconds[run["connections"]] / run["requests"], 3)
            if ((self.server and self.ngx) or self.stack) and run["requests"]:
                run["nginx_cpu_ms_per_request"] = round(
                    1000 * self.nginx_cpu_seconds[run["connections"]] / run["requests"], 3)
        if self.server or self.ngx or self.stack:
            result.peak_rss_bytes, result.max_child_rss_bytes = self.memory.total_bytes, self.memory.max_child_bytes
            result.max_processes = self.memory.max_processes
        if self.ngx:
            result.nginx_errors = error_lines(self.ngx.error_log())[:20]
        if self.stack:
            result.nginx_errors = stack_error_lines(self.stack.edge_log(), self.scenario.workload)[:20]
        if self.server and not self.server.alive():
            result.fail(f"{self.scenario.server.name} died under load:\n{self.server.log_tail()}")


def wait_for_conntrack_room(name: str, limit_s: float = CONNTRACK_WAIT_S) -> Conntrack | None:
    """Waits, up to `limit_s`, while the host's connection-tracking table is fuller than
    CONNTRACK_BUSY of its size: the scenarios without keep-alive open thousands of
    connections a second, and each keeps its entry for two minutes after it closed.
    Returns the table as last read (None without connection tracking)."""
    table = conntrack()
    if table is None or table.count <= CONNTRACK_BUSY * table.limit:
        return table
    print(f"bench: {name}: the host's connection-tracking table holds {table.count} of {table.limit} entries "
          f"(net.netfilter.nf_conntrack_max); waiting up to {limit_s:.0f} s for closed connections' entries "
          f"to expire", file=sys.stderr, flush=True)
    deadline = time.monotonic() + limit_s
    while table and table.count > CONNTRACK_ROOM * table.limit and time.monotonic() < deadline:
        time.sleep(1)
        table = conntrack()
    return table


def start_scenario(scenario: Scenario, paths: Paths) -> LiveScenario:
    """The scenario's server (if any) and an nginx in front, answering correctly."""
    from fcgikit.testing import free_port
    from fcgikit.testing.nginx import Nginx

    result = ScenarioResult(scenario.name, scenario.title, scenario.ours)
    port, server, ngx = free_port(), None, None
    try:
        if scenario.server.command(port, paths) is not None:
            server = RunningServer(scenario.server, port, paths)
            server.start()
        ngx = Nginx(render_server_conf(str(paths.www_dir), scenario.keep_conn, scenario.server.protocol),
                    render_http_conf(f"{HOST}:{port}", scenario.keep_conn, scenario.keepalive),
                    workers=1, log_level="warn")
        ngx.start()
        url = ngx.url(scenario.workload.path)
        try:
            check_answer(url, scenario.workload)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- nginx error log:\n{ngx.error_log()[-2000:]}"
                               f"\n--- server log:\n{server.log_tail() if server else ''}") from None
    except BaseException:
        stop_processes([ngx] if ngx else [], [server] if server else [])
        raise
    return LiveScenario(scenario, url, paths.work_dir / f"{scenario.name}.lua", result, server, ngx)


def start_stack_scenario(scenario: Scenario, base_url: str, paths: Paths) -> LiveScenario:
    """--containers: the stack's nginx answers; no server of ours, no memory figures."""
    result = ScenarioResult(scenario.name, scenario.title, scenario.ours)
    url = base_url.rstrip("/") + scenario.workload.path
    check_answer(url, scenario.workload, attempts=2)
    return LiveScenario(scenario, url, paths.work_dir / f"{scenario.name}.lua", result)


def start_built_stack_scenario(scenario: Scenario, stack, paths: Paths) -> LiveScenario:
    """--containers without a URL: a stack of bench/stacks.py, answering correctly."""
    result = ScenarioResult(scenario.name, scenario.title, scenario.ours)
    url = stack.url + scenario.workload.path
    try:
        check_answer(url, scenario.workload)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n--- nginx log:\n{stack.edge_log()[-2000:]}"
                           f"\n--- app log:\n{stack.app_log()[-2000:]}") from None
    return LiveScenario(scenario, url, paths.work_dir / f"{scenario.name}.lua", result, stack=stack)


def stack_error_lines(log: str, workload: Workload) -> list[str]:
    """A stack's nginx serves several scenarios: its error lines about this one's requests,
    and those about no request at all."""
    return [line for line in error_lines(log)
            if f'request: "{workload.method} {workload.path} ' in line or 'request: "' not in line]


def stop_all(live: list[LiveScenario]) -> None:
    stop_processes([s.ngx for s in live if s.ngx], [s.server for s in live if s.server])


def stop_processes(nginxes: list, servers: list[RunningServer]) -> None:
    """nginx first (it holds the connections), then every server at once, each given
    the same grace period rather than one after the other."""
    for ngx in nginxes:
        ngx.stop()
    for server in servers:
        server.terminate()
    deadline = time.monotonic() + 3.0
    for server in servers:
        server.wait_stopped(deadline)


def sample_memory(live: list[LiveScenario]) -> None:
    """One /proc pass for every live scenario's process tree."""
    parents = parent_map()
    for scenario in live:
        tree = process_tree(scenario.root_pids(), parents)
        scenario.memory.add_sample({pid: rss_bytes(pid) for pid in tree})


def measure_all(live: list[LiveScenario], settings: Settings, progress=print) -> None:
    """Warm each scenario up, then go round them all `settings.rounds` times."""
    import threading

    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            sample_memory(live)
            stop.wait(0.1)

    thread = threading.Thread(target=sampler, name="rss-sampler", daemon=True)
    thread.start()
    try:
        for scenario in live:
            scenario.result.concurrencies = list(concurrencies_for(scenario.scenario, settings))
            if warms_up(scenario.scenario, settings):
                run_guarded(scenario, lambda s=scenario: s.warm_up(max(settings.concurrencies), settings.warmup_s))
        for number in range(1, settings.rounds + 1):
            progress(f"bench: round {number}/{settings.rounds}")
            for scenario in live:
                for connections in scenario.result.concurrencies:
                    run_guarded(scenario, lambda s=scenario, c=connections: s.measure(c, settings.round_s))
    finally:
        stop.set()
        thread.join()


def run_guarded(scenario: LiveScenario, action) -> None:
    """A wrk failure fails that scenario only; the others go on."""
    if scenario.result.status != "ok":
        return
    try:
        action()
    except Exception as exc:
        scenario.result.fail(f"{type(exc).__name__}: {exc}")
