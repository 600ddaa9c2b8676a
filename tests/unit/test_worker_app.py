"""Loading MODULE:APP, and the one-line reasons when it cannot be loaded."""

import sys

import pytest

from fcgikit.worker.app import AppLoadError, load_app


@pytest.fixture
def app_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("wapp")]:
        del sys.modules[name]


def write(app_dir, name, text):
    (app_dir / f"{name}.py").write_text(text)


def test_module_colon_name_loads_from_the_current_directory(app_dir):
    write(app_dir, "wapp_a", "def app(e, s): return []\nclass Obj:\n    handler = app\n")
    assert load_app("wapp_a:app").__name__ == "app"
    assert load_app("wapp_a:Obj.handler").__name__ == "app"


@pytest.mark.parametrize("names, found", [("application = 1\napp = 2\n", "application"), ("app = 2\n", "app")])
def test_module_alone_means_application_then_app(app_dir, names, found):
    module = f"wapp_{found}"
    write(app_dir, module, "def application(e, s): return []\ndef app(e, s): return []\n"
          if found == "application" else "def app(e, s): return []\n")
    assert load_app(module).__name__ == found


@pytest.mark.parametrize(
    "source, spec, reason",
    [
        (None, "wapp_missing:app", "cannot import 'wapp_missing'"),
        ("import not_a_real_module_xyz\n", "wapp_b:app", "No module named 'not_a_real_module_xyz'"),
        ("raise RuntimeError('broken at import')\n", "wapp_c:app", "RuntimeError: broken at import"),
        ("x = 1\n", "wapp_d:app", "has no attribute 'app'"),
        ("x = 1\n", "wapp_e", "has no 'application' or 'app'"),
        ("app = 42\n", "wapp_f:app", "not callable"),
        (None, ":app", "expected MODULE:APP"),
    ],
)
def test_load_errors_are_one_line(app_dir, source, spec, reason):
    if source is not None:
        write(app_dir, spec.split(":")[0], source)
    with pytest.raises(AppLoadError) as err:
        load_app(spec)
    assert reason in str(err.value) and "\n" not in str(err.value)
