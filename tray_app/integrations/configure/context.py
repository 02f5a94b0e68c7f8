"""What every tool writer needs to know: the proxy's URLs and key, the models to offer
with their limits, and where the user's home is."""

from __future__ import annotations

import ipaddress
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tray_app.errors import ModelNotFound
from tray_app.integrations.configure.core import ConfigureError
from tray_app.protocol.models import FAMILIES, resolve_model
from tray_app.settings import Settings, user_home

# Written as the key when the proxy has none: on loopback it accepts any key, and most
# tools refuse to start without one.
PLACEHOLDER_KEY = "claude-tray"
PROVIDER_ID = "claude-tray"
DEFAULT_MODEL = "sonnet"
# The environment variable tools that take a key by reference are told to read.
KEY_ENV = "CLAUDE_TRAY_API_KEY"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model id the proxy serves, as tools are told about it."""

    id: str
    label: str
    context: int
    output: int


# The one table of limits: every Claude model the CLI serves has a 200k context; 32k
# output is what each family allows at least (tools send it as max_tokens).
CONTEXT_TOKENS = 200_000
OUTPUT_TOKENS = 32_000
_LABELS = {"opus": "Claude Opus", "sonnet": "Claude Sonnet", "haiku": "Claude Haiku"}


def model_info(model_id: str) -> ModelInfo:
    label = _LABELS.get(model_id, model_id)
    return ModelInfo(model_id, f"{label} (claude-tray)", CONTEXT_TOKENS, OUTPUT_TOKENS)


@dataclass(frozen=True, slots=True)
class Context:
    home: Path
    env: Mapping[str, str]
    root_url: str  # http://127.0.0.1:PORT, for Anthropic-style clients
    api_key: str | None  # the proxy's own key, when it has one
    model: str  # the model made primary
    make_default: bool

    @property
    def openai_url(self) -> str:
        return self.root_url + "/v1"

    @property
    def key(self) -> str:
        return self.api_key or PLACEHOLDER_KEY

    @property
    def secret(self) -> bool:
        """Whether what we write holds a real key (then the file must be 0600)."""
        return self.api_key is not None

    @property
    def models(self) -> tuple[ModelInfo, ...]:
        """The primary model first, then the other families."""
        ids = [self.model, *(f for f in FAMILIES if f != self.model)]
        return tuple(model_info(i) for i in ids)

    def config_home(self) -> Path:
        """$XDG_CONFIG_HOME, else ~/.config (OpenCode and Zed use it on macOS too)."""
        xdg = self.env.get("XDG_CONFIG_HOME", "")
        return Path(xdg) if os.path.isabs(xdg) else self.home / ".config"

    def which(self, *names: str) -> str | None:
        path = self.env.get("PATH", "")
        for name in names:
            if found := shutil.which(name, path=path):
                return found
        return None


def proxy_root_url(settings: Settings) -> str:
    """The URL tools reach the proxy at, from the listen address and port."""
    if settings.port == 0:
        raise ConfigureError(
            None,
            "the port is 0 (a free one is picked at each start), so tools cannot be pointed "
            "at it; set a fixed port (CLAUDE_TRAY_PORT or the setting `port`) first",
        )
    host = settings.host.strip().strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{settings.port}"
    if address.is_unspecified:  # listening everywhere: this machine reaches it on loopback
        host = "127.0.0.1"
    elif isinstance(address, ipaddress.IPv6Address):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def make_context(
    settings: Settings,
    env: Mapping[str, str],
    *,
    model: str | None = None,
    make_default: bool = False,
    base_url: str | None = None,
) -> Context:
    chosen = (model or DEFAULT_MODEL).strip()
    for prefix in (f"{PROVIDER_ID}/", "openai/", "anthropic/"):
        chosen = chosen.removeprefix(prefix)
    if not chosen or any(c.isspace() or c in "\"'\\" for c in chosen):
        raise ConfigureError(None, f"'{chosen}' is not a model name")
    try:
        resolve_model(chosen, settings.model_aliases)
    except ModelNotFound as exc:
        raise ConfigureError(None, exc.message) from exc
    root = (base_url or proxy_root_url(settings)).rstrip("/")
    if root.endswith("/v1"):
        root = root[:-3]
    if not root.startswith(("http://", "https://")):
        raise ConfigureError(None, f"'{root}' is not an http:// or https:// URL")
    return Context(
        home=user_home(env),
        env=env,
        root_url=root,
        api_key=settings.api_key,
        model=chosen,
        make_default=make_default,
    )
