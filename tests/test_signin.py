"""Sign-in status: found where the CLI keeps it, described for people, tokens never exposed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tray_app.integrations.signin import (
    SignInStatus,
    credentials_path,
    keychain_account,
    keychain_service_name,
    read_signin_status,
)

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ACCESS = "sk-ant-oat01-ACCESS-never-show-me"
REFRESH = "sk-ant-ort01-REFRESH-never-show-me"


def write_credentials(folder: Path, content: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".credentials.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
    path.chmod(0o600)
    return path


def oauth(expires_at: datetime, *, refresh: bool = True, plan: str | None = "max") -> object:
    entry: dict[str, object] = {
        "accessToken": ACCESS,
        "expiresAt": int(expires_at.timestamp() * 1000),
        "scopes": ["user:inference"],
        "rateLimitTier": "default_claude_max_20x",
    }
    if refresh:
        entry["refreshToken"] = REFRESH
    if plan is not None:
        entry["subscriptionType"] = plan
    return {"claudeAiOauth": entry, "mcpOAuth": {"server": {"accessToken": "mcp-secret"}}}


def status(env: dict[str, str], upstream_api_key: str | None = None) -> SignInStatus:
    # platform="linux": the file route, the same on every test machine.
    return read_signin_status(env, upstream_api_key=upstream_api_key, platform="linux", now=NOW)


def assert_no_secrets(result: SignInStatus) -> None:
    for text in (repr(result), str(result)):
        for secret in (ACCESS, REFRESH, "mcp-secret", "ACCESS", "REFRESH"):
            assert secret not in text


def test_no_file_means_not_signed_in(tmp_path: Path) -> None:
    result = status({"HOME": str(tmp_path)})

    assert result.method == "none"
    assert not result.signed_in
    assert result.source == "~/.claude/.credentials.json"
    assert "claude" in result.detail


def test_subscription_from_the_credentials_file(tmp_path: Path) -> None:
    expires = NOW + timedelta(hours=5)
    write_credentials(tmp_path / ".claude", oauth(expires))

    result = status({"HOME": str(tmp_path)})

    assert result == SignInStatus(
        method="subscription",
        signed_in=True,
        plan="max",
        expires_at=expires,
        source="~/.claude/.credentials.json",
        detail="Signed in with a Claude max subscription.",
    )
    assert_no_secrets(result)


def test_expired_access_token_with_refresh_token_is_still_signed_in(tmp_path: Path) -> None:
    write_credentials(tmp_path / ".claude", oauth(NOW - timedelta(minutes=1)))

    result = status({"HOME": str(tmp_path)})

    assert result.method == "subscription"
    assert result.signed_in
    assert "expired" in result.detail
    assert_no_secrets(result)


def test_expired_without_refresh_token_is_signed_out(tmp_path: Path) -> None:
    write_credentials(tmp_path / ".claude", oauth(NOW - timedelta(days=1), refresh=False))

    result = status({"HOME": str(tmp_path)})

    assert result.method == "subscription"
    assert not result.signed_in
    assert "log in again" in result.detail


def test_plan_and_expiry_are_optional(tmp_path: Path) -> None:
    write_credentials(tmp_path / ".claude", {"claudeAiOauth": {"accessToken": ACCESS}})

    result = status({"HOME": str(tmp_path)})

    assert (result.method, result.signed_in, result.plan, result.expires_at) == (
        "subscription",
        True,
        None,
        None,
    )


def test_file_without_claude_sign_in(tmp_path: Path) -> None:
    write_credentials(tmp_path / ".claude", {"mcpOAuth": {"server": {"accessToken": "mcp-secret"}}})

    result = status({"HOME": str(tmp_path)})

    assert (result.method, result.signed_in) == ("none", False)
    assert_no_secrets(result)


@pytest.mark.parametrize(
    "content",
    [f'{{"claudeAiOauth": {{"accessToken": "{ACCESS}",', "[1, 2]", "\ufeff{}"],
)
def test_corrupt_file_is_unknown(tmp_path: Path, content: str) -> None:
    write_credentials(tmp_path / ".claude", content)

    result = status({"HOME": str(tmp_path)})

    assert (result.method, result.signed_in) == ("unknown", False)
    assert result.detail
    assert_no_secrets(result)


def test_unreadable_file_is_unknown(tmp_path: Path) -> None:
    # A folder where the file should be: unreadable even for root, unlike chmod 000.
    (tmp_path / ".claude" / ".credentials.json").mkdir(parents=True)

    result = status({"HOME": str(tmp_path)})

    assert (result.method, result.signed_in) == ("unknown", False)
    assert "could not be read" in result.detail


def test_claude_config_dir_is_respected(tmp_path: Path) -> None:
    write_credentials(tmp_path / "home" / ".claude", {"not": "this one"})
    config_dir = tmp_path / "work-profile"
    path = write_credentials(config_dir, oauth(NOW + timedelta(hours=1), plan="pro"))
    env = {"HOME": str(tmp_path / "home"), "CLAUDE_CONFIG_DIR": str(config_dir)}

    result = status(env)

    assert (result.method, result.plan, result.source) == ("subscription", "pro", str(path))
    assert credentials_path(env) == path


def test_oauth_token_env(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "CLAUDE_CODE_OAUTH_TOKEN": ACCESS}
    write_credentials(tmp_path / ".claude", oauth(NOW + timedelta(hours=1)))

    result = status(env)

    assert (result.method, result.signed_in, result.source) == (
        "oauth_token",
        True,
        "CLAUDE_CODE_OAUTH_TOKEN",
    )
    assert_no_secrets(result)


def test_upstream_api_key_comes_first(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "CLAUDE_CODE_OAUTH_TOKEN": ACCESS}

    result = status(env, upstream_api_key="sk-ant-api03-never-show-me")

    assert (result.method, result.signed_in, result.source) == (
        "api_key",
        True,
        "claude-tray upstream_api_key",
    )
    assert "never-show-me" not in repr(result)


def test_anthropic_api_key_from_the_shell_does_not_count(tmp_path: Path) -> None:
    result = status({"HOME": str(tmp_path), "ANTHROPIC_API_KEY": "sk-ant-api03-shell"})
    assert result.method == "none"


# ---- the macOS Keychain item's name (the read itself needs a Mac) ----


def test_keychain_service_name() -> None:
    assert keychain_service_name({}) == "Claude Code-credentials"
    assert keychain_service_name({"CLAUDE_CONFIG_DIR": ""}) == "Claude Code-credentials"
    # sha256("/Users/me/.claude-work") starts with 1e91dd84.
    moved = {"CLAUDE_CONFIG_DIR": "/Users/me/.claude-work"}
    assert keychain_service_name(moved) == "Claude Code-credentials-1e91dd84"


def test_keychain_service_name_normalises_unicode() -> None:
    composed = {"CLAUDE_CONFIG_DIR": "/Users/Jos\u00e9/.claude"}
    decomposed = {"CLAUDE_CONFIG_DIR": "/Users/Jose\u0301/.claude"}
    assert keychain_service_name(composed) == keychain_service_name(decomposed)


@pytest.mark.parametrize(
    ("env", "account"),
    [
        ({"USER": "alice"}, "alice"),
        ({"USER": "first.last-2"}, "first.last-2"),
        ({"USER": "two words"}, "claude-code-user"),
        ({}, "claude-code-user"),
    ],
)
def test_keychain_account(env: dict[str, str], account: str) -> None:
    assert keychain_account(env) == account
