"""The benchmark harness runs end to end: `python3 -m bench --quick` (speed is not judged here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scenarios import COMPARISONS, SCENARIOS

pytestmark = [pytest.mark.bench, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]


def run_bench(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.timeout(400)
def test_quick_run_runs_every_scenario_with_zero_errors(tmp_path):
    done = run_bench(["--quick", "--results-dir", str(tmp_path)], timeout=380)
    output = f"--- stdout:\n{done.stdout}\n--- stderr:\n{done.stderr}"
    report = json.loads((tmp_path / "quick.json").read_text())
    by_name = {s["name"]: s for s in report["scenarios"]}

    assert sorted(by_name) == sorted(s.name for s in SCENARIOS), output
    not_run = {name: s["reason"] for name, s in by_name.items() if s["status"] != "ok"}
    assert not not_run, f"scenarios that did not run: {json.dumps(not_run, indent=2)}\n{output}"
    brief = {s.name for s in SCENARIOS if s.quick_brief}  # issue 16's peers: one concurrency in --quick
    for name, scenario in by_name.items():
        assert [run["connections"] for run in scenario["runs"]] == ([64] if name in brief else [16, 64]), name
        assert all(run["requests"] > 0 for run in scenario["runs"]), name
        assert scenario["errors"] == 0, f"{name}: {json.dumps(scenario, indent=2)}"
        assert scenario["peak_rss_bytes"] > 0, name
    assert done.returncode == 0, output

    targets = [r for r in report["ratios"] if r["target"] is not None]
    names = {s.name for s in SCENARIOS}  # not the container stacks' (--containers)
    assert len(targets) == sum(1 if brief & {c.ours, c.peer} else 2 for c in COMPARISONS
                               if c.target is not None and {c.ours, c.peer} <= names)
    assert all(r["ratio"] is not None for r in targets), report["ratios"]
    assert report["memory"]["measured_mib"] > 0

    markdown = (tmp_path / "quick.md").read_text()
    for name in by_name:
        assert f"| {name} |" in markdown
    assert "## Ours / peer" in markdown and "Problems" not in markdown
    for peer in ("gunicorn", "uWSGI", "php-fpm", "php-cgi", "nginx"):
        assert report["meta"]["versions"][peer] != "not installed", report["meta"]["versions"]
        assert f"{peer} " in markdown


@pytest.mark.timeout(120)
def test_containers_mode_measures_a_running_stack_and_skips_what_it_lacks(tmp_path):
    """--containers against any nginx in front of our worker, without Docker: the stack's
    nginx is here one of our own on 127.0.0.1, serving the bench app with no /cgi-bin/."""
    from bench.nginxconf import COMMON_PARAMS, render_http_conf
    from bench.scenarios import APPS_DIR
    from fcgikit.testing import free_port, wait_for_port
    from fcgikit.testing.nginx import Nginx

    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "fcgikit.serve", "-n", "-a", "127.0.0.1", "-p", str(port),
                              "-F", "1", "hello_wsgi:app"], cwd=APPS_DIR, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port, 20, process=serve)
        server_conf = (f"location / {{ {COMMON_PARAMS} fastcgi_param SCRIPT_NAME \"\"; "
                       "fastcgi_param PATH_INFO $uri; fastcgi_pass fcgikit_bench_backend; }\n"
                       "location /cgi-bin/ { return 404; }")
        with Nginx(server_conf, render_http_conf(f"127.0.0.1:{port}", False)) as ngx:
            done = run_bench(["--containers", ngx.url("/"), "--quick", "--results-dir", str(tmp_path)], 90)
    finally:
        serve.terminate()
        serve.wait(10)
    report = json.loads((tmp_path / "containers.json").read_text())
    status = {s["name"]: s["status"] for s in report["scenarios"]}
    assert status == {"stack-hello": "ok", "stack-post64k": "ok", "stack-cgi-sh": "skipped",
                      "stack-cgi-py": "skipped"}, done.stdout + done.stderr
    assert all(s["errors"] == 0 for s in report["scenarios"] if s["status"] == "ok")
    assert done.returncode == 1  # a skipped scenario is a problem, never silently missing


@pytest.mark.timeout(200)
def test_baseline_runs_another_checkouts_worker_in_the_same_run(tmp_path):
    """--baseline SRC: fcgikit.serve from SRC beside this tree's, both against uWSGI, compared."""
    import shutil

    baseline_src = tmp_path / "before" / "src"
    shutil.copytree(REPO / "src", baseline_src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    marker = tmp_path / "the baseline copy ran"
    serve_py = baseline_src / "fcgikit" / "serve.py"
    serve_py.write_text(serve_py.read_text().replace('if __name__ == "__main__":',
                                                     f'if __name__ == "__main__":\n    open({str(marker)!r}, "w").close()'))
    done = run_bench(["--quick", "--only", "serve-hello", "--only", "uwsgi-hello", "--baseline", str(baseline_src),
                      "--results-dir", str(tmp_path / "results")], timeout=180)
    output = f"--- stdout:\n{done.stdout}\n--- stderr:\n{done.stderr}"
    assert done.returncode == 0, output
    report = json.loads((tmp_path / "results" / "quick.json").read_text())
    by_name = {s["name"]: s for s in report["scenarios"]}
    assert set(by_name) >= {"serve-hello", "uwsgi-hello", "baseline-serve-hello"}, output
    assert all(s["errors"] == 0 and s["status"] == "ok" for s in by_name.values()), output
    assert marker.exists(), output  # the baseline scenario imported fcgikit from SRC, not from this tree
    compared = {(r["ours"], r["peer"]) for r in report["ratios"] if r["ratio"] is not None}
    assert ("serve-hello", "baseline-serve-hello") in compared and ("baseline-serve-hello", "uwsgi-hello") in compared

    missing = run_bench(["--quick", "--baseline", str(tmp_path / "nowhere")], timeout=30)
    assert missing.returncode == 2 and "no fcgikit/serve.py there" in missing.stderr
