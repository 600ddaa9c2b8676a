"""Fixtures more than one test module uses, set up once per session (a fixture imported
from another test module would be set up again in every module that imports it: for
image_prefix, a second image set built per module).

The stack's (Docker) skip without an engine, and fail with CI=true; their helpers are in
tests/integration/stack_support.py. The spawn manager's (`pools`, `hello_fcgi`) use
tests/integration/spawn_support.py. Each imports what it needs only when a test asks for
it, so the unit tests load no Docker SDK through here.
"""

from __future__ import annotations

import os
import uuid

import pytest

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # no reaper image can be pulled here


# -- the stack on the local Docker engine (test_stack*.py, test_swarm*.py) ----------


@pytest.fixture(scope="session")
def engine():
    """The local engine. In CI (CI=true) a missing engine fails the run instead of skipping."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but no Docker engine answers: {exc}")
        pytest.skip(f"no Docker engine: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def image_prefix(engine):
    """A prefix no image has yet; every image under it is removed at the end of the session."""
    from tests.integration.stack_support import new_image_prefix

    yield from new_image_prefix(engine)


@pytest.fixture(scope="session")
def cli_env(image_prefix):
    """The environment `fcgikit` runs in: this session's images, no stray FCGIKIT_* of the caller."""
    from tests.integration.stack_support import cli_environment

    return cli_environment(image_prefix)


@pytest.fixture
def project(engine, cli_env):
    """A unique project name; whatever carries its label is removed afterwards."""
    from tests.integration.stack_support import remove_project

    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    remove_project(engine, name)


@pytest.fixture(scope="session")
def built_images(engine, cli_env, image_prefix, tmp_path_factory):
    """`fcgikit build` (makes the base too if missing); up may have built the images already."""
    from tests.integration.stack_support import fcgikit, write_spec

    result = fcgikit(cli_env, "build", "-f", str(write_spec(tmp_path_factory.mktemp("build"))))
    tags = [line.split()[0] for line in result.stdout.splitlines() if line.startswith(image_prefix)]
    assert len(tags) == 2, result.stdout
    return {tag.split("/")[1].split(":")[0]: tag for tag in tags}


# -- Docker Swarm on the local engine (test_swarm_ops.py, test_swarm_secrets.py, test_swarm_single.py)


@pytest.fixture
def swarm(engine):
    """The local engine in swarm mode (swarm_support.local_swarm); whether it initialised the
    swarm (and will leave it). Kept for the tests that follow while they need it too."""
    from tests.integration.swarm_support import SHARED

    return SHARED.swarm(engine)


@pytest.fixture
def swarm_deployment(engine, swarm, tmp_path_factory):
    """The project test_swarm_ops.py and test_swarm_single.py share (swarm_support.SharedSwarm):
    up on the local swarm, deployed once for all of them."""
    from tests.integration.swarm_support import SHARED

    return SHARED.deployment(engine, lambda: tmp_path_factory.mktemp("swarm-deployment"))


def _close_shared_swarm() -> None:
    import sys

    support = sys.modules.get("tests.integration.swarm_support")
    if support is not None:
        support.SHARED.close()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """After the last test in a row that uses the swarm: its project down, swarm mode left
    (and the lock other sessions wait on released), before the tests that follow run."""
    if "swarm" in item.fixturenames and (nextitem is None or "swarm" not in nextitem.fixturenames):
        _close_shared_swarm()


def pytest_sessionfinish(session):
    _close_shared_swarm()  # a run stopped early (-x, Ctrl-C) closes it here


@pytest.fixture(scope="session")
def swarm_image_prefix(engine):
    """`fcgikit build` under a prefix of the swarm tests' own; its images are removed at the end."""
    import subprocess
    import sys

    from tests.integration.swarm_support import ROOT, env_without_fcgikit, remove_images, unique

    prefix = unique("fcgikit-swarmtest-")
    env = env_without_fcgikit()
    done = subprocess.run([sys.executable, "-m", "fcgikit.cli", "build", "--image-prefix", prefix],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr
    yield prefix
    remove_images(engine, prefix)


# -- the spawn manager (test_spawn*.py, test_fuzz.py) -------------------------------


@pytest.fixture(scope="session")
def hello_fcgi(tmp_path_factory) -> str:
    """tests/programs/hello_fcgi.c built against Debian's libfcgi-dev."""
    import shutil
    import subprocess
    from pathlib import Path

    from tests.integration.spawn_support import PROGRAMS

    if not shutil.which("gcc") or not Path("/usr/include/fcgi_stdio.h").exists():
        pytest.fail("gcc and libfcgi-dev are needed (./setup.sh installs them)")
    binary = tmp_path_factory.mktemp("hello") / "hello_fcgi"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(PROGRAMS / "hello_fcgi.c"), "-lfcgi"],
                   check=True)
    return str(binary)


@pytest.fixture
def pools(tmp_path):
    """start(flags, program=None, command=None) -> a running spawn.Pool; every one is stopped afterwards."""
    from tests.integration.spawn_support import Pool

    started = []

    def start(flags, program=None, command=None, subdir="pool"):
        directory = tmp_path / f"{subdir}{len(started)}"
        directory.mkdir()
        pool = Pool(directory, flags, program, command)
        started.append(pool)
        return pool

    yield start
    for pool in started:
        pool.close()
