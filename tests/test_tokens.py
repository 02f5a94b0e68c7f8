"""The count_tokens estimate: exact for small cases, and growing with everything a turn adds."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tray_app.protocol.model import (
    ImagePart,
    Message,
    TextPart,
    ThinkingPart,
    ToolResultPart,
    ToolSpec,
    ToolUsePart,
    Turn,
)
from tray_app.protocol.tokens import (
    IMAGE_TOKENS,
    MESSAGE_TOKENS,
    TOOLS_TOKENS,
    estimate_input_tokens,
)

PNG = "iVBORw0KGgo="
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def turn(*prompt: Any, **fields: Any) -> Turn:
    base: dict[str, Any] = {
        "api": "anthropic",
        "model": "m",
        "system": None,
        "history": (),
        "prompt": prompt or (TextPart("hi"),),
        "stream": False,
    }
    return Turn(**{**base, **fields})


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        pytest.param(turn(TextPart("hi")), 1 + MESSAGE_TOKENS, id="two-bytes"),
        pytest.param(turn(TextPart("abcd" * 10)), 10 + MESSAGE_TOKENS, id="forty-bytes"),
        pytest.param(turn(TextPart("abcde")), 2 + MESSAGE_TOKENS, id="rounded-up"),
        pytest.param(
            turn(TextPart("abcd"), system="abcd"), 2 + MESSAGE_TOKENS, id="system-counted"
        ),
        pytest.param(
            turn(ImagePart("image/png", PNG)), IMAGE_TOKENS + MESSAGE_TOKENS, id="one-image"
        ),
        pytest.param(turn(TextPart("中文字")), 3 + MESSAGE_TOKENS, id="utf8-bytes"),
        pytest.param(turn(prompt=()), 1, id="nothing-is-still-1"),
    ],
)
def test_estimate_small_cases(subject: Turn, expected: int) -> None:
    assert estimate_input_tokens(subject) == expected


BASE = turn(TextPart("What is the weather in Paris?"))
TOOL = ToolSpec("get_weather", "Weather for a city.", SCHEMA)
GROWN = [
    pytest.param(dataclasses.replace(BASE, system="Be brief."), id="system"),
    pytest.param(
        dataclasses.replace(BASE, prompt=(*BASE.prompt, TextPart(" And in Rome?"))),
        id="more-text",
    ),
    pytest.param(
        dataclasses.replace(BASE, prompt=(*BASE.prompt, ImagePart("image/png", PNG))),
        id="image",
    ),
    pytest.param(
        dataclasses.replace(
            BASE,
            history=(
                Message("user", (TextPart("Hello"),)),
                Message("assistant", (TextPart("Hi! How can I help?"),)),
            ),
        ),
        id="history",
    ),
    pytest.param(dataclasses.replace(BASE, tools=(TOOL,)), id="tool"),
    pytest.param(dataclasses.replace(BASE, output_schema=SCHEMA), id="output-schema"),
    pytest.param(
        dataclasses.replace(
            BASE,
            history=(
                Message("user", (TextPart("weather?"),)),
                Message("assistant", (ToolUsePart("t1", "get_weather", {"city": "Paris"}),)),
            ),
            prompt=(ToolResultPart("t1", (TextPart("sunny"), ImagePart("image/png", PNG))),),
        ),
        id="tool-use-and-result",
    ),
]


@pytest.mark.parametrize("grown", GROWN)
def test_estimate_grows_with_what_the_turn_adds(grown: Turn) -> None:
    assert estimate_input_tokens(grown) > estimate_input_tokens(BASE)


def test_estimate_counts_tool_definitions_and_their_prompt() -> None:
    with_tool = dataclasses.replace(BASE, tools=(TOOL,))
    schema_tokens = len('{"type":"object","properties":{"city":{"type":"string"}}}') // 4
    assert estimate_input_tokens(with_tool) - estimate_input_tokens(BASE) > (
        TOOLS_TOKENS + schema_tokens
    )


def test_estimate_leaves_out_earlier_thinking() -> None:
    answer = Message("assistant", (TextPart("4"),))
    thought = Message("assistant", (ThinkingPart("let me think " * 50, "sig"), TextPart("4")))
    ask = Message("user", (TextPart("2+2?"),))
    assert estimate_input_tokens(
        dataclasses.replace(BASE, history=(ask, thought))
    ) == estimate_input_tokens(dataclasses.replace(BASE, history=(ask, answer)))


def test_estimate_is_plausible_for_prose() -> None:
    # English prose runs at roughly 4 characters per token: 4,500 characters of it
    # should land near 1,100 tokens, well within a factor of 1.5.
    prose = "The quick brown fox jumps over the lazy dog. " * 100
    estimate = estimate_input_tokens(turn(TextPart(prose)))
    assert 1100 / 1.5 < estimate < 1100 * 1.5
