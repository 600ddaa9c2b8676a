"""The status report: built from plain values, written atomically, printed."""

import json
import socket

from fcgikit.spawn.report import (
    PoolCounters,
    build_status,
    child_status,
    format_status,
    listen_queue,
    read_status,
    write_status,
)
from fcgikit.spawn.scoreboard import SLOT_BUSY, SLOT_IDLE, SlotSnapshot

DOCUMENTED_FIELDS = {
    "version", "pool", "process_manager", "manager_pid", "state", "listen", "start_time", "start_since", "generation",
    "children", "accepted_conn", "listen_queue", "max_listen_queue", "listen_queue_len",
    "max_active_processes", "max_children_reached", "restarts", "timeouts", "slow_requests", "processes",
}
CHILD_FIELDS = {"pid", "slot", "generation", "state", "start_time", "start_since", "requests",
                "request", "last_seen_ago"}


def snapshot(state, requests=0, started=0.0, uri=""):
    return SlotSnapshot(pid=1, state=state, requests=requests, request_started=started,
                        last_seen=started, heartbeats=0, method="GET" if uri else "", uri=uri)


def rows():
    return [
        child_status(101, 0, 1, 1000.0, 1010.0, False, snapshot(SLOT_BUSY, 7, 50.0, "/slow?x=1"), 52.5),
        child_status(102, 1, 1, 1000.0, 1010.0, False, snapshot(SLOT_IDLE, 3), 52.5),
        child_status(99, 2, 0, 900.0, 1010.0, True, snapshot(SLOT_IDLE, 40), 52.5),
    ]


def status(**overrides):
    arguments = dict(pool="app", manager_pid=42, state="running", listen="127.0.0.1:9000",
                     start_time=1000.0, now_wall=1010.0, generation=1, target=2, rows=rows(),
                     counters=PoolCounters(accepted_conn=100, max_listen_queue=5, restarts=1),
                     queue=(2, 128), scoreboard=True)
    arguments.update(overrides)
    return build_status(**arguments)


def test_a_busy_child_shows_its_request_and_how_long_it_has_run():
    busy = rows()[0]
    assert set(busy) == CHILD_FIELDS
    assert busy["state"] == "busy" and busy["requests"] == 7
    assert busy["request"] == {"method": "GET", "uri": "/slow?x=1", "duration": 2.5}
    assert busy["start_since"] == 10.0


def test_pool_figures_count_current_children_and_all_requests():
    report = status()
    assert set(report) == DOCUMENTED_FIELDS
    assert report["children"] == {"target": 2, "total": 2, "busy": 1, "idle": 1, "retiring": 1}
    assert report["accepted_conn"] == 100 + 7 + 3 + 40
    assert (report["listen_queue"], report["max_listen_queue"], report["listen_queue_len"]) == (2, 5, 128)
    assert report["start_since"] == 10.0 and report["restarts"] == 1
    assert report["max_active_processes"] == 1 and report["process_manager"] == "static"
    assert [p["state"] for p in report["processes"]] == ["busy", "idle", "retiring"]
    json.dumps(report)  # serialisable as is


def test_exec_programs_have_no_busy_idle_or_request_figures():
    plain = [child_status(5, 0, 1, 1000.0, 1001.0, False, None, 0.0)]
    report = status(rows=plain, scoreboard=False, queue=None)
    assert report["children"]["busy"] is None and report["children"]["idle"] is None
    assert report["accepted_conn"] is None and report["listen_queue"] is None
    assert report["max_active_processes"] is None
    assert report["processes"][0]["state"] == "running" and report["processes"][0]["requests"] is None


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "status.json"
    write_status(str(path), status())
    write_status(str(path), status(state="draining"))
    assert read_status(str(path))["state"] == "draining"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_the_printed_report_reads_like_php_fpms():
    text = format_status(status())
    for line in ("pool:                 app", "accepted conn:        150", "listen queue:         2",
                 "active processes:     1", "idle processes:       1"):
        assert line in text
    assert "GET /slow?x=1 (2.5s)" in text


def test_listen_queue_reads_the_accept_queue_of_a_real_socket():
    server = socket.create_server(("127.0.0.1", 0), backlog=8)
    clients = [socket.create_connection(server.getsockname()) for _ in range(3)]
    try:
        assert listen_queue(server) == (3, 8)
    finally:
        for sock in clients + [server]:
            sock.close()



def test_listen_queue_of_a_unix_socket_comes_from_sock_diag(tmp_path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "s"))
    server.listen(9)
    clients = []
    try:
        assert listen_queue(server) == (0, 9)
        for _ in range(2):
            client = socket.socket(socket.AF_UNIX)
            client.connect(str(tmp_path / "s"))
            clients.append(client)
        assert listen_queue(server) == (2, 9)
    finally:
        for sock in clients + [server]:
            sock.close()
    assert listen_queue(server) is None  # closed: unknown, never an exception
