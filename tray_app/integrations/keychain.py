"""The only door to the OS keychain (through `keyring`): claude-tray's own secrets, and reads of
Claude Code's stored sign-in for status.

Any failure of the keychain (no Secret Service, a locked keyring, a dismissed prompt, a
backend bug) becomes KeychainUnavailable with a sentence for the menu; nothing here hangs
on a prompt that cannot be shown, and no secret is ever put into a message or a log line.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from tray_app.errors import ClaudeTrayError

log = logging.getLogger(__name__)

SERVICE = "claude-tray"
API_KEY_ACCOUNT = "proxy-api-key"
# "sk-" so the log redaction recognises the key wherever it turns up.
API_KEY_PREFIX = "sk-ctray-"


class KeychainUnavailable(ClaudeTrayError):
    """The keychain could not be read or written; `reason` says why, for people."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the keychain is not available ({reason})")
        self.reason = reason


class Keychain:
    """Reads and writes generic passwords. `backend` is a keyring backend object (tests pass
    one bound to their own Secret Service); by default keyring chooses, once per process."""

    def __init__(self, backend: Any | None = None) -> None:
        self._backend = backend

    def _keyring(self) -> Any:
        if self._backend is None:
            import keyring  # lazily: importing it loads and probes every backend

            self._backend = keyring.get_keyring()
        return self._backend

    def get(self, service: str, account: str) -> str | None:
        try:
            value = self._keyring().get_password(service, account)
        except Exception as exc:  # every backend raises its own types; none may crash us
            raise KeychainUnavailable(_reason(exc)) from exc
        return value if isinstance(value, str) else None

    def set(self, service: str, account: str, value: str) -> None:
        try:
            self._keyring().set_password(service, account, value)
        except Exception as exc:
            raise KeychainUnavailable(_reason(exc)) from exc

    def delete(self, service: str, account: str) -> bool:
        """Remove an item; False when there was none."""
        try:
            import keyring.errors

            self._keyring().delete_password(service, account)
        except keyring.errors.PasswordDeleteError:
            return False
        except Exception as exc:
            raise KeychainUnavailable(_reason(exc)) from exc
        return True


def proxy_api_key(keychain: Keychain) -> str:
    """claude-tray's own API key: the stored one, or a new one stored now (first run)."""
    stored = keychain.get(SERVICE, API_KEY_ACCOUNT)
    if stored:
        return stored
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    keychain.set(SERVICE, API_KEY_ACCOUNT, key)
    # Read it back: a backend that accepts writes it cannot return (or a second launch
    # racing this one) must not leave the proxy with a key nobody can copy.
    stored = keychain.get(SERVICE, API_KEY_ACCOUNT)
    if not stored:
        raise KeychainUnavailable("the new API key could not be read back")
    log.info("generated the proxy's API key and stored it in the keychain")
    return stored


def _reason(exc: BaseException) -> str:
    """A short, secret-free description of a keychain failure, by its type."""
    import keyring.errors

    text = str(exc).strip().rstrip(".")
    if isinstance(exc, keyring.errors.KeyringLocked):
        # A locked keyring asks to be unlocked; with no display the prompt is dismissed.
        return "the keyring is locked; unlock it (log in to the desktop) and restart claude-tray"
    if isinstance(exc, keyring.errors.NoKeyringError):
        return "no keychain service is running (on Linux: a Secret Service such as gnome-keyring)"
    if isinstance(exc, keyring.errors.InitError):
        return (
            f"the keyring could not be opened: {text}"
            if text
            else "the keyring could not be opened"
        )
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
