"""The FastCGI handler: one request -> resolve, check limits, run the program, relay."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from .environ import build_environ
from .process import REASONS_FOR_CLIENT, ProgramRun, spawn, start_failure_status
from .resolve import Refused, real_root, resolve_script
from .response import error_response
from .slots import Unlimited


@dataclass
class GatewayConfig:
    root: str | None          # real path of --root; None: each request's DOCUMENT_ROOT
    timeout: float            # seconds a program may run (0: no limit)
    queue_timeout: float      # seconds a request waits for a --max-procs slot before 503


class Gateway:
    """`handler(request) -> app status`, as fcgikit.worker.serve() calls it."""

    def __init__(self, config: GatewayConfig, slots=None, log=None) -> None:
        self.config = config
        self.slots = slots or Unlimited()
        self.log = log or sys.stderr

    def __call__(self, request) -> int:
        try:
            script = resolve_script(request.params, self.config.root)
        except Refused as refused:
            return self.refuse(request, refused.status, refused.reason)
        env = build_environ(request.params, script)
        with self.slots.slot(self.config.queue_timeout) as got_slot:
            if not got_slot:
                return self.refuse(request, 503, f"{script.script_name}: no free --max-procs slot")
            return self.run(request, script, env)

    def run(self, request, script, env) -> int:
        try:
            proc = spawn(script, env)
        except OSError as exc:
            status = start_failure_status(exc)
            return self.refuse(request, status, f"{script.filename}: cannot execute: {exc.strerror or exc}")
        outcome = ProgramRun(request, script, proc, self.config.timeout, self.log).run()
        if outcome.exit_status and outcome.status:
            self.say(f"{script.script_name}: exited with status {outcome.exit_status}")
        return 0

    def refuse(self, request, status: int, reason: str) -> int:
        """Answers with `status` and nothing run; the reason goes to the logs only."""
        self.say(f"{status}: {reason}")
        try:
            # First the body: nginx stops sending it once it has our answer (see body.py).
            request.stdin.discard_rest()
        except OSError:
            return 0
        request.stdout.write(error_response(status, REASONS_FOR_CLIENT.get(status, "error")))
        return 0

    def say(self, text: str) -> None:
        self.log.write(f"fcgikit.cgi[{os.getpid()}]: {text}\n")
        self.log.flush()


def make_config(root: str | None, timeout: float, queue_timeout: float) -> GatewayConfig:
    return GatewayConfig(real_root(root) if root else None, timeout, queue_timeout)
