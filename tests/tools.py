"""The third-party client CLIs the end-to-end tests drive: where they are installed, how
to install them, and how to run them hermetically against a local claude-tray.

Each tool is pinned to one version and installed into its own directory under
`${XDG_CACHE_HOME:-~/.cache}/claude-tray-ci`, named after the version, so a machine
downloads it once and every later run reuses it: OpenCode and the Continue CLI with npm,
Aider (a large Python package with exact pins of its own) and the LiteLLM proxy (the
team-scale gateway, docs/team-scale.md) with pip, each into its own venv, and
playwright-core for the dashboard's browser test, and the Codex and Cline CLIs (npm).
`.ci/check` installs them:

    python tests/tools.py install
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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
# claude-tray instances. `[proxy]` brings the server (uvicorn, fastapi, ...). Not
# `[extra-proxy]`: its prisma (virtual keys, in LiteLLM's database) needs prisma's query
# and schema engines, which only prisma's own download host serves (docs/team-scale.md).
# 1.103 and later require certifi>=2026.10.19, which the package index does not have yet.
LITELLM_PACKAGE = "litellm[proxy]"
LITELLM_VERSION = "1.102.4"
# OpenAI's Codex CLI (Responses API): npm brings its native binary as a platform package.
CODEX_PACKAGE = "@openai/codex"
CODEX_VERSION = "0.171.0"
# The Cline CLI: npm brings its native binary as a platform package.
CLINE_PACKAGE = "cline"
CLINE_VERSION = "3.0.65"
# The dashboard test's browser driver (its Chromium is Debian's: .ci/install-browser.sh).
PLAYWRIGHT_PACKAGE = "playwright-core"
PLAYWRIGHT_VERSION = "1.65.1"
# npm fetches two ~60 MB platform packages, pip ~700 MB for aider; bound them so a stuck
# registry cannot eat CI.
INSTALL_TIMEOUT = 600


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "claude-tray-ci"


@dataclass(frozen=True)
class Pinned:
    """One pinned client tool: where it lives, how to install it, how to find it.

    npm tools install into a scratch directory that is renamed into place only once the
    tool reports the pinned version; a venv cannot be moved (its scripts name their
    interpreter by path), so pip tools are built in place and a mark file says finished.
    Either way an interrupted install is never taken for a finished one.
    """

    label: str
    package: str
    version: str
    kind: Literal["npm", "pip"]
    entry: str  # the installed thing, relative to the prefix
    # The version the installed tool reports, given its prefix ("" when it cannot say).
    reports: Callable[[Path], str]
    expected: str = ""  # what `reports` must return; the version when empty
    npm_env: tuple[tuple[str, str], ...] = ()

    @property
    def prefix(self) -> Path:
        # `litellm[proxy]` lives in litellm-proxy-<version>: no brackets in a path.
        name = self.package.replace("@", "").replace("/", "-").replace("[", "-").rstrip("]")
        return cache_root() / f"{name}-{self.version}"

    def command(self, prefix: Path | None = None) -> list[str]:
        where = prefix or self.prefix
        if self.kind == "npm":
            return [
                "npm", "install", "--prefix", str(where), "--no-audit", "--no-fund",
                "--no-update-notifier", "--loglevel=error", f"{self.package}@{self.version}",
            ]  # fmt: skip
        return [
            f"{sys.executable} -m venv {where} &&", f"{where}/bin/python", "-m", "pip",
            "install", "--quiet", "--disable-pip-version-check",
            f"{self.package}=={self.version}",
        ]  # fmt: skip

    def find(self) -> Path | None:
        path = self.prefix / self.entry
        finished = self.kind == "npm" or (self.prefix / _DONE_MARK).is_file()
        return path if finished and path.exists() else None

    def require(self) -> Path:
        """The installed tool; fails the calling test, saying how to install it."""
        path = self.find()
        if path is None:
            _fail_missing(
                f"{self.label} {self.version} is not installed at {self.prefix}", self.command()
            )
        assert path is not None
        return path

    def install(self) -> Path:
        found = self.find()
        if found is not None:
            return found
        root = cache_root()
        root.mkdir(parents=True, exist_ok=True)
        target = self.prefix
        print(f"== installing {self.package} {self.version} into {target}", flush=True)
        if self.kind == "pip":
            shutil.rmtree(target, ignore_errors=True)  # an interrupted earlier attempt
            _run_install([sys.executable, "-m", "venv", str(target)])
            _run_install(self.command(target)[1:])
            self._check(target)
            (target / _DONE_MARK).write_text(self.version + "\n")
        else:
            npm = shutil.which("npm")
            if npm is None:
                raise SystemExit(f"npm is needed to install {self.package} (install Node.js)")
            scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
            scratch.chmod(0o755)
            try:
                _run_install([npm, *self.command(scratch)[1:]], env=dict(self.npm_env))
                self._check(scratch)
                try:
                    scratch.rename(target)
                except OSError:
                    if self.find() is None:  # not a concurrent install that won the race
                        raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        path = self.find()
        assert path is not None
        return path

    def _check(self, prefix: Path) -> None:
        reported = self.reports(prefix)
        if reported != (self.expected or self.version):
            raise SystemExit(f"installed {self.label} reports {reported!r}, not {self.version}")


def _reported(argv: list[str], env: Callable[[Path], dict[str, str]]) -> str:
    """What `argv` prints, run in a throwaway home with the tool's hermetic environment."""
    with tempfile.TemporaryDirectory() as home:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=120, check=False, env=env(Path(home))
        )
    return done.stdout.strip()


def npm_package_version(package: str) -> Callable[[Path], str]:
    """Reads the version npm installed from the package's own package.json."""

    def version(prefix: Path) -> str:
        try:
            value = json.loads((prefix / "node_modules" / package / "package.json").read_text())
        except (OSError, ValueError):
            return ""
        return str(value.get("version", ""))

    return version


def _pip_version(prefix: Path, distribution: str) -> str:
    """The version pip installed into the venv at `prefix`, read from its metadata.

    Not `litellm --version`: that starts the whole proxy import chain (seconds) and
    prints banners around the number.
    """
    done = subprocess.run(
        [
            str(prefix / "bin" / "python"),
            "-c",
            f"from importlib.metadata import version; print(version({distribution!r}))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.stdout.strip()


# A venv is built in place and this file marks it finished.
_DONE_MARK = ".claude-tray-installed"

OPENCODE = Pinned(
    "OpenCode",
    OPENCODE_PACKAGE,
    OPENCODE_VERSION,
    "npm",
    "node_modules/.bin/opencode",
    lambda p: _reported([str(p / "node_modules/.bin/opencode"), "--version"], opencode_home),
)
CONTINUE = Pinned(
    "The Continue CLI",
    CONTINUE_PACKAGE,
    CONTINUE_VERSION,
    "npm",
    "node_modules/.bin/cn",
    npm_package_version(CONTINUE_PACKAGE),
)
AIDER = Pinned(
    "Aider",
    AIDER_PACKAGE,
    AIDER_VERSION,
    "pip",
    "bin/aider",
    lambda p: _reported([str(p / "bin/aider"), "--version"], aider_home),
    expected=f"aider {AIDER_VERSION}",
)
LITELLM = Pinned(
    "The LiteLLM proxy",
    LITELLM_PACKAGE,
    LITELLM_VERSION,
    "pip",
    "bin/litellm",
    lambda p: _pip_version(p, "litellm"),
)
CODEX = Pinned(
    "The Codex CLI",
    CODEX_PACKAGE,
    CODEX_VERSION,
    "npm",
    "node_modules/.bin/codex",
    lambda p: _reported([str(p / "node_modules/.bin/codex"), "--version"], codex_home),
    expected=f"codex-cli {CODEX_VERSION}",
)
CLINE = Pinned(
    "The Cline CLI",
    CLINE_PACKAGE,
    CLINE_VERSION,
    "npm",
    "node_modules/.bin/cline",
    lambda p: _reported([str(p / "node_modules/.bin/cline"), "--version"], cline_home),
)
PLAYWRIGHT = Pinned(
    "playwright-core",
    PLAYWRIGHT_PACKAGE,
    PLAYWRIGHT_VERSION,
    "npm",
    f"node_modules/{PLAYWRIGHT_PACKAGE}",
    npm_package_version(PLAYWRIGHT_PACKAGE),
    # playwright-core downloads no browser anyway; this says so to npm's scripts.
    npm_env=(("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"),),
)


def install_command(prefix: Path | str | None = None) -> list[str]:
    """OpenCode's install command (shown to people when it is missing)."""
    return OPENCODE.command(Path(prefix) if prefix else None)


def require_opencode() -> Path:
    return OPENCODE.require()


def require_cn() -> Path:
    return CONTINUE.require()


def require_aider() -> Path:
    return AIDER.require()


def require_litellm() -> Path:
    return LITELLM.require()


def require_codex() -> Path:
    return CODEX.require()


def require_cline() -> Path:
    return CLINE.require()


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


def continue_home(home: Path) -> dict[str, str]:
    """The environment for one hermetic `cn` run in a fresh HOME.

    `cn` with no Continue login reads ~/.continue/config.yaml. CONTINUE_CLI_ENABLE_TELEMETRY
    =0 keeps its metrics off; its update check (a fetch to Continue's API) fails quietly
    offline and changes nothing.
    """
    return scratch_env(
        home,
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        CONTINUE_CLI_ENABLE_TELEMETRY="0",
        CONTINUE_METRICS_ENABLED="0",
    )


# ---- Aider (pip, its own venv) ----


def aider_home(home: Path) -> dict[str, str]:
    """The environment for one hermetic aider run in a fresh HOME: no update check, and
    litellm's bundled model-price map instead of downloading it."""
    return scratch_env(
        home,
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        AIDER_ANALYTICS="false",
        AIDER_CHECK_UPDATE="false",
    )


# ---- the Codex CLI (npm) ----


def codex_home(home: Path) -> dict[str, str]:
    """The environment for one hermetic `codex` run in a fresh HOME: its config and
    sessions under HOME/.codex, scratch files under HOME/tmp."""
    return scratch_env(
        home,
        CODEX_HOME=str(home / ".codex"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
    )


# ---- the Cline CLI (npm) ----


def cline_home(home: Path) -> dict[str, str]:
    """The environment for one hermetic `cline` run in a fresh HOME (its settings,
    sessions and databases under HOME/.cline)."""
    return scratch_env(home)


def stop_cline_hub(home: Path) -> None:
    """End the hub daemon a `cline` run in `home` leaves behind (it detaches into a
    session of its own, and would outlive the test)."""
    wanted = f"HOME={home}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if b"--cline-hub-daemon" in cmdline and wanted in (
                entry / "environ"
            ).read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


# ---- shared ----


def scratch_env(home: Path, **extra: str) -> dict[str, str]:
    """A tool's environment in a fresh HOME: the locale and PATH of this run, HOME and
    TMPDIR in the scratch home (created), and `extra`."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "tmp").mkdir(exist_ok=True)
    env = {k: v for k in ("PATH", "LANG", "LC_ALL", "TZ") if (v := os.environ.get(k))}
    return env | {"HOME": str(home), "TMPDIR": str(home / "tmp"), **extra}


def _run_install(cmd: list[str], env: dict[str, str] | None = None) -> None:
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
            env={**os.environ, **env} if env else None,
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
    for tool in (OPENCODE, CONTINUE, AIDER, LITELLM, PLAYWRIGHT, CODEX, CLINE):
        tool.install()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
