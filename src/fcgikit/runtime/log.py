"""The runtime's one log line, for the worker, the spawn manager and the CGI gateway.

    2026-01-01 12:00:00,123 fcgikit.worker[4242] WARNING 127.0.0.1:51234: protocol error: ...

time, process role and pid, level, message; on stderr, which the manager, the
container engine or a web server (lighttpd, Apache) collects. One pool's lines
(manager and children) thus read as one stream.

FCGIKIT_LOG_FORMAT=json (or `--log-format json` on fcgikit.serve/.spawn/.cgi)
writes each line as one JSON object instead, what log collectors read:

    {"time": "2026-01-01T12:00:00.123+00:00", "role": "fcgikit.worker", "pid": 4242,
     "level": "WARNING", "message": "127.0.0.1:51234: protocol error: ..."}

FCGIKIT_LOG_LEVEL (DEBUG, INFO, WARNING, ERROR; default INFO) drops the lines
below it. Both are read from the environment, so exec'd programs built on
`fcgikit.accept` and forked children write the same lines as their manager.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import datetime

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
FORMATS = ("text", "json")
FORMAT_VARIABLE = "FCGIKIT_LOG_FORMAT"
LEVEL_VARIABLE = "FCGIKIT_LOG_LEVEL"


class LogSettingError(ValueError):
    """A log format or level that does not exist."""


def _format_from(value: str | None) -> str:
    value = (value or "text").strip().lower()
    if value not in FORMATS:
        raise LogSettingError(f"log format {value!r}: expected one of {', '.join(FORMATS)}")
    return value


def _threshold_from(value: str | None) -> int:
    value = (value or "INFO").strip().upper()
    if value not in LEVELS:
        raise LogSettingError(f"log level {value!r}: expected one of {', '.join(LEVELS)}")
    return LEVELS[value]


def _from_environment() -> tuple[str, int]:
    # A bad value in the environment must not stop a worker: it says so and goes on as default.
    try:
        log_format = _format_from(os.environ.get(FORMAT_VARIABLE))
    except LogSettingError as exc:
        sys.stderr.write(f"fcgikit: {FORMAT_VARIABLE}: {exc}; writing text lines\n")
        log_format = "text"
    try:
        threshold = _threshold_from(os.environ.get(LEVEL_VARIABLE))
    except LogSettingError as exc:
        sys.stderr.write(f"fcgikit: {LEVEL_VARIABLE}: {exc}; logging from INFO\n")
        threshold = LEVELS["INFO"]
    return log_format, threshold


_format, _threshold = _from_environment()


def configure(log_format: str | None = None, level: str | None = None) -> None:
    """Sets the format and the level (from command-line flags) for this process and,
    through the environment, for the programs it starts. Raises LogSettingError."""
    global _format, _threshold
    if log_format is not None:
        _format = _format_from(log_format)
        os.environ[FORMAT_VARIABLE] = _format
    if level is not None:
        _threshold = _threshold_from(level)
        os.environ[LEVEL_VARIABLE] = level.strip().upper()


def enabled(level: str) -> bool:
    return LEVELS.get(level, 30) >= _threshold


def format_line(role: str, level: str, message: str, now: float | None = None, pid: int | None = None) -> str:
    """One line (without its newline) in the configured format."""
    now = time.time() if now is None else now
    pid = os.getpid() if pid is None else pid
    if _format == "json":
        stamp = datetime.fromtimestamp(now).astimezone().isoformat(timespec="milliseconds")
        return json.dumps({"time": stamp, "role": role, "pid": pid, "level": level, "message": message})
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    return f"{stamp},{int(now % 1 * 1000):03d} {role}[{pid}] {level} {message}"


def write(role: str, message: str, level: str = "WARNING", stream=None) -> None:
    """Writes one line for `role` (stderr unless `stream`), if `level` is not below the threshold."""
    if LEVELS.get(level, 30) < _threshold:
        return
    try:
        out = sys.stderr if stream is None else stream
        out.write(format_line(role, level, message) + "\n")
        out.flush()
    except (OSError, ValueError):
        pass  # a closed or broken stderr must not take the process down


class Log:
    """The log of one role: `log(message, level="WARNING")`."""

    __slots__ = ("role", "stream")

    def __init__(self, role: str, stream=None) -> None:
        self.role = role
        self.stream = stream  # None: sys.stderr as it is when a line is written

    def __call__(self, message: str, level: str = "WARNING") -> None:
        write(self.role, message, level, self.stream)


class Formatter(logging.Formatter):
    """The same line for stdlib logging (the spawn manager logs through it)."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        return format_line(self.role, record.levelname, message, record.created, record.process)


def threshold() -> int:
    """The level below which lines are dropped, as a stdlib logging level."""
    return _threshold
