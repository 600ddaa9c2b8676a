"""In the worker image (uid 10001 for the managers, their children and the CGI
programs alike): a process of that uid, such as a CGI program, reads no secret
from the environment of the gateway, of fcgikit.serve's workers or of their
managers (issue 12 point 6). The bare-process version is test_cgi_isolation.py."""

from __future__ import annotations

import contextlib

import pytest
from testcontainers.core.container import DockerContainer

from fcgikit.deploy.model import LABEL_PROJECT
from tests.integration.stack_support import wait_healthy

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

SECRET = "s3cr3t-in-the-container-4711"

# Every /proc/PID/environ this uid can read, but its own: which hold the secret, which are refused.
PROBE = """
import os
me = os.getpid()
found, refused, total = [], [], 0
for name in os.listdir('/proc'):
    if not name.isdigit() or int(name) == me:
        continue
    total += 1
    try:
        if b'@SECRET@' in open(f'/proc/{name}/environ', 'rb').read():
            found.append(name)
    except PermissionError:
        refused.append(name)
    except OSError:
        pass
print('found', found, 'refused', len(refused), 'of', total)
""".replace("@SECRET@", SECRET)


@pytest.mark.parametrize("front_end", ["cgi", "serve"])
def test_a_process_of_the_gateway_uid_reads_no_secret(built_images, front_end):  # noqa: F811
    command = {"cgi": ["python3", "-m", "fcgikit.cgi", "-n", "-p", "9000", "-F", "2", "--root", "/srv/cgi-bin"],
               "serve": None}[front_end]
    container = DockerContainer(built_images["fcgi-worker"]).with_env("SECRET_TOKEN", SECRET) \
        .with_kwargs(labels={LABEL_PROJECT: "testcontainers"})
    if command:
        container = container.with_command(command)
    with contextlib.ExitStack() as stack:
        stack.enter_context(container)
        wait_healthy(container)
        wrapped = container.get_wrapped_container()
        # docker exec gives the probe the container's environment: blank the secret in it.
        code, output = wrapped.exec_run(["python3", "-c", PROBE], environment={"SECRET_TOKEN": "-"})
        text = output.decode()
        assert code == 0 and text.startswith("found [] refused "), text
        refused = int(text.split("refused ")[1].split()[0])
        assert refused >= 3, text   # the manager and its two children at least
