"""`python3 -m bench --containers` (no URL) builds and starts the fcgikit, gunicorn, uWSGI,
php-cgi and php-fpm container stacks, measures them and removes them (speed is not judged here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.bench, pytest.mark.docker, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
HELLOS = ["stack-fcgikit-hello", "stack-fcgikit-static-hello", "stack-gunicorn-hello", "stack-uwsgi-hello", "stack-php-fcgikit-hello",
          "stack-php-fpm-hello", "stack-php-fcgikit-children-hello"]


def docker_lines(*args: str) -> list[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    return done.stdout.split()


@pytest.fixture
def engine():
    from bench.stacks import docker_missing

    reason = docker_missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)


@pytest.mark.timeout(900)
def test_the_container_stacks_run_answer_with_zero_errors_and_are_removed(engine, tmp_path):
    # The first run builds fcgikit's images and the peers' (one apt-get on the base, about a
    # minute and a half); later runs find them and take about 30 s.
    args = ["--containers", "--quick", "--results-dir", str(tmp_path), *[f"--only={name}" for name in HELLOS]]
    done = subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=880)
    output = f"--- stdout:\n{done.stdout[-5000:]}\n--- stderr:\n{done.stderr[-5000:]}"
    report = json.loads((tmp_path / "stacks.json").read_text())
    by_name = {s["name"]: s for s in report["scenarios"]}

    assert sorted(by_name) == sorted(HELLOS), output
    for name, scenario in by_name.items():
        assert scenario["status"] == "ok", f"{name}: {scenario['reason']}\n{output}"
        assert scenario["runs"] and all(run["requests"] > 0 for run in scenario["runs"]), name
        assert scenario["errors"] == 0, f"{name}: {json.dumps(scenario, indent=2)}"
        # The containers' processes are this host's: CPU and memory are read from /proc (the
        # CPU figures can be 0.0 in a short round on a busy machine: the kernel counts in ticks).
        assert scenario["runs"][0].get("cpu_ms_per_request") is not None, name
        assert scenario["runs"][0].get("nginx_cpu_ms_per_request") is not None, name
        assert scenario["peak_rss_bytes"] > 0 and scenario["max_child_rss_bytes"] > 0, name
    targets = {(r["ours"], r["peer"]): r for r in report["ratios"] if r["target"] is not None}
    assert set(targets) == {("stack-fcgikit-hello", "stack-gunicorn-hello"),
                            ("stack-fcgikit-hello", "stack-uwsgi-hello"),
                            ("stack-fcgikit-hello", "stack-fcgikit-static-hello"),
                            ("stack-php-fcgikit-hello", "stack-php-fpm-hello")}, report["ratios"]
    assert all(row["ratio"] for row in targets.values()), report["ratios"]
    assert done.returncode == 0, output

    # Nothing the run started is left: no container or network of the peers, no fcgikit stack.
    assert docker_lines("ps", "-a", "-q", "--filter", "label=fcgikit.bench") == [], "peers' containers left"
    assert docker_lines("network", "ls", "-q", "--filter", "label=fcgikit.bench") == [], "peers' networks left"
    assert docker_lines("ps", "-a", "-q", "--filter", "label=fcgikit.project=fcgikit-bench-fcgikit") == []
    assert docker_lines("ps", "-a", "-q", "--filter", "label=fcgikit.release.project=fcgikit-bench-fcgikit") == []
