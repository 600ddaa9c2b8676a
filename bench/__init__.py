"""fcgikit's benchmark harness: `python3 -m bench` from the repository root (see docs/bench.md)."""
