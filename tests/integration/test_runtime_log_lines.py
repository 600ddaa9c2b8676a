"""--log-format json / FCGIKIT_LOG_FORMAT=json: every line the manager, its worker
children and the CGI gateway write is one JSON object a log collector can read."""

from __future__ import annotations

import json
import shutil
import socket
import time

import pytest

from fcgikit.fastcgi import encode_record
from fcgikit.fastcgi.client import fcgi_request, get_params

from .cgi_support import world_readable_tree
from .serve_support import pool

pytestmark = pytest.mark.integration


def json_lines(text: str) -> list[dict]:
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n--- the whole log:\n{text}") from None
    return records


def wait_for(served, text: str) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        records = json_lines(served.log())
        if any(text in record["message"] for record in records):
            return records
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{served.log()}"
        time.sleep(0.05)


def test_the_manager_and_its_workers_write_json_lines(tmp_path):
    with pool("serve", ["-F", "1", "--log-format", "json", "tests.apps.wsgi_app:app"], tmp_path) as served:
        with socket.create_connection(served.address, timeout=5) as sock:
            sock.sendall(encode_record(5, 1, b"x")[:4] + b"\x00" * 12)  # version 0: a protocol error
            sock.recv(100)
        records = wait_for(served, "protocol error")
    roles = {(record["role"], record["level"]) for record in records}
    assert ("fcgikit.spawn", "INFO") in roles and ("fcgikit.worker", "WARNING") in roles, records
    assert all(isinstance(record["pid"], int) and record["time"] for record in records)


def test_the_cgi_gateway_and_its_programs_stderr_write_json_lines(tmp_path, monkeypatch, request):
    docroot = world_readable_tree()  # programs run as an unprivileged user under root
    request.addfinalizer(lambda: shutil.rmtree(docroot, ignore_errors=True))
    root = docroot / "cgi-bin"
    root.mkdir(mode=0o755)
    script = root / "complain.sh"
    script.write_text("#!/bin/sh\necho 'something is off' >&2\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok'\n")
    script.chmod(0o755)
    monkeypatch.setenv("FCGIKIT_LOG_FORMAT", "json")  # as the image passes it through
    with pool("cgi", ["-F", "1", "--root", str(root)], tmp_path, name="cgi") as served:
        ok = fcgi_request(served.address, get_params("/cgi-bin/complain.sh", SCRIPT_NAME="/cgi-bin/complain.sh",
                                                     PATH_INFO="", DOCUMENT_ROOT=str(docroot)), timeout=10)
        assert ok.stdout.endswith(b"ok"), ok
        fcgi_request(served.address, get_params("/cgi-bin/missing.sh", SCRIPT_NAME="/cgi-bin/missing.sh",
                                                PATH_INFO="", DOCUMENT_ROOT=str(docroot)), timeout=10)
        records = wait_for(served, "missing.sh")
        records = wait_for(served, "something is off")
    cgi = [record for record in records if record["role"] == "fcgikit.cgi"]
    assert any(record["message"].endswith("complain.sh] something is off") for record in cgi), records
    assert any("404" in record["message"] for record in cgi), records
