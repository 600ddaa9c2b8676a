"""The stack on the local Docker engine, driven through the real `fcgikit` CLI.

Every test session builds its own image set under a unique prefix (nothing of it
exists before: `fcgikit up` must build it, and the base too on a clean engine),
every test uses its own project name and a free host port, and removes what it
started. When a check fails, the logs of the project's containers are attached.
The fixtures are tests/conftest.py's, the helpers tests/integration/stack_support.py's
(the other test_stack_*.py modules use the same).

Set FCGIKIT_TEST_APP=PATH[:MODULE:APP] (what `fcgikit test --app` does) to run the
stack tests against your own app; it must answer GET / with 200.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import threading
import time
import uuid

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # no reaper image can be pulled here

import pytest  # noqa: E402
import requests  # noqa: E402
import yaml  # noqa: E402
from testcontainers.core.container import DockerContainer  # noqa: E402

from fcgikit.deploy.model import LABEL_PROJECT, NGINX_PID_PATH  # noqa: E402
from fcgikit.deploy.spec import memory_bytes  # noqa: E402
from tests.integration.stack_support import (  # noqa: E402
    ROOT,
    USER_APP,
    count,
    fcgikit,
    get,
    logs_on_failure,
    status,
    user_app_target,
    wait_healthy,
    write_spec,
)

# On a clean engine the first test to need images also makes the base (debootstrap, minutes).
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

# --- the stack from nothing -----------------------------------------------------------


def test_up_serves_app_and_cgi_through_nginx_and_second_up_changes_nothing(
    engine, cli_env, image_prefix, project, tmp_path
):
    spec = write_spec(tmp_path)
    # First in the module: this session's images do not exist yet, `up` must build them.
    fresh = not [t for i in engine.images.list() for t in i.tags if t.startswith(image_prefix + "/")]
    with logs_on_failure(engine, project):
        result = fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
        if fresh:
            assert f"building {image_prefix}/fcgi-worker:" in result.stderr, result.stderr
            assert f"building {image_prefix}/nginx:" in result.stderr, result.stderr
        url = status(cli_env, project, spec)["url"]
        assert url and url in result.stdout, result.stdout

        root = get(url, "/")
        assert root.status_code == 200, root.text
        if not USER_APP:
            assert root.text.startswith("Hello from fcgikit")
            echoed = requests.post(url + "echo", data=b"x" * 100_000, timeout=10)
            assert echoed.status_code == 200 and echoed.content == b"x" * 100_000
            environ = get(url, "/environ?a=1").text
            assert "PATH_INFO='/environ'" in environ and "QUERY_STRING='a=1'" in environ
        for script in ("hello.sh", "hello.pl", "hello.py"):
            answer = get(url, f"/cgi-bin/{script}")
            assert answer.status_code == 200, (script, answer.status_code, answer.text)
        assert get(url, "/cgi-bin/no-such-script").status_code == 404

        report = status(cli_env, project, spec)
        assert (count(report, "workers"), count(report, "cgi"), count(report, "nginx")) == (2, 1, 1)
        assert all(c["pool"]["processes"] == 2 for c in report["containers"] if c["service"] == "workers")

        again = fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
        assert "no change" in again.stdout, again.stdout + again.stderr
        assert "start " not in again.stderr and "remove " not in again.stderr
        assert status(cli_env, project, spec)["url"] == url


# --- images -----------------------------------------------------------------------------


def test_build_again_builds_nothing_and_tags_carry_the_content_hash(cli_env, built_images, tmp_path):
    again = fcgikit(cli_env, "build", "-f", str(write_spec(tmp_path)))
    assert "(already there" in again.stdout and "(built" not in again.stdout, again.stdout
    for tag in built_images.values():
        assert f"{tag} (already there" in again.stdout
        assert len(tag.rsplit(":", 1)[1]) == 12


def test_build_prune_removes_only_older_unused_images(engine, cli_env, image_prefix, built_images, tmp_path):
    def older_image(tag: str) -> str:
        dockerfile = f"FROM {built_images['fcgi-worker']}\nLABEL older={tag}\n".encode()
        image, _ = engine.images.build(fileobj=io.BytesIO(dockerfile), tag=f"{image_prefix}/fcgi-worker:{tag}", rm=True)
        return f"{image_prefix}/fcgi-worker:{tag}"

    unused, used = older_image("000000000001"), older_image("000000000002")
    holder = engine.containers.create(used, command=["true"], labels={LABEL_PROJECT: "prune-test"})
    try:
        result = fcgikit(cli_env, "build", "--prune", "-f", str(write_spec(tmp_path)))
        assert unused in result.stdout and used not in result.stdout, result.stdout
        tags = {t for i in engine.images.list(name=f"{image_prefix}/fcgi-worker") for t in i.tags}
        assert unused not in tags and used in tags and built_images["fcgi-worker"] in tags
    finally:
        holder.remove(force=True)


def test_worker_image_runs_serve_spawn_or_cgi_as_non_root_without_compiler(built_images):
    image = built_images["fcgi-worker"]
    commands = {
        "serve": None,  # the image's default command: the app built in (the example, or --app)
        # any FastCGI program: the example's accept loop, or the built-in worker serving the user's app
        "spawn": ["python3", "-m", "fcgikit.spawn", "-n", "-p", "9000", "-F", "1", "--",
                  *(["python3", "-m", "fcgikit.serve", "--fd0", user_app_target()] if USER_APP
                    else ["python3", "/srv/app/hello_accept.py"])],
        "cgi": ["python3", "-m", "fcgikit.cgi", "-n", "-p", "9000", "-F", "1", "--root", "/srv/cgi-bin"],
    }
    with contextlib.ExitStack() as stack:
        containers = {}
        for name, command in commands.items():  # all at once: each health check takes a while
            container = DockerContainer(image).with_kwargs(labels={LABEL_PROJECT: "testcontainers"})
            containers[name] = stack.enter_context(container.with_command(command) if command else container)
        for name, container in containers.items():
            wait_healthy(container)
            wrapped = container.get_wrapped_container()
            code, output = wrapped.exec_run(["python3", "-m", "fcgikit.probe", "127.0.0.1:9000"])
            # the gateway answers / with an HTTP error of its own: still a complete FastCGI answer
            assert code == 0 and (name == "cgi" or b"HTTP status 200" in output), (name, output)
            code, output = wrapped.exec_run(["id", "-u"])
            assert output.strip() not in (b"0", b""), f"{name}: runs as root"
        wrapped = containers["serve"].get_wrapped_container()
        found = wrapped.exec_run(["sh", "-c", "command -v gcc cc c99 tcc clang pip pip3 || true"]).output.strip()
        assert found == b"", f"found in the worker image: {found.decode()}"
        code, _ = wrapped.exec_run(["python3", "-c", "import fcgikit.deploy"])
        assert code != 0, "the orchestration side must not be in the image"


# --- the stack --------------------------------------------------------------------------


class Client(threading.Thread):
    """Sends requests one after another, each on a new connection, and counts failures:
    GET / and, for the example app, POST /echo (not idempotent: nginx never retries it)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []

    def run(self) -> None:
        body = os.urandom(10_000)
        while not self.stop.is_set():
            self.check(lambda: requests.get(self.url, timeout=30, headers={"Connection": "close"}), None)
            if not USER_APP:
                self.check(lambda: requests.post(self.url + "echo", data=body, timeout=30,
                                                 headers={"Connection": "close"}), body)

    def check(self, send, expected_body: bytes | None) -> None:
        try:
            answer = send()
            if answer.status_code != 200:
                self.failures.append(f"{answer.request.method} HTTP {answer.status_code}: {answer.text[:200]}")
            elif expected_body is not None and answer.content != expected_body:
                self.failures.append(f"POST answered {len(answer.content)} bytes, not the body sent")
            else:
                self.ok += 1
        except requests.RequestException as exc:
            self.failures.append(repr(exc))

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=60)


def test_scale_up_and_down_under_load_fails_no_request(engine, cli_env, project, tmp_path):
    spec = write_spec(tmp_path, workers=2, cgi=0)
    with logs_on_failure(engine, project):
        fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
        url = status(cli_env, project, spec)["url"]
        master_before = nginx_master_pid(engine, project)
        client = Client(url)
        client.start()
        try:
            for replicas in (6, 1):
                before = client.ok
                result = fcgikit(cli_env, "scale", f"workers={replicas}", "-p", project, "-f", str(spec))
                assert "update backends of nginx" in result.stderr, result.stderr
                assert "reload nginx" not in result.stderr, result.stderr
                assert count(status(cli_env, project, spec), "workers") == replicas
                time.sleep(1)
                assert client.ok > before, "the client got no answer while scaling"
        finally:
            client.finish()
        assert client.failures == [], f"{len(client.failures)} failed of {client.ok + len(client.failures)}: {client.failures[:5]}"
        assert client.ok > 50
        assert nginx_master_pid(engine, project) == master_before, "nginx was restarted"


def nginx_master_pid(engine, project: str) -> str:
    [nginx] = [c for c in engine.containers.list(filters={"label": f"{LABEL_PROJECT}={project}"})
               if c.labels["fcgikit.service"] == "nginx"]
    return nginx.exec_run(["cat", NGINX_PID_PATH]).output.decode().strip()


def test_down_removes_exactly_what_carries_the_project_label(engine, cli_env, project, tmp_path, built_images):
    spec = write_spec(tmp_path, workers=1, cgi=0)
    image = built_images["fcgi-worker"]
    # Bystanders: one named like the project's containers but without its label, one of another project.
    lookalike = DockerContainer(image).with_name(f"{project}-workers-99").with_command(["sleep", "300"])
    other = DockerContainer(image).with_command(["sleep", "300"]).with_kwargs(labels={LABEL_PROJECT: project + "x"})
    with lookalike, other, logs_on_failure(engine, project):
        fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
        assert engine.containers.list(filters={"label": f"{LABEL_PROJECT}={project}"})
        dry = fcgikit(cli_env, "down", "--dry-run", "-p", project, "-f", str(spec))
        assert "docker network rm" in dry.stdout and f"{project}-workers-99" not in dry.stdout
        assert engine.containers.list(filters={"label": f"{LABEL_PROJECT}={project}"}), "--dry-run removed something"

        fcgikit(cli_env, "down", "-p", project, "-f", str(spec))
        assert engine.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={project}"}) == []
        assert engine.networks.list(filters={"label": f"{LABEL_PROJECT}={project}"}) == []
        for bystander in (lookalike, other):
            wrapped = bystander.get_wrapped_container()
            wrapped.reload()
            assert wrapped.status == "running", f"{wrapped.name} was touched by down"
        assert "nothing was running" in fcgikit(cli_env, "down", "-p", project, "-f", str(spec)).stdout


def test_invalid_spec_exits_non_zero_with_the_path_and_starts_nothing(engine, cli_env, project, tmp_path):
    spec = write_spec(tmp_path)
    text = spec.read_text().replace("replicas: 2", "replicas: eight")
    assert text != spec.read_text()
    spec.write_text(text)
    result = fcgikit(cli_env, "up", "-p", project, "-f", str(spec), check=False)
    assert result.returncode == 1
    assert f'error: {spec}: services/workers/replicas: expected an integer >= 0, got "eight"' in result.stderr
    assert "Traceback" not in result.stderr
    assert engine.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={project}"}) == []
    assert engine.networks.list(filters={"label": f"{LABEL_PROJECT}={project}"}) == []


@pytest.mark.skipif(bool(USER_APP), reason="runs the example accept-loop program, not a WSGI app")
def test_workers_can_run_a_fastcgi_program_under_the_manager(engine, cli_env, project, tmp_path):
    spec = write_spec(tmp_path, workers=1, cgi=0)
    data = yaml.safe_load(spec.read_text())
    data["services"]["workers"].pop("app")
    data["services"]["workers"]["program"] = ["python3", "/srv/app/hello_accept.py"]
    spec.write_text(yaml.safe_dump(data))
    with logs_on_failure(engine, project):
        fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
        url = status(cli_env, project, spec)["url"]
        answer = requests.post(url + "form?x=1", data=b"abc", timeout=10)
        assert answer.status_code == 200 and answer.text.startswith("Hello from an accept loop"), answer.text
        assert "body: 3 bytes" in answer.text and "query: x=1" in answer.text
        [worker] = [c for c in status(cli_env, project, spec)["containers"] if c["service"] == "workers"]
        assert worker["pool"]["processes"] == 2


def test_a_worker_that_cannot_start_fails_up_with_its_logs_and_leaves_nothing(engine, cli_env, project, tmp_path):
    """An app that passes the checks made before anything starts (its module and callable are
    there) but cannot be imported in the container: `up` fails naming the worker, with its logs."""
    spec = write_spec(tmp_path, workers=1, cgi=0)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "webapp.py").write_text("import no_such_dependency\n\napp = None\n")
    result = fcgikit(cli_env, "up", "-p", project, "-f", str(spec), "--app", f"{broken}:webapp:app", check=False)
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and f"{project}-workers-1" in error_lines[0], result.stderr
    assert "no_such_dependency" in result.stderr, "the container's logs are not attached"
    assert [c.name for c in engine.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={project}"})] == []


def test_a_module_the_app_directory_lacks_is_refused_before_anything_is_built(engine, cli_env, project, tmp_path):
    spec = write_spec(tmp_path, workers=1, cgi=0)
    spec.write_text(spec.read_text().replace("hello_wsgi:app", "no_such_module:app"))
    env = {key: value for key, value in cli_env.items() if key != "FCGIKIT_APP"}  # the stack file's app
    for dry_run in (("--dry-run",), ()):
        result = fcgikit(env, "up", *dry_run, "-p", project, "-f", str(spec), check=False)
        assert result.returncode == 1
        assert result.stderr.startswith(f"error: {spec}: services/workers/app: module no_such_module not found in "
                                        f"{ROOT / 'apps'}"), result.stderr
        assert "building" not in result.stderr and "plan for project" not in result.stdout
    assert engine.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={project}"}) == []


def compose_command() -> list[str]:
    """Compose v2 (`docker compose`) where installed, else v1 (`docker-compose`)."""
    for argv in (["docker", "compose"], ["docker-compose"]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run([*argv, "version"], capture_output=True, timeout=30).returncode == 0:
                return argv
    pytest.skip("neither `docker compose` nor `docker-compose` is installed (compose.yaml is optional)")


def test_compose_file_runs_the_built_stack(engine, cli_env, built_images, tmp_path):
    """compose.yaml, with the images `fcgikit build` tagged :latest (here under the session's prefix)."""
    prefix = cli_env["FCGIKIT_IMAGE_PREFIX"]
    compose = (ROOT / "compose.yaml").read_text().replace("image: fcgikit/", f"image: {prefix}/")
    if USER_APP:  # the images serve the user's app: so does the compose file's worker command
        compose = compose.replace('"hello_wsgi:app"', json.dumps(user_app_target()))
    (tmp_path / "compose.yaml").write_text(compose)
    # Compose reads compose.override.yaml beside it (the limits Swarm's file format refuses).
    (tmp_path / "compose.override.yaml").write_text((ROOT / "compose.override.yaml").read_text())
    from fcgikit.testing import free_port

    port = free_port()
    name = f"c{uuid.uuid4().hex[:10]}"
    env = dict(cli_env, FCGIKIT_PORT=str(port))
    compose_cmd = [*compose_command(), "-p", name]
    try:
        up = subprocess.run([*compose_cmd, "up", "-d"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
        assert up.returncode == 0, up.stderr
        answer = None
        for _ in range(40):
            with contextlib.suppress(requests.RequestException):
                answer = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
                if answer.status_code == 200:
                    break
            time.sleep(0.5)
        logs = subprocess.run([*compose_cmd, "logs", "--no-color"], cwd=tmp_path, env=env, capture_output=True, text=True).stdout
        assert answer is not None and answer.status_code == 200, logs
        assert requests.get(f"http://127.0.0.1:{port}/cgi-bin/hello.sh", timeout=10).status_code == 200, logs
        # Confined as `fcgikit up` confines its containers, and nginx healthy by its HEALTHCHECK.
        started = engine.containers.list(filters={"label": f"com.docker.compose.project={name}"})
        assert len(started) == 4  # deploy.replicas: 2 workers, as deploy/fcgikit.yaml
        limits = yaml.safe_load((ROOT / "compose.override.yaml").read_text())["services"]
        for container in started:
            host = container.attrs["HostConfig"]
            assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"], container.name
            assert host["SecurityOpt"] == ["no-new-privileges"], container.name
            # The limits of compose.override.yaml (test_deploy_compose: those of `fcgikit up`).
            wanted = limits[container.labels["com.docker.compose.service"]]
            assert (host["Memory"], host["PidsLimit"]) == (
                memory_bytes(wanted["mem_limit"]), wanted["pids_limit"]), container.name
            assert [m for m in host["Mounts"] if m["Type"] == "tmpfs"], container.name
        [nginx] = [c for c in started if c.labels.get("com.docker.compose.service") == "nginx"]
        deadline = time.monotonic() + 60
        while nginx.attrs["State"]["Health"]["Status"] != "healthy" and time.monotonic() < deadline:
            time.sleep(1)
            nginx.reload()
        assert nginx.attrs["State"]["Health"]["Status"] == "healthy", nginx.attrs["State"]["Health"]
    finally:
        subprocess.run([*compose_cmd, "down", "-t", "5"], cwd=tmp_path, env=env, capture_output=True, timeout=120)
