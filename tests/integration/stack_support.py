"""What the stack tests share (test_stack*.py, fcgikit test --app): the example stack file
with a free port, the `fcgikit` CLI run as a user runs it, and a project's logs attached to
a failed check. Their fixtures (engine, image_prefix, cli_env, project, built_images) are in
tests/conftest.py, set up once per session.

Set FCGIKIT_TEST_APP=PATH[:MODULE:APP] (what `fcgikit test --app` does) to run the
stack tests against your own app; it must answer GET / with 200.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # no reaper image can be pulled here

import docker.errors  # noqa: E402
import pytest  # noqa: E402
import requests  # noqa: E402
import yaml  # noqa: E402
from testcontainers.core.container import DockerContainer  # noqa: E402

from fcgikit.deploy.model import LABEL_PROJECT  # noqa: E402
from fcgikit.deploy.releases import LABEL_OF as LABEL_RELEASE_OF  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SPEC = ROOT / "deploy" / "fcgikit.yaml"
USER_APP = os.environ.get("FCGIKIT_TEST_APP")
CLI_TIMEOUT = 600


def new_image_prefix(engine) -> Iterator[str]:
    """A prefix no image has yet; every image under it is removed when the generator ends
    (the image_prefix fixtures)."""
    prefix = f"fcgikit-test-{uuid.uuid4().hex[:8]}"
    yield prefix
    for image in engine.images.list():
        for tag in image.tags:
            if tag.startswith(prefix + "/"):
                with contextlib.suppress(docker.errors.APIError):
                    engine.images.remove(tag, force=True)


def cli_environment(image_prefix: str) -> dict[str, str]:
    """The environment `fcgikit` runs in: these images, no stray FCGIKIT_* of the caller."""
    env = dict(os.environ, FCGIKIT_IMAGE_PREFIX=image_prefix, PYTHONUNBUFFERED="1")
    for variable in ("FCGIKIT_PROJECT", "FCGIKIT_FILE", "FCGIKIT_APP"):
        env.pop(variable, None)
    if USER_APP:
        env["FCGIKIT_APP"] = USER_APP  # up, scale and build serve the user's app
    return env


def remove_project(engine, name: str) -> None:
    # The project's containers, and its release records (never started, no project label: `down` keeps them).
    for label in (f"{LABEL_PROJECT}={name}", f"{LABEL_RELEASE_OF}={name}"):
        for container in engine.containers.list(all=True, filters={"label": label}):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True, v=True)  # and nginx's anonymous /etc/nginx volume
    for network in engine.networks.list(filters={"label": f"{LABEL_PROJECT}={name}"}):
        with contextlib.suppress(docker.errors.APIError):
            network.remove()


def user_app_target() -> str:
    """The MODULE:APP that FCGIKIT_TEST_APP (`fcgikit test --app`) serves."""
    from fcgikit.deploy.spec import load_stack_spec, with_app

    return with_app(load_stack_spec(EXAMPLE_SPEC), USER_APP).services.workers.app


def write_spec(tmp_path: Path, workers: int = 2, cgi: int = 1) -> Path:
    """The example stack with a free host port (0) and absolute paths."""
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    data.pop("project", None)
    services = data["services"]
    services["nginx"]["port"] = 0
    services["workers"].update(replicas=workers, processes=2, path=str(ROOT / "apps"))
    services["cgi"].update(replicas=cgi, scripts=str(ROOT / "apps" / "cgi-bin"))
    path = tmp_path / "fcgikit.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def fcgikit(cli_env, *args, check=True) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "fcgikit.cli", *args]
    result = subprocess.run(argv, env=cli_env, capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"fcgikit {' '.join(args)} exited {result.returncode}\n"
                             f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}")
    return result


def status(cli_env, project: str, spec: Path) -> dict:
    return json.loads(fcgikit(cli_env, "status", "--json", "-p", project, "-f", str(spec)).stdout)


def count(report: dict, service: str) -> int:
    return sum(1 for c in report["containers"] if c["service"] == service and c["state"] == "running")


def project_logs(engine, project: str) -> str:
    parts = []
    for container in engine.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={project}"}):
        logs = container.logs(tail=60).decode("utf-8", "replace")
        parts.append(f"--- {container.name} ({container.status}) ---\n{logs}")
    return "\n".join(parts) or "(no containers)"


@contextlib.contextmanager
def logs_on_failure(engine, project: str):
    """A failed check inside carries the logs of every container of the project."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n\n=== container logs of project {project} ===\n{project_logs(engine, project)}") from exc


def get(url: str, path: str, **kwargs) -> requests.Response:
    return requests.get(url.rstrip("/") + path, timeout=10, **kwargs)


def wait_healthy(container: DockerContainer, timeout: float = 60) -> None:
    """Until Docker reports the HEALTHCHECK (a real FastCGI request) healthy; logs on timeout."""
    wrapped = container.get_wrapped_container()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wrapped.reload()
        health = wrapped.attrs["State"].get("Health", {}).get("Status")
        if health == "healthy":
            return
        if wrapped.status not in ("created", "running"):
            break
        time.sleep(1)
    stdout, stderr = container.get_logs()
    pytest.fail(f"{wrapped.name} not healthy (status {wrapped.status}, health {health})\n"
                f"--- logs ---\n{stdout.decode()}{stderr.decode()}")
