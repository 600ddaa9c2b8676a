"""`fcgikit test --app`: the integration suite a user runs in CI passes for any correct app
and fails for a broken one.

The apps here are what a user brings: a module that is not the example's `hello_wsgi`,
a callable that is not named `app`, answering whatever path it is asked. By default the
correct app runs the tests that once assumed the example app (the image's default
command, `up` through nginx); FCGIKIT_FULL_USER_SUITE=1 runs the whole suite with it
(about 9 minutes here).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.extended, pytest.mark.docker, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("FCGIKIT_FULL_USER_SUITE") == "1"

STOREFRONT = '''\
def application(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"storefront ", environ.get("PATH_INFO", "/").encode(), b" %d\\n" % len(body)]
'''
BROKEN = '''\
def application(environ, start_response):
    raise RuntimeError("the storefront is broken")
'''


def user_app(tmp_path: Path, source: str) -> str:
    directory = tmp_path / "shop"
    directory.mkdir()
    (directory / "storefront.py").write_text(source)
    return f"{directory}:storefront:application"


def user_suite(app: str, *pytest_args: str) -> subprocess.CompletedProcess:
    """`fcgikit test --app APP` as a user's CI runs it (nothing of this session's settings)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("FCGIKIT_APP", "FCGIKIT_TEST_APP", "FCGIKIT_PROJECT", "FCGIKIT_FILE")}
    argv = [sys.executable, "-m", "fcgikit.cli", "test", "--app", app, "-q", "-p", "no:cacheprovider", *pytest_args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=1700, env=env, cwd=ROOT)


def summary(result: subprocess.CompletedProcess) -> str:
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else result.stderr[-2000:]


def test_the_suite_passes_for_a_correct_app_that_is_not_the_example(tmp_path):
    selection = () if FULL else ("-k", "up_serves_app or worker_image_runs")
    result = user_suite(user_app(tmp_path, STOREFRONT), *selection)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in summary(result) and "failed" not in summary(result) and "error" not in summary(result), summary(result)


def test_the_suite_fails_for_a_broken_app(tmp_path):
    result = user_suite(user_app(tmp_path, BROKEN), "-x", "-k", "up_serves_app")
    assert result.returncode == 1, result.stdout[-6000:] + result.stderr[-2000:]
    assert "1 failed" in summary(result), summary(result)
    assert "the storefront is broken" in result.stdout, "the worker's log (the app's traceback) is not in the failure"
