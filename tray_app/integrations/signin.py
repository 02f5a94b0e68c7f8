"""Tell, for status display only, how the Claude Code CLI is signed in; tokens never leave here."""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from tray_app.integrations.keychain import Keychain, KeychainUnavailable
from tray_app.settings import claude_config_dir, user_home

Method = Literal["subscription", "oauth_token", "api_key", "none", "unknown"]

KEYCHAIN_SERVICE = "Claude Code-credentials"
KEYCHAIN_FALLBACK_ACCOUNT = "claude-code-user"
KEYCHAIN_SOURCE = "macOS Keychain"
CREDENTIALS_FILE = ".credentials.json"
# The CLI falls back to the fixed account name when $USER holds anything else (seen in 2.1.330).
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class SignInStatus:
    """What a person needs to see about the sign-in; deliberately has no place for a token."""

    method: Method
    signed_in: bool
    plan: str | None  # the subscriptionType, e.g. "pro" or "max"
    expires_at: datetime | None
    source: str  # where it was found, for people
    detail: str  # one sentence for people


def read_signin_status(
    env: Mapping[str, str],
    *,
    upstream_api_key: str | None,
    platform: str = sys.platform,
    now: datetime | None = None,
    keychain: Keychain | None = None,
) -> SignInStatus:
    """Look where the CLI would look, in the CLI's order, and describe what is there.

    Blocking (file and keychain reads): call it through `asyncio.to_thread` from the loop.
    `now` (timezone-aware) is for tests; it decides whether a stored token has expired.
    `keychain` is the one to read on macOS (tests pass one bound to their own keyring).
    """
    if upstream_api_key:
        return SignInStatus(
            "api_key",
            True,
            None,
            None,
            "claude-tray upstream_api_key",
            "claude-tray gives the CLI its own Anthropic API key; usage is billed to that key.",
        )
    if env.get("CLAUDE_CODE_OAUTH_TOKEN", "").strip():
        return SignInStatus(
            "oauth_token",
            True,
            None,
            None,
            "CLAUDE_CODE_OAUTH_TOKEN",
            "The CLI uses the long-lived token (from `claude setup-token`) in the environment.",
        )
    # ANTHROPIC_API_KEY from the user's shell is deliberately not counted: claude-tray strips it
    # from the CLI's environment unless it is configured as upstream_api_key (DESIGN.md §2).
    moment = now or datetime.now(UTC)
    if platform == "darwin":
        from_keychain = _read_keychain(env, moment, keychain or Keychain())
        if from_keychain is not None:
            return from_keychain
    return _read_credentials_file(env, moment)


def credentials_path(env: Mapping[str, str]) -> Path:
    """Where the CLI keeps `.credentials.json`."""
    # CLI 2.1.330 lets CLAUDE_SECURESTORAGE_CONFIG_DIR move the sign-in store on its own
    # (an empty value means ~/.claude); otherwise it sits in the config dir.
    secure = env.get("CLAUDE_SECURESTORAGE_CONFIG_DIR")
    if secure is not None:
        folder = Path(secure) if secure else user_home(env) / ".claude"
    else:
        folder = claude_config_dir(env)
    return folder / CREDENTIALS_FILE


def keychain_service_name(env: Mapping[str, str]) -> str:
    """The Keychain service the CLI stores its sign-in under (DESIGN.md §5).

    A moved config dir gets its own item: "-" and the first 8 hex digits of the sha256 of
    the folder name (as written in the variable, NFC-normalised like the CLI does).
    """
    secure = env.get("CLAUDE_SECURESTORAGE_CONFIG_DIR")
    scoped = secure if secure is not None else env.get("CLAUDE_CONFIG_DIR")
    if not scoped:
        return KEYCHAIN_SERVICE
    digest = hashlib.sha256(unicodedata.normalize("NFC", scoped).encode("utf-8")).hexdigest()
    return f"{KEYCHAIN_SERVICE}-{digest[:8]}"


def keychain_account(env: Mapping[str, str]) -> str:
    user = env.get("USER", "")
    return user if _ACCOUNT_NAME.fullmatch(user) else KEYCHAIN_FALLBACK_ACCOUNT


def _read_keychain(
    env: Mapping[str, str], now: datetime, keychain: Keychain
) -> SignInStatus | None:
    """The Keychain's answer, or None when it holds no item (the CLI then reads the file)."""
    try:
        stored = keychain.get(keychain_service_name(env), keychain_account(env))
    except KeychainUnavailable as exc:  # a locked keychain must not crash the status
        return SignInStatus(
            "unknown",
            False,
            None,
            None,
            KEYCHAIN_SOURCE,
            f"The Keychain could not be read: {exc.reason}.",
        )
    if stored is None:
        return None
    return _status_from_json(stored, KEYCHAIN_SOURCE, now)


def _read_credentials_file(env: Mapping[str, str], now: datetime) -> SignInStatus:
    path = credentials_path(env)
    moved = "CLAUDE_CONFIG_DIR" in env or "CLAUDE_SECURESTORAGE_CONFIG_DIR" in env
    source = str(path) if moved else f"~/.claude/{CREDENTIALS_FILE}"
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return SignInStatus(
            "none",
            False,
            None,
            None,
            source,
            "Claude Code is not signed in: run `claude` in a terminal and log in.",
        )
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        return _unknown(source, f"The credentials file could not be read ({reason}).")
    return _status_from_json(text, source, now)


def _status_from_json(text: str, source: str, now: datetime) -> SignInStatus:
    # Messages here must never quote `text`: it holds the tokens.
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return _unknown(source, f"The stored sign-in is not valid JSON (line {exc.lineno}).")
    if not isinstance(data, dict):
        return _unknown(source, "The stored sign-in is not a JSON object.")
    oauth = data.get("claudeAiOauth")
    if not isinstance(oauth, dict) or not oauth.get("accessToken"):
        return SignInStatus(
            "none",
            False,
            None,
            None,
            source,
            "No Claude sign-in is stored: run `claude` in a terminal and log in.",
        )
    plan_value = oauth.get("subscriptionType")
    plan = plan_value if isinstance(plan_value, str) and plan_value else None
    expires_at = _from_epoch_ms(oauth.get("expiresAt"))
    signed_in = True
    if expires_at is not None and expires_at <= now:
        when = expires_at.strftime("%Y-%m-%d %H:%M UTC")
        if oauth.get("refreshToken"):
            # Only the CLI may refresh (refresh tokens rotate); it does so on its next request.
            detail = f"The access token expired at {when}; the CLI renews it on next use."
        else:
            signed_in = False
            detail = f"The sign-in expired at {when}: run `claude` and log in again."
    elif plan:
        detail = f"Signed in with a Claude {plan} subscription."
    else:
        detail = "Signed in with a Claude account."
    return SignInStatus("subscription", signed_in, plan, expires_at, source, detail)


def _from_epoch_ms(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _unknown(source: str, detail: str) -> SignInStatus:
    return SignInStatus("unknown", False, None, None, source, detail)
