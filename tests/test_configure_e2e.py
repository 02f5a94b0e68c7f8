"""`claude-tray configure` end to end: each real tool, in a scratch HOME holding only
what configure wrote, gets its answer from the scripted upstream through a real
`claude-tray serve` and the real CLI behind it; and the connection test sends each
tool's kind of request through the same proxy.

The tools are pinned and installed by `python tests/tools.py install` (OpenCode, the
Continue CLI, Codex and Cline with npm, Aider into its own venv), under
~/.cache/claude-tray-ci.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Proxy
from test_opencode import is_title_request, run_opencode
from tools import (
    aider_home,
    cline_home,
    codex_home,
    continue_home,
    opencode_home,
    require_aider,
    require_cline,
    require_cn,
    require_codex,
    require_opencode,
    stop_cline_hub,
)
from upstream import Reply, ToolUse, Upstream, text

from tray_app.integrations.configure import TOOLS, check_connection, undo
from tray_app.integrations.configure.cli import main as configure_main
from tray_app.settings import Settings, load_settings

TOOL_TIMEOUT = 120
ANSWER = "Hello from the upstream, through claude-tray."


def configure_env(home: Path, proxy: Proxy, state: Path) -> dict[str, str]:
    """The environment `claude-tray configure` runs in: the scratch HOME, and the port of
    the proxy under test (as CLAUDE_TRAY_PORT, the way a user would change it)."""
    return {
        "HOME": str(home),
        "CLAUDE_TRAY_HOME": str(state),
        "CLAUDE_TRAY_PORT": proxy.url.rsplit(":", 1)[1],
        "PATH": os.environ.get("PATH", ""),
    }


def run_configure(env: dict[str, str], *argv: str) -> tuple[int, Settings]:
    settings = load_settings(env)
    return configure_main(list(argv), settings, env), settings


def files_under(home: Path) -> set[str]:
    return {str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()}


def run_tool(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        try:
            out, err = process.communicate(timeout=TOOL_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            err += f"\n[test] killed after {TOOL_TIMEOUT} s"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(cmd, process.returncode, out, err)


def asked(upstream: Upstream, prompt: str) -> bool:
    return any(prompt in "\n".join(r.user_texts()) for r in upstream.messages_requests())


@pytest.mark.timeout(TOOL_TIMEOUT + 60)
def test_aider_answers_through_the_proxy_with_only_what_configure_wrote(
    upstream: Upstream, make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    aider = require_aider()
    proxy = make_proxy()
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    env = configure_env(home, proxy, tmp_path / "state")
    code, settings = run_configure(env, "aider")
    assert code == 0
    assert files_under(home) == {".aider.conf.yml", ".aider.model.metadata.json"}

    upstream.push(text("Hello from the upstream, ", "through claude-tray."))
    prompt = "Say hello for the aider test."
    run = run_tool(
        [
            str(aider),
            "--message",
            prompt,
            "--yes-always",
            "--no-git",
            "--no-check-update",
            "--no-pretty",
            "--no-stream",
        ],
        aider_home(home),
        project,
    )
    why = f"\n--- aider stdout:\n{run.stdout[-4000:]}\n--- stderr:\n{run.stderr[-4000:]}"
    assert run.returncode == 0, why
    assert ANSWER in run.stdout, why
    assert asked(upstream, prompt), why
    # The metadata file is what keeps aider from warning about an unknown model (and
    # from trying to download litellm's model list to look it up).
    assert "Unknown context window" not in run.stdout + run.stderr, why
    assert "Warning for openai/sonnet" not in run.stdout + run.stderr, why
    assert "openai/sonnet" in run.stdout, why

    assert undo("aider", settings, env).ok
    assert not (home / ".aider.conf.yml").exists()
    assert not (home / ".aider.model.metadata.json").exists()


@pytest.mark.timeout(TOOL_TIMEOUT + 60)
def test_opencode_answers_through_the_proxy_with_only_what_configure_wrote(
    upstream: Upstream, make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    opencode = require_opencode()
    proxy = make_proxy()
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    env = configure_env(home, proxy, tmp_path / "state")
    code, settings = run_configure(env, "opencode", "--default")
    assert code == 0
    assert files_under(home) == {".config/opencode/opencode.json"}

    # opencode_home only seeds OpenCode's plugin folder so it does not run npm; the
    # provider and model come from the file configure wrote.
    run_env = opencode_home(home)
    upstream.push(
        text("Greeting", when=is_title_request),
        text(
            "Hello from the upstream, ",
            "through claude-tray.",
            when=lambda b: not is_title_request(b),
        ),
    )
    prompt = "Say hello for the opencode test."
    run = run_opencode(opencode, run_env, project, prompt)
    why = f"\n--- opencode stdout:\n{run.stdout[-4000:]}\n--- stderr:\n{run.stderr[-4000:]}"
    assert run.returncode == 0, why
    assert run.text() == ANSWER, why
    assert asked(upstream, prompt), why

    assert undo("opencode", settings, env).ok
    assert not (home / ".config" / "opencode" / "opencode.json").exists()


CODEX_KEY = "ct-codex-test-key"


def run_codex(proxy: Proxy, tmp_path: Path, prompt: str) -> subprocess.CompletedProcess[str]:
    """`claude-tray configure codex --default` in a scratch HOME, then `codex exec
    <prompt>` in a scratch project with only that file and the proxy's key in its
    environment (as configure tells people to export it); configure is undone after."""
    codex = require_codex()
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    env = {**configure_env(home, proxy, tmp_path / "state"), "CLAUDE_TRAY_API_KEY": CODEX_KEY}
    code, settings = run_configure(env, "codex", "--default")
    assert code == 0
    assert files_under(home) == {".codex/config.toml"}
    assert CODEX_KEY not in (home / ".codex" / "config.toml").read_text()
    run = run_tool(
        [
            str(codex),
            "exec",
            "--skip-git-repo-check",
            # Codex's sandbox (bubblewrap) is not what is under test here.
            "--dangerously-bypass-approvals-and-sandbox",
            prompt,
        ],
        {**codex_home(home), "CLAUDE_TRAY_API_KEY": CODEX_KEY},
        project,
    )
    assert undo("codex", settings, env).ok
    assert not (home / ".codex" / "config.toml").exists()
    return run


@pytest.mark.timeout(TOOL_TIMEOUT + 60)
def test_codex_runs_its_tool_and_answers_through_the_proxy_with_only_what_configure_wrote(
    upstream: Upstream, make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """Codex speaks the Responses API (streaming, `store: false`, its whole history
    resent, `developer` messages, namespace and hosted tools it offers). The model calls
    Codex's own exec_command; Codex runs it in the project and sends the output back,
    and the same CLI process answers. The key reaches Codex the way configure says:
    from CLAUDE_TRAY_API_KEY in its environment, never from the file."""
    proxy = make_proxy(api_key=CODEX_KEY)
    command = "echo made by codex > proof.txt && echo wrote-it"
    upstream.push(
        Reply(
            blocks=(ToolUse("mcp__client__exec_command", {"cmd": command}),),
            stop_reason="tool_use",
        ),
        text("Hello from the upstream, ", "through claude-tray."),
    )
    prompt = "Say hello for the codex test."
    run = run_codex(proxy, tmp_path, prompt)
    why = f"\n--- codex stdout:\n{run.stdout[-4000:]}\n--- stderr:\n{run.stderr[-4000:]}"
    assert run.returncode == 0, why
    assert run.stdout.strip() == ANSWER, why
    assert (tmp_path / "project" / "proof.txt").read_text() == "made by codex\n", why
    requests = upstream.messages_requests()
    assert len(requests) == 2 and asked(upstream, prompt), why
    results = json.dumps(requests[1].body["messages"][-1])
    assert "tool_result" in results and "wrote-it" in results, why
    # Codex took Claude's 200k window from the file (less its own 5% margin), not the
    # 272k it assumes for a model it does not know; its session log says so.
    logs = (tmp_path / "home" / ".codex").rglob("*.jsonl")
    windows = {w for f in logs for w in re.findall(r'"model_context_window":(\d+)', f.read_text())}
    assert windows == {"190000"}, why


@pytest.mark.timeout(TOOL_TIMEOUT + 60)
def test_codex_spawns_a_sub_agent_through_its_namespaced_tool(
    upstream: Upstream, make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """Codex offers its sub-agent tools inside a `namespace` tool: the model sees them
    as multi_agent_v1__spawn_agent, and its call must reach Codex as spawn_agent in the
    multi_agent_v1 namespace for Codex to start the agent and answer with its id."""
    proxy = make_proxy(api_key=CODEX_KEY)
    task = "Count the files for the parent."

    def parent_after_the_spawn(body: dict[str, Any]) -> bool:
        return "tool_result" in json.dumps(body["messages"][-1])

    upstream.push(
        Reply(
            blocks=(ToolUse("mcp__client__multi_agent_v1__spawn_agent", {"message": task}),),
            stop_reason="tool_use",
        ),
        text("The agent is on it.", when=parent_after_the_spawn),
    )
    run = run_codex(proxy, tmp_path, "Start a helper agent.")
    why = f"\n--- codex stdout:\n{run.stdout[-4000:]}\n--- stderr:\n{run.stderr[-4000:]}"
    assert run.returncode == 0, why
    assert run.stdout.strip() == "The agent is on it.", why
    offered = {t["name"] for t in upstream.messages_requests()[0].body.get("tools", [])}
    assert "mcp__client__multi_agent_v1__spawn_agent" in offered, why
    spawned = next(r for r in upstream.messages_requests() if parent_after_the_spawn(r.body))
    assert '\\"agent_id\\"' in json.dumps(spawned.body["messages"][-1]), why


@pytest.mark.timeout(TOOL_TIMEOUT + 60)
def test_cline_reads_a_file_with_its_tool_through_the_proxy_with_only_what_configure_wrote(
    upstream: Upstream, make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """Cline CLI 3 (chat completions, ~25 tools of its own): the model calls its
    read_files tool, Cline reads the file in the project and sends the result back, and
    the same CLI process answers."""
    cline = require_cline()
    key = "ct-cline-test-key"
    proxy = make_proxy(api_key=key)
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    (project / "notes.txt").write_text("the secret word is pelican\n")
    env = {**configure_env(home, proxy, tmp_path / "state"), "CLAUDE_TRAY_API_KEY": key}
    code, settings = run_configure(env, "cline", "--default")
    assert code == 0
    assert files_under(home) == {".cline/data/settings/providers.json"}

    upstream.push(
        Reply(
            blocks=(ToolUse("mcp__client__read_files", {"files": [{"path": "notes.txt"}]}),),
            stop_reason="tool_use",
        ),
        text("The word is ", "pelican."),
    )
    prompt = "Read notes.txt for the cline test."
    try:
        run = run_tool([str(cline), "--json", prompt], cline_home(home), project)
    finally:
        stop_cline_hub(home)
    why = f"\n--- cline stdout:\n{run.stdout[-4000:]}\n--- stderr:\n{run.stderr[-4000:]}"
    assert run.returncode == 0, why
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["type"] == "run_result" and result["finishReason"] == "completed", why
    assert result["text"] == "The word is pelican.", why
    assert result["model"] == {"id": "sonnet", "provider": "openai-compatible"} | {
        k: v for k, v in result["model"].items() if k not in ("id", "provider")
    }, why
    requests = upstream.messages_requests()
    assert len(requests) == 2 and asked(upstream, prompt), why
    results = json.dumps(requests[1].body["messages"][-1])
    assert "tool_result" in results and "pelican" in results, why

    assert undo("cline", settings, env).ok
    assert not (home / ".cline" / "data" / "settings" / "providers.json").exists()


@pytest.mark.timeout(TOOL_TIMEOUT + 60)
def test_continue_cli_answers_through_the_proxy_with_only_what_configure_wrote(
    upstream: Upstream, make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    cn = require_cn()
    proxy = make_proxy()
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    env = configure_env(home, proxy, tmp_path / "state")
    code, settings = run_configure(env, "continue", "--default")
    assert code == 0
    assert files_under(home) == {".continue/config.yaml"}
    before = (home / ".continue" / "config.yaml").read_bytes()

    upstream.push(text("Hello from the upstream, ", "through claude-tray."))
    prompt = "Say hello for the continue test."
    run = run_tool([str(cn), "-p", prompt], continue_home(home), project)
    why = f"\n--- cn stdout:\n{run.stdout[-4000:]}\n--- stderr:\n{run.stderr[-4000:]}"
    assert run.returncode == 0, why
    assert run.stdout.strip() == ANSWER, why
    assert asked(upstream, prompt), why

    # cn adds files of its own beside ours (logs, permissions); ours is as written.
    assert (home / ".continue" / "config.yaml").read_bytes() == before
    assert undo("continue", settings, env).ok
    assert not (home / ".continue" / "config.yaml").exists()


@pytest.mark.parametrize("tool", list(TOOLS))
def test_the_connection_test_gets_an_answer_the_way_each_tool_asks(
    tool: str, upstream: Upstream, proxy: Proxy, tmp_path: Path
) -> None:
    env = configure_env(tmp_path / "home", proxy, tmp_path / "state")
    upstream.push(text("o", "k"))
    result = check_connection(tool, load_settings(env), env, timeout=60)
    assert result.ok, result.message
    assert "answered “ok”" in result.message
    request = upstream.messages_requests()[-1]
    assert "connection test from claude-tray" in "\n".join(request.user_texts())


def test_the_connection_test_says_plainly_when_nothing_listens(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "HOME": str(tmp_path),
        "CLAUDE_TRAY_HOME": str(tmp_path / "s"),
        "CLAUDE_TRAY_PORT": str(port),
    }
    result = check_connection("opencode", load_settings(env), env, timeout=10)
    assert not result.ok
    assert f"claude-tray does not answer at http://127.0.0.1:{port}" in result.message
    assert "claude-tray serve" in result.message


def test_the_connection_test_names_a_wrong_key(
    upstream: Upstream, make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    proxy = make_proxy(api_key="the-real-key")
    env = configure_env(tmp_path / "home", proxy, tmp_path / "state")
    env["CLAUDE_TRAY_API_KEY"] = "a-stale-key"
    result = check_connection("continue", load_settings(env), env, timeout=30)
    assert not result.ok
    assert "refused the key (401)" in result.message
