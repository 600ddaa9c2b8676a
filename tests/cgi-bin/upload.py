#!/usr/bin/env python3
"""multipart/form-data upload: names each part with its size and sha256."""
import email.parser
import email.policy
import hashlib
import os
import sys

length = int(os.environ.get("CONTENT_LENGTH") or 0)
body = sys.stdin.buffer.read(length)
head = f"Content-Type: {os.environ.get('CONTENT_TYPE', '')}\r\n\r\n".encode()
message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
out = sys.stdout.buffer
out.write(b"Content-Type: text/plain\r\n\r\n")
out.write(f"received={len(body)}\n".encode())
for part in message.iter_parts():
    data = part.get_payload(decode=True) or b""
    name = part.get_param("name", header="content-disposition")
    filename = part.get_filename() or ""
    out.write(f"{name} {filename} {len(data)} {hashlib.sha256(data).hexdigest()}\n".encode())
