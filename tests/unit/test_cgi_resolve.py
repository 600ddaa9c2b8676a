"""Which program a request names, confined to the root; and its environment."""

import os

import pytest

from fcgikit.cgi.environ import build_environ
from fcgikit.cgi.resolve import Refused, real_root, resolve_script


@pytest.fixture
def root(tmp_path):
    cgi = tmp_path / "www" / "cgi-bin"
    cgi.mkdir(parents=True)
    for name, mode in [("hello.sh", 0o755), ("nph-status.sh", 0o755), ("data.txt", 0o644)]:
        (cgi / name).write_text("#!/bin/sh\n")
        (cgi / name).chmod(mode)
    (cgi / "subdir").mkdir()
    outside = tmp_path / "outside.sh"
    outside.write_text("#!/bin/sh\n")
    outside.chmod(0o755)
    (cgi / "escape.sh").symlink_to(outside)
    (cgi / "inside-link.sh").symlink_to(cgi / "hello.sh")
    return real_root(str(tmp_path / "www"))


def params_for(root, uri, **extra):
    return {"DOCUMENT_ROOT": root, "SCRIPT_NAME": uri, "SCRIPT_FILENAME": root + uri, **extra}


def test_script_under_the_root_resolves(root):
    script = resolve_script(params_for(root, "/cgi-bin/hello.sh"), root)
    assert script.filename == root + "/cgi-bin/hello.sh"
    assert (script.script_name, script.path_info, script.directory) == ("/cgi-bin/hello.sh", "", root + "/cgi-bin")
    assert not script.is_nph


def test_path_after_the_program_becomes_path_info(root):
    script = resolve_script(params_for(root, "/cgi-bin/hello.sh/a/b"), root)
    assert (script.script_name, script.path_info) == ("/cgi-bin/hello.sh", "/a/b")


def test_document_root_and_script_name_without_script_filename(root):
    script = resolve_script({"DOCUMENT_ROOT": root, "SCRIPT_NAME": "/cgi-bin/nph-status.sh"}, None)
    assert script.is_nph and script.filename.endswith("/cgi-bin/nph-status.sh")


def test_symlink_inside_the_root_is_followed(root):
    assert resolve_script(params_for(root, "/cgi-bin/inside-link.sh"), root).filename.endswith("/hello.sh")


@pytest.mark.parametrize("uri, status", [
    ("/cgi-bin/../../outside.sh", 403),            # .. segments
    ("/cgi-bin/%2e%2e/%2e%2e/outside.sh", 404),    # taken literally: no such file
    ("/cgi-bin/%2e%2e%2f%2e%2e%2foutside.sh", 404),
    ("/cgi-bin/escape.sh", 403),                   # symlink out of the root
    ("/cgi-bin/subdir", 403),                      # a directory
    ("/cgi-bin/", 403),
    ("/cgi-bin/data.txt", 403),                    # not executable
    ("/cgi-bin/missing.sh", 404),
    ("/cgi-bin/hello.sh;touch /tmp/x", 403),       # shell metacharacters
    ("/cgi-bin/$(touch x)", 403),
    ("/cgi-bin/hello.sh\ntouch x", 403),           # a newline
    ("/cgi-bin/hello.sh\0", 403),
])
def test_refused(root, uri, status):
    with pytest.raises(Refused) as refused:
        resolve_script(params_for(root, uri), root)
    assert refused.value.status == status


def test_script_filename_outside_the_root_is_refused(root):
    with pytest.raises(Refused) as refused:
        resolve_script({"SCRIPT_FILENAME": "/bin/sh", "SCRIPT_NAME": "/x"}, root)
    assert refused.value.status == 403


def test_without_any_root_nothing_runs():
    with pytest.raises(Refused):
        resolve_script({"SCRIPT_FILENAME": "/bin/sh"}, None)


def test_environment_is_built_from_params_only(root, monkeypatch):
    monkeypatch.setenv("GATEWAY_SECRET", "s3cret")
    params = params_for(root, "/cgi-bin/hello.sh/extra", QUERY_STRING="a=1", REQUEST_METHOD="POST",
                        CONTENT_LENGTH="3", REMOTE_ADDR="10.0.0.1", HTTP_X_CUSTOM="\xe9t\xe9",
                        HTTP_PROXY="http://evil/", HTTP_AUTHORIZATION="Basic dTpw", REMOTE_USER="u",
                        APP_CONFIG="/etc/app.conf", PATH="/evil", BROKEN="a\0b")
    env = build_environ(params, resolve_script(params, root))
    assert b"GATEWAY_SECRET" not in env
    assert env[b"GATEWAY_INTERFACE"] == b"CGI/1.1"
    assert env[b"PATH_INFO"] == b"/extra" and env[b"SCRIPT_NAME"] == b"/cgi-bin/hello.sh"
    assert env[b"PATH_TRANSLATED"] == root.encode() + b"/extra"
    assert env[b"REMOTE_HOST"] == b"10.0.0.1"
    assert env[b"HTTP_X_CUSTOM"] == b"\xe9t\xe9"      # the wire bytes, not UTF-8
    assert env[b"APP_CONFIG"] == b"/etc/app.conf"     # operator's fastcgi_param
    assert env[b"PATH"] == b"/usr/local/bin:/usr/bin:/bin"
    assert env[b"AUTH_TYPE"] == b"Basic" and env[b"REMOTE_USER"] == b"u"
    for dropped in (b"HTTP_PROXY", b"HTTP_AUTHORIZATION", b"BROKEN"):
        assert dropped not in env


def test_non_ascii_script_name_names_the_same_bytes_on_disk(tmp_path):
    raw_name = b"caf\xc3\xa9.sh"
    path = os.path.join(os.fsencode(tmp_path), raw_name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(path, 0o755)
    root = real_root(str(tmp_path))
    wire = "/" + raw_name.decode("latin-1")
    script = resolve_script({"DOCUMENT_ROOT": root, "SCRIPT_NAME": wire}, root)
    assert os.fsencode(script.filename) == os.fsencode(root) + b"/" + raw_name
    assert build_environ({}, script)[b"SCRIPT_NAME"] == b"/" + raw_name


def test_unreadable_directory_is_forbidden_not_a_crash(root):
    if os.geteuid() == 0:
        pytest.skip("root enters every directory")
    locked = os.path.join(root, "cgi-bin", "locked")
    os.mkdir(locked, 0o000)
    try:
        with pytest.raises(Refused) as refused:
            resolve_script(params_for(root, "/cgi-bin/locked/x.sh"), root)
        assert refused.value.status == 403
    finally:
        os.chmod(locked, 0o755)
