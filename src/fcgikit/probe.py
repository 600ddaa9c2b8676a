"""`python3 -m fcgikit.probe ADDRESS [--uri /]`: is a real FastCGI application answering?

Sends one GET over the FastCGI protocol and exits 0 when a complete response came
back (whatever its HTTP status: a 404 still proves the application answers), 1
otherwise, with the reason on stderr. The request carries the FCGIKIT_PROBE param, so
the CGI gateway does not log its refusal of `/` as if someone probed for files. Used by the images' HEALTHCHECK and by
`fcgikit up` while it waits for containers.
"""

from __future__ import annotations

import argparse
import sys

from .fastcgi import ProtocolError
from .fastcgi.client import PROBE_PARAM, fcgi_request, get_params
from .runtime.prctl import forbid_new_privileges


def probe(address: str, uri: str = "/", timeout: float = 5.0) -> tuple[bool, str]:
    try:
        response = fcgi_request(address, get_params(uri, **{PROBE_PARAM: "1"}), timeout=timeout)
    except (OSError, ProtocolError, ValueError) as exc:
        return False, f"{address}: {exc.__class__.__name__}: {exc}"
    if not response.complete:
        return False, f"{address}: request refused (protocol status {response.protocol_status})"
    try:
        status, _, _ = response.http()
    except (ProtocolError, ValueError) as exc:
        return False, f"{address}: answered, but not with a CGI response: {exc}"
    return True, f"{address}: HTTP status {status}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m fcgikit.probe", description=__doc__.splitlines()[0])
    parser.add_argument("address", help="HOST:PORT or a Unix socket path")
    parser.add_argument("--uri", default="/", help="path and query to request (default /)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args(argv)
    # A HEALTHCHECK runs this with `docker exec`, outside the task's process tree: on Swarm,
    # where Docker 20.10 cannot give a service no-new-privileges, it sets the flag on itself.
    forbid_new_privileges()
    ok, message = probe(args.address, args.uri, args.timeout)
    if not ok:
        print(f"probe: {message}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"probe: {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
