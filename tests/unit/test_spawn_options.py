"""Flag parsing and validation of fcgikit.spawn: pure, no socket is bound."""

import argparse
import signal

import pytest

from fcgikit.spawn.__main__ import build_parser
from fcgikit.spawn.options import (
    DEFAULT_BACKLOG,
    OptionsError,
    add_pool_arguments,
    resolve_identity,
    resolve_program,
    validate_pool_options,
)


def parse(*argv):
    return build_parser().parse_args(list(argv))


def config(*argv, am_root=True):
    return validate_pool_options(parse(*argv, "--", "prog"), am_root=am_root)


def test_spawn_fcgi_flags_map_to_the_config(tmp_path):
    cfg = config("-a", "127.0.0.1", "-p", "9000", "-F", "3", "-b", "64", "-d", str(tmp_path),
                 "-n", "-P", str(tmp_path / "pid"), "-u", "nobody", "-g", "nogroup")
    assert (cfg.address, cfg.port, cfg.children, cfg.backlog) == ("127.0.0.1", 9000, 3, 64)
    assert cfg.foreground and cfg.directory == str(tmp_path)
    assert cfg.identity.user == "nobody" and cfg.identity.uid == 65534 and cfg.identity.gid == 65534
    assert cfg.listen_description == "127.0.0.1:9000"


def test_defaults_are_spawn_fcgis():
    cfg = config("-p", "9000")
    assert cfg.address == "0.0.0.0" and cfg.backlog == DEFAULT_BACKLOG == 1024
    assert cfg.children == 1 and not cfg.foreground
    assert cfg.exec_stop_signal == signal.SIGUSR1
    assert cfg.timeout == 0 and cfg.max_requests == 0 and cfg.allowed_addrs is None


def test_the_program_and_its_own_flags_follow_the_double_dash():
    options = parse("-p", "9000", "--", "/usr/bin/php-cgi", "-c", "/etc/php.ini")
    assert options.program == ["/usr/bin/php-cgi", "-c", "/etc/php.ini"]


def test_unix_socket_with_mode_and_owner(tmp_path):
    cfg = config("-s", str(tmp_path / "fcgi.sock"), "-M", "0600", "-U", "nobody", "-G", "nogroup")
    assert cfg.socket_path == str(tmp_path / "fcgi.sock")
    assert cfg.socket_mode == 0o600 and (cfg.socket_uid, cfg.socket_gid) == (65534, 65534)
    assert cfg.listen_description == f"unix:{tmp_path / 'fcgi.sock'}"


def test_socket_owner_defaults_to_the_children_user_as_spawn_fcgi(tmp_path):
    cfg = config("-s", str(tmp_path / "s"), "-u", "nobody")
    assert (cfg.socket_uid, cfg.socket_gid) == (65534, 65534)
    assert config("-s", str(tmp_path / "s")).socket_mode == 0o660


def test_allow_sets_the_web_server_addresses():
    assert config("-p", "1", "--allow", "127.0.0.1, ::1").allowed_addrs == ("127.0.0.1", "::1")


@pytest.mark.parametrize("argv, message", [
    (["-F", "2"], "no socket given"),
    (["-p", "9000", "-s", "/tmp/x.sock"], "exclude each other"),
    (["-p", "70000"], "port out of range"),
    (["-a", "localhost", "-p", "9000"], "-a: not an IP address"),
    (["-a", "127.0.0.1", "-s", "/tmp/x.sock"], "-a goes with -p"),
    (["-p", "9000", "-M", "600"], "-M goes with -s"),
    (["-p", "9000", "-F", "0"], "-F: children must be"),
    (["-p", "9000", "-F", "100000"], "-F: children must be"),
    (["-p", "9000", "-b", "0"], "-b: backlog"),
    (["-p", "9000", "--max-requests", "-1"], "--max-requests"),
    (["-p", "9000", "--timeout", "-5"], "--timeout"),
    (["-p", "9000", "-d", "/no/such/dir"], "-d: not a directory"),
    (["-p", "9000", "-u", "no-such-user-xyz"], "-u: no such user"),
    (["-p", "9000", "-u", "nobody", "-g", "no-such-group-xyz"], "-g: no such group"),
    (["-p", "9000", "-u", "root"], "will not set uid to 0"),
    (["-p", "9000", "-u", "nobody", "-g", "root"], "will not set gid to 0"),
    (["-p", "9000", "--stop-signal", "NOPE"], "--stop-signal"),
    (["-s", "/no/such/dir/x.sock"], "directory does not exist"),
])
def test_bad_flags_are_one_line_naming_the_flag(argv, message):
    with pytest.raises(OptionsError) as raised:
        config(*argv)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_only_root_changes_users():
    with pytest.raises(OptionsError, match="only root"):
        config("-p", "9000", "-u", "nobody", am_root=False)
    assert config("-p", "9000", am_root=False).identity.uid is None


def test_group_alone_keeps_the_user():
    identity = resolve_identity(None, "nogroup", am_root=True)
    assert identity.uid is None and identity.gid == 65534


@pytest.mark.parametrize("argv", [["-F", "x"], ["-M", "99"], ["--allow", "example.com"], ["-p"]])
def test_type_errors_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as leaving:
        parse(*argv, "--", "prog")
    assert leaving.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("fcgikit.spawn: error:") and err.count("\n") == 1


def test_a_front_ends_parser_gets_the_same_flags():
    parser = argparse.ArgumentParser()
    add_pool_arguments(parser)
    parser.add_argument("app")
    options = parser.parse_args(["-p", "0", "-F", "4", "--max-requests", "100", "mod:app"])
    cfg = validate_pool_options(options, am_root=False)
    assert cfg.children == 4 and cfg.max_requests == 100 and options.app == "mod:app"


def test_the_program_is_found_as_exec_will_find_it(tmp_path):
    assert resolve_program(["sh"]).endswith("/sh")
    program = tmp_path / "app"
    program.write_text("#!/bin/sh\n")
    with pytest.raises(OptionsError, match="not executable"):
        resolve_program(["./app"], str(tmp_path))
    program.chmod(0o755)
    assert resolve_program(["./app"], str(tmp_path)) == str(program)
    with pytest.raises(OptionsError, match="not found"):
        resolve_program(["no-such-program-xyz"])
    with pytest.raises(OptionsError, match="no program"):
        resolve_program([])
