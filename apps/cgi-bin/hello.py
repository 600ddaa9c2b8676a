#!/usr/bin/env python3
"""A legacy Python CGI script (standard library only; no `cgi` module, removed in 3.13)."""
import html
import os
import sys
from urllib.parse import parse_qs

query = parse_qs(os.environ.get("QUERY_STRING", ""))
name = html.escape(query.get("name", ["world"])[0])
body = (
    "<!doctype html>\n<title>hello.py</title>\n"
    f"<h1>Hello, {name}, from Python {sys.version.split()[0]}</h1>\n"
    f"<p>Served by {html.escape(os.environ.get('SERVER_SOFTWARE', '?'))} "
    f"via {html.escape(os.environ.get('GATEWAY_INTERFACE', '?'))}.</p>\n"
)
sys.stdout.write("Content-Type: text/html; charset=utf-8\r\n\r\n" + body)
