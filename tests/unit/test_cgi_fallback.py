"""The WSGI fallback's pure parts: the runner's command line and the app's CGI environment."""

import os

from fcgikit.cgi.fallback import RUNNER, SOURCE_ROOT, WsgiFallback, make_fallback


def test_the_runner_command_line():
    fallback = WsgiFallback("hello_wsgi:app", "/srv/app", "/usr/bin/python3", ("/opt/fcgikit", "/src"))
    assert fallback.argv() == [os.fsencode(arg) for arg in (
        "/usr/bin/python3", "-I", RUNNER, "--path", "/srv/app", "--path", "/opt/fcgikit", "--path", "/src",
        "--", "hello_wsgi:app")]


def test_defaults_the_current_directory_and_the_gateways_pythonpath(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", "/opt/a:/opt/b")
    fallback = make_fallback("m:app", None)
    assert fallback.app_dir == os.path.realpath(tmp_path)
    assert fallback.paths == ("/opt/a", "/opt/b", SOURCE_ROOT)
    assert os.path.isfile(os.path.join(SOURCE_ROOT, "fcgikit", "cgi", "wsgi_runner.py"))


def test_the_app_sees_the_whole_path_as_path_info():
    fallback = WsgiFallback("m:app", "/srv/app", "/usr/bin/python3", ())
    for params in ({"SCRIPT_NAME": "", "PATH_INFO": "/a/b"}, {"SCRIPT_NAME": "/a/b"},
                   {"SCRIPT_NAME": "/a", "PATH_INFO": "/b"}):
        params.update(REQUEST_METHOD="GET", QUERY_STRING="x=1", FCGIKIT_FALLBACK="1")
        script = fallback.script(params)
        env = fallback.environ(params, script)
        assert (env[b"SCRIPT_NAME"], env[b"PATH_INFO"]) == (b"", b"/a/b")
        assert env[b"FCGIKIT_FALLBACK"] == b"1" and env[b"QUERY_STRING"] == b"x=1"
        assert b"SCRIPT_FILENAME" not in env   # the interpreter's path is not the app's business
    assert script.directory == "/srv/app" and script.label == "fallback m:app"
