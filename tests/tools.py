"""The third-party client CLIs the end-to-end tests drive: where they are installed, how
to install them, and how to run them hermetically against a local claude-tray.

Each tool is pinned to one version and installed into its own directory under
`${XDG_CACHE_HOME:-~/.cache}/claude-tray-ci`, named after the version, so a machine
downloads it once and every later run reuses it: OpenCode and the Continue CLI with npm,
Aider and the LiteLLM proxy (large Python packages with exact pins of their own) with pip,
each into its own venv.
`.ci/check` installs them:

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
CONTINUE_PACKAGE = "@continuedev/cli"
CONTINUE_VERSION = "1.5.47"
AIDER_PACKAGE = "aider-chat"
AIDER_VERSION = "0.86.2"
# The team-scale setup (DESIGN.md section 7): the LiteLLM proxy in front of two
# claude-tray instances. `[proxy]` brings the server (uvicorn, fastapi, ...).
# 1.103 and later require certifi>=2026.10.19, which the package index does not have yet.
LITELLM_PACKAGE = "litellm[proxy]"
LITELLM_VERSION = "1.102.4"
# npm fetches two ~60 MB platform packages, pip ~700 MB for aider; bound them so a stuck
# registry cannot eat CI.
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


# ---- the Continue CLI (npm) ----


def continue_prefix() -> Path:
    return cache_root() / f"continuedev-cli-{CONTINUE_VERSION}"


def _cn_bin(prefix: Path) -> Path:
    return prefix / "node_modules" / ".bin" / "cn"


def continue_install_command(prefix: Path | None = None) -> list[str]:
    return [
        "npm",
        "install",
        "--prefix",
        str(prefix or continue_prefix()),
        "--no-audit",
        "--no-fund",
        "--no-update-notifier",
        "--loglevel=error",
        f"{CONTINUE_PACKAGE}@{CONTINUE_VERSION}",
    ]


def find_cn() -> Path | None:
    path = _cn_bin(continue_prefix())
    return path if os.access(path, os.X_OK) else None


def require_cn() -> Path:
    """The pinned Continue CLI; fails the calling test, saying how to install it."""
    path = find_cn()
    if path is None:
        _fail_missing(
            f"The Continue CLI {CONTINUE_VERSION} is not installed at {continue_prefix()}",
            continue_install_command(),
        )
    assert path is not None
    return path


def install_cn() -> Path:
    """Install the pinned Continue CLI unless it is there (scratch dir renamed into place)."""
    found = find_cn()
    if found is not None:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(f"npm is needed to install {CONTINUE_PACKAGE} (install Node.js)")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = continue_prefix()
    print(f"== installing {CONTINUE_PACKAGE}@{CONTINUE_VERSION} into {target}", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    scratch.chmod(0o755)
    try:
        _run_install([npm, *continue_install_command(scratch)[1:]])
        with tempfile.TemporaryDirectory() as home:
            version = subprocess.run(
                [str(_cn_bin(scratch)), "--version"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env=continue_home(Path(home)),
            )
        if version.stdout.strip() != CONTINUE_VERSION:
            raise SystemExit(
                f"installed cn reports {version.stdout.strip()!r}, not {CONTINUE_VERSION}: "
                f"{version.stderr[-2000:]}"
            )
        try:
            scratch.rename(target)
        except OSError:
            if find_cn() is None:
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    path = find_cn()
    assert path is not None
    return path


def continue_home(home: Path) -> dict[str, str]:
    """The environment for one hermetic `cn` run in a fresh HOME.

    `cn` with no Continue login reads ~/.continue/config.yaml. CONTINUE_CLI_ENABLE_TELEMETRY
    =0 keeps its metrics off; its update check (a fetch to Continue's API) fails quietly
    offline and changes nothing.
    """
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k in ("PATH", "LANG", "LC_ALL", "TZ") if (v := os.environ.get(k))}
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "TMPDIR": str(home / "tmp"),
            "CONTINUE_CLI_ENABLE_TELEMETRY": "0",
            "CONTINUE_METRICS_ENABLED": "0",
        }
    )
    (home / "tmp").mkdir(exist_ok=True)
    return env


# ---- Aider (pip, its own venv) ----


def aider_prefix() -> Path:
    return cache_root() / f"{AIDER_PACKAGE}-{AIDER_VERSION}"


def _aider_bin(prefix: Path) -> Path:
    return prefix / "bin" / "aider"


# A venv cannot be moved once made (its scripts name their interpreter by absolute path),
# so it is built in place and this file marks it finished.
_DONE_MARK = ".claude-tray-installed"


def aider_install_command(prefix: Path | None = None) -> list[str]:
    venv = prefix or aider_prefix()
    return [
        f"{sys.executable} -m venv {venv} &&",
        f"{venv}/bin/python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        f"{AIDER_PACKAGE}=={AIDER_VERSION}",
    ]


def find_aider() -> Path | None:
    prefix = aider_prefix()
    path = _aider_bin(prefix)
    if (prefix / _DONE_MARK).is_file() and os.access(path, os.X_OK):
        return path
    return None


def require_aider() -> Path:
    """The pinned aider; fails the calling test, saying how to install it."""
    path = find_aider()
    if path is None:
        _fail_missing(
            f"Aider {AIDER_VERSION} is not installed at {aider_prefix()}",
            aider_install_command(),
        )
    assert path is not None
    return path


def install_aider() -> Path:
    """Install the pinned aider into its own venv unless it is there already."""
    found = find_aider()
    if found is not None:
        return found
    prefix = aider_prefix()
    print(f"== installing {AIDER_PACKAGE}=={AIDER_VERSION} into {prefix}", flush=True)
    shutil.rmtree(prefix, ignore_errors=True)  # an interrupted earlier attempt
    prefix.parent.mkdir(parents=True, exist_ok=True)
    _run_install([sys.executable, "-m", "venv", str(prefix)])
    _run_install(aider_install_command(prefix)[1:])
    with tempfile.TemporaryDirectory() as home:
        version = subprocess.run(
            [str(_aider_bin(prefix)), "--version"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=aider_home(Path(home)),
        )
    if version.stdout.strip() != f"aider {AIDER_VERSION}":
        raise SystemExit(
            f"installed aider reports {version.stdout.strip()!r}, not {AIDER_VERSION}: "
            f"{version.stderr[-2000:]}"
        )
    (prefix / _DONE_MARK).write_text(AIDER_VERSION + "\n")
    path = find_aider()
    assert path is not None
    return path


def aider_home(home: Path) -> dict[str, str]:
    """The environment for one hermetic aider run in a fresh HOME: no update check, and
    litellm's bundled model-price map instead of downloading it."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k in ("PATH", "LANG", "LC_ALL", "TZ") if (v := os.environ.get(k))}
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "TMPDIR": str(home / "tmp"),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "AIDER_ANALYTICS": "false",
            "AIDER_CHECK_UPDATE": "false",
        }
    )
    (home / "tmp").mkdir(exist_ok=True)
    return env


# ---- the LiteLLM proxy (pip, its own venv) ----


def litellm_prefix() -> Path:
    return cache_root() / f"litellm-proxy-{LITELLM_VERSION}"


def _litellm_bin(prefix: Path) -> Path:
    return prefix / "bin" / "litellm"


def litellm_install_command(prefix: Path | None = None) -> list[str]:
    venv = prefix or litellm_prefix()
    return [
        f"{sys.executable} -m venv {venv} &&",
        f"{venv}/bin/python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        f"{LITELLM_PACKAGE}=={LITELLM_VERSION}",
    ]


def find_litellm() -> Path | None:
    prefix = litellm_prefix()
    path = _litellm_bin(prefix)
    if (prefix / _DONE_MARK).is_file() and os.access(path, os.X_OK):
        return path
    return None


def require_litellm() -> Path:
    """The pinned `litellm` proxy command; fails the calling test, saying how to install it."""
    path = find_litellm()
    if path is None:
        _fail_missing(
            f"The LiteLLM proxy {LITELLM_VERSION} is not installed at {litellm_prefix()}",
            litellm_install_command(),
        )
    assert path is not None
    return path


def install_litellm() -> Path:
    """Install the pinned `litellm[proxy]` into its own venv unless it is there already."""
    found = find_litellm()
    if found is not None:
        return found
    prefix = litellm_prefix()
    print(f"== installing {LITELLM_PACKAGE}=={LITELLM_VERSION} into {prefix}", flush=True)
    shutil.rmtree(prefix, ignore_errors=True)  # an interrupted earlier attempt
    prefix.parent.mkdir(parents=True, exist_ok=True)
    _run_install([sys.executable, "-m", "venv", str(prefix)])
    _run_install(litellm_install_command(prefix)[1:])
    version = subprocess.run(
        [
            str(prefix / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if version.stdout.strip() != LITELLM_VERSION:
        raise SystemExit(
            f"installed litellm reports {version.stdout.strip()!r}, not {LITELLM_VERSION}: "
            f"{version.stderr[-2000:]}"
        )
    (prefix / _DONE_MARK).write_text(LITELLM_VERSION + "\n")
    path = find_litellm()
    assert path is not None
    return path


# ---- shared ----


def _run_install(cmd: list[str]) -> None:
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SystemExit(f"`{' '.join(cmd)}` took over {INSTALL_TIMEOUT} s") from exc
    if done.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed ({done.returncode}):\n{done.stderr[-3000:]}")


def _fail_missing(what: str, command: list[str]) -> None:
    import pytest

    pytest.fail(
        f"{what}.\nInstall it with `python tests/tools.py install` (`bash .ci/check` does "
        f"this),\ni.e. `{' '.join(command)}`.",
        pytrace=False,
    )


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print("usage: python tests/tools.py install", file=sys.stderr)
        return 2
    install_opencode()
    install_cn()
    install_aider()
    install_litellm()
    # playwright-core for the dashboard's browser test (its Chromium is Debian's:
    # .ci/install-browser.sh); tests/browser.py pins and installs it the same way.
    from browser import install_playwright

    install_playwright()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
