"""The third-party client CLIs the end-to-end tests drive: where they are installed, how
to install them, and how to run them hermetically against a local claude-tray.

Each tool is pinned to one version and installed with npm into its own directory under
`${XDG_CACHE_HOME:-~/.cache}/claude-tray-ci`, named after the version, so a machine
downloads it once and every later run reuses it. `.ci/check` installs them:

    python tests/tools.py install
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

OPENCODE_PACKAGE = "opencode-ai"
OPENCODE_VERSION = "1.18.33"
# The ten tools OpenCode's default `build` agent offers (1.18.33, no MCP servers).
OPENCODE_TOOLS = (
    "bash",
    "edit",
    "glob",
    "grep",
    "read",
    "skill",
    "task",
    "todowrite",
    "webfetch",
    "write",
)
# npm fetches two ~60 MB platform packages; bound it so a stuck registry cannot eat CI.
INSTALL_TIMEOUT = 600


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "claude-tray-ci"


def opencode_prefix() -> Path:
    return cache_root() / f"{OPENCODE_PACKAGE}-{OPENCODE_VERSION}"


def _opencode_bin(prefix: Path) -> Path:
    return prefix / "node_modules" / ".bin" / "opencode"


def install_command(prefix: Path | str | None = None) -> list[str]:
    return [
        "npm",
        "install",
        "--prefix",
        str(prefix or opencode_prefix()),
        "--no-audit",
        "--no-fund",
        "--no-update-notifier",
        "--loglevel=error",
        f"{OPENCODE_PACKAGE}@{OPENCODE_VERSION}",
    ]


def find_opencode() -> Path | None:
    """The pinned OpenCode binary, or None when it is not installed."""
    path = _opencode_bin(opencode_prefix())
    return path if os.access(path, os.X_OK) else None


def require_opencode() -> Path:
    """The pinned OpenCode binary; fails the calling test, saying how to install it."""
    path = find_opencode()
    if path is None:
        import pytest

        pytest.fail(
            f"OpenCode {OPENCODE_VERSION} is not installed at {opencode_prefix()}.\n"
            "Install it with `python tests/tools.py install` (`bash .ci/check` does this),\n"
            f"i.e. `{' '.join(install_command())}`.",
            pytrace=False,
        )
    return path


def install_opencode() -> Path:
    """Install the pinned OpenCode unless it is already there; return its binary.

    npm installs into a scratch directory that is renamed into place only once the
    binary runs and reports the pinned version, so an interrupted install is never
    mistaken for a finished one.
    """
    found = find_opencode()
    if found is not None:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(
            f"npm is needed to install {OPENCODE_PACKAGE}@{OPENCODE_VERSION} (install Node.js)"
        )
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = opencode_prefix()
    print(f"== installing {OPENCODE_PACKAGE}@{OPENCODE_VERSION} into {target}", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    scratch.chmod(0o755)
    try:
        cmd = [npm, *install_command(scratch)[1:]]
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise SystemExit(f"`{' '.join(cmd)}` took over {INSTALL_TIMEOUT} s") from exc
        if done.returncode != 0:
            raise SystemExit(
                f"`{' '.join(cmd)}` failed ({done.returncode}):\n{done.stderr[-3000:]}"
            )
        with tempfile.TemporaryDirectory() as home:
            version = subprocess.run(
                [str(_opencode_bin(scratch)), "--version"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env=opencode_home(Path(home)),
            )
        if version.stdout.strip() != OPENCODE_VERSION:
            raise SystemExit(
                f"installed opencode reports {version.stdout.strip()!r}, not "
                f"{OPENCODE_VERSION}: {version.stderr[-2000:]}"
            )
        try:
            scratch.rename(target)
        except OSError:
            if find_opencode() is None:  # not a concurrent install that won the race
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    path = find_opencode()
    assert path is not None
    return path


# ---- running OpenCode hermetically ----


def opencode_home(home: Path) -> dict[str, str]:
    """A fresh HOME and XDG dirs for one OpenCode run, and the environment to run it with.

    Nothing from the real user's setup leaks in (no config, auth, sessions, provider
    keys), and OpenCode reaches nothing but the configured provider:
    - OPENCODE_DISABLE_MODELS_FETCH: no models.dev catalogue download (the bundled
      snapshot is used);
    - OPENCODE_DISABLE_AUTOUPDATE / OPENCODE_DISABLE_LSP_DOWNLOAD: no update check, no
      language-server downloads;
    - OPENCODE_DISABLE_PROJECT_CONFIG: no opencode.json or .opencode/ picked up from the
      directories above the project;
    - the config dir is seeded so OpenCode's background `npm install @opencode-ai/plugin`
      into it (for user plugins) finds the dependency already recorded and does nothing.
    The provider SDKs (@ai-sdk/openai-compatible, @ai-sdk/anthropic) are bundled in the
    binary: nothing is downloaded into `$XDG_CACHE_HOME/opencode/packages`. Its `glob`
    and `grep` tools would download ripgrep from GitHub unless `rg` is on PATH: tests
    script `read`, which needs nothing.
    """
    config = home / ".config"
    config_dir = config / "opencode"
    (config_dir / "node_modules").mkdir(parents=True, exist_ok=True)
    deps = {"@opencode-ai/plugin": OPENCODE_VERSION}
    (config_dir / "package.json").write_text(json.dumps({"dependencies": deps}))
    (config_dir / "package-lock.json").write_text(
        json.dumps({"lockfileVersion": 3, "packages": {"": {"dependencies": deps}}})
    )
    env = {k: v for k in ("PATH", "LANG", "LC_ALL", "TZ") if (v := os.environ.get(k))}
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(config),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "TMPDIR": str(home / "tmp"),
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
            "OPENCODE_DISABLE_PROJECT_CONFIG": "1",
        }
    )
    (home / "tmp").mkdir(exist_ok=True)
    return env


def write_opencode_config(
    home: Path,
    base_url: str,
    *,
    api_key: str = "test-key",
    model: str = "claude-sonnet-4-5",
    provider: str = "claude-tray",
) -> Path:
    """The global config DESIGN.md section 4 describes: a `claude-tray` provider through
    `@ai-sdk/openai-compatible` at `base_url` (…/v1), made the default model."""
    path = home / ".config" / "opencode" / "opencode.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "model": f"{provider}/{model}",
        "provider": {
            provider: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "claude-tray",
                "options": {"baseURL": base_url, "apiKey": api_key},
                "models": {model: {"name": model, "limit": {"context": 200000, "output": 32000}}},
            }
        },
    }
    path.write_text(json.dumps(config, indent=2))
    return path


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print("usage: python tests/tools.py install", file=sys.stderr)
        return 2
    install_opencode()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
