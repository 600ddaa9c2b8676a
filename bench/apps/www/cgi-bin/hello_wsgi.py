#!/usr/bin/python3
# The benchmark's WSGI app (bench/apps/hello_wsgi.py) run as a plain CGI program, one process
# per request: the fork-CGI path that the FastCGI worker is compared against.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from wsgiref.handlers import CGIHandler  # noqa: E402

from hello_wsgi import app  # noqa: E402

CGIHandler().run(app)
