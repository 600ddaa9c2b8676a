"""Secrets on the local engine: read from a file and from an environment variable of this
machine, delivered as /run/secrets/NAME (and as an environment variable of the app), never
in anything fcgikit prints nor in `docker inspect`; a changed value replaces the containers,
a container restarted by the engine waits for its secrets until `up` replaces it.
Real Docker; the fixtures are tests/conftest.py's."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from tests.integration.stack_support import fcgikit, logs_on_failure, status, write_spec

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

APP = '''\
import hashlib, os, sys

print("starting with token " + os.environ.get("API_TOKEN", "(none)"), file=sys.stderr, flush=True)


def app(environ, start_response):
    with open("/run/secrets/db_password", "rb") as handle:
        password = handle.read()
    token = os.environ.get("API_TOKEN", "").encode()
    body = (hashlib.sha256(password).hexdigest() + " " + hashlib.sha256(token).hexdigest() + "\\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def secret_spec(tmp_path: Path, password_file: Path) -> Path:
    spec = write_spec(tmp_path, workers=1, cgi=0)
    data = yaml.safe_load(spec.read_text())
    apps = tmp_path / "app"
    apps.mkdir()
    (apps / "secret_app.py").write_text(APP)
    data["services"]["workers"].update(app="secret_app:app", path=str(apps), secrets=["db_password", "api_token"])
    data["services"].pop("cgi")
    data["secrets"] = {
        "db_password": {"from_file": password_file.name},  # relative to the stack file
        "api_token": {"from_env": "TEST_API_TOKEN", "deliver": "env", "variable": "API_TOKEN"},
    }
    spec.write_text(yaml.safe_dump(data))
    return spec


def inspect_everything(engine, project: str) -> str:
    names = [c.name for c in engine.containers.list(all=True, filters={"label": f"fcgikit.project={project}"})]
    images = sorted({c.image.id for c in engine.containers.list(all=True, filters={"label": f"fcgikit.project={project}"})})
    shown = subprocess.run(["docker", "inspect", *names], capture_output=True, text=True, check=True).stdout
    shown += subprocess.run(["docker", "image", "inspect", *images], capture_output=True, text=True, check=True).stdout
    return shown


def worker_names(engine, project: str) -> list[str]:
    found = engine.containers.list(all=True, filters={"label": [f"fcgikit.project={project}", "fcgikit.service=workers"]})
    return sorted(c.name for c in found)


def test_secrets_reach_the_app_and_never_what_fcgikit_prints_or_docker_inspect(engine, cli_env, project, tmp_path):
    password, token = f"pw-{uuid.uuid4().hex}", f"tok-{uuid.uuid4().hex}"
    password_file = tmp_path / "db_password"
    password_file.write_text(password)
    spec = secret_spec(tmp_path, password_file)
    # Its own app, named by its stack file: not `fcgikit test --app`'s (FCGIKIT_APP).
    own_app = {key: value for key, value in cli_env.items() if key != "FCGIKIT_APP"}
    env = dict(own_app, TEST_API_TOKEN=token)
    args = ("-p", project, "-f", str(spec))

    missing = fcgikit(own_app, "up", *args, check=False)  # TEST_API_TOKEN not set
    assert missing.returncode == 1
    assert ("error: secrets/api_token/from_env: TEST_API_TOKEN is not set in the environment of this machine; "
            "nothing changed") in missing.stderr, missing.stderr
    assert worker_names(engine, project) == []

    printed = []
    with logs_on_failure(engine, project):
        for command in (("up", "--dry-run"), ("up",), ("status",), ("status", "--json"), ("logs", "workers"),
                        ("releases", "--json")):
            where = ("-p", project, "--file", str(spec)) if command[0] == "logs" else args
            done = fcgikit(env, *command, *where)
            printed.append(done.stdout + done.stderr)
        url = status(env, project, spec)["url"]
        assert requests.get(url, timeout=10).text == f"{digest(password)} {digest(token)}\n"
        everything = "\n".join(printed)
        assert "[secret api_token]" in printed[4], printed[4]  # the app printed it; fcgikit did not
        assert "write secret(s) db_password, api_token into its /run/secrets" in printed[0], printed[0]
        shown = inspect_everything(engine, project)
        for value in (password, token):
            assert value not in everything
            assert value not in shown
        assert "/run/secrets" in shown  # the tmpfs is there

        # A changed value alone replaces the worker; the app sees the new one.
        before = worker_names(engine, project)
        new_password = f"pw2-{uuid.uuid4().hex}"
        password_file.write_text(new_password)
        fcgikit(env, "up", *args)
        assert worker_names(engine, project) != before
        assert requests.get(url, timeout=10).text == f"{digest(new_password)} {digest(token)}\n"
        assert "no change" in fcgikit(env, "up", *args).stdout  # same values: nothing to do

        # Restarted by the engine, a worker's tmpfs is empty: it waits instead of serving
        # without its secrets, and the next up replaces it.
        [name] = worker_names(engine, project)
        engine.containers.get(name).restart(timeout=5)
        deadline = time.monotonic() + 30
        while "waiting for secrets" not in engine.containers.get(name).logs(since=int(time.time()) - 30).decode():
            assert time.monotonic() < deadline, engine.containers.get(name).logs().decode()
            time.sleep(0.3)
        code, output = engine.containers.get(name).exec_run(["ls", "-A", "/run/secrets"])
        assert output.strip() == b"", output
        began = time.monotonic()
        replaced = fcgikit(env, "up", *args)
        assert f"drain and remove {name}" in replaced.stderr, replaced.stderr
        # The waiting wrapper (PID 1) stops on docker stop's SIGTERM, not at the 35 s timeout.
        assert time.monotonic() - began < 30, replaced.stderr
        assert requests.get(url, timeout=10).text == f"{digest(new_password)} {digest(token)}\n"
        listed = json.loads(printed[5])["releases"]
        assert listed and new_password not in replaced.stdout + replaced.stderr
