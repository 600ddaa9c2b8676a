#!/usr/bin/env python3
"""POST form: reads exactly CONTENT_LENGTH bytes and echoes the decoded fields."""
import os
import sys
from urllib.parse import parse_qsl

length = int(os.environ.get("CONTENT_LENGTH") or 0)
body = sys.stdin.buffer.read(length)
fields = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
out = sys.stdout.buffer
out.write(b"Content-Type: text/plain; charset=utf-8\r\n\r\n")
out.write(f"content_type={os.environ.get('CONTENT_TYPE', '')}\n".encode())
out.write(f"length={length}\n".encode())
for name, value in fields:
    out.write(f"{name}={value}\n".encode())
