"""Build contexts and their content-hash tags (pure: files in, bytes and hashes out)."""

import io
import tarfile
from pathlib import Path

import pytest

from fcgikit.deploy.images import BuildContext, BuildError, ImageNames, nginx_context, worker_context

ROOT = Path(__file__).resolve().parents[2]


def fake_checkout(tmp_path: Path) -> Path:
    (tmp_path / "images" / "fcgi-worker").mkdir(parents=True)
    (tmp_path / "images" / "fcgi-worker" / "Dockerfile").write_text("FROM x\n")
    package = tmp_path / "src" / "fcgikit"
    for name in ("__init__.py", "probe.py", "cli.py", "spawn/__init__.py", "spawn/cli.py", "deploy/plan.py",
                 "testing/nginx.py", "spawn/__pycache__/x.cpython-311.pyc"):
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(f"# {name}\n")
    (tmp_path / "apps" / "cgi-bin").mkdir(parents=True)
    (tmp_path / "apps" / "hello.py").write_text("app = None\n")
    script = tmp_path / "apps" / "cgi-bin" / "hi.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    return tmp_path


def test_worker_context_holds_only_the_runtime_the_app_and_the_scripts(tmp_path):
    context = worker_context(fake_checkout(tmp_path))
    assert sorted(context.files) == [
        "Dockerfile", "app/hello.py", "cgi-bin/hi.sh", "packages",
        "runtime/fcgikit/__init__.py", "runtime/fcgikit/probe.py",
        "runtime/fcgikit/spawn/__init__.py", "runtime/fcgikit/spawn/cli.py",  # nested cli.py is runtime
    ]
    assert context.files["cgi-bin/hi.sh"][0] == 0o755
    assert context.files["app/hello.py"][0] == 0o644


def test_the_real_worker_context_has_no_orchestration_code():
    names = worker_context(ROOT).files
    assert "runtime/fcgikit/probe.py" in names and "runtime/fcgikit/serve.py" in names
    assert not [name for name in names if "/deploy/" in name or name.endswith("fcgikit/cli.py") or ".pyc" in name]


def test_hash_changes_with_content_mode_and_base_only():
    files = {"Dockerfile": (0o644, b"FROM x\n"), "app/a.py": (0o644, b"a = 1\n")}
    base = BuildContext("fcgi-worker", files).content_hash("sha256:base")
    assert BuildContext("fcgi-worker", dict(files)).content_hash("sha256:base") == base
    assert len(base) == 12
    changed = dict(files, **{"app/a.py": (0o644, b"a = 2\n")})
    executable = dict(files, **{"app/a.py": (0o755, b"a = 1\n")})
    renamed = {"Dockerfile": files["Dockerfile"], "app/b.py": files["app/a.py"]}
    others = [BuildContext("fcgi-worker", variant).content_hash("sha256:base") for variant in (changed, executable, renamed)]
    others.append(BuildContext("fcgi-worker", files).content_hash("sha256:other-base"))
    assert len({base, *others}) == 5


def test_tar_is_the_files_with_their_modes_and_fixed_times():
    context = BuildContext("nginx", {"Dockerfile": (0o644, b"FROM x\n"), "run.sh": (0o755, b"#!/bin/sh\n")})
    first, second = context.tar().getvalue(), context.tar().getvalue()
    assert first == second  # same input, same bytes
    with tarfile.open(fileobj=io.BytesIO(first)) as archive:
        members = {m.name: (m.mode, m.mtime) for m in archive.getmembers()}
    assert members == {"Dockerfile": (0o644, 0), "run.sh": (0o755, 0)}


def test_missing_directories_are_reported(tmp_path):
    checkout = fake_checkout(tmp_path)
    with pytest.raises(BuildError, match="CGI scripts directory .* does not exist"):
        worker_context(checkout, cgi_dir=tmp_path / "nope")


def test_nginx_context_and_names():
    assert sorted(nginx_context(ROOT).files) == ["Dockerfile", "fcgikit_edge.lua", "nginx.conf"]
    assert ImageNames().repository("nginx") == "fcgikit/nginx"
    assert ImageNames("mine").repository("fcgi-worker") == "mine/fcgi-worker"


def test_the_images_default_command_serves_the_app_built_in():
    example = worker_context(ROOT)
    assert example.files["Dockerfile"][1].rstrip().endswith(b'"hello_wsgi:app"]')
    assert worker_context(ROOT, app="hello_wsgi:app").files == example.files
    mine = worker_context(ROOT, app="wsgi:application").files["Dockerfile"][1]
    assert mine.rstrip().endswith(b'"--status-file", "/tmp/fcgikit-status.json", "wsgi:application"]')
    assert mine.replace(b'"wsgi:application"', b'"hello_wsgi:app"') == example.files["Dockerfile"][1]


def test_extra_debian_packages_go_into_the_context_and_its_hash(tmp_path):
    """workers.packages (php-cgi): a file the Dockerfile installs with apt, part of the hash."""
    checkout = fake_checkout(tmp_path)
    plain = worker_context(checkout)
    php = worker_context(checkout, packages=["php-cgi", "php8.2-mysql"])
    assert plain.files["packages"] == (0o644, b"")
    assert php.files["packages"] == (0o644, b"php-cgi\nphp8.2-mysql\n")
    assert plain.content_hash("sha256:base") != php.content_hash("sha256:base")
    dockerfile = worker_context(ROOT).files["Dockerfile"][1].decode()
    assert "COPY packages /etc/fcgikit/packages" in dockerfile
    assert "apt-get install -y --no-install-recommends $packages" in dockerfile


def test_a_package_apt_does_not_know_is_named_in_the_build_error():
    from fcgikit.deploy.images import build_failure

    output = ["Reading package lists...\n", "\x1b[91mE\x1b[0m\x1b[91m: Unable to locate package php-cgx\n", "\x1b[0m"]
    error = "The command '/bin/sh -c set -e; packages=\"$(cat /etc/fcgikit/packages)\"; ...' returned a non-zero code: 100"
    message = build_failure("p/fcgi-worker:abc", error, output)
    assert message.splitlines()[0] == ("building p/fcgi-worker:abc failed: apt-get could not install "
                                       "services/workers/packages: E: Unable to locate package php-cgx")
    assert "\x1b" not in message
    assert build_failure("t", "COPY failed", ["Step 3/9\n"]) == "building t failed: COPY failed\nStep 3/9\n"
