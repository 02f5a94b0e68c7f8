"""Latency benchmarks for claude-tray; run them from the repo root with `python -m`."""
