"""spawn-fcgi's flags plus the supervision ones, and their validation.

`add_pool_arguments` only declares flags; `validate_pool_options` turns the parsed
namespace into a `PoolConfig` or raises `OptionsError` with one line that names the
flag. Validation reads the user and group databases but touches nothing else, so
a bad command line binds nothing.
"""

import argparse
import grp
import ipaddress
import os
import pwd
import signal
from dataclasses import dataclass

from ..runtime.log import FORMAT_VARIABLE, FORMATS

DEFAULT_ADDRESS = "0.0.0.0"  # spawn-fcgi's default for -a
DEFAULT_BACKLOG = 1024  # spawn-fcgi's default for -b
DEFAULT_SOCKET_MODE = 0o660  # spawn-fcgi's default for -M
DEFAULT_GRACEFUL_TIMEOUT = 30.0
DEFAULT_SLOW_REQUEST_TIME = 5.0
MAX_CHILDREN = 256
# libfcgi programs (and php-cgi) finish the current request and leave on SIGUSR1;
# SIGTERM kills a libfcgi program at once, mid-request.
DEFAULT_EXEC_STOP_SIGNAL = "USR1"


class OptionsError(ValueError):
    """A flag is wrong; the message is one line naming it."""


@dataclass(frozen=True)
class Identity:
    """Whom the children run as: None fields mean 'unchanged'."""

    user: str | None = None
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True)
class PoolConfig:
    address: str | None  # TCP host, or None with socket_path
    port: int | None
    socket_path: str | None
    socket_mode: int
    socket_uid: int  # -1: leave as is
    socket_gid: int
    children: int
    backlog: int
    identity: Identity
    directory: str | None
    foreground: bool
    pidfile: str | None
    allowed_addrs: tuple[str, ...] | None
    max_requests: int
    timeout: float  # 0: off
    graceful_timeout: float
    slow_request_time: float
    status_file: str | None
    exec_stop_signal: int
    pool_name: str | None
    # Adopt (subreaper) and kill what a dead child leaves behind: the CGI gateway's
    # programs must not outlive the gateway process that runs them.
    kill_orphans: bool = False

    @property
    def listen_description(self) -> str:
        if self.socket_path:
            return f"unix:{self.socket_path}"
        host = f"[{self.address}]" if ":" in (self.address or "") else self.address
        return f"{host}:{self.port}"


def _octal_mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal mode: {text!r}") from None
    if not 0 <= mode <= 0o7777:
        raise argparse.ArgumentTypeError(f"mode out of range: {text!r}")
    return mode


def _address_list(text: str) -> list[str]:
    addrs = [part.strip() for part in text.split(",") if part.strip()]
    for addr in addrs:
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an IP address: {addr!r}") from None
    if not addrs:
        raise argparse.ArgumentTypeError("no address given")
    return addrs


def add_pool_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare spawn-fcgi's flags and the supervision flags on `parser`."""
    bind = parser.add_argument_group("socket (as spawn-fcgi)")
    bind.add_argument(
        "-a", dest="address", metavar="ADDR", help=f"IPv4/IPv6 address to bind with -p (default {DEFAULT_ADDRESS})"
    )
    bind.add_argument(
        "-p", dest="port", type=int, metavar="PORT", help="TCP port to bind (0: any free port, see the status file)"
    )
    bind.add_argument("-s", dest="socket_path", metavar="PATH", help="Unix socket to bind")
    bind.add_argument(
        "-M", dest="socket_mode", type=_octal_mode, metavar="MODE", help="mode of the Unix socket (octal, default 0660)"
    )
    bind.add_argument("-U", dest="socket_user", metavar="USER", help="owner of the Unix socket (default: -u)")
    bind.add_argument("-G", dest="socket_group", metavar="GROUP", help="group of the Unix socket (default: -g)")
    bind.add_argument(
        "-b",
        dest="backlog",
        type=int,
        default=DEFAULT_BACKLOG,
        metavar="BACKLOG",
        help=f"listen backlog (default {DEFAULT_BACKLOG})",
    )

    pool = parser.add_argument_group("processes (as spawn-fcgi)")
    pool.add_argument("-F", dest="children", type=int, default=1, metavar="N", help="number of children (default 1)")
    pool.add_argument("-u", dest="user", metavar="USER", help="run the children as USER (root only)")
    pool.add_argument(
        "-g", dest="group", metavar="GROUP", help="run the children with GROUP (root only; default: USER's group)"
    )
    pool.add_argument("-d", dest="directory", metavar="DIR", help="children's working directory")
    pool.add_argument(
        "-n", dest="foreground", action="store_true", help="stay in the foreground (without it the manager daemonizes)"
    )
    pool.add_argument("-P", dest="pidfile", metavar="PIDFILE", help="write the manager's pid here")

    supervise = parser.add_argument_group("supervision")
    supervise.add_argument(
        "--allow",
        type=_address_list,
        metavar="ADDR[,ADDR]",
        help="accept connections only from these addresses (FCGI_WEB_SERVER_ADDRS)",
    )
    supervise.add_argument(
        "--max-requests",
        type=int,
        default=0,
        metavar="N",
        help="recycle a child after N requests plus up to N/10 jitter (0: never)",
    )
    supervise.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        metavar="S",
        help="kill a Python worker hung (one request, or silence) longer than S (0: never)",
    )
    supervise.add_argument(
        "--graceful-timeout",
        type=float,
        default=DEFAULT_GRACEFUL_TIMEOUT,
        metavar="S",
        help="time a stopping child gets to finish its request (default 30)",
    )
    supervise.add_argument(
        "--slow-request-time",
        type=float,
        default=DEFAULT_SLOW_REQUEST_TIME,
        metavar="S",
        help="requests longer than S count as slow in the status (default 5)",
    )
    supervise.add_argument("--status-file", metavar="PATH", help="write the JSON status report here every second")
    supervise.add_argument(
        "--stop-signal",
        default=DEFAULT_EXEC_STOP_SIGNAL,
        metavar="SIG",
        help="graceful stop signal for exec'd programs (default USR1, as libfcgi)",
    )
    supervise.add_argument("--pool-name", metavar="NAME", help="pool name in the status report")
    supervise.add_argument(
        "--no-new-privileges",
        action="store_true",
        default=None,
        help="nothing the manager runs may gain privileges by execve: setuid bits and file "
        "capabilities are ignored (FCGIKIT_NO_NEW_PRIVILEGES=1 does the same; fcgikit's image sets it)",
    )
    supervise.add_argument(
        "--log-format",
        choices=FORMATS,
        default=None,
        help=f"log lines as text (default) or one JSON object each, for the manager and "
        f"its children ({FORMAT_VARIABLE} in the environment does the same)",
    )


def _opt(options, name, default=None):
    # Tolerates namespaces from parsers that declared only some of the flags.
    value = getattr(options, name, default)
    return default if value is None else value


def _lookup_user(name: str, flag: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError):
        raise OptionsError(f"{flag}: no such user: {name}") from None


def _lookup_group(name: str, flag: str) -> grp.struct_group:
    try:
        return grp.getgrgid(int(name)) if name.isdigit() else grp.getgrnam(name)
    except (KeyError, ValueError):
        raise OptionsError(f"{flag}: no such group: {name}") from None


def resolve_identity(user: str | None, group: str | None, am_root: bool) -> Identity:
    """Whom to run the children as. Like spawn-fcgi: never uid or gid 0 by -u/-g."""
    if user is None and group is None:
        return Identity()
    if not am_root:
        raise OptionsError("-u/-g: only root can change the children's user or group")
    account = _lookup_user(user, "-u") if user is not None else None
    if account is not None and account.pw_uid == 0:
        raise OptionsError("-u: will not set uid to 0 (as spawn-fcgi)")
    if group is not None:
        gid = _lookup_group(group, "-g").gr_gid
    else:
        gid = account.pw_gid
    if gid == 0:
        raise OptionsError("-g: will not set gid to 0 (as spawn-fcgi)")
    return Identity(user=account.pw_name if account else None, uid=account.pw_uid if account else None, gid=gid)


def _socket_owner(options, am_root: bool) -> tuple[int, int]:
    # As spawn-fcgi: -U defaults to -u, -G to -g (or to -U's group).
    user = _opt(options, "socket_user") or _opt(options, "user")
    group = _opt(options, "socket_group") or _opt(options, "group")
    if user is None and group is None:
        return -1, -1
    if not am_root:
        if _opt(options, "socket_user") or _opt(options, "socket_group"):
            raise OptionsError("-U/-G: only root can change the socket's owner")
        return -1, -1
    uid, gid = -1, -1
    if user is not None:
        account = _lookup_user(user, "-U")
        uid, gid = account.pw_uid, account.pw_gid
    if group is not None:
        gid = _lookup_group(group, "-G").gr_gid
    return uid, gid


def _stop_signal(name: str) -> int:
    name = name.upper()
    if name.isdigit():
        number = int(name)
    else:
        attr = name if name.startswith("SIG") else f"SIG{name}"
        number = getattr(signal, attr, None)
    valid = {int(s) for s in signal.valid_signals()}
    if not isinstance(number, int) or number not in valid or number in (0, signal.SIGKILL):
        raise OptionsError(f"--stop-signal: not a usable signal: {name}")
    return int(number)


def _check_bind(options) -> tuple[str | None, int | None, str | None]:
    address, port, path = _opt(options, "address"), _opt(options, "port"), _opt(options, "socket_path")
    if path is not None and port is not None:
        raise OptionsError("-s and -p exclude each other: give a Unix socket or a TCP port")
    if path is None and port is None:
        raise OptionsError("no socket given: use -p PORT (with -a ADDR) or -s PATH")
    if path is not None:
        if address is not None:
            raise OptionsError("-a goes with -p, not with -s")
        if not path or len(path.encode()) > 107:
            raise OptionsError(f"-s: Unix socket path too long or empty: {path!r}")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise OptionsError(f"-s: directory does not exist: {parent}")
        return None, None, os.path.abspath(path)
    if not 0 <= port <= 65535:
        raise OptionsError(f"-p: port out of range: {port}")
    address = address or DEFAULT_ADDRESS
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise OptionsError(f"-a: not an IP address: {address}") from None
    return address, port, None


def _check_numbers(options) -> None:
    children = _opt(options, "children", 1)
    if not 1 <= children <= MAX_CHILDREN:
        raise OptionsError(f"-F: children must be 1..{MAX_CHILDREN}, not {children}")
    if _opt(options, "backlog", DEFAULT_BACKLOG) < 1:
        raise OptionsError("-b: backlog must be at least 1")
    if _opt(options, "max_requests", 0) < 0:
        raise OptionsError("--max-requests: must be 0 (never) or more")
    for flag in ("timeout", "graceful_timeout", "slow_request_time"):
        if _opt(options, flag, 0.0) < 0:
            raise OptionsError(f"--{flag.replace('_', '-')}: must not be negative")


def validate_pool_options(options, am_root: bool | None = None) -> PoolConfig:
    """The parsed flags as a PoolConfig; OptionsError names the first bad flag."""
    if am_root is None:
        am_root = os.geteuid() == 0
    address, port, path = _check_bind(options)
    _check_numbers(options)
    if _opt(options, "socket_mode") is not None and path is None:
        raise OptionsError("-M goes with -s")
    directory = _opt(options, "directory")
    if directory is not None and not os.path.isdir(directory):
        raise OptionsError(f"-d: not a directory: {directory}")
    identity = resolve_identity(_opt(options, "user"), _opt(options, "group"), am_root)
    socket_uid, socket_gid = _socket_owner(options, am_root) if path else (-1, -1)
    allowed = _opt(options, "allow")
    return PoolConfig(
        address=address,
        port=port,
        socket_path=path,
        socket_mode=_opt(options, "socket_mode", DEFAULT_SOCKET_MODE),
        socket_uid=socket_uid,
        socket_gid=socket_gid,
        children=_opt(options, "children", 1),
        backlog=_opt(options, "backlog", DEFAULT_BACKLOG),
        identity=identity,
        directory=directory,
        foreground=bool(_opt(options, "foreground", False)),
        pidfile=_opt(options, "pidfile"),
        allowed_addrs=tuple(allowed) if allowed else None,
        max_requests=_opt(options, "max_requests", 0),
        timeout=float(_opt(options, "timeout", 0.0)),
        graceful_timeout=float(_opt(options, "graceful_timeout", DEFAULT_GRACEFUL_TIMEOUT)),
        slow_request_time=float(_opt(options, "slow_request_time", DEFAULT_SLOW_REQUEST_TIME)),
        status_file=_opt(options, "status_file"),
        exec_stop_signal=_stop_signal(_opt(options, "stop_signal", DEFAULT_EXEC_STOP_SIGNAL)),
        pool_name=_opt(options, "pool_name"),
        kill_orphans=bool(_opt(options, "kill_orphans", False)),
    )


def resolve_program(argv: list[str], directory: str | None = None) -> str:
    """The executable exec will run for argv[0] (after chdir to -d); OptionsError if none."""
    import shutil

    if not argv:
        raise OptionsError("no program given: put it after --")
    name = argv[0]
    if "/" in name:
        found = os.path.join(directory or "", name)
        if os.path.isfile(found) and os.access(found, os.X_OK):
            return os.path.abspath(found)
        raise OptionsError(f"program not found or not executable: {name}")
    found = shutil.which(name)
    if found is None:
        raise OptionsError(f"program not found on PATH: {name}")
    return found
