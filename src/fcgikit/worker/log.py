"""The worker's log: one line per event on stderr, which the manager or container collects.

Same shape as the manager's lines (`time fcgikit.spawn[pid] LEVEL message`), so
one pool's log reads as one stream. DEBUG lines are written only with
FCGIKIT_LOG_LEVEL=DEBUG in the environment.
"""

from __future__ import annotations

import os
import sys
import time

_DEBUG = os.environ.get("FCGIKIT_LOG_LEVEL", "").upper() == "DEBUG"


def log(message: str, level: str = "WARNING") -> None:
    if level == "DEBUG" and not _DEBUG:
        return
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    try:
        sys.stderr.write(f"{stamp},{int(now % 1 * 1000):03d} fcgikit.worker[{os.getpid()}] {level} {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # a closed or broken stderr must not take the worker down
