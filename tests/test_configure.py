"""`claude-tray configure` on real files in a temp HOME: golden files (comments, other
providers and odd formatting kept byte for byte), idempotence, undo to identical bytes,
and hostile or broken files refused with a clear message and nothing written.

Golden cases live in tests/data/configure/<case>/: `home/` (the files before),
`expected/` (every file configure writes, exactly), `args.json`. Regenerate the
expected files after a deliberate change with CLAUDE_TRAY_UPDATE_GOLDEN=1, and read the
diff before committing it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tray_app.integrations.configure import (
    TOOLS,
    Result,
    configure,
    tool_states,
    undo,
)
from tray_app.integrations.configure.cli import main as cli_main
from tray_app.settings import Settings, load_settings

DATA = Path(__file__).parent / "data" / "configure"
CASES = sorted(p.name for p in DATA.iterdir() if (p / "args.json").is_file())
UPDATE = os.environ.get("CLAUDE_TRAY_UPDATE_GOLDEN") == "1"


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `root`: its bytes and mode."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


class Env:
    """A scratch HOME, claude-tray's own folder, and the settings configure reads."""

    def __init__(self, tmp_path: Path, **settings: str) -> None:
        self.home = tmp_path / "home"
        self.home.mkdir(exist_ok=True)
        self.state = tmp_path / "claude-tray"
        self.env = {
            "HOME": str(self.home),
            "CLAUDE_TRAY_HOME": str(self.state),
            "CLAUDE_TRAY_PORT": "3456",
            "PATH": "/nonexistent",
        }
        self.env.update({f"CLAUDE_TRAY_{k.upper()}": v for k, v in settings.items()})

    @property
    def settings(self) -> Settings:
        return load_settings(self.env)

    def configure(self, tool: str, **kw: Any) -> Result:
        return configure(tool, self.settings, self.env, **kw)

    def undo(self, tool: str) -> Result:
        return undo(tool, self.settings, self.env)

    def write(self, relative: str, content: str | bytes) -> Path:
        path = self.home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
        return path

    def backups(self) -> list[Path]:
        folder = self.state / "data" / "configure"
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def scratch(tmp_path: Path) -> Env:
    return Env(tmp_path)


# ---- golden files ----


@pytest.mark.parametrize("case", CASES)
def test_golden_output_idempotence_and_byte_exact_undo(case: str, tmp_path: Path) -> None:
    folder = DATA / case
    args = json.loads((folder / "args.json").read_text())
    env = Env(tmp_path)
    shutil.copytree(folder / "home", env.home, dirs_exist_ok=True)
    before = snapshot(env.home)

    result = env.configure(
        args["tool"],
        make_default=args.get("default", False),
        model=args.get("model"),
        base_url=args.get("base_url"),
    )
    assert result.ok, result.message
    assert result.changed
    after = snapshot(env.home)
    written = {k: v for k, v in after.items() if before.get(k) != v}
    expected_dir = folder / "expected"
    if UPDATE:
        shutil.rmtree(expected_dir, ignore_errors=True)
        for name, (data, _mode) in written.items():
            (expected_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / name).write_bytes(data)
    expected = {k: v[0] for k, v in snapshot(expected_dir).items()}
    assert {k: v[0] for k, v in written.items()} == expected
    # Every file configure did not write is untouched.
    assert {k: v for k, v in after.items() if k not in written} == {
        k: v for k, v in before.items() if k not in written
    }

    # A second run changes nothing, not even a timestamp's worth.
    again = env.configure(
        args["tool"],
        make_default=args.get("default", False),
        model=args.get("model"),
        base_url=args.get("base_url"),
    )
    assert again.ok and not again.changed, again.message
    assert snapshot(env.home) == after

    # Undo puts back every byte and every mode, and removes what configure created.
    undone = env.undo(args["tool"])
    assert undone.ok, undone.message
    assert snapshot(env.home) == before
    assert sorted(p.relative_to(env.home) for p in env.home.rglob("*")) == sorted(
        p.relative_to(folder / "home") for p in (folder / "home").rglob("*")
    )


@pytest.mark.parametrize("tool", list(TOOLS))
def test_every_tool_creates_its_files_and_undo_removes_them(tool: str, scratch: Env) -> None:
    result = scratch.configure(tool, make_default=True)
    assert result.ok, result.message
    assert result.files and all(f.action == "created" for f in result.files)
    states = {s.tool: s for s in tool_states(scratch.settings, scratch.env)}
    assert states[tool].configured
    assert states[tool].path == result.files[0].path
    assert scratch.undo(tool).ok
    assert list(scratch.home.iterdir()) == []
    assert not {s.tool: s for s in tool_states(scratch.settings, scratch.env)}[tool].configured


def test_undo_restores_the_original_even_after_several_configures(scratch: Env) -> None:
    original = '{\n  // mine\n  "theme": "dark"\n}\n'
    path = scratch.write(".config/opencode/opencode.json", original)
    assert scratch.configure("opencode").changed
    assert scratch.configure("opencode", model="opus", make_default=True).changed
    assert scratch.configure("opencode", model="haiku", make_default=True).changed
    assert scratch.undo("opencode").ok
    assert path.read_text() == original


def test_undo_refuses_when_the_file_changed_since_and_keeps_the_original(scratch: Env) -> None:
    original = "model: gpt-4o\n"
    path = scratch.write(".aider.conf.yml", original)
    assert scratch.configure("aider").ok
    edited = path.read_text() + "dark-mode: true\n"
    path.write_text(edited)
    result = scratch.undo("aider")
    assert not result.ok
    assert "was changed after claude-tray wrote it" in result.message
    assert str(path) in result.message
    assert path.read_text() == edited
    # The metadata file, which nobody touched, was not undone alone either.
    assert (scratch.home / ".aider.model.metadata.json").exists()
    # The original is kept where the message says.
    backup = result.message.split("kept at ")[1].rstrip(".")
    assert Path(backup).read_text() == original


def test_configure_after_an_edit_keeps_the_edit_on_undo(scratch: Env) -> None:
    path = scratch.write(".codex/config.toml", 'model = "gpt-5"\n')
    assert scratch.configure("codex").ok
    edited = path.read_text() + "\n[tui]\nnotifications = true\n"
    path.write_text(edited)
    assert scratch.configure("codex", make_default=True).changed
    assert scratch.undo("codex").ok
    assert path.read_text() == edited


@pytest.mark.parametrize(("before", "after"), [(128000, 128000), (400000, 200000), ("x", 200000)])
def test_codex_default_narrows_the_context_window_to_claudes(
    scratch: Env, before: object, after: int
) -> None:
    """Codex assumes 272k for a model it does not know; a smaller window is the user's."""
    path = scratch.write(".codex/config.toml", f"model_context_window = {json.dumps(before)}\n")
    assert scratch.configure("codex").ok
    assert f"model_context_window = {json.dumps(before)}" in path.read_text()  # not default
    assert scratch.configure("codex", make_default=True).ok
    assert tomllib.loads(path.read_text())["model_context_window"] == after


CLINE_FILE = ".cline/data/settings/providers.json"


def test_cline_gets_its_openai_compatible_provider_and_keeps_the_others(tmp_path: Path) -> None:
    env = Env(tmp_path, api_key="ct-cline-secret")
    theirs = {"settings": {"provider": "anthropic", "apiKey": "sk-ant-x"}, "updatedAt": "t"}
    original = {"version": 1, "lastUsedProvider": "anthropic", "modes": {}, "providers": {}}
    original["providers"] = {"anthropic": theirs}
    path = env.write(CLINE_FILE, json.dumps(original, indent=2))
    assert env.configure("cline").ok
    written = json.loads(path.read_text())
    assert written["lastUsedProvider"] == "anthropic"  # only --default changes it
    assert written["providers"]["anthropic"] == theirs
    ours = written["providers"]["openai-compatible"]
    assert ours["settings"] == {
        "provider": "openai-compatible",
        "apiKey": "ct-cline-secret",
        "model": "sonnet",
        "baseUrl": "http://127.0.0.1:3456/v1",
    }
    assert ours["updatedAt"].endswith("Z")  # without it Cline ignores the whole file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not env.configure("cline").changed  # the timestamp too stays as it was
    assert env.configure("cline", make_default=True).changed
    assert json.loads(path.read_text())["lastUsedProvider"] == "openai-compatible"
    assert env.undo("cline").ok
    assert json.loads(path.read_text()) == original


def test_cline_saving_its_file_again_is_not_an_edit_but_a_change_of_model_is(
    scratch: Env,
) -> None:
    """Cline writes the file back on every run with a new updatedAt: undo still puts
    the original back. A setting the user changed makes undo refuse, as for any tool."""
    assert scratch.configure("cline", make_default=True).ok
    path = scratch.home / CLINE_FILE
    doc = json.loads(path.read_text())
    doc["providers"]["openai-compatible"]["updatedAt"] = "2030-01-01T00:00:00.000Z"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    # Still ours: a new write keeps "claude-tray created it" as what undo goes back to.
    assert scratch.configure("cline", model="opus", make_default=True).changed
    doc = json.loads(path.read_text())
    doc["providers"]["openai-compatible"]["settings"]["model"] = "haiku"  # the user's
    path.write_text(json.dumps(doc, indent=2) + "\n")
    refused = scratch.undo("cline")
    assert not refused.ok and "changed after claude-tray wrote it" in refused.message
    doc["providers"]["openai-compatible"]["settings"]["model"] = "opus"
    doc["providers"]["openai-compatible"]["updatedAt"] = "2031-01-01T00:00:00.000Z"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    assert scratch.undo("cline").ok
    assert not path.exists()


def test_cline_provider_pointing_elsewhere_is_not_replaced(scratch: Env) -> None:
    elsewhere = {"settings": {"provider": "openai-compatible", "baseUrl": "http://x:1/v1"}}
    text = json.dumps({"version": 1, "providers": {"openai-compatible": elsewhere}})
    path = scratch.write(CLINE_FILE, text)
    result = scratch.configure("cline", make_default=True)
    assert not result.ok and "http://x:1/v1" in result.message
    assert "will not replace it" in result.message
    assert path.read_text() == text


def test_nothing_to_undo(scratch: Env) -> None:
    result = scratch.undo("continue")
    assert not result.ok
    assert "nothing to undo" in result.message


def test_a_backup_is_written_before_changing_a_file(scratch: Env) -> None:
    original = 'model = "gpt-5"\n'
    scratch.write(".codex/config.toml", original)
    result = scratch.configure("codex")
    assert result.files[0].action == "updated"
    backup = result.files[0].backup
    assert backup is not None and backup.read_text() == original
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert backup.name.endswith("-config.toml") and backup.name[:8].isdigit()


def test_dry_run_prints_a_diff_and_writes_nothing(scratch: Env) -> None:
    path = scratch.write(".config/opencode/opencode.json", '{\n  "theme": "dark"\n}\n')
    result = scratch.configure("opencode", dry_run=True, make_default=True)
    assert result.ok and not result.changed
    assert result.diff.startswith(f"--- {path}\n+++ {path}\n")
    assert '+  "model": "claude-tray/sonnet"' in result.diff
    assert '-  "theme": "dark"\n+  "theme": "dark",\n' in result.diff
    assert path.read_text() == '{\n  "theme": "dark"\n}\n'
    assert scratch.backups() == []


def test_a_real_key_makes_the_file_private_and_stays_out_of_the_diff(tmp_path: Path) -> None:
    env = Env(tmp_path, api_key="sk-proxy-secret-123")
    path = env.write(".continue/config.yaml", "name: x\nversion: 1.0.0\nschema: v1\n")
    path.chmod(0o644)
    preview = env.configure("continue", dry_run=True)
    assert "sk-proxy-secret-123" not in preview.diff
    assert "apiKey: <api key>" in preview.diff
    assert env.configure("continue").ok
    assert "apiKey: sk-proxy-secret-123" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert env.undo("continue").ok
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_the_port_and_host_come_from_the_settings(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.env["CLAUDE_TRAY_PORT"] = "4777"
    env.env["CLAUDE_TRAY_HOST"] = "0.0.0.0"
    env.env["CLAUDE_TRAY_API_KEY"] = "k"
    assert env.configure("aider").ok
    assert (
        "openai-api-base: http://127.0.0.1:4777/v1\n" in (env.home / ".aider.conf.yml").read_text()
    )


def test_port_zero_is_refused(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.env["CLAUDE_TRAY_PORT"] = "0"
    result = env.configure("opencode")
    assert not result.ok and "the port is 0" in result.message
    assert list(env.home.iterdir()) == []


def test_an_unknown_model_is_refused(scratch: Env) -> None:
    result = scratch.configure("opencode", model="gpt-nonsense")
    assert not result.ok and "gpt-nonsense" in result.message
    assert list(scratch.home.iterdir()) == []


def test_a_symlinked_dotfile_inside_home_is_edited_through_the_link(scratch: Env) -> None:
    real = scratch.write("dotfiles/aider.conf.yml", "dark-mode: true\n")
    link = scratch.home / ".aider.conf.yml"
    link.symlink_to(real)
    assert scratch.configure("aider").ok
    assert link.is_symlink()
    assert "model: openai/sonnet" in real.read_text()
    assert scratch.undo("aider").ok
    assert link.is_symlink() and real.read_text() == "dark-mode: true\n"


# ---- hostile and broken files: a clear refusal, nothing written ----


def refused(env: Env, tool: str, *expected: str) -> Result:
    before = snapshot(env.home)
    result = env.configure(tool, make_default=True)
    assert not result.ok, result.message
    for text in expected:
        assert text in result.message, result.message
    assert snapshot(env.home) == before
    assert env.backups() == []
    return result


@pytest.mark.parametrize(
    ("tool", "relative", "content", "expected"),
    [
        (
            "opencode",
            ".config/opencode/opencode.json",
            '{\n  "theme": "dark",\n  "provider": {\n',
            ["opencode.json:4:", "not valid JSON/JSONC"],
        ),
        (
            "opencode",
            ".config/opencode/opencode.json",
            '{\n  "theme": dark\n}\n',
            ["opencode.json:2:", "unexpected character 'd'"],
        ),
        ("opencode", ".config/opencode/opencode.json", "[1, 2]\n", ["should be an object"]),
        (
            "opencode",
            ".config/opencode/opencode.json",
            '{"provider": ["x"]}',
            ["'provider' should be an object but is a list"],
        ),
        ("zed", ".config/zed/settings.json", '{"language_models": 3}', ["is a number"]),
        (
            "continue",
            ".continue/config.yaml",
            "name: x\nmodels:\n  - name: a\n   provider: b\n",
            ["config.yaml:4:", "not valid YAML"],
        ),
        ("continue", ".continue/config.yaml", "models: nope\n", ["'models' should be a list"]),
        ("continue", ".continue/config.yaml", "- a\n- b\n", ["does not hold a mapping"]),
        ("continue", ".continue/config.yaml", "a: 1\na: 2\n", ["config.yaml:2:"]),
        ("aider", ".aider.conf.yml", "model: [unclosed\n", ["aider.conf.yml:2:"]),
        ("aider", ".aider.model.metadata.json", '{"openai/x": ', ["not valid JSON"]),
        (
            "codex",
            ".codex/config.toml",
            'model = "gpt-5"\n[model_providers\n',
            ["config.toml:2:", "not valid TOML"],
        ),
        ("codex", ".codex/config.toml", 'model_providers = "x"\n', ["should be a table"]),
        (
            "codex",
            ".codex/config.toml",
            "[model_providers]\nclaude-tray = 1\n",
            ["'model_providers.claude-tray' should be a table"],
        ),
        ("claude-code", ".claude-via-tray/settings.json", '{"env": "x"}', ["'env' should be"]),
    ],
)
def test_broken_and_wrongly_typed_files_are_refused(
    scratch: Env, tool: str, relative: str, content: str, expected: list[str]
) -> None:
    scratch.write(relative, content)
    refused(scratch, tool, *expected)


def test_a_huge_file_is_refused(scratch: Env) -> None:
    scratch.write(".continue/config.yaml", "# " + "x" * (1024 * 1024 + 10) + "\n")
    refused(scratch, "continue", "too large")


def test_a_symlink_outside_home_is_refused(scratch: Env, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}\n")
    link = scratch.home / ".config" / "opencode" / "opencode.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    refused(scratch, "opencode", "is a symlink to", "outside your home folder")
    assert outside.read_text() == "{}\n"


def test_a_dangling_symlink_is_refused(scratch: Env) -> None:
    link = scratch.home / ".aider.conf.yml"
    link.symlink_to(scratch.home / "missing.yml")
    refused(scratch, "aider", "does not exist")


def test_a_read_only_file_is_refused(scratch: Env) -> None:
    # Refused for root too (who could write it): the mode says "leave me alone".
    path = scratch.write(".codex/config.toml", 'model = "x"\n')
    path.chmod(0o444)
    refused(scratch, "codex", "read-only")


def test_a_folder_where_the_file_should_be_is_refused(scratch: Env) -> None:
    (scratch.home / ".aider.conf.yml").mkdir()
    refused(scratch, "aider", "is a folder")


def test_a_file_where_the_folder_should_be_is_refused(scratch: Env) -> None:
    scratch.write(".continue", "not a folder")
    refused(scratch, "continue", "is in the way")


def test_a_fifo_is_refused(scratch: Env) -> None:
    os.mkfifo(scratch.home / ".aider.conf.yml")
    refused(scratch, "aider", "not a regular file")


def test_non_utf8_is_refused(scratch: Env) -> None:
    scratch.write(".aider.conf.yml", b"model: gpt\n# caf\xe9\n")
    refused(scratch, "aider", "aider.conf.yml:2:", "not UTF-8")


def test_alias_bombs_and_deep_nesting_are_refused(scratch: Env) -> None:
    laughs = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        laughs.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]")
    scratch.write(".continue/config.yaml", "\n".join(laughs) + "\n")
    refused(scratch, "continue", "too many aliases")
    scratch.write(".codex/config.toml", "a = " + "[" * 5000 + "]" * 5000 + "\n")
    refused(scratch, "codex")
    scratch.write(".config/zed/settings.json", "[" * 5000)
    refused(scratch, "zed", "nested too deeply")


def test_flow_style_models_list_is_refused_with_a_reason(scratch: Env) -> None:
    scratch.write(".continue/config.yaml", "models: [{name: a, provider: openai}]\n")
    refused(scratch, "continue", "flow", "block lists")


def test_an_empty_models_list_is_filled(scratch: Env) -> None:
    path = scratch.write(".continue/config.yaml", "name: x\nmodels: []  # none yet\nrules: []\n")
    assert scratch.configure("continue").ok
    text = path.read_text()
    assert text.startswith("name: x\nmodels:  # none yet\n  - name: claude-tray sonnet\n")
    assert text.endswith("      maxTokens: 32000\nrules: []\n")


def test_an_empty_file_is_treated_as_new(scratch: Env) -> None:
    path = scratch.write(".config/opencode/opencode.json", "")
    assert scratch.configure("opencode").ok
    assert '"claude-tray"' in path.read_text()
    assert scratch.undo("opencode").ok
    assert path.read_bytes() == b""


def test_crlf_files_keep_their_line_endings(scratch: Env) -> None:
    original = "# settings\r\ndark-mode: true\r\n"
    path = scratch.write(".aider.conf.yml", original)
    assert scratch.configure("aider").ok
    data = path.read_bytes()
    assert data.startswith(original.encode())
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert scratch.undo("aider").ok
    assert path.read_bytes() == original.encode()


# ---- the command line ----


def test_cli_list_shows_each_tool(scratch: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["aider"], scratch.settings, scratch.env) == 0
    capsys.readouterr()
    assert cli_main(["--list"], scratch.settings, scratch.env) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(TOOLS)
    aider = next(line for line in lines if line.startswith("aider"))
    assert "not found" in aider and " configured" in aider
    assert aider.endswith(str(scratch.home / ".aider.conf.yml"))


def test_cli_dry_run_undo_and_errors(scratch: Env, capsys: pytest.CaptureFixture[str]) -> None:
    settings, env = scratch.settings, scratch.env
    assert cli_main(["codex", "--dry-run"], settings, env) == 0
    out = capsys.readouterr().out
    assert "+++ " in out and "[model_providers.claude-tray]" in out
    assert not (scratch.home / ".codex").exists()
    assert cli_main(["codex", "--default"], settings, env) == 0
    out = capsys.readouterr().out
    assert "created" in out and "claude-tray configure codex --undo" in out
    assert cli_main(["codex", "--undo"], settings, env) == 0
    assert "removed" in capsys.readouterr().out
    assert cli_main(["codex", "--undo"], settings, env) == 1
    assert "nothing to undo" in capsys.readouterr().err
    assert cli_main([], settings, env) == 2
    assert cli_main(["nonsense"], settings, env) == 2
    assert cli_main(["--list", "aider"], settings, env) == 2
    assert cli_main(["aider", "--undo", "--dry-run"], settings, env) == 2
    scratch.write(".aider.conf.yml", "model: [\n")
    assert cli_main(["aider"], settings, env) == 1
    assert "aider.conf.yml:2:" in capsys.readouterr().err
