"""Runs a WSGI app once, as a CGI/1.1 program (the fork-CGI fallback, see fallback.py).

    python3 -I wsgi_runner.py [--path DIR]... -- MODULE:APP

The request comes as CGI does: the environment (the gateway built it from the
request's params), the body on stdin; the response goes to stdout as a CGI
response (`Status:` and headers, then the body). The app is loaded as
fcgikit.serve loads it, and sees the environ a fcgikit.serve worker would give
it: SCRIPT_NAME "" and PATH_INFO the request's path, no empty CONTENT_LENGTH or
CONTENT_TYPE, no HTTP_CONTENT_LENGTH / HTTP_CONTENT_TYPE; wsgi.run_once true.
An app that raises gets wsgiref's 500, the traceback on stderr (the gateway's log).
"""

import os
import sys


def main(argv: list[str]) -> int:
    paths, spec = [], None
    args = iter(argv)
    for arg in args:
        if arg == "--path":
            paths.append(next(args))
        elif arg == "--":
            spec = next(args, None)
            break
    if not spec:
        print("usage: wsgi_runner.py [--path DIR]... -- MODULE:APP", file=sys.stderr)
        return 2
    sys.path[0:0] = paths
    from fcgikit.runtime.prctl import make_non_dumpable

    make_non_dumpable()  # other CGI programs (same uid) may not read the app's memory
    from wsgiref.handlers import BaseCGIHandler

    from fcgikit.worker.app import AppLoadError, load_app

    try:
        app = load_app(spec)
    except AppLoadError as exc:
        print(f"fcgikit.cgi fallback: {exc}", file=sys.stderr)
        return 1  # no response: the gateway answers 502
    environ = {name.decode("latin-1"): value.decode("latin-1") for name, value in os.environb.items()}
    for name in ("CONTENT_LENGTH", "CONTENT_TYPE"):
        if not environ.get(name):
            environ.pop(name, None)
    for name in ("HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE"):
        environ.pop(name, None)
    handler = BaseCGIHandler(
        sys.stdin.buffer, sys.stdout.buffer, sys.stderr, environ, multithread=False, multiprocess=True
    )
    handler.wsgi_run_once = True
    handler.os_environ = {}  # the environ above is the whole of it
    handler.run(app)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
