"""Aider: `model`, `openai-api-base` and `openai-api-key` in ~/.aider.conf.yml, plus the
model's limits (and zero cost) in ~/.aider.model.metadata.json so aider knows the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tray_app.integrations.configure import yamltext
from tray_app.integrations.configure.context import Context
from tray_app.integrations.configure.continue_ import yaml_error
from tray_app.integrations.configure.core import Change, ConfigureError, read_config
from tray_app.integrations.configure.opencode import edit_jsonc
from tray_app.integrations.configure.spec import Tool

NEW_METADATA = "{\n}\n"


def conf_path(ctx: Context) -> Path:
    return ctx.home / ".aider.conf.yml"


def metadata_path(ctx: Context) -> Path:
    return ctx.home / ".aider.model.metadata.json"


def model_name(model_id: str) -> str:
    # litellm's `openai/` prefix: an OpenAI-compatible server at openai-api-base.
    return f"openai/{model_id}"


def metadata(ctx: Context) -> dict[str, Any]:
    return {
        model_name(m.id): {
            "max_tokens": m.output,
            "max_input_tokens": m.context,
            "max_output_tokens": m.output,
            "input_cost_per_token": 0,
            "output_cost_per_token": 0,
            "litellm_provider": "openai",
            "mode": "chat",
            "supports_vision": True,
        }
        for m in ctx.models
    }


def plan(ctx: Context) -> list[Change]:
    conf = read_config(conf_path(ctx), ctx.home)
    meta = read_config(metadata_path(ctx), ctx.home)
    # Aider has one model setting, so configuring it always makes ours the default.
    values = {
        "model": model_name(ctx.model),
        "openai-api-base": ctx.openai_url,
        "openai-api-key": ctx.key,
    }
    try:
        conf_text = yamltext.set_top_level(conf.text or "", values)
    except yamltext.YamlError as exc:
        raise yaml_error(conf, exc) from exc
    edits = [((name,), value) for name, value in metadata(ctx).items()]
    meta_text = edit_jsonc(meta, NEW_METADATA, edits)
    return [Change(conf, conf_text, secret=ctx.secret), Change(meta, meta_text)]


def is_configured(ctx: Context) -> bool:
    try:
        current = read_config(conf_path(ctx), ctx.home)
        root = yamltext.load(current.text or "")
    except (ConfigureError, yamltext.YamlError):
        return False
    if not hasattr(root, "get"):
        return False
    # Aider has no provider entry of ours to find: its OpenAI base URL pointing at the
    # proxy is what says so.
    return str(root.get("openai-api-base", "")).rstrip("/") == ctx.openai_url


def usage(ctx: Context) -> str:
    return f"aider (uses {model_name(ctx.model)} through claude-tray)"


TOOL = Tool(
    id="aider",
    label="Aider",
    binaries=("aider",),
    wire="chat",
    files=lambda ctx: [conf_path(ctx), metadata_path(ctx)],
    marks=lambda ctx: [],
    plan=plan,
    is_configured=is_configured,
    usage=usage,
)
