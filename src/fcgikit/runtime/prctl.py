"""Linux process attributes fcgikit sets on itself through prctl(2) (stdlib only: ctypes).

`make_non_dumpable()`: PR_SET_DUMPABLE 0. The kernel then makes this process's
/proc/PID entries (environ, mem, fd, maps, ...) belong to root and refuses
ptrace to anyone without CAP_SYS_PTRACE, so a program running under the same
uid (a CGI script, say) can no longer read the gateway's environment, memory
or descriptors. The process itself still reads its own /proc/self.

The flag is inherited by fork() and reset by execve(): each manager sets it at
start, its forked children inherit it (and set it again after they change
user, since a uid change also resets it to /proc/sys/fs/suid_dumpable), and an
exec'd program (a CGI script, php-cgi) starts dumpable, as it would anyway.
No core dumps are written for a non-dumpable process.

`forbid_new_privileges()`: PR_SET_NO_NEW_PRIVS 1, what Docker's `--security-opt
no-new-privileges` sets on a container's first process: an execve() can no longer
raise privileges (setuid and setgid bits, file capabilities are ignored). It is
inherited by fork() and kept across execve(), and cannot be unset. A manager sets it on
itself at start when asked (`--no-new-privileges`, or FCGIKIT_NO_NEW_PRIVILEGES=1 in its
environment, which fcgikit's worker image sets), so everything it runs has it, on every
engine, including Docker Swarm services, which cannot ask Docker for it (20.10 ignores
`security_opt` there). It is not the default outside the image: a program that needs a
setuid helper (PHP's mail() through sendmail, which Debian's exim and postfix make
setuid or setgid) would fail in ways spawn-fcgi's users do not expect.
A change of uid by setuid() (the managers' -u) is not an execve: it still works.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_GET_DUMPABLE = 3  # <linux/prctl.h>
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39

_libc = None


def _libc_prctl():
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.prctl  # noqa: B018  (AttributeError where there is no prctl)
        except (OSError, AttributeError):
            _libc = False
    return _libc.prctl if _libc else None


def prctl(option: int, value: int = 0) -> int | None:
    """prctl(2) with one argument; its result, or None where there is no prctl (not
    Linux). The one place the runtime calls prctl from."""
    call = _libc_prctl()
    if call is None:
        return None
    return call(option, ctypes.c_ulong(value), 0, 0, 0)


def make_non_dumpable() -> bool:
    """PR_SET_DUMPABLE 0 for this process; False where that is not possible (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    return prctl(PR_SET_DUMPABLE, 0) == 0


def is_dumpable() -> bool | None:
    """This process's dumpable flag; None where it cannot be read."""
    if not sys.platform.startswith("linux"):
        return None
    value = prctl(PR_GET_DUMPABLE)
    return None if value is None or value < 0 else bool(value)


NO_NEW_PRIVILEGES_VARIABLE = "FCGIKIT_NO_NEW_PRIVILEGES"


def no_new_privileges_wanted(flag: bool | None, environ=None) -> bool:
    """The managers' `--no-new-privileges`, or FCGIKIT_NO_NEW_PRIVILEGES=1 in the environment."""
    environ = os.environ if environ is None else environ
    return bool(flag) or environ.get(NO_NEW_PRIVILEGES_VARIABLE, "") == "1"


def forbid_new_privileges() -> bool:
    """PR_SET_NO_NEW_PRIVS 1 for this process and all it forks and executes (irreversible);
    False where that is not possible (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    return prctl(PR_SET_NO_NEW_PRIVS, 1) == 0


def has_no_new_privileges() -> bool | None:
    """Whether this process may not gain privileges by execve(); None where it cannot be read."""
    if not sys.platform.startswith("linux"):
        return None
    value = prctl(PR_GET_NO_NEW_PRIVS)
    return None if value is None or value < 0 else bool(value)
