"""runtime/prctl.py: no-new-privileges set by a process on itself (in a child process: the
flag cannot be unset)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(2) is Linux's")

CHILD = """
from fcgikit.runtime.prctl import forbid_new_privileges, has_no_new_privileges
before = has_no_new_privileges()
done = forbid_new_privileges()
status = [line.split()[1] for line in open("/proc/self/status") if line.startswith("NoNewPrivs:")]
print(before, done, has_no_new_privileges(), status[0] if status else "?")
"""


def test_forbid_new_privileges_sets_the_flag_the_kernel_reports():
    # setpriv-less: the test runner itself may already run with the flag (a container).
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=30, check=True)
    before, set_, after, status = done.stdout.split()
    assert (set_, after, status) == ("True", "True", "1"), done.stdout
    assert before in ("True", "False")
