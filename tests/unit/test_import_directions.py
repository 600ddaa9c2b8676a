"""Import directions between fcgikit's rooms, read from the source (no import runs).

The wire protocol (`fastcgi`) stands alone; the runtime (`fastcgi`, `worker`,
`spawn`, `cgi`, `runtime`, `serve`, `probe`) never reaches into the deployment
side (`deploy`, `cli`); `worker` runs in every child and knows nothing of the
manager (`spawn`) or the CGI gateway (`cgi`); the process helpers both sides use
(`runtime`: handoff, orphans, prctl) import no room, and the manager borrows
nothing from the worker. A new module is covered as soon as
it exists: the files are found by walking the package.
"""

import ast
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
