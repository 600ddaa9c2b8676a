"""Runs one scenario: its server, nginx in front, a correctness check, warm-up, then wrk."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import wrk
from .nginxconf import render_http_conf, render_server_conf
from .procfs import MemoryPeak, RssSampler
from .scenarios import HOST, Paths, Scenario, Workload
from .servers import RunningServer


@dataclass(frozen=True)
class Settings:
    warmup_s: int
    measure_s: int
    concurrencies: tuple[int, ...] = (16, 64)


FULL = Settings(warmup_s=2, measure_s=4)
QUICK = Settings(warmup_s=1, measure_s=1)


@dataclass
class ScenarioResult:
    name: str
    title: str
    ours: bool
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    runs: list[dict] = field(default_factory=list)  # one per concurrency
    peak_rss_bytes: int | None = None
    max_child_rss_bytes: int | None = None
    max_processes: int | None = None
    nginx_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors(self) -> int:
        """Every failed request and every error nginx logged: the harness wants zero."""
        failed = sum(run["non_2xx_3xx"] + run["socket_errors"] for run in self.runs)
        return failed + len(self.nginx_errors)


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


def measure(url: str, workload: Workload, settings: Settings, script: Path) -> list[dict]:
    """Warm up at the highest concurrency, then measure each concurrency in turn."""
    script.write_text(wrk.render_script(workload.method, workload.body_size))
    wrk.run_wrk(url, str(script), connections=max(settings.concurrencies), seconds=settings.warmup_s)
    runs = []
    for connections in settings.concurrencies:
        result = wrk.run_wrk(url, str(script), connections=connections, seconds=settings.measure_s)
        runs.append(summarise_run(connections, result))
    return runs


def summarise_run(connections: int, result: wrk.WrkResult) -> dict:
    return {
        "connections": connections,
        "requests_per_s": round(result.requests_per_s, 1),
        "p50_ms": result.p50_us / 1000,
        "p99_ms": result.p99_us / 1000,
        "max_ms": result.max_us / 1000,
        "requests": result.requests,
        "non_2xx_3xx": result.non_2xx_3xx,
        "socket_errors": result.socket_errors,
        "wrk": result.as_dict(),
    }


def error_lines(log: str) -> list[str]:
    """nginx's complaints during the run (upstream resets, timeouts, bad headers)."""
    levels = ("[error]", "[crit]", "[alert]", "[emerg]")
    return [line for line in log.splitlines() if any(level in line for level in levels)]


def run_scenario(scenario: Scenario, settings: Settings, paths: Paths) -> ScenarioResult:
    result = ScenarioResult(scenario.name, scenario.title, scenario.ours)
    started = time.monotonic()
    missing = scenario.server.missing()
    if missing:
        result.status, result.reason = "skipped", missing
        return result
    try:
        run_with_server(scenario, settings, paths, result)
    except Exception as exc:  # reported per scenario: one broken server must not end the run
        result.status, result.reason = "failed", f"{type(exc).__name__}: {exc}"
    result.seconds = round(time.monotonic() - started, 1)
    return result


def run_with_server(scenario: Scenario, settings: Settings, paths: Paths, result: ScenarioResult) -> None:
    from fcgikit.testing import free_port
    from fcgikit.testing.nginx import Nginx

    server = None
    port = free_port()
    if scenario.server.command(port, paths) is not None:
        server = RunningServer(scenario.server, port, paths).start()
    try:
        http_conf = render_http_conf(f"{HOST}:{port}", scenario.keep_conn)
        server_conf = render_server_conf(str(paths.www_dir), scenario.keep_conn)
        with Nginx(server_conf, http_conf, workers=1, log_level="warn") as ngx:
            run_under_nginx(scenario, settings, paths, result, ngx, server)
    finally:
        if server:
            server.stop()


def run_under_nginx(scenario, settings, paths, result, ngx, server) -> None:
    url = ngx.url(scenario.workload.path)
    try:
        check_answer(url, scenario.workload)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n--- nginx error log:\n{ngx.error_log()[-2000:]}"
                           f"\n--- server log:\n{server.log_tail() if server else ''}") from None
    peak = MemoryPeak(manager_pid=server.process.pid if server else None)
    roots = server.root_pids if server else (lambda: {ngx.process.pid})
    with RssSampler(roots, peak):
        result.runs = measure(url, scenario.workload, settings, paths.work_dir / f"{scenario.name}.lua")
    result.peak_rss_bytes, result.max_child_rss_bytes = peak.total_bytes, peak.max_child_bytes
    result.max_processes = peak.max_processes
    result.nginx_errors = error_lines(ngx.error_log())[:20]
    if server and not server.alive():
        raise RuntimeError(f"{scenario.server.name} died under load:\n{server.log_tail()}")
