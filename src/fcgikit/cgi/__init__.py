"""The fork-CGI fallback: a FastCGI responder that runs CGI/1.1 programs (stdlib only).

    python3 -m fcgikit.cgi [pool flags] --root DIR --timeout S --max-procs N [--user USER]

Pure parts (no I/O, unit-tested): `resolve` (which program a request names,
confined to the root), `environ` (the RFC 3875 environment), `response` (the
program's output as nginx's response), `body` (CONTENT_LENGTH accounting).
Effects: `process` (fork/exec and the relay loop), `slots` (--max-procs),
`gateway` (the handler fcgikit.worker.serve() calls), `__main__` (the manager).
See docs/cgi.md.
"""

from .gateway import Gateway, GatewayConfig, make_config

__all__ = ["Gateway", "GatewayConfig", "make_config"]
