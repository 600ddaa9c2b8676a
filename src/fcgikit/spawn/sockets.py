"""Binding the one listening socket every child shares, as spawn-fcgi does."""

import errno
import os
import socket
import stat

from .options import PoolConfig

# The kernel holds a new connection until its first bytes arrive (the web server
# always speaks first in FastCGI), so a woken child never finds an empty one.
# uWSGI does the same by default. Seconds before a silent connection is handed over anyway.
DEFER_ACCEPT_SECONDS = 5


class BindError(OSError):
    """The socket could not be bound; the message says where and why."""


def bind_listener(config: PoolConfig) -> socket.socket:
    if config.socket_path:
        return _bind_unix(config)
    return _bind_tcp(config)


def _bind_tcp(config: PoolConfig) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.address, config.port))
        sock.listen(config.backlog)
        defer_accept(sock)
    except OSError as error:
        sock.close()
        raise BindError(f"cannot bind {config.listen_description}: {error.strerror}") from None
    return sock


def defer_accept(sock: socket.socket) -> None:
    """TCP_DEFER_ACCEPT where the platform has it (Linux); elsewhere nothing."""
    option = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if option is not None and sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, option, DEFER_ACCEPT_SECONDS)


def _unix_socket_in_use(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _bind_unix(config: PoolConfig) -> socket.socket:
    path = config.socket_path
    # As spawn-fcgi: a socket someone still answers on is not ours to take; a
    # stale one left by a dead process is removed.
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise BindError(f"cannot bind unix:{path}: exists and is not a socket")
        if _unix_socket_in_use(path):
            raise BindError(f"cannot bind unix:{path}: socket is already in use")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, config.socket_mode)
        if config.socket_uid != -1 or config.socket_gid != -1:
            os.chown(path, config.socket_uid, config.socket_gid)
        sock.listen(config.backlog)
    except OSError as error:
        sock.close()
        raise BindError(f"cannot bind unix:{path}: {error.strerror}") from None
    return sock


def bound_description(sock: socket.socket) -> str:
    """Where the socket really listens (the actual port when -p 0 was given)."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"


def remove_unix_socket(sock: socket.socket, path: str | None, inode: int | None) -> None:
    """Unlink our socket file on exit, unless someone has since replaced it."""
    if not path or inode is None:
        return
    try:
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
    except OSError as error:
        if error.errno != errno.ENOENT:
            raise
