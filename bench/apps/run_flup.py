"""flup's prefork FastCGI server running the benchmark's WSGI app.

Usage: python3 run_flup.py HOST PORT PROCESSES
minSpare = maxSpare = maxChildren = PROCESSES pins the pool at exactly that many children.
"""
import sys

from flup.server.fcgi_fork import WSGIServer
from hello_wsgi import app


def main(host, port, processes):
    n = int(processes)
    WSGIServer(app, bindAddress=(host, int(port)), minSpare=n, maxSpare=n, maxChildren=n).run()


if __name__ == "__main__":
    main(*sys.argv[1:4])
