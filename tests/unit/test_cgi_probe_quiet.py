"""Health probes (fcgikit.probe) are answered like any request but not logged as refusals."""

import io

from fcgikit.cgi.gateway import Gateway, GatewayConfig
from fcgikit.cgi.resolve import real_root
from fcgikit.fastcgi.client import PROBE_PARAM, get_params


class Body:
    def discard_rest(self):
        pass


class Request:
    def __init__(self, params):
        self.params = params
        self.stdin = Body()
        self.stdout = io.BytesIO()


def refusal_of_root(tmp_path, **extra) -> tuple[bytes, str]:
    log = io.StringIO()
    gateway = Gateway(GatewayConfig(root=real_root(str(tmp_path)), timeout=5, queue_timeout=1), log=log)
    request = Request(get_params("/", **extra))
    assert gateway(request) == 0
    return request.stdout.getvalue(), log.getvalue()


def test_a_probe_of_the_root_is_refused_as_always_but_not_logged(tmp_path):
    answer, logged = refusal_of_root(tmp_path, **{PROBE_PARAM: "1"})
    assert answer.startswith(b"Status: 403") and logged == ""


def test_anything_else_refused_is_still_logged(tmp_path):
    answer, logged = refusal_of_root(tmp_path)
    assert answer.startswith(b"Status: 403") and "403: not a regular file" in logged
