"""Turning scenario results into the markdown table, the JSON file and the ratios (pure)."""

from __future__ import annotations

from .scenarios import CHILD_RSS_TARGET, COMPARISONS, Comparison

MIB = 1024 * 1024


def run_at(result: dict, connections: int) -> dict | None:
    return next((run for run in result["runs"] if run["connections"] == connections), None)


def mib(value: int | None) -> str:
    return "" if value is None else f"{value / MIB:.1f}"


def results_table(results: list[dict]) -> str:
    """One row per scenario and concurrency."""
    head = ("| scenario | ours | conns | req/s | p50 ms | p99 ms | non-2xx | socket errors "
            "| server CPU ms/req | nginx CPU ms/req | peak RSS MiB (all processes) | max process RSS MiB |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    rows = []
    for r in results:
        ours = "yes" if r["ours"] else ""
        if r["status"] != "ok":
            rows.append(f"| {r['name']} | {ours} | | {r['status'].upper()}: {first_line(r['reason'])} "
                        "| | | | | | | | |")
            continue
        for run in r["runs"]:
            rows.append(f"| {r['name']} | {ours} | {run['connections']} | {run['requests_per_s']:.0f} "
                        f"| {run['p50_ms']:.2f} | {run['p99_ms']:.2f} | {run['non_2xx_3xx']} "
                        f"| {run['socket_errors']} | {cpu_ms(run)} | {cpu_ms(run, 'nginx_cpu_ms_per_request')} "
                        f"| {mib(r['peak_rss_bytes'])} "
                        f"| {mib(r['max_child_rss_bytes'])} |")
    return head + "\n".join(rows) + "\n"


def cpu_ms(run: dict, key: str = "cpu_ms_per_request") -> str:
    value = run.get(key)
    return "" if value is None else f"{value:.3f}"


def first_line(text: str) -> str:
    return text.splitlines()[0].replace("|", "/") if text else ""


def ratios(results: list[dict], concurrencies: tuple[int, ...], extra: list[Comparison] = ()) -> list[dict]:
    """ours/peer requests per second for every comparison both sides of which ran."""
    by_name = {r["name"]: r for r in results}
    rows = []
    for comparison in [*COMPARISONS, *extra]:
        for connections in concurrencies:
            row = ratio_row(comparison, by_name, connections)
            if row:
                rows.append(row)
    return rows


def ratio_row(comparison: Comparison, by_name: dict, connections: int) -> dict | None:
    ours, peer = by_name.get(comparison.ours), by_name.get(comparison.peer)
    if not ours or not peer:
        return None  # not selected in this run (--only)
    if any(r.get("concurrencies") and connections not in r["concurrencies"] for r in (ours, peer)):
        return None  # one side is not measured at this concurrency (a brief scenario in --quick)
    row = {"what": comparison.what, "ours": comparison.ours, "peer": comparison.peer,
           "connections": connections, "target": comparison.target, "ratio": None, "met": None,
           "cpu_ratio": None}
    ours_run, peer_run = run_at(ours, connections), run_at(peer, connections)
    if ours_run and peer_run and ours_run.get("cpu_ms_per_request") and peer_run.get("cpu_ms_per_request"):
        # How many of our requests fit in the CPU time the peer spends on one: steadier than
        # req/s on a shared machine, since it does not count the time others hold the CPUs.
        row["cpu_ratio"] = round(peer_run["cpu_ms_per_request"] / ours_run["cpu_ms_per_request"], 2)
    if ours_run and peer_run and peer_run["requests_per_s"]:
        row["ratio"] = round(ours_run["requests_per_s"] / peer_run["requests_per_s"], 2)
        if comparison.target is not None:
            row["met"] = row["ratio"] >= comparison.target
    return row


def memory_check(results: list[dict]) -> dict | None:
    name, limit = CHILD_RSS_TARGET
    result = next((r for r in results if r["name"] == name and r["status"] == "ok"), None)
    if not result:
        return None
    measured = result["max_child_rss_bytes"]
    return {"what": f"{name}: largest child RSS", "measured_mib": round(measured / MIB, 1),
            "target_mib": limit / MIB, "met": measured < limit}


def ratios_text(rows: list[dict], memory: dict | None) -> str:
    lines = ["| comparison | conns | ours/peer req/s | target | met | peer/ours CPU per request |",
             "|---|---:|---:|---:|---|---:|"]
    for row in rows:
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        target = "" if row["target"] is None else f">= {row['target']:g}x"
        cpu = "" if row.get("cpu_ratio") is None else f"{row['cpu_ratio']:.2f}x"
        lines.append(f"| {row['what']} ({row['ours']} / {row['peer']}) | {row['connections']} "
                     f"| {ratio} | {target} | {verdict(row['met'])} | {cpu} |")
    if memory:
        lines.append(f"| {memory['what']} | | {memory['measured_mib']} MiB | < {memory['target_mib']:g} MiB "
                     f"| {verdict(memory['met'])} | |")
    return "\n".join(lines) + "\n"


def verdict(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: ""}[met]


def problems(results: list[dict]) -> list[str]:
    """What keeps this run from being clean: skipped or failed scenarios, and errors."""
    found = []
    for r in results:
        if r["status"] != "ok":
            found.append(f"{r['name']}: {r['status']}: {first_line(r['reason'])}")
        elif r["errors"]:
            found.append(f"{r['name']}: {r['errors']} errors (failed requests or nginx error-log lines)"
                         + "".join(f"; {note}" for note in r.get("notes", [])))
    return found


def versions_line(versions: dict[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def markdown_report(meta: dict, results: list[dict], ratio_rows: list[dict], memory: dict | None) -> str:
    lines = [f"# fcgikit benchmark ({meta['mode']})", "",
             f"- when: {meta['started']} UTC, {meta['seconds']:.0f} s",
             f"- machine: {meta['machine']}",
             f"- load: wrk, {meta['warmup_s']} s warm-up, then {meta['measure_s']} s per concurrency "
             f"({', '.join(map(str, meta['concurrencies']))} connections) in {meta['rounds']} interleaved rounds; "
             + (f"nginx {meta['nginx']}, 1 worker process" if meta["mode"] != "stacks" else
              "nginx in each stack's container as fcgikit up runs it (worker_processes auto)"),
             *([f"- versions: {versions_line(meta['versions'])}"] if meta.get("versions") else []),
             f"- command: `{meta['command']}`", "",
             "## Results", "", results_table(results), "## Ours / peer", "", ratios_text(ratio_rows, memory)]
    trouble = problems(results)
    if trouble:
        lines += ["## Problems", ""] + [f"- {p}" for p in trouble] + [""]
    handled = [f"- {r['name']}: {note}" for r in results for note in r.get("notes", [])]
    if handled:
        lines += ["## Notes (handled by the harness)", ""] + handled + [""]
    return "\n".join(lines)
