"""Replacing nginx on the local engine when its new port is taken: the site stays up.

A changed `nginx.port` makes `up` replace the nginx container. If another program holds
the new port, `up` says so in one line before it touches anything; if the port is taken
anyway between that check and the new nginx's start, the old nginx is started again.
Real Docker, real listeners; the fixtures (unique image prefix and project) are
test_stack.py's.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests
import yaml

from fcgikit.deploy.errors import FcgikitError
from fcgikit.deploy.images import DEFAULT_BASE, ImageNames
from fcgikit.deploy.model import LABEL_PROJECT
from fcgikit.deploy.operations import Stack
from fcgikit.deploy.spec import load_stack_spec
from tests.integration.test_stack import (  # noqa: F401 (fixtures)
    cli_env,
    engine,
    fcgikit,
    image_prefix,
    logs_on_failure,
    project,
    status,
    write_spec,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return probe.getsockname()[1]


def with_port(spec: Path, port: int) -> Path:
    data = yaml.safe_load(spec.read_text())
    data["services"]["nginx"]["port"] = port
    spec.write_text(yaml.safe_dump(data))
    return spec


def listener(port: int) -> socket.socket:
    """Another program's socket on `port` (every address, as a web server would hold it)."""
    held = socket.socket()
    held.bind(("0.0.0.0", port))
    held.listen()
    return held


def nginx_containers(engine, project: str) -> list[tuple[str, str]]:
    found = engine.containers.list(all=True, filters={"label": [f"{LABEL_PROJECT}={project}", "fcgikit.service=nginx"]})
    return sorted((c.name, c.status) for c in found)


def answers(url: str) -> bool:
    response = requests.get(url, timeout=10)
    return response.status_code == 200 and response.text.startswith("Hello")


def test_a_new_nginx_port_held_by_another_program_is_refused_before_anything_changes(engine, cli_env, project, tmp_path):
    old_port, new_port = free_port(), free_port()
    spec = with_port(write_spec(tmp_path, workers=1, cgi=0), old_port)
    fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
    url = f"http://127.0.0.1:{old_port}/"
    before = nginx_containers(engine, project)
    with logs_on_failure(engine, project):
        assert answers(url)
        held = listener(new_port)
        try:
            done = fcgikit(cli_env, "up", "-p", project, "-f", str(with_port(spec, new_port)), check=False)
        finally:
            held.close()
        assert done.returncode == 1, done.stdout + done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert errors == [f"error: port {new_port} on host local (127.0.0.1) is in use by another program; "
                          "nothing changed (free it or choose another nginx port)"], done.stderr
        assert "address already in use" not in done.stderr
        assert nginx_containers(engine, project) == before == [(f"{project}-nginx-1", "running")]
        assert answers(url)
        # Once the port is free, the same command replaces nginx.
        fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
        assert nginx_containers(engine, project) == [(f"{project}-nginx-2", "running")]
        assert answers(f"http://127.0.0.1:{new_port}/")


def test_when_the_new_nginx_cannot_start_the_old_one_serves_again(engine, cli_env, image_prefix, project, tmp_path):
    """The port is free when checked and taken by another program the moment the old nginx
    stops (as a race with another program would have it): Docker refuses the new nginx, and
    the old one must be running again, with its workers, at its old port."""
    old_port, new_port = free_port(), free_port()
    spec = with_port(write_spec(tmp_path, workers=1, cgi=0), old_port)
    fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
    url = f"http://127.0.0.1:{old_port}/"
    held: list[socket.socket] = []

    def say(line: str) -> None:
        if line.startswith(f"stop {project}-nginx-1 "):
            held.append(listener(new_port))  # taken between the check and the new nginx's start

    stack = Stack(spec=load_stack_spec(with_port(spec, new_port)), project=project,
                  names=ImageNames(image_prefix, DEFAULT_BASE), say=say)
    with logs_on_failure(engine, project):
        assert answers(url)
        try:
            with pytest.raises(FcgikitError) as failed:
                stack.up()
        finally:
            for sock in held:
                sock.close()
        assert held, "the old nginx was never stopped"
        message = str(failed.value).splitlines()[0]
        assert f"cannot start {project}-nginx-2 on local" in message, message
        assert message.endswith(f"the previous nginx ({project}-nginx-1 on local) was started again and serves as before")
        assert nginx_containers(engine, project) == [(f"{project}-nginx-1", "running")]
        assert answers(url)
        assert [c["name"] for c in status(cli_env, project, spec)["containers"]] == [
            f"{project}-nginx-1", f"{project}-workers-1"]
