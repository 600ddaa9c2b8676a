#!/usr/bin/env python3
"""A large body: 2 MiB of a repeating pattern, written in 64 KiB pieces."""
import sys

out = sys.stdout.buffer
out.write(b"Content-Type: application/octet-stream\r\n\r\n")
line = b"0123456789abcdef" * 4 + b"\n"
chunk = line * 1000
for _ in range(32):
    out.write(chunk)
out.write(b"end\n")
