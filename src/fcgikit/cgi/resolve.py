"""Which program a request names, confined to the CGI root.

Only an executable regular file whose real path lies under the root ever runs.
The request's path is taken literally: nothing is percent-decoded (nginx has
already decoded $fastcgi_script_name; a raw FastCGI client gets no second
decoding), `.` and `..` segments are refused outright, and the real path
(symlinks resolved) must still be under the root.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

# Names a script may not carry, even though no shell ever sees them: control
# characters (a newline splits log lines and headers) and shell metacharacters,
# so that a later wrapper that does use a shell cannot be turned against us.
FORBIDDEN_CHARS = frozenset(chr(c) for c in range(0x20)) | frozenset("\x7f;$`|&<>(){}[]*?!'\"\\")


@dataclass(frozen=True)
class Script:
    """A program that may run: its real path, and the CGI names for it."""

    filename: str  # real path of the executable, under the root
    script_name: str  # SCRIPT_NAME: the URL path that names the program
    path_info: str  # PATH_INFO: what follows the program's name, "" if nothing
    directory: str  # the program's directory, its working directory
    tag: str = ""  # how the logs name it (default: SCRIPT_NAME)

    @property
    def label(self) -> str:
        return self.tag or self.script_name

    @property
    def name(self) -> str:
        return os.path.basename(self.filename)

    @property
    def is_nph(self) -> bool:
        return self.name.startswith("nph-")


class Refused(Exception):
    """The request names no program we may run; `status` is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def real_root(root: str) -> str:
    return os.path.realpath(root)


def resolve_script(params: dict[str, str], root: str | None) -> Script:
    """The program the request's params name, or Refused (403/404).

    `root` is the configured --root (already a real path); without one, the
    web server's DOCUMENT_ROOT is the root. SCRIPT_FILENAME, when sent, names
    the file; else DOCUMENT_ROOT + SCRIPT_NAME does. A name with more path
    after the program (`/cgi-bin/prog/extra`) is split as fcgiwrap does: the
    longest existing prefix is the program, the rest is PATH_INFO.
    """
    docroot = wire_to_fs(params.get("DOCUMENT_ROOT", ""))
    if root is None:
        if not docroot.startswith("/"):
            raise Refused(403, "no --root and no absolute DOCUMENT_ROOT")
        root = real_root(docroot)
    script_name = wire_to_fs(params.get("SCRIPT_NAME", ""))
    filename = wire_to_fs(params.get("SCRIPT_FILENAME", ""))
    if not filename:
        docroot = docroot or root
        filename = docroot.rstrip("/") + "/" + script_name.lstrip("/")
    check_name(filename)
    program, rest = split_existing(filename, root)
    real, info = real_path_and_stat(program)
    if not inside(real, root):
        raise Refused(403, f"script {program!r} leads out of the root {root} (to {real!r})")
    if rest and (stat.S_ISDIR(info.st_mode) if info else os.path.isdir(real)):
        raise Refused(404, f"no such script: {filename!r}")
    check_executable(real, info)
    path_info = wire_to_fs(params.get("PATH_INFO", "")) if not rest else rest
    if rest and script_name.endswith(rest):
        script_name = script_name[: -len(rest)]
    return Script(real, script_name, path_info, os.path.dirname(real))


def wire_to_fs(value: str) -> str:
    """A param (latin-1 decoded wire bytes) as a str path naming the same bytes on disk."""
    return os.fsdecode(value.encode("latin-1"))


def check_name(filename: str) -> None:
    if not filename.startswith("/"):
        raise Refused(403, f"script path is not absolute: {filename!r}")
    bad = FORBIDDEN_CHARS.intersection(filename)
    if bad:
        raise Refused(403, f"script path holds forbidden characters {sorted(bad)!r}: {filename!r}")
    if any(part in (".", "..") for part in filename.split("/")):
        raise Refused(403, f"script path has a . or .. segment: {filename!r}")


def split_existing(filename: str, root: str) -> tuple[str, str]:
    """(the longest prefix of filename that exists, the rest) — the rest is PATH_INFO."""
    path, rest = filename.rstrip("/") or "/", ""
    while True:
        if not inside(os.path.abspath(path), root):
            raise Refused(403, f"script path is outside the root {root}: {filename!r}")
        try:
            os.lstat(path)
            return path, rest
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as exc:  # EACCES: a directory on the way the gateway's user may not enter
            raise Refused(403, f"cannot look up {path!r}: {exc.strerror}") from None
        head, tail = path.rsplit("/", 1)
        if not head:
            raise Refused(404, f"no such script: {filename!r}")
        path, rest = head, "/" + tail + rest


def real_path_and_stat(path: str) -> tuple[str, os.stat_result | None]:
    """The real path of `path` (every symlink resolved) and, when known, its stat.

    One O_PATH open, then the kernel's own name for the open file and its fstat:
    three system calls where os.path.realpath takes one lstat per component (and
    far more Python). Where that cannot work (no /proc, a path we may not open),
    os.path.realpath, and the stat is left to check_executable (None).
    """
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (AttributeError, OSError):
        return os.path.realpath(path), None
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
        if not real.startswith("/") or real.endswith(" (deleted)"):
            return os.path.realpath(path), None
        return real, os.fstat(fd)
    except OSError:
        return os.path.realpath(path), None
    finally:
        os.close(fd)


def check_executable(real: str, info: os.stat_result | None = None) -> None:
    if info is None:
        try:
            info = os.stat(real)
        except OSError as exc:
            raise Refused(404, f"cannot stat script {real!r}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise Refused(403, f"not a regular file: {real!r}")
    if not info.st_mode & 0o111:
        raise Refused(403, f"not executable: {real!r}")


def inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
