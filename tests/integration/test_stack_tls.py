"""TLS at the edge on the local engine: `fcgikit up --tls self-signed` serves HTTPS with a
certificate curl verifies against the development CA, HTTP answers 301 to HTTPS, only
TLS 1.2+, HSTS when asked; the key is in no output and no `docker inspect`.
Real Docker, real curl; the fixtures are tests/conftest.py's."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess

import pytest
import yaml

from tests.integration.stack_support import fcgikit, logs_on_failure, write_spec

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900),
              pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return probe.getsockname()[1]


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True)


def test_up_with_a_self_signed_certificate_serves_https_that_curl_verifies(engine, cli_env, project, tmp_path):
    http_port, https_port = free_port(), free_port()
    spec = write_spec(tmp_path, workers=1, cgi=0)
    data = yaml.safe_load(spec.read_text())
    data["services"]["nginx"].update(port=http_port, tls={"port": https_port, "hsts": 600})
    data["services"].pop("cgi")
    spec.write_text(yaml.safe_dump(data))
    # The example app (its /environ), not `fcgikit test --app`'s: this checks the edge.
    env = dict({key: value for key, value in cli_env.items() if key != "FCGIKIT_APP"},
               FCGIKIT_TLS_DIR=str(tmp_path / "tls"))
    args = ("-p", project, "-f", str(spec))

    incomplete = fcgikit(env, "up", *args, check=False)
    assert incomplete.returncode == 1 and "services/nginx/tls: set \"cert\" and \"key\"" in incomplete.stderr

    with logs_on_failure(engine, project):
        done = fcgikit(env, "up", "--tls", "self-signed", *args)
        url = f"https://127.0.0.1:{https_port}/"
        assert f"is up: {url}" in done.stdout, done.stdout
        ca = tmp_path / "tls" / project / "ca.pem"
        assert f"trust {ca}" in done.stdout

        for address in ("localhost", "127.0.0.1"):
            answer = curl("-v", "--cacert", str(ca), f"https://{address}:{https_port}/")
            assert answer.returncode == 0, answer.stderr
            assert answer.stdout.startswith("Hello"), answer.stdout
            assert "SSL certificate verify ok" in answer.stderr, answer.stderr
            assert "strict-transport-security: max-age=600" in answer.stderr.lower()
        untrusted = curl(url)  # the chain ends at a CA this machine does not trust
        assert untrusted.returncode == 60, untrusted.stderr

        redirect = curl("-i", f"http://127.0.0.1:{http_port}/environ?x=1")
        assert redirect.stdout.startswith("HTTP/1.1 301"), redirect.stdout
        assert f"location: https://127.0.0.1:{https_port}/environ?x=1" in redirect.stdout.lower()
        environ = curl("--cacert", str(ca), f"https://127.0.0.1:{https_port}/environ").stdout
        assert "wsgi.url_scheme='https'" in environ, environ

        assert curl("--cacert", str(ca), "--tlsv1.2", "--tls-max", "1.2", url).returncode == 0
        old = curl("--cacert", str(ca), "--tlsv1", "--tls-max", "1.1", url)
        assert old.returncode != 0, old.stdout

        key = (tmp_path / "tls" / project / "key.pem").read_text()
        key_body = "".join(key.splitlines()[1:-1])
        names = [c.name for c in engine.containers.list(all=True, filters={"label": f"fcgikit.project={project}"})]
        inspected = subprocess.run(["docker", "inspect", *names], capture_output=True, text=True, check=True).stdout
        printed = done.stdout + done.stderr + fcgikit(env, "up", "--tls", "self-signed", "--dry-run", *args).stdout
        for part in key.splitlines()[1:-1]:
            assert part not in inspected and part not in printed
        assert key_body  # (the key has a body to look for)
        assert "no change" in fcgikit(env, "up", "--tls", "self-signed", *args).stdout

        # A renewed certificate goes into the running nginx, which reloads: no new container.
        (tmp_path / "tls" / project / "cert.pem").unlink()  # made again, by the same CA
        renewed = fcgikit(env, "up", "--tls", "self-signed", *args)
        assert f"write the renewed tls.crt, tls.key into {project}-nginx-1" in renewed.stderr, renewed.stderr
        assert "start " not in renewed.stderr, renewed.stderr
        served = ssl.get_server_certificate(("127.0.0.1", https_port))
        assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(
            (tmp_path / "tls" / project / "cert.pem").read_text())
        assert curl("--cacert", str(ca), url).returncode == 0

        # scale without --tls keeps the HTTPS that runs (the stack file's tls has no certificate).
        scaled = fcgikit(env, "scale", "workers=2", *args)
        assert "scaling release 1 as it runs" in scaled.stderr, scaled.stderr
        assert f"start {project}-nginx" not in scaled.stderr and f"stop {project}-nginx" not in scaled.stderr
        assert curl("--cacert", str(ca), url).stdout.startswith("Hello")
