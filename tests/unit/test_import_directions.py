"""Import directions between fcgikit's rooms, read from the source (no import runs),
and what each room keeps to itself (record framing, log lines, nginx's params).

The wire protocol (`fastcgi`) stands alone; the runtime (`fastcgi`, `worker`,
`spawn`, `cgi`, `runtime`, `serve`, `probe`) never reaches into the deployment
side (`deploy`, `cli`); `worker` runs in every child and knows nothing of the
manager (`spawn`) or the CGI gateway (`cgi`); the process helpers both sides use
(`runtime`: handoff, orphans, prctl) import no room, and the manager borrows
nothing from the worker. On the deployment side, only the command modules
(`cli`, `cli_hosts`) speak click, and the pure planner loads no Docker SDK.
A new module is covered as soon as
it exists: the files are found by walking the package.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import fcgikit

PACKAGE_DIR = Path(fcgikit.__file__).parent
RUNTIME = ("fastcgi", "worker", "spawn", "cgi", "runtime", "serve", "probe")


def room_of(module: str) -> str:
    """`fcgikit.worker.loop` -> `worker`; `fcgikit` -> `fcgikit`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def fcgikit_imports(path: Path) -> set[str]:
    """The fcgikit modules `path` imports, relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "fcgikit"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "fcgikit":
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(path): fcgikit_imports(path) for path in PACKAGE_DIR.rglob("*.py")}


def violations(rule) -> list[str]:
    return sorted(f"{source} imports {target}" for source, targets in import_graph().items()
                  for target in targets if rule(room_of(source), room_of(target)))


def test_the_graph_is_read():
    graph = import_graph()
    assert "fcgikit.worker.connection" in graph["fcgikit.worker.loop"]
    assert "fcgikit.fastcgi" in graph["fcgikit.worker.connection"]


def test_the_protocol_imports_nothing_else_of_fcgikit():
    assert violations(lambda source, target: source == "fastcgi" and target != "fastcgi") == []


def test_the_runtime_never_imports_the_deployment_side():
    assert violations(lambda source, target: source in RUNTIME and target in ("deploy", "cli")) == []


def test_the_worker_knows_nothing_of_the_manager_or_the_cgi_gateway():
    assert violations(lambda source, target: source == "worker" and target in ("spawn", "cgi", "serve")) == []


def test_the_shared_process_helpers_borrow_from_no_room():
    assert violations(lambda source, target: source == "runtime" and target not in ("runtime", "fcgikit")) == []


def test_the_manager_borrows_nothing_from_the_worker():
    assert violations(lambda source, target: source == "spawn" and target in ("worker", "cgi", "serve")) == []


# -- what each room keeps to itself (issue 15) ----------------------------------

FRAMING = {"HEADER", "HEADER_LEN", "encode_record", "encode_stream", "RecordReader", "stream_buffers"}
REPO = PACKAGE_DIR.parents[1]


def imported_names(path: Path) -> set[str]:
    return {alias.name for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.ImportFrom) for alias in node.names}


def test_the_worker_frames_no_records_the_protocol_does():
    """The protocol owns the record layout; the worker hands it chunks and gets buffers back."""
    found = {f"{module_name(path)}: {name}" for path in (PACKAGE_DIR / "worker").rglob("*.py")
             for name in imported_names(path) & FRAMING}
    assert found == set()


def test_the_runtime_writes_log_lines_only_through_runtime_log():
    """One line format: no runtime module spells a `fcgikit.ROLE[pid]` prefix of its own."""
    spelled = []
    for room in RUNTIME:
        paths = [PACKAGE_DIR / f"{room}.py"] if (PACKAGE_DIR / f"{room}.py").exists() \
            else (PACKAGE_DIR / room).rglob("*.py")
        for path in paths:
            if path.name == "log.py" and path.parent.name == "runtime":
                continue
            text = path.read_text()
            # (a program's stderr relayed to the web server, and usage errors, are not log lines)
            spelled += [f"{module_name(path)}: {role}" for role in ("fcgikit.worker[", "fcgikit.spawn[", "fcgikit.cgi[")
                        if role in text]
    assert spelled == []


def test_the_fastcgi_params_nginx_sends_are_written_in_one_place():
    """fastcgi/nginx_params.py; the stack, the tests' nginx and the benchmark import it."""
    writers = [path for path in [*PACKAGE_DIR.rglob("*.py"), *(REPO / "bench").glob("*.py")]
               if '"$query_string"' in path.read_text() or "QUERY_STRING       $query_string" in path.read_text()]
    assert [path.relative_to(REPO).as_posix() for path in writers] == ["src/fcgikit/fastcgi/nginx_params.py"]


# -- the deployment side ---------------------------------------------------------


def third_party_imports(path: Path) -> set[str]:
    """The top-level names of the modules `path` imports, anywhere in it (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_command_modules_speak_click():
    """deploy/ is a library (tests and bench call it); the command line lives in cli.py and cli_hosts.py."""
    speakers = sorted(module_name(path) for path in PACKAGE_DIR.rglob("*.py") if "click" in third_party_imports(path))
    assert speakers == ["fcgikit.cli", "fcgikit.cli_hosts"]
    assert [module_name(path) for path in (PACKAGE_DIR / "deploy").rglob("*.py")
            if "click" in third_party_imports(path)] == []


MODULES_LOADED = """
import json, sys
__import__(sys.argv[1])
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def top_level_modules_loaded_by(module: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", MODULES_LOADED, module], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def test_the_planner_loads_no_docker_sdk():
    """Planning is pure: importing deploy/plan.py (and what it imports: hosts, placement,
    nginxconf, spec) must not load the Docker SDK; hosts.py imports it only to make a client."""
    loaded = top_level_modules_loaded_by("fcgikit.deploy.plan")
    assert "fcgikit" in loaded
    assert {"docker", "click", "fabric", "paramiko"} & loaded == set()

