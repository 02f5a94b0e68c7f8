"""The JSONC editor: what it parses and refuses, and that an edit changes only the span
of the value it sets (everything else, comments included, stays verbatim)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tray_app.integrations.configure import jsonc

PARSES = [
    ('{"a": 1}', {"a": 1}),
    ('// c\n{ /* x */ "a": [1, 2,], "b": {"c": null,}, }\n', {"a": [1, 2], "b": {"c": None}}),
    (
        '{"s": "a//b /* not a comment */", "u": "\\u00e9\\n"}',
        {"s": "a//b /* not a comment */", "u": "é\n"},
    ),
    ('{"a": 1, "a": 2}', {"a": 2}),
    ("\ufeff{}", {}),
    ('{"n": -1.5e3, "t": true, "f": false}', {"n": -1500.0, "t": True, "f": False}),
]


@pytest.mark.parametrize(("text", "value"), PARSES)
def test_parses_jsonc(text: str, value: Any) -> None:
    assert jsonc.loads(text) == value


@pytest.mark.parametrize(
    ("text", "line", "column", "reason"),
    [
        ('{\n  "a": 1,\n', 3, 1, "unexpected end of file inside an object"),
        ('{\n  "a": tru\n}', 2, 8, "unexpected character 't'"),
        ("{\n  'a': 1\n}", 2, 3, "expected a quoted key"),
        ('{"a": 1 /* open', 1, 9, "unterminated /* comment"),
        ('{"a": "x\ny"}', 1, 7, "invalid or unterminated string"),
        ('{"a": 1} x', 1, 10, "unexpected text after the end"),
        ("", 1, 1, "holds no value"),
        ('{"a": 01}', 1, 8, "expected ',' or '}'"),
        ("[" * 500, 1, 202, "nested too deeply"),
    ],
)
def test_refuses_with_line_and_column(text: str, line: int, column: int, reason: str) -> None:
    with pytest.raises(jsonc.JsoncError) as caught:
        jsonc.parse(text)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert reason in caught.value.reason


EDITS = [
    # Insert into a multi-line object after a trailing line comment.
    (
        '{\n  "a": 1 // one\n}\n',
        ("b",),
        2,
        '{\n  "a": 1, // one\n  "b": 2\n}\n',
    ),
    # A file with trailing commas gets one after the new member too.
    ('{\n\t"a": 1,\n}', ("b",), {"c": 1}, '{\n\t"a": 1,\n\t"b": {\n\t\t"c": 1\n\t},\n}'),
    # One-line objects stay on one line.
    ('{"a": 1}', ("b",), [1, "x"], '{"a": 1, "b": [1, "x"]}'),
    # An empty object is opened up.
    ("{}", ("a", "b"), 1, '{\n  "a": {\n    "b": 1\n  }\n}'),
    # Comments inside an empty object stay.
    ("{\n  // nothing yet\n}", ("a",), 1, '{\n  // nothing yet\n  "a": 1\n}'),
    # Replacing a value keeps the comment after it.
    ('{\n  "m": "x", // mine\n  "z": 0\n}', ("m",), "y", '{\n  "m": "y", // mine\n  "z": 0\n}'),
    # A closing brace on the last member's line.
    ('{\n  "a": 1 }', ("b",), 2, '{\n  "a": 1,\n  "b": 2 }'),
    # CRLF files get CRLF.
    ('{\r\n  "a": 1\r\n}\r\n', ("b",), 2, '{\r\n  "a": 1,\r\n  "b": 2\r\n}\r\n'),
    # Non-ASCII is written as is.
    ('{"a": "é"}', ("b",), "ü", '{"a": "é", "b": "ü"}'),
    # An equal value is not rewritten, whatever its formatting.
    ('{"a": [1,2]}', ("a",), [1, 2], '{"a": [1,2]}'),
]


@pytest.mark.parametrize(("text", "path", "value", "expected"), EDITS)
def test_set_value_changes_only_its_span(
    text: str, path: tuple[str, ...], value: Any, expected: str
) -> None:
    out = jsonc.set_value(text, path, value)
    assert out == expected
    assert jsonc.set_value(out, path, value) == out
    data = jsonc.loads(out)
    for key in path[:-1]:
        data = data[key]
    assert data[path[-1]] == value


def test_merge_keeps_keys_it_does_not_set() -> None:
    text = '{\n  "p": {\n    "x": {"keep": true},\n    "y": 1 // user\n  }\n}\n'
    out = jsonc.merge(text, ("p",), {"x": {"mine": 2}, "z": 3})
    assert jsonc.loads(out) == {"p": {"x": {"keep": True, "mine": 2}, "y": 1, "z": 3}}
    assert '"y": 1, // user' in out
    assert jsonc.merge(out, ("p",), {"x": {"mine": 2}, "z": 3}) == out


def test_merge_refuses_to_replace_a_non_object_with_an_object() -> None:
    with pytest.raises(jsonc.PathTypeError) as caught:
        jsonc.merge('{"provider": "x"}', ("provider", "claude-tray"), {"a": 1})
    assert str(caught.value) == "'provider' should be an object but is a string"


def test_random_documents_round_trip_through_edits() -> None:
    # Edits on many shapes: the untouched members keep their exact text.
    base = {"a": [1, {"b": None}], "c": "d", "e": {"f": {"g": 1.5}}}
    for indent in (None, 2, "\t"):
        text = json.dumps(base, indent=indent)
        out = jsonc.merge(text, ("e", "f", "h"), {"i": [True]})
        assert jsonc.loads(out) == {**base, "e": {"f": {"g": 1.5, "h": {"i": [True]}}}}
        assert out.startswith(text[: text.index('"e"')])
