"""Reads from the Claude Code CLI's sign-in store and writers of editor tools' config files."""
