"""claude-tray: use your Claude sign-in from any coding tool, via the Claude Code runtime."""

__version__ = "0.1.0"
