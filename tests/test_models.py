"""Model names: what each resolves to for the CLI, and the /v1/models body for both APIs."""

from __future__ import annotations

import pytest

from tray_app.errors import ModelNotFound
from tray_app.protocol.models import model_body, models_body, resolve_model

ALIASES = {"gpt-4o": "sonnet", "o3": "opus", "Fast": "haiku", "my-sonnet": "claude-sonnet-4-5"}


@pytest.mark.parametrize(
    ("requested", "resolved"),
    [
        pytest.param("sonnet", "sonnet", id="family"),
        pytest.param("Opus", "opus", id="family-capitalised"),
        pytest.param("HAIKU", "haiku", id="family-upper"),
        pytest.param("  sonnet\n", "sonnet", id="whitespace"),
        pytest.param("claude-sonnet-4-5", "claude-sonnet-4-5", id="claude-id"),
        pytest.param("claude-opus-4-1-20250805", "claude-opus-4-1-20250805", id="dated-id"),
        pytest.param("Claude-Haiku-4-5", "claude-haiku-4-5", id="claude-id-mixed-case"),
        pytest.param("anthropic/sonnet", "sonnet", id="anthropic-prefix"),
        pytest.param("anthropic/claude-opus-4-1", "claude-opus-4-1", id="anthropic-prefix-id"),
        pytest.param("claude-tray/haiku", "haiku", id="claude-tray-prefix"),
        pytest.param("claude-tray/gpt-4o", "sonnet", id="claude-tray-prefix-alias"),
        pytest.param("gpt-4o", "sonnet", id="alias"),
        pytest.param("GPT-4o", "sonnet", id="alias-other-case"),
        pytest.param("o3", "opus", id="short-alias"),
        pytest.param("Fast", "haiku", id="alias-key-as-written"),
        pytest.param("my-sonnet", "claude-sonnet-4-5", id="alias-to-id"),
    ],
)
def test_resolve_model(requested: str, resolved: str) -> None:
    assert resolve_model(requested, ALIASES) == resolved


@pytest.mark.parametrize(
    "requested",
    ["llama-3", "gpt-5", "anthropic/llama", "", "sonnet-ish", "openrouter/sonnet"],
)
def test_unknown_model(requested: str) -> None:
    with pytest.raises(ModelNotFound) as caught:
        resolve_model(requested, ALIASES)
    assert caught.value.model == requested


def entry(model_id: str, display_name: str) -> dict[str, object]:
    return {
        "id": model_id,
        "object": "model",
        "created": 1767225600,
        "owned_by": "anthropic",
        "type": "model",
        "display_name": display_name,
        "created_at": "2026-01-01T00:00:00Z",
    }


def test_models_body() -> None:
    assert models_body(ALIASES) == {
        "object": "list",
        "data": [
            entry("opus", "Claude Opus (latest)"),
            entry("sonnet", "Claude Sonnet (latest)"),
            entry("haiku", "Claude Haiku (latest)"),
            entry("Fast", "Fast"),
            entry("gpt-4o", "gpt-4o"),
            entry("my-sonnet", "my-sonnet"),
            entry("o3", "o3"),
        ],
        "has_more": False,
        "first_id": "opus",
        "last_id": "o3",
    }


def test_models_body_without_aliases_and_an_alias_named_like_a_family() -> None:
    body = models_body({"sonnet": "opus"})
    assert [m["id"] for m in body["data"]] == ["opus", "sonnet", "haiku"]
    assert (body["first_id"], body["last_id"]) == ("opus", "haiku")
    assert [m["id"] for m in models_body({})["data"]] == ["opus", "sonnet", "haiku"]


def test_models_body_fits_the_openai_shape() -> None:
    body = models_body(ALIASES)
    assert body["object"] == "list"
    for item in body["data"]:
        assert isinstance(item["id"], str)
        assert (item["object"], item["owned_by"]) == ("model", "anthropic")
        assert type(item["created"]) is int


def test_models_body_fits_the_anthropic_shape() -> None:
    body = models_body(ALIASES)
    assert body["has_more"] is False
    assert (body["first_id"], body["last_id"]) == (body["data"][0]["id"], body["data"][-1]["id"])
    for item in body["data"]:
        assert item["type"] == "model"
        assert isinstance(item["id"], str)
        assert isinstance(item["display_name"], str)
        assert item["created_at"] == "2026-01-01T00:00:00Z"


def test_model_body() -> None:
    assert model_body("gpt-4o", ALIASES) == entry("gpt-4o", "gpt-4o")
    assert model_body("sonnet", ALIASES) == entry("sonnet", "Claude Sonnet (latest)")
    with pytest.raises(ModelNotFound):
        model_body("llama-3", ALIASES)
