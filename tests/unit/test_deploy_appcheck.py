"""The app checked before anything is built: directory, module, stdlib shadowing, callable."""

import ast
from pathlib import Path

import pytest

from fcgikit.deploy.appcheck import AppSource, check_stack_app, top_level_names
from fcgikit.deploy.errors import ConfigError
from fcgikit.deploy.spec import load_stack_spec, with_app

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "fcgikit.yaml"
WSGI = 'def application(environ, start_response):\n    start_response("200 OK", [])\n    return [b"x"]\n'


def spec_file(tmp_path, workers: str, cgi: str = "") -> Path:
    path = tmp_path / "fcgikit.yaml"
    path.write_text(f"services:\n  workers: {{{workers}}}\n" + (f"  cgi: {{{cgi}}}\n" if cgi else ""))
    return path


def problems_of(path: Path, app: str | None = None) -> tuple[str, list[str]]:
    spec = load_stack_spec(path)
    if app:
        spec = with_app(spec, app)
    with pytest.raises(ConfigError) as caught:
        check_stack_app(spec, AppSource(str(path), app))
    return caught.value.source, caught.value.problems


def test_the_example_stack_and_a_correct_app_pass(tmp_path):
    check_stack_app(load_stack_spec(EXAMPLE), AppSource(str(EXAMPLE)))
    (tmp_path / "mysite.py").write_text(WSGI)
    spec = with_app(load_stack_spec(EXAMPLE), f"{tmp_path / 'mysite.py'}:application")
    check_stack_app(spec, AppSource(str(EXAMPLE), f"{tmp_path / 'mysite.py'}:application"))


def test_missing_directories_name_their_key(tmp_path):
    path = spec_file(tmp_path, "app: 'm:app', path: nothere", "scripts: noscripts")
    source, problems = problems_of(path)
    assert source == str(path)
    assert problems == [f"services/workers/path: directory {tmp_path / 'nothere'} does not exist",
                        f"services/cgi/scripts: directory {tmp_path / 'noscripts'} does not exist"]


def test_a_module_of_the_standard_library_is_refused_up_front(tmp_path):
    (tmp_path / "site.py").write_text(WSGI.replace("application", "app"))
    source, problems = problems_of(EXAMPLE, str(tmp_path / "site.py"))
    assert source == f"--app {tmp_path / 'site.py'}"
    assert problems == ['"site" is the name of a module of Python\'s standard library: the worker would import '
                        "that one, not your site.py; rename site.py (e.g. to mysite.py)"]
    path = spec_file(tmp_path, f"app: 'email.wsgi:app', path: {tmp_path}")
    assert problems_of(path)[1][0].startswith('services/workers/app: "email" is the name of a module of Python')
    path = spec_file(tmp_path, f"app: 'fcgikit:app', path: {tmp_path}")
    assert "fcgikit's own package" in problems_of(path)[1][0]


def test_app_dir_without_the_stack_files_module_says_to_name_module_and_app(tmp_path):
    (tmp_path / "wsgi.py").write_text(WSGI)
    source, problems = problems_of(EXAMPLE, str(tmp_path))
    assert problems == [f"no module hello_wsgi in {tmp_path} (found: wsgi.py): the stack file names hello_wsgi; "
                        "say which module and callable serve your app: --app DIR:MODULE:APP, "
                        f"e.g. --app {tmp_path}:wsgi:application"]


def test_a_module_missing_from_the_stack_files_directory(tmp_path):
    path = spec_file(tmp_path, f"app: 'pkg.web:app', path: {tmp_path}")
    assert problems_of(path)[1] == [
        f"services/workers/app: module pkg.web not found in {tmp_path} (expected pkg/web.py or pkg/web/__init__.py)"]
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "web.py").write_text("app = object()\n")
    check_stack_app(load_stack_spec(path), AppSource(str(path)))


def test_a_callable_the_module_does_not_define(tmp_path):
    (tmp_path / "mysite.py").write_text(WSGI)
    source, problems = problems_of(EXAMPLE, str(tmp_path / "mysite.py"))  # callable `app` by default
    assert problems == [f'{tmp_path / "mysite.py"} has no top-level "app" (a def, class, assignment or import); '
                        "say which callable serves your app: --app FILE.py:CALLABLE or --app DIR:MODULE:CALLABLE"]
    (tmp_path / "broken.py").write_text("def app(:\n")
    assert "broken.py: line 1:" in problems_of(EXAMPLE, str(tmp_path / "broken.py"))[1][0]


@pytest.mark.parametrize("source", [
    "app = make()", "app: object = make()", "def app(e, s): pass", "class app: pass", "from x import y as app",
    "import app", "try:\n    from fast import app\nexcept ImportError:\n    app = None",
    "if True:\n    app, other = 1, 2", "with open(f) as app: pass", "for app in []: pass",
])
def test_names_bound_at_import_time(source):
    names, unknowable = top_level_names(ast.parse(source))
    assert "app" in names and not unknowable


@pytest.mark.parametrize("source", ["from x import *", "def __getattr__(name): pass", "globals()['app'] = 1"])
def test_modules_that_bind_names_a_reader_cannot_see_are_not_judged(source):
    assert top_level_names(ast.parse(source))[1]


def test_names_inside_functions_do_not_count():
    names, _ = top_level_names(ast.parse("def make():\n    app = 1\n    return app\n"))
    assert names == {"make"}
