"""`fcgikit logs`: which containers, from when, and how their lines reach the terminal.

Pure parts (unit-tested): the `--since`/`--tail` values, the shell a host runs to read
all its containers' logs over one SSH session, the line format and the merge by time.
The I/O around them: the Docker SDK for the local engine (one stream per container,
no limit), one SSH session per host for inventory hosts (see multihost.py): sshd
allows ten sessions per connection (MaxSessions), the Docker tunnel takes up to six,
so a session per followed container would stop at a handful.
"""

from __future__ import annotations

import heapq
import queue
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from .errors import FcgikitError
from .model import RunningContainer
from .services import shown_rank

# Go durations as Docker takes them (`docker logs --since 1h30m`): hours, minutes, seconds.
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}
# `docker logs --timestamps` prefixes RFC 3339 with nanoseconds, in UTC, fixed width.
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ")

Line = tuple[str, str]  # (label: the container, @host when remote; the line with Docker's timestamp in front)
LogReader = Callable[[], Iterator[Line]]  # one container's lines, or one host's


@dataclass(frozen=True)
class LogRequest:
    """What `fcgikit logs` asks each container for (Docker's own options)."""

    tail: int | None = None  # the last N lines of each container; None: all
    since: Since | None = None
    follow: bool = False
    timestamps: bool = False  # keep Docker's timestamp in front of each line


@dataclass(frozen=True)
class Since:
    """`--since`: a duration back from now, counted on each host's clock, or a point in time."""

    text: str  # as given: a duration is handed to the host's `docker logs` as it is
    seconds_ago: float | None = None
    epoch: float | None = None

    def as_epoch(self, now: float) -> float:
        if self.seconds_ago is not None:
            return now - self.seconds_ago
        assert self.epoch is not None  # parse_since gives one of the two
        return self.epoch

    def docker_value(self) -> str:
        """The value for `docker logs --since` on a host (Go duration or Unix time)."""
        return self.text if self.seconds_ago is not None else f"{self.epoch:.3f}"


def parse_since(text: str) -> Since:
    """`10m`, `1h30m`, `90s`, `1.5h` (before now) or a time: `2026-12-05T20:00:00Z`,
    `2026-12-05 20:00` (local time unless it carries a zone), `2026-12-05`."""
    value = text.strip()
    parts = _DURATION_PART.findall(value)
    if parts and "".join(number + unit for number, unit in parts) == value:
        return Since(value, seconds_ago=sum(float(number) * _SECONDS[unit] for number, unit in parts))
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise FcgikitError(f'--since "{text}": expected a duration such as 10m, 1h30m or 90s, '
                           'or a time such as 2026-12-05T20:00:00Z') from None
    return Since(value, epoch=moment.timestamp())


def parse_tail(text: str) -> int | None:
    """`--tail N` per container; `all` (Docker's word) is every line."""
    value = text.strip().lower()
    if value == "all":
        return None
    if not value.isdigit():
        raise FcgikitError(f'--tail "{text}": expected a number of lines (or "all")')
    return int(value)


def select_containers(
    containers: Iterable[RunningContainer], services: Iterable[str], project: str
) -> list[RunningContainer]:
    """The containers whose logs are shown, nginx first, then workers and cgi by slot;
    every service when none is named."""
    wanted = set(services)
    chosen = [c for c in containers if not wanted or c.service in wanted]
    if not chosen:
        what = " or ".join(f'"{name}"' for name in sorted(wanted, key=shown_rank))
        raise FcgikitError(f"no {what} container in project {project}" if wanted else
                           f"project {project} has no containers (is it up?)")
    return sorted(chosen, key=lambda c: (shown_rank(c.service), c.slot, c.host))


def host_logs_script(names: list[str], request: LogRequest) -> str:
    """One shell for one host that prints every named container's log lines, each as
    `NAME TIMESTAMP TEXT` (stdout and stderr alike).

    Following, all of them run at once in the session's process group (sshd makes one per
    session): when fcgikit closes the session, the shell's stdin ends and the group is
    killed, so no `docker logs` is left behind on the host; when every container has
    stopped, the shell ends by itself."""
    options = ["--timestamps"]
    if request.tail is not None:
        options += ["--tail", str(request.tail)]
    if request.since is not None:
        options += ["--since", request.since.docker_value()]
    if request.follow:
        options.append("--follow")

    def reader(name: str) -> str:
        command = shlex.join(["docker", "logs", *options, name])
        return f"{command} 2>&1 | sed -u {shlex.quote(f's/^/{name} /')}"

    if not request.follow:
        return "; ".join(reader(name) for name in names)
    followers = " & ".join(reader(name) for name in names)
    return f"({followers} & wait; kill 0) & cat >/dev/null; kill 0"


def split_named_line(raw: str, host: str) -> Line:
    """`NAME REST` as the host script prints it -> ("NAME@host", REST)."""
    name, _, rest = raw.partition(" ")
    return f"{name}@{host}", rest


def sort_key(line: Line) -> str:
    """By Docker's timestamp (same format, UTC: text order is time order); a line without
    one (an error message of `docker logs`) sorts first."""
    text = line[1]
    return text[: text.index(" ")] if _TIMESTAMP.match(text) else ""


def merge_by_time(streams: Iterable[list[Line]]) -> list[Line]:
    """Each container's lines are in order already: a merge, not a sort."""
    return list(heapq.merge(*streams, key=sort_key))


class LineFormat:
    """`LABEL | text`, labels padded to one width (as `docker compose logs` does)."""

    def __init__(self, labels: Iterable[str], timestamps: bool):
        self.width = max((len(label) for label in labels), default=0)
        self.timestamps = timestamps

    def widen(self, labels: Iterable[str]) -> None:
        """Room for the labels of containers found later (while following)."""
        self.width = max([self.width, *(len(label) for label in labels)])

    def __call__(self, line: Line) -> str:
        label, text = line
        if not self.timestamps and _TIMESTAMP.match(text):
            text = text[text.index(" ") + 1:]
        return f"{label:<{self.width}} | {text}"


def group_by_label(lines: Iterable[Line]) -> list[list[Line]]:
    """One list per container, each in the order read."""
    groups: dict[str, list[Line]] = {}
    for line in lines:
        groups.setdefault(line[0], []).append(line)
    return list(groups.values())


def merge_followed(sources: list[LogReader], discover: Callable[[], list[LogReader]] | None = None,
                   interval: float = 2.0) -> Iterator[Line]:
    """Lines of every source as they come (one thread per source). Without `discover`, ends
    when all sources have ended; with it, asks it every `interval` seconds for the sources of
    containers started since (a scale), and goes on until interrupted.

    A source that fails ends with one line saying why, so the others go on."""
    lines: queue.Queue = queue.Queue()
    done = object()

    def pump(source: LogReader) -> None:
        try:
            for line in source():
                lines.put(line)
        except Exception as exc:  # one host or container lost: say so, keep following the rest
            lines.put(("fcgikit", f"stopped following: {' '.join(str(exc).split())}"))
        finally:
            lines.put(done)

    def watch(discover: Callable[[], list[LogReader]]) -> None:
        said = ""
        while True:
            time.sleep(interval)
            try:
                fresh = discover()
            except Exception as exc:  # the next look may work: say so once, not every interval
                problem = f"cannot look for new containers: {' '.join(str(exc).split())}"
                if problem != said:
                    lines.put(("fcgikit", problem))
                said = problem
                continue
            said = ""
            for source in fresh:
                lines.put(source)  # started by the reading loop, which counts it

    for source in sources:
        threading.Thread(target=pump, args=(source,), daemon=True).start()
    if discover is not None:
        threading.Thread(target=watch, args=(discover,), daemon=True).start()
    running = len(sources)
    while running or discover is not None:
        item = lines.get()
        if item is done:
            running -= 1
        elif callable(item):
            running += 1
            threading.Thread(target=pump, args=(item,), daemon=True).start()
        else:
            yield item
