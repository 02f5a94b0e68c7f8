"""Re-record tests/data/*.jsonl: the real bundled CLI's stream-json for scripted upstream replies.

Run after bumping claude-agent-sdk: `python tests/record_transcripts.py`. The pure
translation tests replay these files, so they pin what this CLI version really emits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient

sys.path.insert(0, str(Path(__file__).parent))
from upstream import Reply, Text, Thinking, ToolUse, Upstream, error, text

DATA = Path(__file__).parent / "data"

CASES: dict[str, tuple[Reply, ...]] = {
    "text": (text("Hel", "lo, ", "world", "!"),),
    "thinking_text": (
        Reply(blocks=(Thinking(("Let me ", "think.")), Text(("The answer", " is 4.")))),
    ),
    "tool_use": (
        Reply(blocks=(Text(("Checking.",)), ToolUse("lookup", {"q": "weather", "n": 2}))),
    ),
    "max_tokens": (text("cut ", "short", stop_reason="max_tokens"),),
    "cut_stream": (Reply(blocks=(Text(("ab", "cd", "ef")),), cut_after=1),),
    "error_401": (error(401, "invalid x-api-key"),),
    "error_429": (error(429, "rate limited"),),
    "error_500": (error(500, "boom"),),
    "error_529": (error(529, "overloaded"),),
}


async def record(up: Upstream, name: str, replies: tuple[Reply, ...], env: dict[str, str]) -> None:
    up.clear()
    up.push(*replies)
    home = tempfile.mkdtemp()
    env = {"CLAUDE_CONFIG_DIR": f"{home}/cfg", "HOME": home, **env}
    options = ClaudeAgentOptions(
        tools=[],
        include_partial_messages=True,
        env=env,
        cwd=home,
        setting_sources=[],
        model="sonnet",
    )
    client = ClaudeSDKClient(options)
    await client.connect()
    await client.query("hi")
    lines = []
    async for raw in client._query.receive_messages():  # noqa: SLF001 - raw lines, as the backend reads them
        lines.append(raw)
        if raw.get("type") == "result":
            break
    await client.disconnect()
    with (DATA / f"{name}.jsonl").open("w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    print(name, len(lines), "lines")


async def main() -> None:
    up = Upstream().start()
    base = {
        "ANTHROPIC_BASE_URL": up.url,
        "ANTHROPIC_API_KEY": "test",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }
    try:
        for name, replies in CASES.items():
            await record(up, name, replies, base)
        await record(up, "not_signed_in", (), dict(base, ANTHROPIC_API_KEY=""))
    finally:
        up.stop()


if __name__ == "__main__":
    asyncio.run(main())
