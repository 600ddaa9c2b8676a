"""Secrets on `--engine swarm`: Docker secrets mounted at /run/secrets/NAME (and exported as
environment variables with deliver: env), in nothing fcgikit prints nor in `docker service
inspect`, `docker inspect` or `docker secret inspect`; a new value is a new Docker secret and
a rolling update; `down` leaves none. Single-node swarm (swarm_support), one session at a time."""

from __future__ import annotations

import hashlib
import subprocess
import time
import uuid

import pytest
import requests

from fcgikit.testing import free_port
from tests.integration.stack_support import remove_project
from tests.integration.swarm_support import env_without_fcgikit, fcgikit, remove_stack, unique
from tests.integration.test_stack_secrets import APP

pytestmark = [pytest.mark.docker, pytest.mark.swarm, pytest.mark.timeout(900)]


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def answer(url: str, expected: str, timeout: float = 60) -> str:
    deadline, text = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        try:
            text = requests.get(url, timeout=5).text
            if text == expected:
                return text
        except requests.RequestException as exc:
            text = repr(exc)
        time.sleep(0.5)
    return text


def project_secrets(engine, project: str) -> list[str]:
    return sorted(s.name for s in engine.secrets.list(filters={"label": f"fcgikit.project={project}"}))


def test_swarm_secrets_reach_the_app_and_never_what_fcgikit_or_docker_shows(
    engine, swarm, swarm_image_prefix, tmp_path
):
    project, port = unique("ss"), free_port()
    password, token = f"pw-{uuid.uuid4().hex}", f"tok-{uuid.uuid4().hex}"
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "secret_app.py").write_text(APP)
    (tmp_path / "db_password").write_text(password)
    spec = tmp_path / "fcgikit.yaml"
    spec.write_text(f"""project: {project}
engine: swarm
secrets:
  db_password: {{from_file: db_password}}
  api_token: {{from_env: SWARM_API_TOKEN, deliver: env, variable: API_TOKEN}}
services:
  nginx: {{port: {port}}}
  workers:
    app: secret_app:app
    path: {tmp_path / "app"}
    processes: 1
    replicas: 1
    secrets: [db_password, api_token]
""")
    env = dict(env_without_fcgikit(), FCGIKIT_IMAGE_PREFIX=swarm_image_prefix, SWARM_API_TOKEN=token)
    url = f"http://127.0.0.1:{port}/"
    try:
        dry = fcgikit(env, "up", "--dry-run", "-f", str(spec))
        up = fcgikit(env, "up", "-f", str(spec))
        assert "create Docker secret(s) api_token as" in up.stderr and ", db_password as" in up.stderr, up.stderr
        assert answer(url, f"{digest(password)} {digest(token)}\n") == f"{digest(password)} {digest(token)}\n"
        first = project_secrets(engine, project)
        assert len(first) == 2

        shown = dry.stdout + dry.stderr + up.stdout + up.stderr
        shown += fcgikit(env, "status", "-f", str(spec)).stdout + fcgikit(env, "status", "--json", "-f", str(spec)).stdout
        shown += fcgikit(env, "logs", "--file", str(spec)).stdout
        inspected = subprocess.run(["docker", "service", "inspect", f"{project}_workers"], capture_output=True,
                                   text=True).stdout
        tasks = engine.containers.list(filters={"label": f"com.docker.swarm.service.name={project}_workers"})
        inspected += subprocess.run(["docker", "inspect", *[t.id for t in tasks]], capture_output=True, text=True).stdout
        inspected += subprocess.run(["docker", "secret", "inspect", *first], capture_output=True, text=True).stdout
        for value in (password, token):
            assert value not in shown and value not in inspected
        assert "/run/secrets" in inspected

        # A new value: a new Docker secret, the service updated, the old secret removed.
        new_password = f"pw2-{uuid.uuid4().hex}"
        (tmp_path / "db_password").write_text(new_password)
        fcgikit(env, "up", "-f", str(spec))
        expected = f"{digest(new_password)} {digest(token)}\n"
        assert answer(url, expected) == expected
        second = project_secrets(engine, project)
        assert len(second) == 2 and second != first
        assert "no change" in fcgikit(env, "up", "-f", str(spec)).stdout
    finally:
        fcgikit(env, "down", "-f", str(spec), check=False)
        remove_stack(engine, project)
        remove_project(engine, project)  # its release record: `down` keeps it
    deadline = time.monotonic() + 30
    while project_secrets(engine, project) and time.monotonic() < deadline:
        time.sleep(1)
    assert project_secrets(engine, project) == []
    for config in engine.configs.list(filters={"label": f"fcgikit.secret-key={project}"}):
        config.remove()
