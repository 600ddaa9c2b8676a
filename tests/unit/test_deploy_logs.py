"""`fcgikit logs`: --since/--tail, which containers, the host's one-session shell, merging."""

import os
import signal
import subprocess
import time
from datetime import UTC, datetime

import pytest

from fcgikit.deploy.errors import FcgikitError
from fcgikit.deploy.logs import (
    LineFormat,
    LogRequest,
    group_by_label,
    host_logs_script,
    merge_by_time,
    merge_followed,
    parse_since,
    parse_tail,
    select_containers,
    split_named_line,
)
from fcgikit.deploy.model import RunningContainer


def test_since_durations_are_handed_to_docker_as_given_and_counted_back_from_now():
    for text, seconds in (("10m", 600), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("2h0m5s", 7205)):
        since = parse_since(text)
        assert since.seconds_ago == seconds and since.docker_value() == text
        assert since.as_epoch(10_000.0) == 10_000.0 - seconds


def test_since_times_are_absolute():
    since = parse_since("2026-12-05T20:00:00Z")
    assert since.epoch == datetime(2026, 12, 5, 20, tzinfo=UTC).timestamp()
    assert since.as_epoch(0.0) == since.epoch and since.docker_value() == f"{since.epoch:.3f}"
    assert parse_since("2026-12-05").epoch == datetime(2026, 12, 5).timestamp()  # local time, as Docker


@pytest.mark.parametrize("text", ["", "10", "10 m", "m", "1d", "yesterday", "10m5"])
def test_since_that_is_neither_is_refused_naming_it(text):
    with pytest.raises(FcgikitError, match=f'--since "{text}": expected a duration such as 10m'):
        parse_since(text)


def test_tail():
    assert parse_tail("all") is None and parse_tail("ALL") is None
    assert parse_tail("0") == 0 and parse_tail("25") == 25
    with pytest.raises(FcgikitError, match='--tail "-1": expected a number of lines'):
        parse_tail("-1")


def container(service, slot, host="local"):
    return RunningContainer(id=f"{service}{slot}", name=f"p-{service}-{slot}", service=service, host=host, slot=slot,
                            image="i", config_hash="h")


def test_every_service_by_default_nginx_first_then_by_slot():
    found = [container("cgi", 1), container("workers", 3), container("nginx", 1), container("workers", 1)]
    assert [c.name for c in select_containers(found, (), "p")] == [
        "p-nginx-1", "p-workers-1", "p-workers-3", "p-cgi-1"]
    assert [c.name for c in select_containers(found, ("cgi", "nginx"), "p")] == ["p-nginx-1", "p-cgi-1"]


def test_nothing_to_show_says_what_was_looked_for():
    with pytest.raises(FcgikitError, match=r'^no "workers" or "cgi" container in project p$'):
        select_containers([container("nginx", 1)], ("cgi", "workers"), "p")
    with pytest.raises(FcgikitError, match=r"^project p has no containers \(is it up\?\)$"):
        select_containers([], (), "p")


def test_the_host_shell_reads_each_container_with_dockers_options():
    script = host_logs_script(["p-workers-1", "p-cgi-1"], LogRequest(tail=5, since=parse_since("10m")))
    assert script == (
        "docker logs --timestamps --tail 5 --since 10m p-workers-1 2>&1 | sed -u 's/^/p-workers-1 /'; "
        "docker logs --timestamps --tail 5 --since 10m p-cgi-1 2>&1 | sed -u 's/^/p-cgi-1 /'"
    )


FAKE_DOCKER = """#!/bin/sh
# docker logs [options] NAME: two lines, then (with --follow) one more every 0.1 s
for last; do :; done
echo "2026-12-05T20:00:0${last##*-}.000000000Z first of $last"
echo "2026-12-05T20:00:1${last##*-}.000000000Z oops from $last" >&2
case " $* " in *" --follow "*) while :; do echo "tick $last"; sleep 0.1; done ;; esac
"""


@pytest.fixture
def fake_docker(tmp_path):
    (tmp_path / "docker").write_text(FAKE_DOCKER)
    (tmp_path / "docker").chmod(0o755)
    return dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")


def test_the_host_shell_prints_every_line_of_every_container_named(fake_docker):
    script = host_logs_script(["p-w-1", "p-w-2"], LogRequest())
    output = subprocess.run(["sh", "-c", script], env=fake_docker, capture_output=True, text=True, timeout=10).stdout
    lines = [split_named_line(raw, "h2") for raw in output.splitlines()]
    assert lines == [
        ("p-w-1@h2", "2026-12-05T20:00:01.000000000Z first of p-w-1"),
        ("p-w-1@h2", "2026-12-05T20:00:11.000000000Z oops from p-w-1"),
        ("p-w-2@h2", "2026-12-05T20:00:02.000000000Z first of p-w-2"),
        ("p-w-2@h2", "2026-12-05T20:00:12.000000000Z oops from p-w-2"),
    ]
    merged = merge_by_time(group_by_label(lines))
    assert [text.split(" ", 1)[1] for _, text in merged] == [
        "first of p-w-1", "first of p-w-2", "oops from p-w-1", "oops from p-w-2"]


def test_following_one_session_reads_all_containers_and_leaves_nothing_when_closed(fake_docker):
    names = [f"p-w-{i}" for i in range(1, 13)]  # more than sshd's sessions per connection
    script = host_logs_script(names, LogRequest(follow=True, tail=0))
    # As sshd runs a session's command: in a session of its own, stdin from the client.
    shell = subprocess.Popen(["sh", "-c", script], env=fake_docker, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        ticking = set()
        deadline = time.monotonic() + 10
        while ticking != set(names) and time.monotonic() < deadline:
            name, _, text = shell.stdout.readline().rstrip("\n").partition(" ")
            if text == f"tick {name}":
                ticking.add(name)
        assert ticking == set(names)
        shell.stdin.close()  # the client closes the session
        shell.wait(timeout=5)
        time.sleep(0.2)
        assert alive_in_group(shell.pid) == []  # no `docker logs`, sed or sleep left behind
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)


def alive_in_group(pgid: int) -> list[str]:
    """Processes of the group that still run (zombies no one has reaped yet do not count)."""
    alive = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as file:
                command, fields = file.read().rsplit(") ", 1)
        except (OSError, ValueError):
            continue
        state, _, group = fields.split()[:3]
        if int(group) == pgid and state != "Z":
            alive.append(command.split(" (", 1)[1])
    return alive


def test_lines_are_labelled_to_one_width_and_lose_dockers_timestamp_unless_asked():
    line = ("p-workers-1@h2", "2026-12-05T20:00:01.123456789Z hello")
    plain = LineFormat(["p-workers-1@h2", "p-nginx-1@h1", "p-cgi-10@h3"], timestamps=False)
    assert plain(line) == "p-workers-1@h2 | hello"
    assert plain(("p-cgi-10@h3", "Error response from daemon: gone")) == "p-cgi-10@h3    | Error response from daemon: gone"
    assert LineFormat(["p-workers-1@h2"], timestamps=True)(line) == "p-workers-1@h2 | 2026-12-05T20:00:01.123456789Z hello"


def test_following_goes_on_when_one_source_fails_and_ends_when_all_have():
    def good():
        yield ("a", "one")
        yield ("a", "two")

    def lost():
        yield ("b", "first")
        raise OSError("connection to h3 lost")

    got = list(merge_followed([good, lost]))
    assert [line for line in got if line[0] == "a"] == [("a", "one"), ("a", "two")]
    assert ("b", "first") in got and ("fcgikit", "stopped following: connection to h3 lost") in got


def test_following_takes_up_containers_started_since():
    import threading

    release = threading.Event()

    def old():
        yield ("old", "one")
        release.wait(5)  # still running while the new one appears

    def new():
        yield ("new", "first line of a container started later")

    found = [[new], []]

    def discover():
        return found.pop(0) if found else []

    got = []
    for line in merge_followed([old], discover, interval=0.05):
        got.append(line)
        if line[0] == "new":
            break
    release.set()
    assert got == [("old", "one"), ("new", "first line of a container started later")]


def test_labels_found_later_widen_the_column():
    line_format = LineFormat(["p-nginx-1"], timestamps=False)
    line_format.widen(["p-workers-12"])
    assert line_format(("p-nginx-1", "x")) == "p-nginx-1    | x"
