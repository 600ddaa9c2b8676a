#!/usr/bin/env python3
"""A form and its echo: GET shows the form; POST (urlencoded) reads exactly
CONTENT_LENGTH bytes from stdin and shows the fields back."""
import html
import os
import sys
from urllib.parse import parse_qsl

FORM = """<!doctype html>
<title>echo.py</title>
<form method="post">
  <label>Name <input name="name"></label>
  <label>Message <textarea name="message"></textarea></label>
  <button>Send</button>
</form>
"""


def main() -> None:
    out = sys.stdout
    if os.environ.get("REQUEST_METHOD") != "POST":
        out.write("Content-Type: text/html; charset=utf-8\r\n\r\n" + FORM)
        return
    length = int(os.environ.get("CONTENT_LENGTH") or 0)
    if length > 1_000_000:
        out.write("Status: 413 Payload Too Large\r\nContent-Type: text/plain\r\n\r\ntoo large\n")
        return
    body = sys.stdin.buffer.read(length).decode("utf-8", "replace")
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>\n"
                   for k, v in parse_qsl(body, keep_blank_values=True))
    out.write("Content-Type: text/html; charset=utf-8\r\n\r\n")
    out.write(f"<!doctype html>\n<title>echo.py</title>\n<table>\n{rows}</table>\n")


main()
