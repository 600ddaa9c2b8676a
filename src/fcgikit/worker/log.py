"""The worker's log: one line per event on stderr, which the manager or container collects."""

from __future__ import annotations

import os
import sys
import time


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        sys.stderr.write(f"{stamp} fcgikit.worker[{os.getpid()}]: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # a closed or broken stderr must not take the worker down
