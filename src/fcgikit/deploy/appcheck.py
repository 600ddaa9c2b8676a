"""The WSGI app checked before anything is built or started: read, never imported here.

`up`, `scale`, `build` and their `--dry-run` refuse, naming the key or the `--app` given:
- an app or CGI scripts directory that does not exist;
- a module that is not in the app directory (MODULE.py, or MODULE/__init__.py);
- a module named like one of Python's standard library (or fcgikit): the worker would
  import that one (`site` is even frozen into the interpreter), or the app's file would
  replace it for every import in the worker;
- a module that does not define the callable at top level (def, class, assignment or
  import), unless it makes names in ways a reader cannot follow (`from x import *`, a
  module `__getattr__`), or that Python cannot parse.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .images import source_root
from .spec import StackSpec

RESERVED = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names) | {"fcgikit"}


@dataclass(frozen=True)
class AppSource:
    """Where the app was named, for the messages: the stack file, or `--app` on top of it."""

    spec_file: str
    app_option: str | None = None  # the --app value as given

    def where(self) -> str:
        return f"--app {self.app_option}" if self.app_option else self.spec_file

    def key(self, key: str) -> str:
        """The key's path in the stack file; nothing when --app chose it."""
        return "" if self.app_option else f"services/{key}: "


# Statements that bind names at a module's top level (besides def, class and import).
_BINDING_STATEMENTS = (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor, ast.With, ast.AsyncWith)


def check_stack_app(spec: StackSpec, source: AppSource, example_apps: Path | None = None) -> None:
    """Raise ConfigError with every problem found in the app and CGI directories."""
    example_apps = example_apps or source_root() / "apps"
    problems = _check_workers(spec, source, example_apps)
    cgi = spec.services.cgi
    if cgi is not None and cgi.scripts is not None and not cgi.scripts.is_dir():
        # --app never names the scripts: the stack file's key, beside what --app got wrong
        app_problems = [f"{source.where()}: {problem}" if source.app_option else problem for problem in problems]
        missing = f"services/cgi/scripts: directory {cgi.scripts} does not exist"
        raise ConfigError(source.spec_file, [*app_problems, missing])
    if problems:
        raise ConfigError(source.where(), problems)


def _check_workers(spec: StackSpec, source: AppSource, example_apps: Path) -> list[str]:
    workers = spec.services.workers
    directory = workers.path or example_apps
    if not directory.is_dir():
        return [f"{source.key('workers/path')}directory {directory} does not exist"]
    if workers.app is None:  # a FastCGI program: its argv is the user's business
        return []
    module, _, callable_name = workers.app.partition(":")
    top = module.split(".")[0]
    key = source.key("workers/app")
    if top in RESERVED:
        return [_shadowed(directory, module, top, key)]
    found = module_file(directory, module)
    if found is None:
        return [_module_missing(directory, module, source)]
    return _check_callable(found, callable_name.split(".")[0], source, key)


def module_file(directory: Path, module: str) -> Path | None:
    """Where Python would find MODULE under DIRECTORY (a dotted one as packages), or None."""
    base = directory.joinpath(*module.split("."))
    for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _shadowed(directory: Path, module: str, top: str, key: str) -> str:
    whose = "fcgikit's own package" if top == "fcgikit" else "a module of Python's standard library"
    found = module_file(directory, top)
    yours = found.relative_to(directory) if found is not None else f"module {top}"
    rename = f"rename {yours} (e.g. to my{top}{'.py' if found is not None and found.suffix == '.py' else ''})"
    return f'{key}"{top}" is the name of {whose}: the worker would import that one, not your {yours}; {rename}'


def _module_missing(directory: Path, module: str, source: AppSource) -> str:
    candidates = sorted(p.stem for p in directory.glob("*.py") if p.stem not in RESERVED and p.stem != "__init__")
    seen = f" (found: {', '.join(c + '.py' for c in candidates[:5])})" if candidates else ""
    if source.app_option and ":" not in source.app_option:  # --app DIR took the stack file's MODULE:APP
        example = f"{source.app_option}:{candidates[0] if candidates else 'myapp'}:application"
        return (f"no module {module} in {directory}{seen}: the stack file names {module}; "
                f"say which module and callable serve your app: --app DIR:MODULE:APP, e.g. --app {example}")
    expected = f"{module.replace('.', '/')}.py or {module.replace('.', '/')}/__init__.py"
    return f"{source.key('workers/app')}module {module} not found in {directory} (expected {expected}){seen}"


def _check_callable(path: Path, name: str, source: AppSource, key: str) -> list[str]:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        return [f"{key}{path}: line {exc.lineno}: {exc.msg}"]
    names, unknowable = top_level_names(tree)
    if name in names or unknowable:
        return []
    hint = ("say which callable serves your app: --app FILE.py:CALLABLE or --app DIR:MODULE:CALLABLE"
            if source.app_option else "the part after the colon of MODULE:APP is the WSGI callable")
    return [f'{key}{path} has no top-level "{name}" (a def, class, assignment or import); {hint}']


def top_level_names(tree: ast.Module) -> tuple[set[str], bool]:
    """Names a module binds at import time (inside if/try/with/for blocks too, not inside
    functions or classes); and whether it may bind others a reader cannot see."""
    names: set[str] = set()
    unknowable = False
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            unknowable = unknowable or node.name == "__getattr__"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                unknowable = unknowable or alias.name == "*"
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, _BINDING_STATEMENTS):
            targets = node.targets if isinstance(node, ast.Assign) else [
                getattr(node, "target", None)] + [item.optional_vars for item in getattr(node, "items", [])]
            names |= {n.id for target in targets if target is not None
                      for n in ast.walk(target) if isinstance(n, ast.Name)}
        if isinstance(node, (ast.If, ast.Try, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith)) or (
            sys.version_info >= (3, 11) and isinstance(node, getattr(ast, "TryStar", ()))
        ):
            for field in ("body", "orelse", "finalbody"):
                pending += getattr(node, field, [])
            pending += [statement for handler in getattr(node, "handlers", []) for statement in handler.body]
        unknowable = unknowable or _writes_globals(node)
    return names, unknowable


def _writes_globals(node: ast.AST) -> bool:
    """`globals()[...] = ...` or `globals().update(...)` at top level."""
    if not isinstance(node, ast.stmt) or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return False
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("globals", "setattr", "exec")
        for n in ast.walk(node)
    )
