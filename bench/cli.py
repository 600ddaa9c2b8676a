"""`python3 -m bench`: run the scenarios, print and write the results, exit non-zero on trouble."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from . import report
from .runner import (
    FULL,
    QUICK,
    LiveScenario,
    ScenarioResult,
    Settings,
    measure_all,
    start_built_stack_scenario,
    start_scenario,
    start_stack_scenario,
    stop_all,
)
from .scenarios import (
    BENCH_DIR,
    BUILT_STACK_SCENARIOS,
    SCENARIOS,
    STACK_BASELINE_PREFIX,
    STACK_SCENARIOS,
    Paths,
    Scenario,
    baseline,
    select,
    stack_baseline,
)
from .servers import become_subreaper


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 s warm-up and one 1 s round per concurrency (CI)")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this scenario (or every scenario starting with NAME); repeatable")
    parser.add_argument("--containers", metavar="URL", nargs="?", const="",
                        help="without URL: build and start the container stacks (fcgikit, gunicorn, uWSGI, "
                             "PHP; bench/stacks.py) and compare them; with URL: run the HTTP scenarios against a "
                             "running `fcgikit up` stack there")
    parser.add_argument("--containers-baseline", metavar="URL",
                        help="with --containers URL: a second stack measured in the same rounds (baseline-stack-* "
                             "scenarios, compared with stack-*), e.g. one deployed from the code before a change")
    parser.add_argument("--rounds", type=int, metavar="N", help="rounds over all scenarios (default 4, quick 1)")
    parser.add_argument("--round-seconds", type=int, metavar="S", help="seconds per wrk run in a round (default 1)")
    parser.add_argument("--warmup", type=int, metavar="S", help="seconds of warm-up per scenario")
    parser.add_argument("--connections", metavar="N,N", help="concurrencies to measure (default 16,64)")
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results",
                        help="where the markdown and JSON reports go (default bench/results)")
    parser.add_argument("--baseline", type=Path, metavar="SRC",
                        help="also run fcgikit.serve's hello scenario from SRC (another checkout's src/, "
                             "e.g. from `git worktree add`) and compare it with this tree's in the same run")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else FULL
    changes = {}
    if args.rounds:
        changes["rounds"] = args.rounds
    if args.round_seconds:
        changes["round_s"] = args.round_seconds
    if args.warmup is not None:
        changes["warmup_s"] = args.warmup
    if args.connections:
        changes["concurrencies"] = tuple(int(n) for n in args.connections.split(","))
    return dataclasses.replace(base, **changes)


def machine_description() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, load average at start {load}"


def nginx_version() -> str:
    try:
        done = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
        return done.stderr.strip().split("/", 1)[-1]
    except OSError:
        return "not installed"


# Debian packages the peers come from, and the Python distributions (pip) of the others.
DEBIAN_PACKAGES = {"nginx": "nginx-light", "wrk": "wrk", "fcgiwrap": "fcgiwrap", "spawn-fcgi": "spawn-fcgi",
                   "php-fpm": "php{php}-fpm", "php-cgi": "php{php}-cgi"}
PYTHON_DISTRIBUTIONS = {"flup": "flup", "gunicorn": "gunicorn", "uWSGI": "uwsgi"}


def command_output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def debian_version(package: str) -> str:
    return command_output(["dpkg-query", "-W", "-f=${Version}", package])


def python_version(distribution: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def peer_versions() -> dict[str, str]:
    """Every peer's version as installed here ("not installed" when it is not), for the report."""
    php = command_output(["php-cgi", "-r", "echo PHP_MAJOR_VERSION . '.' . PHP_MINOR_VERSION;"]) or "8.2"
    versions = {"python": platform.python_version()}
    for name, package in DEBIAN_PACKAGES.items():
        versions[name] = debian_version(package.format(php=php))
    for name, distribution in PYTHON_DISTRIBUTIONS.items():
        versions[name] = python_version(distribution)
    if not versions["uWSGI"]:
        versions["uWSGI"] = command_output(["uwsgi", "--version"])
    return {name: version or "not installed" for name, version in versions.items()}


def start(scenario: Scenario, args: argparse.Namespace, paths: Paths,
          stacks: dict | None = None) -> tuple[ScenarioResult, LiveScenario | None]:
    """The scenario up and answering, or a result saying why it is skipped or failed."""
    result = ScenarioResult(scenario.name, scenario.title, scenario.ours)
    try:
        if scenario.server.stack:
            return result, start_built_stack_scenario(scenario, stacks[scenario.server.stack], paths)
        if args.containers:
            url = args.containers
            if args.containers_baseline and scenario.name.startswith(STACK_BASELINE_PREFIX):
                url = args.containers_baseline
            try:
                return result, start_stack_scenario(scenario, url, paths)
            except RuntimeError as exc:
                result.status, result.reason = "skipped", f"the stack does not serve this: {exc}"
                return result, None
        missing = scenario.server.missing()
        if missing:
            result.status, result.reason = "skipped", missing
            return result, None
        return result, start_scenario(scenario, paths)
    except Exception as exc:  # one broken server must not end the run
        result.fail(f"{type(exc).__name__}: {exc}")
        return result, None


def bring_up_stacks(scenarios: list[Scenario], work: Path, results: list[ScenarioResult]):
    """--containers without a URL: the stacks the scenarios need, up; None (and every scenario
    skipped or failed, saying why) when they cannot be."""
    from .stacks import STACK_ORDER, StackError, Stacks, docker_missing

    names = sorted({s.server.stack for s in scenarios}, key=STACK_ORDER.index)
    missing = docker_missing()
    stacks = Stacks(names, work, log=lambda text: print(text, flush=True))
    if not missing:
        try:
            stacks.up()
            return stacks
        except StackError as exc:
            missing = f"failed: {exc}"
    for scenario in scenarios:
        result = ScenarioResult(scenario.name, scenario.title, scenario.ours)
        if missing.startswith("failed: "):
            result.fail(f"the stacks did not come up: {missing.removeprefix('failed: ')}")
        else:
            result.status, result.reason = "skipped", missing
        results.append(result)
    return None


def run_all(scenarios: list[Scenario], args: argparse.Namespace, settings: Settings) -> list[dict]:
    results, live, stacks = [], [], None
    with tempfile.TemporaryDirectory(prefix="fcgikit-bench-") as work:
        paths = Paths(work_dir=Path(work))
        try:
            if any(s.server.stack for s in scenarios):
                stacks = bring_up_stacks(scenarios, Path(work), results)
                if stacks is None:
                    scenarios = []
            for scenario in scenarios:
                print(f"bench: starting {scenario.name} ...", end=" ", flush=True)
                result, running = start(scenario, args, paths, stacks.running if stacks else None)
                print("up" if running else f"{result.status.upper()}: {result.reason}", flush=True)
                if running:
                    live.append(running)
                    result = running.result
                results.append(result)
            measure_all(live, settings, progress=lambda text: print(text, flush=True))
            for running in live:
                running.finish()
        finally:
            stop_all(live)
            if stacks:
                stacks.down()
    for result in results:
        print(f"bench: {result.name}: {progress_line(result)}")
    return [dict(dataclasses.asdict(result), errors=result.errors) for result in results]


def progress_line(result: ScenarioResult) -> str:
    if result.status != "ok":
        return f"{result.status.upper()}: {result.reason}"
    figures = ", ".join(f"c{run['connections']}: {run['requests_per_s']:.0f} req/s" for run in result.runs)
    return f"{figures}; errors {result.errors}"


def write_reports(results_dir: Path, stem: str, meta: dict, results: list[dict],
                  extra: list = ()) -> tuple[Path, Path]:
    ratio_rows = report.ratios(results, meta["concurrencies"], extra)
    memory = report.memory_check(results)
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = results_dir / f"{stem}.json", results_dir / f"{stem}.md"
    payload = {"meta": meta, "scenarios": results, "ratios": ratio_rows, "memory": memory,
               "problems": report.problems(results)}
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    md_path.write_text(report.markdown_report(meta, results, ratio_rows, memory))
    print()
    print(report.results_table(results))
    print(report.ratios_text(ratio_rows, memory))
    return md_path, json_path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    built_stacks = args.containers == ""
    catalogue = BUILT_STACK_SCENARIOS if built_stacks else STACK_SCENARIOS if args.containers else SCENARIOS
    if args.list:
        for scenario in catalogue:
            print(f"{scenario.name:26} {scenario.title}")
        return 0
    extra_comparisons = []
    if args.containers_baseline:
        if not args.containers:
            print("bench: --containers-baseline needs --containers", file=sys.stderr)
            return 2
        stack_scenarios, comparisons = stack_baseline()
        extra_comparisons += comparisons
        catalogue = [*catalogue, *stack_scenarios]
    if args.baseline:
        if not (args.baseline / "fcgikit" / "serve.py").is_file():
            print(f"bench: --baseline {args.baseline}: no fcgikit/serve.py there (give a checkout's src/)",
                  file=sys.stderr)
            return 2
        baseline_scenarios, comparisons = baseline(args.baseline)
        extra_comparisons += comparisons
        catalogue = [*catalogue, *baseline_scenarios]
    try:
        scenarios = select(catalogue, args.only)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    if args.baseline and not any(s.name.startswith("baseline") for s in scenarios):
        scenarios += baseline_scenarios
    settings = settings_from(args)
    become_subreaper()
    started, clock = datetime.now(UTC), time.monotonic()
    mode = "stacks" if built_stacks else "containers" if args.containers else ("quick" if args.quick else "full")
    meta = {"mode": mode,
            "started": started.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_description(),
            "nginx": nginx_version(), "versions": peer_versions(),
            "command": shlex.join(["python3", "-m", "bench", *(argv or sys.argv[1:])]),
            "warmup_s": settings.warmup_s, "measure_s": settings.measure_s, "rounds": settings.rounds,
            "concurrencies": list(settings.concurrencies)}
    results = run_all(scenarios, args, settings)
    meta["seconds"] = round(time.monotonic() - clock, 1)
    md_path, json_path = write_reports(args.results_dir, meta["mode"], meta, results, extra_comparisons)
    trouble = report.problems(results)
    for line in trouble:
        print(f"bench: problem: {line}", file=sys.stderr)
    print(f"bench: {len(results)} scenarios in {meta['seconds']:.0f} s; reports: {md_path}, {json_path}")
    return 1 if trouble else 0
