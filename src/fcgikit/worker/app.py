"""Finding the WSGI app named on the command line: `MODULE:APP` or `MODULE`."""

from __future__ import annotations

import importlib
import os
import sys

DEFAULT_NAMES = ("application", "app")


class AppLoadError(Exception):
    """The app cannot be loaded; the message is the one line the operator needs."""


def load_app(spec: str):
    """`pkg.module:name` (dotted attributes allowed), or `pkg.module` for its
    `application` or `app`. The current directory is importable, as with
    `python3 -m`, so `apps.hello:app` loads from where the worker was started."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise AppLoadError(f"app {spec!r}: expected MODULE:APP, e.g. myproject.wsgi:application")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"app {spec!r}: cannot import {module_name!r}: {exc}") from exc
    except Exception as exc:
        raise AppLoadError(f"app {spec!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from exc
    app = _find_app(module, module_name, attr)
    if not callable(app):
        raise AppLoadError(f"app {spec!r}: {type(app).__name__} object is not callable")
    return app


def _find_app(module, module_name: str, attr: str):
    if not attr:
        for name in DEFAULT_NAMES:
            if hasattr(module, name):
                return getattr(module, name)
        raise AppLoadError(f"module {module_name!r} has no 'application' or 'app'; name it as {module_name}:NAME")
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj
