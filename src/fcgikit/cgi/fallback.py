"""The WSGI app as a CGI program: the last fallback when no FastCGI worker answers.

With `--wsgi-fallback MODULE:APP`, a request that carries the FastCGI param
FCGIKIT_FALLBACK (non-empty; set by the edge's nginx, which an HTTP client
cannot do: clients set headers, which arrive as HTTP_*) is not resolved to a
script under --root: the gateway runs `python3 -I wsgi_runner.py ... MODULE:APP`
once for it (fork-CGI: one fresh process per request), with the request's CGI
environment, the body on stdin, under the same --timeout and --max-procs as any
program. The app sees SCRIPT_NAME "" and PATH_INFO the request's path, as under
`fcgikit.serve` behind the same nginx; the response carries
`X-Fcgikit-Fallback: cgi`, and the gateway logs one line per such request.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from .environ import build_environ
from .redirect import request_path
from .resolve import Script

FALLBACK_PARAM = "FCGIKIT_FALLBACK"
FALLBACK_HEADER = (b"X-Fcgikit-Fallback", b"cgi")
RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wsgi_runner.py")
# The directory that holds the fcgikit package: the runner imports this very copy.
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class WsgiFallback:
    spec: str  # MODULE:APP, as fcgikit.serve takes it
    app_dir: str  # the app's directory: its working directory, first on sys.path
    python: str  # the interpreter (the gateway's own)
    paths: tuple[str, ...]  # then these on sys.path (the gateway's PYTHONPATH, fcgikit)

    def argv(self) -> list[bytes]:
        # -I: nothing in the environment (the request's params) steers the interpreter.
        argv = [self.python, "-I", RUNNER]
        for path in (self.app_dir, *self.paths):
            argv += ["--path", path]
        return [os.fsencode(arg) for arg in argv + ["--", self.spec]]

    def script(self, params: dict[str, str]) -> Script:
        """The "program": the interpreter, run in the app's directory, for the whole path."""
        path = os.fsdecode(request_path(params).encode("latin-1"))
        return Script(self.python, "", path, self.app_dir, tag=f"fallback {self.spec}")

    def environ(self, params: dict[str, str], script: Script) -> dict[bytes, bytes]:
        env = build_environ(params, script)
        for name in ("SCRIPT_FILENAME", "PATH_TRANSLATED"):  # the interpreter's: not the app's business
            if name not in params:
                env.pop(name.encode(), None)
        return env


def make_fallback(spec: str, app_dir: str | None, python: str | None = None) -> WsgiFallback:
    """`spec` run from `app_dir` (default: the current directory, as fcgikit.serve
    imports from where it was started), with the gateway's PYTHONPATH."""
    directory = os.path.realpath(app_dir or os.getcwd())
    paths = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths.append(SOURCE_ROOT)
    python = os.path.realpath(python or sys.executable)
    return WsgiFallback(spec, directory, python, tuple(dict.fromkeys(paths)))
