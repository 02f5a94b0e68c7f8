"""Pure translation between the HTTP APIs, the internal turn model and CLI events (no I/O)."""
