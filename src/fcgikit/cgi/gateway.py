"""The FastCGI handler: one request -> resolve, check limits, run the program, relay.

Local redirects (a program printing only `Location: /path`, RFC 3875 6.2.2) are
handled per `--local-redirect` (see redirect.py): handed to nginx as
X-Accel-Redirect, followed here by running the program the path names, or
handed to the client as a 302. A request that carries the FCGIKIT_FALLBACK
param is, with `--wsgi-fallback`, served by the WSGI app run as a CGI program
(see fallback.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..fastcgi.client import PROBE_PARAM
from ..runtime.log import write as write_log
from .environ import build_environ
from .fallback import FALLBACK_HEADER, FALLBACK_PARAM, WsgiFallback
from .process import REASONS_FOR_CLIENT, ProgramRun, spawn, start_failure_status
from .redirect import MAX_LOCAL_REDIRECTS, mode_for, redirected_params, target_key
from .resolve import Refused, real_root, resolve_script
from .response import client_redirect, error_response
from .slots import Unlimited


@dataclass
class GatewayConfig:
    root: str | None  # real path of --root; None: each request's DOCUMENT_ROOT
    timeout: float  # seconds a program may run (0: no limit)
    queue_timeout: float  # seconds a request waits for a --max-procs slot before 503
    local_redirect: str = "auto"  # auto | follow | x-accel | client (see redirect.py)
    wsgi_fallback: WsgiFallback | None = None


class Gateway:
    """`handler(request) -> app status`, as fcgikit.worker.serve() calls it."""

    def __init__(self, config: GatewayConfig, slots=None, log=None) -> None:
        self.config = config
        self.slots = slots or Unlimited()
        self.log = log  # a stream for the log lines; None: stderr

    def __call__(self, request) -> int:
        if self.config.wsgi_fallback is not None and request.params.get(FALLBACK_PARAM):
            return self.fallback(request)
        try:
            script = resolve_script(request.params, self.config.root)
        except Refused as refused:
            return self.refuse(request, refused.status, refused.reason)
        with self.slots.slot(self.config.queue_timeout) as got_slot:
            if not got_slot:
                return self.refuse(request, 503, f"{script.script_name}: no free --max-procs slot")
            return self.run_following(request, script)

    def run_following(self, request, script) -> int:
        """Runs the program, then each program a local redirect names (at most
        MAX_LOCAL_REDIRECTS, never one twice), all within the one --timeout."""
        params = request.params
        mode = mode_for(self.config.local_redirect, params)
        deadline = time.monotonic() + self.config.timeout if self.config.timeout > 0 else None
        seen = {target_key(params)}
        no_body = False
        while True:
            outcome = self.run(
                request,
                script,
                build_environ(params, script),
                deadline=deadline,
                no_body=no_body,
                defer_local_redirect=mode != "x-accel",
            )
            if outcome is None or outcome.redirect is None:
                return 0
            location = outcome.redirect
            if mode == "client":
                return self.redirect_client(request, script, location)
            target = redirected_params(params, location)
            try:
                next_script = resolve_script(target, self.config.root)
            except Refused as refused:  # not a program of ours: the web server serves it
                self.say(
                    f"{script.script_name}: local redirect to {location.decode('latin-1')} "
                    f"is no program here ({refused.reason}): client redirect",
                    "INFO",
                )
                return self.redirect_client(request, script, location)
            key = target_key(target)
            if key in seen:
                return self.refuse(
                    request,
                    502,
                    f"{script.script_name}: local redirect loop: {location.decode('latin-1')} was run already",
                )
            if len(seen) > MAX_LOCAL_REDIRECTS:
                return self.refuse(
                    request, 502, f"{script.script_name}: more than {MAX_LOCAL_REDIRECTS} local redirects in a row"
                )
            self.say(f"{script.script_name}: local redirect to {location.decode('latin-1')}: followed", "INFO")
            seen.add(key)
            params, script, no_body = target, next_script, True

    def run(self, request, script, env, argv=None, **run_options):
        """The program's outcome, or None when it could not start (answered here)."""
        try:
            proc = spawn(script, env, argv)
        except OSError as exc:
            status = start_failure_status(exc)
            self.refuse(
                request,
                status,
                f"{script.filename}: cannot execute: {exc.strerror or exc}",
                run_options.get("extra_headers", ()),
            )
            return None
        outcome = ProgramRun(request, script, proc, self.config.timeout, self.log, **run_options).run()
        if outcome.exit_status and outcome.status:
            self.say(f"{script.script_name}: exited with status {outcome.exit_status}")
        return outcome

    def redirect_client(self, request, script, location: bytes) -> int:
        request.stdin.discard_rest()
        request.stdout.write(client_redirect(location, request.params.get("REQUEST_METHOD", "GET")))
        return 0

    def fallback(self, request) -> int:
        """The WSGI app, run once for this request as a CGI program; one log line."""
        app = self.config.wsgi_fallback
        script = app.script(request.params)
        started = time.monotonic()
        with self.slots.slot(self.config.queue_timeout) as got_slot:
            if not got_slot:
                return self.refuse(request, 503, f"fallback {app.spec}: no free --max-procs slot", (FALLBACK_HEADER,))
            outcome = self.run(
                request, script, app.environ(request.params, script), app.argv(), extra_headers=(FALLBACK_HEADER,)
            )
        status = outcome.status if outcome is not None else "refused"
        self.say(
            f"fallback: {request.params.get('REQUEST_METHOD', 'GET')} {script.path_info} -> {app.spec} "
            f"(one process): {status} in {(time.monotonic() - started) * 1000:.0f} ms",
            "INFO",
        )
        return 0

    def refuse(self, request, status: int, reason: str, extra_headers=()) -> int:
        """Answers with `status` and nothing run; the reason goes to the logs only (not for
        health probes: their `/` is refused every few seconds, which is no news)."""
        if not request.params.get(PROBE_PARAM):
            self.say(f"{status}: {reason}")
        try:
            # First the body: nginx stops sending it once it has our answer (see body.py).
            request.stdin.discard_rest()
        except OSError:
            return 0
        request.stdout.write(error_response(status, REASONS_FOR_CLIENT.get(status, "error"), extra_headers))
        return 0

    def say(self, text: str, level: str = "WARNING") -> None:
        write_log("fcgikit.cgi", text, level, self.log)


def make_config(
    root: str | None,
    timeout: float,
    queue_timeout: float,
    local_redirect: str = "auto",
    wsgi_fallback: WsgiFallback | None = None,
) -> GatewayConfig:
    return GatewayConfig(real_root(root) if root else None, timeout, queue_timeout, local_redirect, wsgi_fallback)
