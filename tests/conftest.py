"""Fixtures more than one test module uses, set up once per session (a fixture imported
from another test module would be set up again in every module that imports it: for
image_prefix, a second image set built per module).

The Docker ones skip without an engine (and fail with CI=true). They import Docker and the
stack helpers (tests/integration/stack_support.py) only when a test asks for them.
"""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # no reaper image can be pulled here


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
    import docker.errors

    prefix = f"fcgikit-test-{uuid.uuid4().hex[:8]}"
    yield prefix
    for image in engine.images.list():
        for tag in image.tags:
            if tag.startswith(prefix + "/"):
                with contextlib.suppress(docker.errors.APIError):
                    engine.images.remove(tag, force=True)


@pytest.fixture(scope="session")
def cli_env(image_prefix):
    """The environment `fcgikit` runs in: this session's images, no stray FCGIKIT_* of the caller."""
    from tests.integration.stack_support import USER_APP

    env = dict(os.environ, FCGIKIT_IMAGE_PREFIX=image_prefix, PYTHONUNBUFFERED="1")
    for variable in ("FCGIKIT_PROJECT", "FCGIKIT_FILE", "FCGIKIT_APP"):
        env.pop(variable, None)
    if USER_APP:
        env["FCGIKIT_APP"] = USER_APP  # up, scale and build serve the user's app
    return env


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
