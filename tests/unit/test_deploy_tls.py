"""TLS at the edge (pure parts and the development CA): the rendered servers, the nginx
container's ports and secrets, the certificate chain fcgikit makes."""

from __future__ import annotations

import subprocess

import pytest

from fcgikit.deploy import tls as tlsmod
from fcgikit.deploy.errors import FcgikitError
from fcgikit.deploy.hosts import local_host
from fcgikit.deploy.nginxconf import render_nginx_conf
from fcgikit.deploy.plan import Observed, plan_up
from fcgikit.deploy.spec import StackSpec, TlsSettings, incomplete_tls, with_self_signed_tls

IMAGES = {"workers": "p/fcgi-worker:1", "cgi": "p/fcgi-worker:1", "nginx": "p/nginx:1"}


def spec(**tls) -> StackSpec:
    return StackSpec.model_validate({"services": {"nginx": {"port": 8080, "tls": tls}, "workers": {"app": "a:app"}}})


def test_https_server_has_modern_protocols_hsts_and_http_redirects():
    conf = render_nginx_conf(spec(self_signed=True, port=8443, hsts=31536000).services)
    https, plain = conf.split("listen 8443 ssl;")[1], conf.split("listen 8080;")[1]
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in https and "ssl_certificate /run/secrets/tls.crt;" in https
    assert 'add_header Strict-Transport-Security "max-age=31536000" always;' in https
    assert "fastcgi_param HTTPS $https;" in https and "fastcgi_pass fcgikit_workers;" in https
    assert plain.split("}")[0].strip().endswith("return 301 https://$host:8443$request_uri;")
    assert "server_name fcgikit-health;" in conf  # the healthcheck still answers on HTTP


def test_without_redirect_http_serves_the_app_too_and_port_443_needs_no_port_in_urls():
    conf = render_nginx_conf(spec(self_signed=True, redirect=False).services)
    assert "return 301" not in conf and conf.count("fastcgi_pass fcgikit_workers;") == 2
    assert "Strict-Transport-Security" not in conf
    assert tlsmod.redirect_target(TlsSettings(self_signed=True)) == "https://$host$request_uri"


def test_nginx_publishes_https_and_waits_for_its_certificate():
    plan = plan_up(spec(self_signed=True, port=8443), "demo", [local_host()], IMAGES, Observed())
    nginx = next(c for c in plan.wanted if c.service == "nginx")
    assert nginx.ports == ((8080, 8080), (8443, 8443))
    assert nginx.secrets == (("tls.crt", ""), ("tls.key", ""))
    assert ("/run/secrets", "uid=33,gid=33,mode=0700,size=1m") in nginx.confinement.tmpfs
    assert nginx.command[:2] == ("sh", "-c") and nginx.command[-3:] == ("nginx", "-g", "daemon off;")


def test_a_tls_section_needs_a_certificate_unless_the_command_line_makes_one():
    partial = spec(port=8443)
    assert incomplete_tls(partial) and not incomplete_tls(with_self_signed_tls(partial))
    assert with_self_signed_tls(partial).services.nginx.tls.port == 8443
    assert with_self_signed_tls(StackSpec.model_validate(
        {"services": {"workers": {"app": "a:app"}}})).services.nginx.tls.port == 443
    with pytest.raises(ValueError, match="not both"):
        TlsSettings(self_signed=True, cert="/c", key="/k")
    with pytest.raises(ValueError, match="also the HTTP port"):
        spec(self_signed=True, port=8080)
    with pytest.raises(FcgikitError, match="not a PEM private key"):
        import pathlib
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            cert, key = pathlib.Path(d, "c.pem"), pathlib.Path(d, "k.pem")
            cert.write_text("-----BEGIN CERTIFICATE-----\nx\n"), key.write_text("not a key")
            tlsmod.read_cert_and_key(TlsSettings(cert=cert, key=key), "demo")


def test_the_development_certificate_chains_to_its_ca_and_is_kept_while_it_covers_the_names(tmp_path):
    cert, key, ca = tlsmod.ensure_self_signed(tmp_path, ["localhost", "127.0.0.1"], "demo")
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(ca), str(cert)], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    first = cert.read_bytes()
    assert tlsmod.ensure_self_signed(tmp_path, ["127.0.0.1"], "demo")[0].read_bytes() == first
    again, _, ca_again = tlsmod.ensure_self_signed(tmp_path, ["localhost", "10.0.0.7"], "demo")
    assert again.read_bytes() != first and ca_again.read_bytes() == ca.read_bytes()
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(again)], capture_output=True, text=True).stdout
    assert "IP Address:10.0.0.7" in text and "DNS:localhost" in text


@pytest.mark.parametrize("foreign", ["ed25519", "another EC key"])
def test_a_ca_key_that_is_not_the_cas_own_makes_a_new_ca(tmp_path, foreign):
    """ca-key.pem replaced (another type, or a key that is not ca.pem's): the next certificate
    is signed by a new CA it verifies against, not by that key (an Ed25519 key failed the
    signing with ValueError; another EC key made a certificate that no longer chained)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    _, _, ca = tlsmod.ensure_self_signed(tmp_path, ["localhost"], "demo")
    first_ca = ca.read_bytes()
    other = ed25519.Ed25519PrivateKey.generate() if foreign == "ed25519" else ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ca-key.pem").write_bytes(other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cert, _, ca = tlsmod.ensure_self_signed(tmp_path, ["localhost", "10.0.0.7"], "demo")  # a name more: re-signed
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(ca), str(cert)], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    assert ca.read_bytes() != first_ca


def test_a_renewed_certificate_reloads_the_running_nginx_instead_of_replacing_it():
    from dataclasses import replace as copy

    from fcgikit.deploy.model import RunningContainer
    from fcgikit.deploy.plan import RenewSecrets, StartContainer

    wanted = plan_up(spec(self_signed=True, port=8443), "demo", [local_host()], IMAGES, Observed()).wanted
    running = tuple(RunningContainer.from_labels(f"id{c.name}", c.name, c.labels, image=c.image) for c in wanted)
    steady = plan_up(spec(self_signed=True, port=8443), "demo", [local_host()], IMAGES, Observed(running))
    assert not any(isinstance(step, (StartContainer, RenewSecrets)) for step in steady.steps)
    renewed = tuple(copy(c, secrets_renewed=True) if c.service == "nginx" else c for c in running)
    plan = plan_up(spec(self_signed=True, port=8443), "demo", [local_host()], IMAGES, Observed(renewed))
    assert [s for s in plan.steps if isinstance(s, RenewSecrets)] == [
        RenewSecrets("demo-nginx-1", "local", (("tls.crt", ""), ("tls.key", "")))]
    assert not any(isinstance(step, StartContainer) for step in plan.steps)
