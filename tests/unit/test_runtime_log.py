"""One log line for the worker, the spawn manager and the CGI gateway: text or JSON."""

import io
import json
import logging
import os
import re
import subprocess
import sys

import pytest

from fcgikit.runtime import log as runtime_log

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (fcgikit\.\w+)\[(\d+)\] ([A-Z]+) (.*)$")


@pytest.fixture
def log_settings(monkeypatch):
    """Each test sets what it needs; the process's settings and environment come back after."""
    monkeypatch.delenv(runtime_log.FORMAT_VARIABLE, raising=False)
    monkeypatch.delenv(runtime_log.LEVEL_VARIABLE, raising=False)
    saved = runtime_log._format, runtime_log._threshold
    yield runtime_log.configure
    runtime_log._format, runtime_log._threshold = saved


def lines_of(role: str, *calls) -> list[str]:
    out = io.StringIO()
    log = runtime_log.Log(role, out)
    for message, level in calls:
        log(message, level)
    return out.getvalue().splitlines()


def test_a_text_line_has_time_role_pid_level_and_message(log_settings):
    log_settings("text", "INFO")
    (line,) = lines_of("fcgikit.worker", ("127.0.0.1:5: protocol error", "WARNING"))
    role, pid, level, message = TEXT_LINE.match(line).groups()
    assert (role, int(pid), level, message) == ("fcgikit.worker", os.getpid(), "WARNING", "127.0.0.1:5: protocol error")


def test_a_json_line_is_one_object_with_the_same_fields(log_settings):
    log_settings("json", "INFO")
    (line,) = lines_of("fcgikit.cgi", ('/cgi-bin/x.sh: "quoted"\nand a second line', "ERROR"))
    record = json.loads(line)
    assert record["role"] == "fcgikit.cgi" and record["pid"] == os.getpid() and record["level"] == "ERROR"
    assert record["message"] == '/cgi-bin/x.sh: "quoted"\nand a second line'  # one line on the wire all the same
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$", record["time"])


def test_lines_below_the_level_are_dropped(log_settings):
    log_settings("text", "WARNING")
    lines = lines_of("fcgikit.worker", ("debug", "DEBUG"), ("info", "INFO"), ("warn", "WARNING"), ("err", "ERROR"))
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["warn", "err"]
    log_settings(level="DEBUG")
    assert len(lines_of("fcgikit.worker", ("debug", "DEBUG"))) == 1


def test_the_managers_stdlib_logging_writes_the_same_line(log_settings):
    log_settings("json")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(runtime_log.Formatter("fcgikit.spawn"))
    logger = logging.getLogger("test_runtime_log")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("child %d died; replacing it", 42)
    finally:
        logger.removeHandler(handler)
    record = json.loads(out.getvalue())
    assert (record["role"], record["level"], record["message"]) == ("fcgikit.spawn", "WARNING", "child 42 died; replacing it")


def test_configure_refuses_what_does_not_exist_and_passes_the_choice_to_children(log_settings):
    with pytest.raises(runtime_log.LogSettingError, match="log format 'xml'"):
        log_settings("xml")
    with pytest.raises(runtime_log.LogSettingError, match="log level 'LOUD'"):
        log_settings(level="loud")
    log_settings("json", "debug")
    assert os.environ[runtime_log.FORMAT_VARIABLE] == "json" and os.environ[runtime_log.LEVEL_VARIABLE] == "DEBUG"


def test_a_bad_environment_value_is_said_once_and_text_is_written():
    env = dict(os.environ, FCGIKIT_LOG_FORMAT="yaml", FCGIKIT_LOG_LEVEL="")
    code = "from fcgikit.runtime.log import Log; Log('fcgikit.worker')('hello', 'WARNING')"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    first, second = result.stderr.splitlines()
    assert "FCGIKIT_LOG_FORMAT" in first and "'yaml'" in first
    assert TEXT_LINE.match(second).group(4) == "hello"
