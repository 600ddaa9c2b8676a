"""The pool's status report, modelled on php-fpm's status page, as JSON.

`build_status` and `child_status` are pure; `write_status` replaces the file
atomically (a reader never sees half a report); `listen_queue` asks Linux for
the listening socket's accept queue as php-fpm does.
`python3 -m fcgikit.spawn.status FILE` prints a report (see status.py).
"""

import json
import os
import socket
import struct
from dataclasses import dataclass, field

STATUS_VERSION = 1

# struct tcp_info starts with 8 one-byte fields, then u32s: rto, ato, snd_mss,
# rcv_mss, unacked, sacked. On a listening socket Linux puts the accept queue's
# length in tcpi_unacked and its maximum (the backlog) in tcpi_sacked.
_TCP_INFO_QUEUE = struct.Struct("=8x16xII")

# Unix sockets have no TCP_INFO; the kernel's sock_diag netlink interface (what
# `ss -xl` uses) reports the same two figures: struct unix_diag_req asks for one
# socket by inode with UDIAG_SHOW_RQLEN, and the UNIX_DIAG_RQLEN attribute of the
# answer holds (accept queue length, backlog) for a listening socket.
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_HEADER = struct.Struct("=IHHII")
_UNIX_DIAG_REQ = struct.Struct("=BBHIIIII")
_UNIX_DIAG_MSG_SIZE = 16
_UDIAG_SHOW_RQLEN = 0x10
_UNIX_DIAG_RQLEN = 4
_ANY = 0xFFFFFFFF


def listen_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(connections waiting to be accepted, queue limit), or None where unknown."""
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            return _tcp_listen_queue(sock)
        if sock.family == socket.AF_UNIX:
            return _unix_listen_queue(sock)
    except (OSError, struct.error):
        pass
    return None


def _tcp_listen_queue(sock: socket.socket) -> tuple[int, int] | None:
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return _TCP_INFO_QUEUE.unpack_from(raw) if len(raw) >= _TCP_INFO_QUEUE.size else None


def _unix_listen_queue(sock: socket.socket) -> tuple[int, int] | None:
    inode = os.fstat(sock.fileno()).st_ino
    request = _UNIX_DIAG_REQ.pack(socket.AF_UNIX, 0, 0, _ANY, inode, _UDIAG_SHOW_RQLEN, _ANY, _ANY)
    header = _NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as netlink:
        netlink.settimeout(1.0)
        netlink.send(header + request)
        answer = netlink.recv(8192)
    length, kind = struct.unpack_from("=IH", answer)
    if kind != _SOCK_DIAG_BY_FAMILY:
        return None  # NLMSG_ERROR: no such socket, or no sock_diag in this kernel
    position = _NLMSG_HEADER.size + _UNIX_DIAG_MSG_SIZE
    while position + 4 <= min(length, len(answer)):
        attribute_length, attribute = struct.unpack_from("=HH", answer, position)
        if attribute == _UNIX_DIAG_RQLEN:
            return struct.unpack_from("=II", answer, position + 4)
        if attribute_length < 4:
            return None
        position += (attribute_length + 3) & ~3
    return None


@dataclass
class PoolCounters:
    """Figures the manager accumulates over its life."""

    accepted_conn: int = 0  # requests begun by children that have exited
    max_listen_queue: int = 0
    max_active: int = 0  # most children busy at once
    max_children_reached: int = 0
    restarts: int = 0
    timeouts: int = 0
    slow_requests: int = 0
    slow_seen: set = field(default_factory=set)  # (pid, request number) already counted


def child_status(
    pid: int,
    slot: int,
    generation: int,
    started_wall: float,
    now_wall: float,
    retiring: bool,
    snapshot,
    now_mono: float,
) -> dict:
    """One child's row. `snapshot` is its scoreboard record, None for exec'd programs."""
    row = {
        "pid": pid,
        "slot": slot,
        "generation": generation,
        "state": "running",
        "start_time": round(started_wall, 3),
        "start_since": round(now_wall - started_wall, 3),
        "requests": None,
        "request": None,
        "last_seen_ago": None,
    }
    if snapshot is not None:
        row["state"] = snapshot.state_name
        row["requests"] = snapshot.requests
        row["last_seen_ago"] = round(max(0.0, now_mono - snapshot.last_seen), 3)
        if snapshot.state_name == "busy":
            row["request"] = {
                "method": snapshot.method,
                "uri": snapshot.uri,
                "duration": round(max(0.0, now_mono - snapshot.request_started), 3),
            }
    if retiring:
        row["state"] = "retiring"
    return row


def build_status(
    *,
    pool: str,
    manager_pid: int,
    state: str,
    listen: str,
    start_time: float,
    now_wall: float,
    generation: int,
    target: int,
    rows: list[dict],
    counters: PoolCounters,
    queue: tuple[int, int] | None,
    scoreboard: bool,
) -> dict:
    """The whole report. Busy/idle and requests are null where children keep no scoreboard."""
    current = [r for r in rows if r["state"] != "retiring"]
    busy = sum(1 for r in current if r["state"] == "busy")
    live_requests = sum(r["requests"] or 0 for r in rows)
    return {
        "version": STATUS_VERSION,
        "pool": pool,
        "process_manager": "static",  # php-fpm's term: a fixed size, changed only by signals
        "manager_pid": manager_pid,
        "state": state,
        "listen": listen,
        "start_time": round(start_time, 3),
        "start_since": round(now_wall - start_time, 3),
        "generation": generation,
        "children": {
            "target": target,
            "total": len(current),
            "busy": busy if scoreboard else None,
            "idle": len(current) - busy if scoreboard else None,
            "retiring": len(rows) - len(current),
        },
        "max_active_processes": max(counters.max_active, busy) if scoreboard else None,
        "accepted_conn": counters.accepted_conn + live_requests if scoreboard else None,
        "listen_queue": queue[0] if queue else None,
        "max_listen_queue": counters.max_listen_queue if queue else None,
        "listen_queue_len": queue[1] if queue else None,
        "max_children_reached": counters.max_children_reached,
        "restarts": counters.restarts,
        "timeouts": counters.timeouts,
        "slow_requests": counters.slow_requests,
        "processes": rows,
    }


def write_status(path: str, status: dict) -> None:
    """Replace `path` with the report in one rename, so readers see old or new, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump(status, out, indent=1)
        out.write("\n")
    os.replace(temporary, path)


def read_status(path: str) -> dict:
    with open(path, encoding="utf-8") as source:
        return json.load(source)


def _dash(value) -> str:
    return "-" if value is None else str(value)


def format_status(status: dict) -> str:
    """The report as php-fpm prints its status page: 'name: value' lines, then processes."""
    kids = status["children"]
    lines = [
        f"pool:                 {status['pool']}",
        f"process manager:      {status['process_manager']}",
        f"state:                {status['state']}",
        f"manager pid:          {status['manager_pid']}",
        f"listen:               {status['listen']}",
        f"start since:          {status['start_since']:.0f}s",
        f"accepted conn:        {_dash(status['accepted_conn'])}",
        f"listen queue:         {_dash(status['listen_queue'])}",
        f"max listen queue:     {_dash(status['max_listen_queue'])}",
        f"listen queue len:     {_dash(status['listen_queue_len'])}",
        f"idle processes:       {_dash(kids['idle'])}",
        f"active processes:     {_dash(kids['busy'])}",
        f"total processes:      {kids['total']} (target {kids['target']}, retiring {kids['retiring']})",
        f"max active processes: {_dash(status['max_active_processes'])}",
        f"max children reached: {status['max_children_reached']}",
        f"restarts:             {status['restarts']}",
        f"timeouts:             {status['timeouts']}",
        f"slow requests:        {status['slow_requests']}",
        "",
        f"{'pid':>8} {'state':<9} {'requests':>8} {'since':>8}  request",
    ]
    for row in status["processes"]:
        request = row.get("request")
        what = f"{request['method']} {request['uri']} ({request['duration']:.1f}s)" if request else ""
        lines.append(
            f"{row['pid']:>8} {row['state']:<9} {_dash(row['requests']):>8} {row['start_since']:>7.0f}s  {what}"
        )
    return "\n".join(lines)
