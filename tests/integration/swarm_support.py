"""The local engine as a single-node swarm, for the tests marked `swarm`.

One engine serves every test session on this machine, so:
- the swarm tests of all sessions run one at a time (an flock on SWARM_LOCK);
- the engine is put in swarm mode only for them, and left again afterwards when it was not
  in swarm mode before (`docker swarm leave --force` removes only swarm services and
  networks; containers started by docker-compose or `docker run` are untouched, and swarm
  mode does not change how they run).

SHARED keeps the swarm mode (and the lock) and one `fcgikit up --engine swarm` project from
the first test that asks for them to the last one in a row that does (conftest.py closes it
when the next test needs no swarm): test_swarm_ops.py and test_swarm_single.py deploy that
one project once instead of one each, the stack's first deploy and its `down` being the
slow part (tens of seconds each).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import requests

from fcgikit.testing import free_port
from tests.integration.stack_support import remove_project

SWARM_LOCK = "/tmp/fcgikit-swarm-tests.lock"
ROOT = Path(__file__).resolve().parents[2]


def fcgikit(env: dict, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "fcgikit.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=timeout)
    if check:
        assert done.returncode == 0, f"fcgikit {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def swarm_state(client: docker.DockerClient) -> str:
    return client.info().get("Swarm", {}).get("LocalNodeState", "inactive")


@contextlib.contextmanager
def local_swarm(client: docker.DockerClient) -> Iterator[bool]:
    """Yields whether this context initialised the swarm (and will leave it)."""
    with open(SWARM_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        initialised = False
        had_gwbridge = bool(client.networks.list(names=["docker_gwbridge"]))
        if swarm_state(client) == "inactive":
            done = subprocess.run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
                                  capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                pytest.skip(f"docker swarm init failed: {done.stderr.strip()}")
            initialised = True
        try:
            yield initialised
        finally:
            if initialised:
                subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True, timeout=120)
                if not had_gwbridge:  # made by swarm mode for its tasks; removed when nothing uses it
                    subprocess.run(["docker", "network", "rm", "docker_gwbridge"], capture_output=True, timeout=60)


def stack_containers(client: docker.DockerClient, stack: str) -> list:
    # The low-level list: the high-level one inspects each container, which races their removal.
    return client.api.containers(all=True, filters={"label": f"com.docker.stack.namespace={stack}"})


def remove_stack(client: docker.DockerClient, stack: str, timeout: float = 60) -> None:
    """`docker stack rm`, then wait until its containers and network are gone."""
    subprocess.run(["docker", "stack", "rm", stack], capture_output=True, timeout=60)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = stack_containers(client, stack)
        networks = client.networks.list(filters={"label": f"com.docker.stack.namespace={stack}"})
        if not left and not networks:
            return
        time.sleep(0.5)


def wait_answering(url: str, timeout: float = 90) -> requests.Response | None:
    answer = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            answer = requests.get(url, timeout=5)
            if answer.status_code == 200:
                return answer
        time.sleep(0.5)
    return answer


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def service_logs(stack: str) -> str:
    parts = []
    for service in ("nginx", "workers", "cgi"):
        done = subprocess.run(["docker", "service", "logs", "--raw", "--tail", "30", f"{stack}_{service}"],
                              capture_output=True, text=True, timeout=30)
        parts.append(f"--- {stack}_{service} ---\n{done.stdout}{done.stderr}")
    return "\n".join(parts)


def env_without_fcgikit() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for variable in ("FCGIKIT_PROJECT", "FCGIKIT_FILE", "FCGIKIT_APP", "FCGIKIT_HOSTS", "FCGIKIT_ENGINE"):
        env.pop(variable, None)
    return env


class KeepAliveLoad:
    """GETs over kept-alive connections (one requests.Session per thread) until stopped;
    every failure is counted with what it was."""

    def __init__(self, url: str, threads: int = 4, timeout: float = 30):
        import threading

        self.url, self.timeout, self.stopping, self.lock = url, timeout, threading.Event(), threading.Lock()
        self.ok, self.failures, self.versions, self.slowest = 0, [], set(), 0.0
        self.failure_times: list[float] = []  # time.monotonic() at which each failed request began
        self.answers: list[tuple[float, str]] = []  # (time.monotonic() at which it began, version) of each 200
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        import requests

        with requests.Session() as session:
            while not self.stopping.is_set():
                began = time.monotonic()
                try:
                    answer = session.get(self.url, timeout=self.timeout)
                    self.slowest = max(self.slowest, time.monotonic() - began)
                    with self.lock:
                        if answer.status_code == 200:
                            self.ok += 1
                            self.versions.add(answer.text.split(" pid")[0])
                            self.answers.append((began, answer.text.split(" pid")[0]))
                        else:
                            self.failures.append(f"HTTP {answer.status_code}: {answer.text[:80]!r}")
                            self.failure_times.append(began)
                except requests.RequestException as exc:
                    with self.lock:
                        self.failures.append(f"{exc.__class__.__name__}: {exc}")
                        self.failure_times.append(began)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=15)


# The swarm tests' app: says its version and pid (one file, webapp.py, callable `app`).
VERSIONED_APP = '''import os

VERSION = "{version}"


def app(environ, start_response):
    body = f"version {{VERSION}} pid {{os.getpid()}}\\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def write_app(directory: Path, version: str) -> None:
    """webapp.py answering "version VERSION pid PID" in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "webapp.py").write_text(VERSIONED_APP.format(version=version))


def image_tags(client: docker.DockerClient) -> set[str]:
    """Every image tag on the engine. The low-level list: the high-level one inspects each image,
    which fails (ImageNotFound) when another session removes one meanwhile."""
    return {tag for image in client.api.images() for tag in image.get("RepoTags") or ()}


def remove_images(client: docker.DockerClient, prefix: str, timeout: float = 60) -> None:
    """Every image tagged under `prefix`/; tasks of removed stacks may still be stopping: retried."""
    deadline = time.monotonic() + timeout
    while True:
        left = [tag for tag in image_tags(client) if tag.startswith(prefix + "/")]
        for tag in left:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(tag, force=True)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(2)


def write_spec(directory: Path, project: str, port: int, app_dir: Path, extra_nginx: str = "",
               name: str = "fcgikit.yaml") -> Path:
    """The deployment tests' fcgikit.yaml: 2 workers of 2 processes (the versioned app in
    `app_dir`), 1 cgi; `extra_nginx`: more lines of the nginx service (indented 4)."""
    spec = directory / name
    spec.write_text(f"""project: {project}
engine: swarm
services:
  nginx:
    port: {port}
{extra_nginx}  workers:
    app: webapp:app
    path: {app_dir}
    processes: 2
    replicas: 2
    max_requests: 0
  cgi:
    scripts: {ROOT / "apps" / "cgi-bin"}
    processes: 1
    replicas: 1
""")
    return spec


class SharedSwarm:
    """The local engine in swarm mode (local_swarm, its lock held) and one project deployed
    on it with `fcgikit up --engine swarm`, shared by the tests that ask for them (conftest's
    `swarm` and `swarm_deployment`); close() undoes both.

    The project: write_spec's stack, the app (write_app) version "1" at first, images under
    a prefix of its own (`build --prune` and `build`'s latest tags in test_swarm_ops.py must
    not touch the images other tests use), TLS files in its own directory. A test that
    changes it puts it back before it ends (scale: `up` again; TLS: `up` without; a broken
    app: the app it replaced); one that takes it down (`down`) leaves it to be deployed again
    for the next test that asks for it. The app's version is whatever the last test left.
    """

    def __init__(self) -> None:
        self._exit = contextlib.ExitStack()
        self._initialised: bool | None = None
        self._info: dict | None = None

    def swarm(self, client: docker.DockerClient) -> bool:
        """Swarm mode on (taking the lock first); whether it was initialised for these tests."""
        if self._initialised is None:
            self._initialised = self._exit.enter_context(local_swarm(client))
        return self._initialised

    def deployment(self, client: docker.DockerClient, directory: Callable[[], Path]) -> dict:
        """The project, up (deployed again if a test took it down); swarm() first."""
        assert self._initialised is not None, "swarm() first"
        if self._info is None:
            where = directory()
            project, port = unique("sw"), free_port()
            prefix = unique("fcgikit-swarmdep-")
            app_dir = where / "app"
            write_app(app_dir, "1")
            spec = write_spec(where, project, port, app_dir)
            env = dict(env_without_fcgikit(), FCGIKIT_IMAGE_PREFIX=prefix, FCGIKIT_TLS_DIR=str(where / "tls"))
            self._info = {"project": project, "port": port, "spec": spec, "env": env, "app_dir": app_dir,
                          "dir": where, "url": f"http://127.0.0.1:{port}/", "prefix": prefix}
            self._exit.callback(self._remove, client, self._info)
        info = self._info
        if not client.services.list(filters={"label": f"com.docker.stack.namespace={info['project']}"}):
            started = time.monotonic()
            info["first_up"] = fcgikit(info["env"], "up", "-f", str(info["spec"]))
            info["first_up_seconds"] = time.monotonic() - started
        return info

    @staticmethod
    def _remove(client: docker.DockerClient, info: dict) -> None:
        fcgikit(info["env"], "down", "-f", str(info["spec"]), check=False)
        remove_stack(client, info["project"])
        remove_project(client, info["project"])  # its release records: `down` keeps them
        remove_images(client, info["prefix"])

    def close(self) -> None:
        """Take the project down and leave swarm mode (if it was entered for these tests)."""
        try:
            self._exit.close()
        finally:
            self._exit, self._initialised, self._info = contextlib.ExitStack(), None, None


SHARED = SharedSwarm()
