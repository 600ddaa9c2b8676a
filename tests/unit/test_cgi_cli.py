"""python3 -m fcgikit.cgi's command line: the pool's flags plus the CGI ones."""

import pytest

from fcgikit.cgi import __main__ as cli


def parse(*argv):
    return cli.build_parser().parse_args(list(argv))


def test_pool_and_cgi_flags_parse_together():
    options = parse("-n", "-p", "9000", "-F", "4", "--root", "/srv", "--timeout", "30", "--max-procs", "8")
    assert (options.port, options.children, options.root, options.timeout, options.max_procs) == (9000, 4, "/srv", 30.0, 8)


@pytest.mark.parametrize("euid, argv, expected", [
    (0, [], "nobody"),                          # root: programs never run as root
    (0, ["--user", "www-data"], "www-data"),
    (0, ["-u", "daemon"], "daemon"),            # the pool's -u says the same thing
    (1000, ["--user", "www-data"], None),       # not root: nothing to switch
])
def test_program_user(monkeypatch, euid, argv, expected):
    monkeypatch.setattr(cli.os, "geteuid", lambda: euid)
    options = parse("-p", "0", *argv)
    cli.choose_program_user(options)
    assert options.user == expected


def test_disagreeing_users_are_refused(monkeypatch):
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    with pytest.raises(SystemExit):
        cli.choose_program_user(parse("-p", "0", "-u", "daemon", "--user", "www-data"))


def test_missing_root_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as leaving:
        cli.main(["-n", "-p", "0", "--root", str(tmp_path / "missing")])
    assert leaving.value.code == 2


def test_the_pool_is_named_after_the_gateway_in_logs_and_status():
    # The manager names a pool of callables after the callable ("child" said nothing).
    assert cli.make_child(gateway=None).__name__ == "fcgikit.cgi"


def test_local_redirect_defaults_to_auto_and_takes_only_known_modes():
    assert parse("-p", "0").local_redirect == "auto"
    assert parse("-p", "0", "--local-redirect", "follow").local_redirect == "follow"
    with pytest.raises(SystemExit):
        parse("-p", "0", "--local-redirect", "internal")


@pytest.mark.parametrize("argv, message", [
    (["--wsgi-fallback-dir", "/"], "--wsgi-fallback-dir: needs --wsgi-fallback MODULE:APP"),
    (["--wsgi-fallback", "hello_wsgi:app", "--wsgi-fallback-dir", "/no/such/dir"],
     "--wsgi-fallback-dir: not a directory: /no/such/dir"),
    (["--wsgi-fallback", ":app"], "--wsgi-fallback: expected MODULE:APP"),
    (["--wsgi-fallback", "hello_wsgi:app", "--wsgi-fallback-python", "/no/python"],
     "--wsgi-fallback-python: not an executable file: /no/python"),
])
def test_wsgi_fallback_usage_errors_say_what(capsys, argv, message):
    with pytest.raises(SystemExit) as leaving:
        cli.main(["-n", "-p", "0", *argv])
    assert leaving.value.code == 2
    assert message in capsys.readouterr().err
