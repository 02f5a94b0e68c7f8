"""The environment every `claude` child gets: our choices over the user's, nothing leaking in."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from tray_app.settings import Settings

# Inherited from the user's shell these would point the CLI back at this proxy (a loop)
# or at a key the user never gave claude-tray. The SDK always merges os.environ under
# the env we pass, so "remove" means "set to empty": the CLI treats empty as unset.
_STRIPPED = ("ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY")


def child_env(
    settings: Settings, parent: Mapping[str, str], *, max_tokens: int | None = None
) -> dict[str, str]:
    """Variables to set for one CLI child, over the inherited environment."""
    env = {name: "" for name in _STRIPPED}
    if settings.upstream_url:
        env["ANTHROPIC_BASE_URL"] = settings.upstream_url
    if settings.upstream_api_key:
        env["ANTHROPIC_API_KEY"] = settings.upstream_api_key
    env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    # The CLI retries upstream errors 10 times by default (minutes for a 401); a user's
    # own CLAUDE_CODE_MAX_RETRIES wins, as every other CLAUDE_CODE_* variable does.
    if "CLAUDE_CODE_MAX_RETRIES" not in parent:
        env["CLAUDE_CODE_MAX_RETRIES"] = str(settings.cli_max_retries)
    if max_tokens is not None:
        env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(max_tokens)
    if getattr(sys, "frozen", False):
        # PyInstaller points GTK's variables (GTK_PATH, GI_TYPELIB_PATH, ...) into the
        # bundle for this process only, and the SDK starts the CLI with os.environ under
        # ours: each one the launch environment lacks or sets otherwise is put back, so
        # the CLI and the commands an agent runs see the user's own environment.
        for name, value in os.environ.items():
            if name not in env and parent.get(name) != value:
                env[name] = parent.get(name, "")
    return env
