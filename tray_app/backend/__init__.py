"""Owns every `claude` process: spawning, stream-json I/O, limits, deadlines, cancellation."""
