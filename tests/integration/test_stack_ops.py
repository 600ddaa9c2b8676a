"""Day-to-day operations on a running stack, through the real CLI: `logs` (every service,
--tail, --since, -f) and `scale` of several services at once, which keeps the app it finds."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from tests.integration.stack_support import ROOT, count, fcgikit, get, logs_on_failure, status, write_spec

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def test_logs_and_a_scale_of_two_services_on_a_stack_serving_its_own_app(engine, cli_env, project, tmp_path):
    """One stack (one `up`, to keep the suite short): the app is not the example, the stack
    file names the example; `logs` shows every service, `scale` of two services keeps the app."""
    app = tmp_path / "mine"
    app.mkdir()
    (app / "wsgi.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'served by mine\\n']\n")
    env = {key: value for key, value in cli_env.items() if key != "FCGIKIT_APP"}  # no --app but the ones given here
    spec = write_spec(tmp_path, workers=2, cgi=1)
    common = ("-p", project, "-f", str(spec))
    with logs_on_failure(engine, project):
        fcgikit(env, "up", *common, "--app", f"{app}:wsgi:application")
        url = status(env, project, spec)["url"]
        assert get(url, "/").text == "served by mine\n"
        assert get(url, "/cgi-bin/hello.sh").status_code == 200
        check_logs(env, project, spec, url)
        check_scale_keeps_the_app(env, project, spec, url, app, tmp_path)


def check_logs(cli_env, project: str, spec, url: str) -> None:
    every = fcgikit(cli_env, "logs", "-p", project, "--file", str(spec)).stdout.splitlines()
    prefixes = {line.split(" | ", 1)[0].strip() for line in every}
    assert prefixes == {f"{project}-nginx-1", f"{project}-workers-1", f"{project}-workers-2", f"{project}-cgi-1"}
    assert any("GET /cgi-bin/hello.sh" in line for line in every), every
    # `up` waited with health probes, and each container's HEALTHCHECK probes it: not an attack on the log
    assert not [line for line in every if "not a regular file" in line], every

    last = fcgikit(cli_env, "logs", "workers", "cgi", "--tail", "1", "-t", "-p", project, "--file", str(spec))
    lines = last.stdout.splitlines()
    assert sorted(line.split(" | ")[0].strip() for line in lines) == sorted(
        [f"{project}-cgi-1", f"{project}-workers-1", f"{project}-workers-2"]), lines
    stamps = [line.split(" | ", 1)[1].split(" ", 1)[0] for line in lines]
    assert stamps == sorted(stamps) and all(stamp.endswith("Z") for stamp in stamps), lines  # merged by time

    hour = fcgikit(cli_env, "logs", "--since", "1h", "-p", project, "--file", str(spec)).stdout.splitlines()
    assert hour[: len(every)] == every, (hour, every)
    time.sleep(1.5)
    quiet = fcgikit(cli_env, "logs", "--since", "1s", "-p", project, "--file", str(spec)).stdout
    assert "GET /cgi-bin/hello.sh" not in quiet, quiet

    follow_and_see(cli_env, project, spec, url)


def follow_and_see(cli_env, project: str, spec, url: str) -> None:
    """`logs -f -n 0` prints a request made while it follows, takes up a container a `scale`
    starts meanwhile, and stops on Ctrl-C with status 0."""
    argv = [sys.executable, "-m", "fcgikit.cli", "logs", "-f", "-n", "0", "-p", project, "--file", str(spec)]
    follower = subprocess.Popen(argv, env=cli_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(follower.stdout), daemon=True)
    reader.start()
    marker = uuid.uuid4().hex
    try:
        deadline = time.monotonic() + 30
        while not any(marker in line for line in seen) and time.monotonic() < deadline:
            get(url, f"/?followed={marker}")  # until the follower has started and sees it
            get(url, f"/cgi-bin/hello.sh?followed={marker}")
            time.sleep(0.5)
        fcgikit(cli_env, "scale", "cgi=2", "-p", project, "-f", str(spec))
        deadline = time.monotonic() + 30
        while not any(line.startswith(f"{project}-cgi-2 ") for line in seen) and time.monotonic() < deadline:
            time.sleep(0.3)
    finally:
        follower.send_signal(signal.SIGINT)
        code = follower.wait(timeout=20)
        reader.join(timeout=5)
    with_marker = [line for line in seen if marker in line]
    assert with_marker and {line.split(" | ")[0].strip() for line in with_marker} == {f"{project}-nginx-1"}, seen[-10:]
    started = [line for line in seen if line.startswith(f"{project}-cgi-2 ")]
    assert any("listening on 0.0.0.0:9000" in line for line in started), seen[-10:]
    assert code == 0, follower.stderr.read()


def check_scale_keeps_the_app(env, project: str, spec, url: str, app, tmp_path) -> None:
    common = ("-p", project, "-f", str(spec))
    scaled = fcgikit(env, "scale", "workers=3", "cgi=2", *common)  # no --app: the stack file names hello_wsgi
    assert f"keeping the app the workers serve, {app}:wsgi:application" in scaled.stderr, scaled.stderr
    report = status(env, project, spec)
    assert (count(report, "workers"), count(report, "cgi")) == (3, 2)
    assert {get(url, "/").text for _ in range(6)} == {"served by mine\n"}

    other = tmp_path / "other.py"
    other.write_text("def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'other']\n")
    refused = fcgikit(env, "scale", "workers=1", *common, "--app", str(other), check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: scale changes replica counts, not the app: the workers of {project} "
                                     f"serve {app}:wsgi:application"), refused.stderr
    assert count(status(env, project, spec), "workers") == 3, "a refused scale changed something"
