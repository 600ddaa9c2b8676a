"""fcgikit: FastCGI and CGI behind nginx, in containers, on one host or many.

The runtime subpackages (fastcgi, worker, spawn, cgi) import only the standard
library; the orchestration side (deploy, cli) may use third-party libraries and
is never imported from here.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `fcgikit.accept` without importing the worker for every `import fcgikit`.
    if name == "accept":
        from .worker import accept

        return accept
    raise AttributeError(f"module 'fcgikit' has no attribute {name!r}")
