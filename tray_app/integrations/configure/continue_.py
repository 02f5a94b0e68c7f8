"""Continue (IDE extensions and the `cn` CLI): `claude-tray <model>` entries in the
`models:` list of ~/.continue/config.yaml; the default one goes first (Continue uses the
first chat model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tray_app.integrations.configure import yamltext
from tray_app.integrations.configure.context import Context
from tray_app.integrations.configure.core import Change, ConfigureError, Current, read_config
from tray_app.integrations.configure.spec import Tool

NAME_PREFIX = "claude-tray "
NEW_DOCUMENT = {"name": "Local Config", "version": "1.0.0", "schema": "v1"}


def config_dir(ctx: Context) -> Path:
    if global_dir := ctx.env.get("CONTINUE_GLOBAL_DIR"):
        return Path(global_dir)
    return ctx.home / ".continue"


def config_path(ctx: Context) -> Path:
    return config_dir(ctx) / "config.yaml"


def is_ours(item: Any) -> bool:
    return hasattr(item, "get") and str(item.get("name", "")).startswith(NAME_PREFIX)


def entries(ctx: Context) -> list[dict[str, Any]]:
    return [
        {
            "name": f"{NAME_PREFIX}{m.id}",
            "provider": "openai",
            "model": m.id,
            "apiBase": ctx.openai_url,
            "apiKey": ctx.key,
            "roles": ["chat", "edit", "apply"],
            "capabilities": ["tool_use", "image_input"],
            "defaultCompletionOptions": {"contextLength": m.context, "maxTokens": m.output},
        }
        for m in ctx.models
    ]


def yaml_error(current: Current, exc: yamltext.YamlError) -> ConfigureError:
    return ConfigureError(current.path, exc.reason, line=exc.line)


def plan(ctx: Context) -> list[Change]:
    current = read_config(config_path(ctx), ctx.home)
    try:
        text = yamltext.upsert_list_items(
            current.text or "",
            "models",
            entries(ctx),
            is_ours,
            first=ctx.make_default,
            new_document=NEW_DOCUMENT,
        )
    except yamltext.YamlError as exc:
        raise yaml_error(current, exc) from exc
    return [Change(current, text, secret=ctx.secret)]


def is_configured(ctx: Context) -> bool:
    try:
        current = read_config(config_path(ctx), ctx.home)
        root = yamltext.load(current.text or "")
    except (ConfigureError, yamltext.YamlError):
        return False
    models = root.get("models") if hasattr(root, "get") else None
    return isinstance(models, list) and any(is_ours(m) for m in models)


def usage(ctx: Context) -> str:
    first = "it is the first model, so cn uses it" if ctx.make_default else "pick it with /model"
    return f'cn -p "..." or the Continue extension: "{NAME_PREFIX}{ctx.model}" ({first})'


TOOL = Tool(
    id="continue",
    label="Continue",
    binaries=("cn",),
    wire="chat",
    files=lambda ctx: [config_path(ctx)],
    marks=lambda ctx: [config_dir(ctx)],
    plan=plan,
    is_configured=is_configured,
    usage=usage,
)
