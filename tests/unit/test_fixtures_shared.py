"""Fixtures shared between test modules live in tests/conftest.py.

A fixture imported from another test module is a second fixture, set up again for the
importing module (a session-scoped image build or compile repeated per module), and the
import breaks when the fixture moves. Read from the source: no test module imports a
fixture from another.
"""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def is_fixture(node: ast.AST) -> bool:
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "fixture":
            return True
        if isinstance(target, ast.Name) and target.id == "fixture":
            return True
    return False


def fixtures_of(path: Path) -> set[str]:
    return {node.name for node in ast.parse(path.read_text()).body if is_fixture(node)}


def module_path(importer: Path, node: ast.ImportFrom) -> Path | None:
    if node.level:
        base = importer.parent
        for _ in range(node.level - 1):
            base = base.parent
        parts = (node.module or "").split(".") if node.module else []
    elif node.module and node.module.startswith("tests."):
        base, parts = TESTS.parent, node.module.split(".")
    else:
        return None
    path = base.joinpath(*parts).with_suffix(".py")
    return path if path.exists() else None


def test_no_test_module_imports_a_fixture_from_another():
    imported = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                source = module_path(path, node)
                if source is not None:
                    names = {alias.name for alias in node.names} & fixtures_of(source)
                    imported += [f"{path.relative_to(TESTS)} imports {name} from {source.relative_to(TESTS)}"
                                 for name in sorted(names)]
    assert imported == [], "move shared fixtures to tests/conftest.py:\n" + "\n".join(imported)


def test_the_check_sees_a_fixture_import(tmp_path):
    (tmp_path / "test_a.py").write_text("import pytest\n\n@pytest.fixture(scope='session')\ndef engine():\n    pass\n")
    source = ast.parse("from .test_a import engine\n").body[0]
    assert module_path(tmp_path / "test_b.py", source) == tmp_path / "test_a.py"
    assert fixtures_of(tmp_path / "test_a.py") == {"engine"}
