"""The keychain through a real Secret Service: gnome-keyring on a D-Bus session of the test's
own, unlocked in the test. The proxy's API key round trip, Claude Code's sign-in read from a
planted item and a planted file, and a locked or missing keyring degrading to a message."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from desktop import private_env, require, secret_service, session_bus

from tray_app.integrations.keychain import (
    API_KEY_ACCOUNT,
    API_KEY_PREFIX,
    SERVICE,
    Keychain,
    KeychainUnavailable,
    proxy_api_key,
)
from tray_app.integrations.signin import (
    keychain_account,
    keychain_service_name,
    read_signin_status,
)

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
CREDENTIALS = {
    "claudeAiOauth": {
        "accessToken": "sk-ant-oat01-planted-access",
        "refreshToken": "sk-ant-ort01-planted-refresh",
        "expiresAt": int(datetime(2026, 11, 4, tzinfo=UTC).timestamp() * 1000),
        "scopes": ["user:inference"],
        "subscriptionType": "max",
    }
}


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A desktop session's environment with a running, unlocked Secret Service; this
    process talks to it too (secretstorage reads DBUS_SESSION_BUS_ADDRESS)."""
    env = private_env(tmp_path / "home")
    with session_bus(env), secret_service(env):
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", env["DBUS_SESSION_BUS_ADDRESS"])
        yield env


@pytest.fixture
def keychain(session: dict[str, str]) -> Iterator[Keychain]:
    from keyring.backends import SecretService

    yield Keychain(SecretService.Keyring())
    # keyring's Secret Service backend opens a D-Bus connection per call and leaves it to
    # the garbage collector; collect them here, quietly, not in some later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def secret_tool(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    require("secret-tool")
    return subprocess.run(
        ["secret-tool", *args], capture_output=True, text=True, env=env, timeout=10, check=False
    )


def test_the_proxy_api_key_is_made_once_and_kept(
    keychain: Keychain, session: dict[str, str]
) -> None:
    first = proxy_api_key(keychain)
    assert first.startswith(API_KEY_PREFIX) and len(first) > 40
    assert proxy_api_key(keychain) == first
    assert keychain.get(SERVICE, API_KEY_ACCOUNT) == first
    # It really is in the Secret Service, where other tools see it.
    found = secret_tool(session, "lookup", "service", SERVICE, "username", API_KEY_ACCOUNT)
    assert found.returncode == 0 and found.stdout == first
    assert keychain.delete(SERVICE, API_KEY_ACCOUNT) is True
    assert keychain.delete(SERVICE, API_KEY_ACCOUNT) is False
    assert proxy_api_key(keychain) != first  # a new one after deletion


def test_keyring_chooses_the_secret_service_by_itself(session: dict[str, str]) -> None:
    """The shipped code path: no backend given, keyring picks one (in a fresh process)."""
    script = (
        "from tray_app.integrations.keychain import Keychain, proxy_api_key\n"
        "import keyring\n"
        "print(type(keyring.get_keyring()).__module__)\n"
        "print(proxy_api_key(Keychain()))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=session, cwd=ROOT
    )
    assert ran.returncode == 0, ran.stderr
    backend, key = ran.stdout.split()
    assert backend == "keyring.backends.SecretService"
    stored = secret_tool(session, "lookup", "service", SERVICE, "username", API_KEY_ACCOUNT)
    assert stored.stdout == key


def test_claude_sign_in_read_from_a_planted_keychain_item(
    keychain: Keychain, session: dict[str, str]
) -> None:
    env = {**session, "USER": "dev"}
    keychain.set(keychain_service_name(env), keychain_account(env), json.dumps(CREDENTIALS))
    status = read_signin_status(
        env, upstream_api_key=None, platform="darwin", now=NOW, keychain=keychain
    )
    assert (status.method, status.signed_in, status.plan) == ("subscription", True, "max")
    assert status.source == "macOS Keychain"
    assert status.expires_at == datetime(2026, 11, 4, tzinfo=UTC)
    assert "planted" not in repr(status)  # no token in what is shown

    # With CLAUDE_CONFIG_DIR set the CLI uses an item of its own: none here, so the file.
    moved = {**env, "CLAUDE_CONFIG_DIR": str(Path(session["HOME"]) / "elsewhere")}
    status = read_signin_status(
        moved, upstream_api_key=None, platform="darwin", now=NOW, keychain=keychain
    )
    assert status.method == "none" and not status.signed_in


def test_claude_sign_in_read_from_a_planted_file(session: dict[str, str]) -> None:
    folder = Path(session["HOME"]) / ".claude"
    folder.mkdir()
    (folder / ".credentials.json").write_text(json.dumps(CREDENTIALS))
    status = read_signin_status(session, upstream_api_key=None, platform="linux", now=NOW)
    assert (status.method, status.signed_in, status.plan) == ("subscription", True, "max")
    assert status.source == "~/.claude/.credentials.json"


def test_a_locked_keyring_is_a_message_not_a_hang(
    keychain: Keychain, session: dict[str, str]
) -> None:
    import secretstorage

    proxy_api_key(keychain)
    with secretstorage.dbus_init() as conn:
        collection = secretstorage.get_default_collection(conn)
        collection.lock()
        assert collection.is_locked()
    began = time.monotonic()
    with pytest.raises(KeychainUnavailable) as caught:
        proxy_api_key(keychain)
    assert time.monotonic() - began < 5
    assert "locked" in caught.value.reason
    # Claude's sign-in status says the same, instead of raising.
    status = read_signin_status(
        session, upstream_api_key=None, platform="darwin", now=NOW, keychain=keychain
    )
    assert status.method == "unknown" and "locked" in status.detail


def test_no_secret_service_is_a_message(tmp_path: Path) -> None:
    """A session bus with no keyring daemon on it: keyring finds no backend."""
    env = private_env(tmp_path / "home")
    with session_bus(env):
        script = (
            "from tray_app.integrations.keychain import Keychain, KeychainUnavailable, "
            "proxy_api_key\n"
            "try:\n"
            "    proxy_api_key(Keychain())\n"
            "except KeychainUnavailable as exc:\n"
            "    print(exc.reason)\n"
        )
        began = time.monotonic()
        ran = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT
        )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().startswith("no keychain service is running")
    assert time.monotonic() - began < 10
