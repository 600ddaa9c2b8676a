"""The runtime imports only the standard library, so the worker image needs only python3.

Every module under the runtime packages is found by walking the package
directories, so modules added later are covered without editing this test.
"""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import fcgikit

PACKAGE_DIR = Path(fcgikit.__file__).parent
RUNTIME_PACKAGES = ("fastcgi", "worker", "spawn", "cgi", "runtime", "testing")
RUNTIME_MODULES = ("serve", "probe")


def runtime_modules() -> list[str]:
    names = ["fcgikit"]
    for package in RUNTIME_PACKAGES:
        if not (PACKAGE_DIR / package / "__init__.py").exists():
            continue
        names.append(f"fcgikit.{package}")
        for info in pkgutil.walk_packages([str(PACKAGE_DIR / package)], prefix=f"fcgikit.{package}."):
            if not info.name.endswith(".__main__"):  # importing it would run the command
                names.append(info.name)
    names += [f"fcgikit.{name}" for name in RUNTIME_MODULES if (PACKAGE_DIR / f"{name}.py").exists()]
    return names


PROBE = """
import importlib, json, sys
before = set(sys.modules)
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
loaded = sorted(set(sys.modules) - before)
outside = [n for n in loaded
           if n.split(".")[0] not in sys.stdlib_module_names and n.split(".")[0] != "fcgikit"]
print(json.dumps({"loaded": loaded, "outside": outside}))
"""


def test_discovery_finds_every_runtime_area():
    names = runtime_modules()
    for expected in ("fcgikit.fastcgi.protocol", "fcgikit.worker.loop", "fcgikit.worker.wsgi", "fcgikit.serve"):
        assert expected in names


def test_runtime_modules_load_nothing_outside_the_standard_library():
    names = runtime_modules()
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(names)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outside"] == [], f"non-stdlib modules loaded by the runtime: {report['outside']}"
    assert set(names) <= set(report["loaded"]) | {"fcgikit"}


def test_the_check_would_catch_a_third_party_import():
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(["fcgikit.worker", "yaml"])],
                            capture_output=True, text=True, timeout=60)
    assert "yaml" in json.loads(result.stdout)["outside"]
