"""The Python FastCGI worker: WSGI apps and libfcgi-style accept loops (stdlib only).

serve(listen_sock, wsgi_handler(app))        # one child serving a WSGI app
for request in accept(): ...                 # the FCGI_Accept() loop, in Python
"""

from .app import AppLoadError, load_app
from .connection import ClientGone
from .loop import EXIT_APP_LOAD_ERROR, FCGI_LISTENSOCK_FILENO, RequestLoop, accept, serve
from .request import Request
from .wsgi import build_environ, render_headers, wsgi_handler

__all__ = [
    "AppLoadError",
    "ClientGone",
    "EXIT_APP_LOAD_ERROR",
    "FCGI_LISTENSOCK_FILENO",
    "Request",
    "RequestLoop",
    "accept",
    "build_environ",
    "load_app",
    "render_headers",
    "serve",
    "wsgi_handler",
]
