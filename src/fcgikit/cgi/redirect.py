"""Local redirects (RFC 3875 6.2.2): a program that prints only `Location: /path`
asks the server to serve that path instead, as a GET, without the client
seeing a redirect. Pure: which way to go, and the request the target gets.

`--local-redirect` chooses:
- `x-accel`: answer `X-Accel-Redirect: /path`; nginx serves the path itself
  (any location, its own rules applied). Only nginx follows that header.
- `follow`: when the path names a program this gateway would run for a direct
  request, the gateway runs it (GET, no body, the original request's headers);
  any other path is handed to the client as a 302 (303 after a POST) with the
  same absolute-path Location, which every front-end and client handles.
- `client`: always that client redirect.
- `auto` (default): `x-accel` when the front-end says it is nginx
  (SERVER_SOFTWARE starts with "nginx", as nginx's fastcgi_params and
  fcgikit's nginx.conf send), else `follow`.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

MODES = ("auto", "follow", "x-accel", "client")
# As nginx (10 internal redirects) and Apache (LimitInternalRecursion 10).
MAX_LOCAL_REDIRECTS = 10

# Params that describe the original request's program or body: not the target's.
DROPPED = (
    "SCRIPT_FILENAME",
    "PATH_INFO",
    "PATH_TRANSLATED",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "HTTP_CONTENT_LENGTH",
    "HTTP_CONTENT_TYPE",
    "HTTP_TRANSFER_ENCODING",
)


def mode_for(configured: str, params: dict[str, str]) -> str:
    if configured != "auto":
        return configured
    return "x-accel" if params.get("SERVER_SOFTWARE", "").lower().startswith("nginx") else "follow"


def request_path(params: dict[str, str]) -> str:
    """The path the client asked for (decoded, as the web server sends SCRIPT_NAME)."""
    path = params.get("SCRIPT_NAME", "") + params.get("PATH_INFO", "")
    return path or params.get("DOCUMENT_URI", "") or params.get("REQUEST_URI", "").partition("?")[0]


def redirected_params(params: dict[str, str], location: bytes) -> dict[str, str]:
    """The params of the GET the target of `Location: location` gets.

    The path is percent-decoded (a Location is a URI; SCRIPT_NAME is not) and
    mapped to a file the way the web server mapped the original request: when its
    SCRIPT_FILENAME was some prefix + SCRIPT_NAME, the same prefix + the new path;
    else DOCUMENT_ROOT + the new path (as for a request without SCRIPT_FILENAME).
    The original request's headers (HTTP_*) and server variables stay, as under
    Apache's mod_cgi; REDIRECT_URL and REDIRECT_STATUS say where it came from.
    """
    uri = location.split(b"#", 1)[0]
    raw_path, _, query = uri.partition(b"?")
    path = unquote_to_bytes(raw_path).decode("latin-1")
    target = {name: value for name, value in params.items() if name not in DROPPED}
    filename, script_name = params.get("SCRIPT_FILENAME", ""), params.get("SCRIPT_NAME", "")
    if filename and script_name and filename.endswith(script_name):
        target["SCRIPT_FILENAME"] = filename[: len(filename) - len(script_name)] + path
    target.update(
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": path,
            "QUERY_STRING": query.decode("latin-1"),
            "REQUEST_URI": uri.decode("latin-1"),
            "DOCUMENT_URI": path,
            "REDIRECT_URL": request_path(params),
            "REDIRECT_STATUS": "200",
        }
    )
    return target


def target_key(params: dict[str, str]) -> tuple[str, str]:
    """What makes two requests the same for loop detection: path and query."""
    return request_path(params), params.get("QUERY_STRING", "")
