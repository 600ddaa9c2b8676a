"""The CGI/1.1 environment (RFC 3875 section 4.1) a program runs with.

Built from the request's params alone: nothing of the gateway's own environment
reaches the program, so no secret the gateway was started with can leak.
Values travel as bytes so non-ASCII bytes in a header or path survive intact.
"""

from __future__ import annotations

import os

from .resolve import Script

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

# Request headers that never become variables. Proxy: "httpoxy" (HTTP_PROXY is
# read as the outbound proxy by many HTTP libraries). Authorization: RFC 3875
# 4.1.18 says credentials SHOULD NOT reach the script; AUTH_TYPE and
# REMOTE_USER carry what a script needs once the web server authenticated.
DROPPED = frozenset({"HTTP_PROXY", "HTTP_AUTHORIZATION", "HTTP_PROXY_AUTHORIZATION"})


def build_environ(params: dict[str, str], script: Script, path: str = SAFE_PATH) -> dict[bytes, bytes]:
    """The environment for `script`: every param the web server sent, fixed up per RFC 3875."""
    env = {name: value for name, value in params.items() if name not in DROPPED}
    env.update(cgi_variables(params, script))
    env["PATH"] = path
    # As bytes (the wire's, latin-1). execve cannot carry a NUL, and a name holding
    # "=" would be read back as another variable: such a pair is left out.
    return {
        name.encode("latin-1"): value.encode("latin-1")
        for name, value in env.items()
        if name and "=" not in name and "\0" not in name and "\0" not in value
    }


def cgi_variables(params: dict[str, str], script: Script) -> dict[str, str]:
    """The meta-variables the gateway itself decides (or must default)."""
    remote_addr = params.get("REMOTE_ADDR", "")
    variables = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SCRIPT_FILENAME": fs_to_wire(script.filename),
        "SCRIPT_NAME": fs_to_wire(script.script_name),
        "PATH_INFO": fs_to_wire(script.path_info),
        "QUERY_STRING": params.get("QUERY_STRING", ""),
        "REQUEST_METHOD": params.get("REQUEST_METHOD", "GET"),
        "REMOTE_ADDR": remote_addr,
        "REMOTE_HOST": params.get("REMOTE_HOST") or remote_addr,
        "SERVER_NAME": params.get("SERVER_NAME", ""),
        "SERVER_PORT": params.get("SERVER_PORT", ""),
        "SERVER_PROTOCOL": params.get("SERVER_PROTOCOL", "HTTP/1.0"),
        "SERVER_SOFTWARE": params.get("SERVER_SOFTWARE", "fcgikit.cgi"),
    }
    translated = path_translated(params, script)
    if translated:
        variables["PATH_TRANSLATED"] = translated
    auth_type = params.get("AUTH_TYPE") or auth_scheme(params)
    if auth_type:
        variables["AUTH_TYPE"] = auth_type
    return variables


def path_translated(params: dict[str, str], script: Script) -> str:
    """PATH_INFO mapped onto the document tree (4.1.6); empty when there is no PATH_INFO."""
    if params.get("PATH_TRANSLATED"):
        return params["PATH_TRANSLATED"]
    docroot = params.get("DOCUMENT_ROOT", "")
    if not script.path_info or not docroot:
        return ""
    return docroot.rstrip("/") + fs_to_wire(script.path_info)


def auth_scheme(params: dict[str, str]) -> str:
    """AUTH_TYPE from the Authorization header's scheme, when the user was authenticated."""
    if not params.get("REMOTE_USER"):
        return ""
    return params.get("HTTP_AUTHORIZATION", "").partition(" ")[0]


def fs_to_wire(path: str) -> str:
    """A str path (filesystem encoding) as the latin-1 str of its bytes, like the params."""
    return os.fsencode(path).decode("latin-1")
