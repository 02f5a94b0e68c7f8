"""Parse JSON with comments (JSONC) keeping byte offsets, and edit one path by span.

OpenCode and Zed read JSONC: JSON plus `//` and `/* */` comments and trailing commas. No
well-kept Python library edits JSONC while keeping comments (json5/pyjson5 drop them;
json-five's round trip is unmaintained), so this module does what VS Code's jsonc-parser
`modify` does: parse to a tree of nodes that remember where they sit in the text, then
replace one value's span or insert one member, leaving every other character verbatim.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Python's json rejects what JSON rejects in a string: control characters, bad escapes.
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERALS = {"true": True, "false": False, "null": None}
# Deeper nesting than this in a config file is hostile, not a config.
MAX_DEPTH = 200


class JsoncError(ValueError):
    """The text is not JSONC; `line` and `column` are 1-based."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"{message} (line {line}, column {column})")
        self.reason = message
        self.line = line
        self.column = column


@dataclass(slots=True)
class Member:
    key: str
    key_start: int
    value: Node


@dataclass(slots=True)
class Node:
    """One value; `start`/`end` are offsets of its first and one-past-last character."""

    kind: str  # object, array, string, number, literal
    start: int
    end: int
    value: Any = None  # the plain value for scalars
    members: list[Member] = field(default_factory=list)
    items: list[Node] = field(default_factory=list)

    def get(self, key: str) -> Node | None:
        # Like JSON.parse, the last of duplicate keys wins.
        found = None
        for member in self.members:
            if member.key == key:
                found = member.value
        return found

    def member(self, key: str) -> Member | None:
        found = None
        for member in self.members:
            if member.key == key:
                found = member
        return found

    def plain(self) -> Any:
        if self.kind == "object":
            return {m.key: m.value.plain() for m in self.members}
        if self.kind == "array":
            return [item.plain() for item in self.items]
        return self.value


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str, pos: int | None = None) -> JsoncError:
        at = self.pos if pos is None else pos
        line = self.text.count("\n", 0, at) + 1
        column = at - (self.text.rfind("\n", 0, at) + 1) + 1
        return JsoncError(message, line, column)

    def skip(self) -> None:
        """Skip whitespace and comments."""
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t\r\n\ufeff":
                self.pos += 1
            elif text.startswith("//", self.pos):
                newline = text.find("\n", self.pos)
                self.pos = len(text) if newline < 0 else newline
            elif text.startswith("/*", self.pos):
                close = text.find("*/", self.pos + 2)
                if close < 0:
                    raise self.error("unterminated /* comment")
                self.pos = close + 2
            else:
                return

    def document(self) -> Node:
        self.skip()
        if self.pos >= len(self.text):
            raise self.error("the file holds no value")
        node = self.value(0)
        self.skip()
        if self.pos < len(self.text):
            raise self.error("unexpected text after the end of the value")
        return node

    def value(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise self.error("nested too deeply")
        text = self.text
        if self.pos >= len(text):
            raise self.error("unexpected end of file")
        char = text[self.pos]
        if char == "{":
            return self.object(depth)
        if char == "[":
            return self.array(depth)
        if char == '"':
            start = self.pos
            decoded = self.string()
            return Node("string", start, self.pos, decoded)
        match = _NUMBER.match(text, self.pos)
        if match and match.group():
            start, self.pos = self.pos, match.end()
            return Node("number", start, self.pos, json.loads(match.group()))
        for word, literal in _LITERALS.items():
            if text.startswith(word, self.pos):
                start, self.pos = self.pos, self.pos + len(word)
                return Node("literal", start, self.pos, literal)
        raise self.error(f"unexpected character {char!r}")

    def string(self) -> str:
        match = _STRING.match(self.text, self.pos)
        if not match:
            raise self.error("invalid or unterminated string")
        self.pos = match.end()
        decoded: str = json.loads(match.group())
        return decoded

    def object(self, depth: int) -> Node:
        node = Node("object", self.pos, self.pos)
        self.pos += 1
        while True:
            self.skip()
            if self.pos >= len(self.text):
                raise self.error("unexpected end of file inside an object")
            if self.text[self.pos] == "}":
                break
            if self.text[self.pos] != '"':
                raise self.error("expected a quoted key or '}'")
            key_start = self.pos
            key = self.string()
            self.skip()
            if not self.text.startswith(":", self.pos):
                raise self.error("expected ':' after the key")
            self.pos += 1
            self.skip()
            node.members.append(Member(key, key_start, self.value(depth + 1)))
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            self.skip()
            if not self.text.startswith("}", self.pos):
                raise self.error("expected ',' or '}'")
        self.pos += 1
        node.end = self.pos
        return node

    def array(self, depth: int) -> Node:
        node = Node("array", self.pos, self.pos)
        self.pos += 1
        while True:
            self.skip()
            if self.pos >= len(self.text):
                raise self.error("unexpected end of file inside an array")
            if self.text[self.pos] == "]":
                break
            node.items.append(self.value(depth + 1))
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            self.skip()
            if not self.text.startswith("]", self.pos):
                raise self.error("expected ',' or ']'")
        self.pos += 1
        node.end = self.pos
        return node


def parse(text: str) -> Node:
    """The tree of `text`, or JsoncError naming the line and column."""
    return _Parser(text).document()


def loads(text: str) -> Any:
    return parse(text).plain()


# ---- editing ----


class PathTypeError(ValueError):
    """A key on the path exists but holds something that is not an object."""

    def __init__(self, path: Sequence[str], found: str) -> None:
        shown = ".".join(path)
        super().__init__(f"'{shown}' should be an object but is {_KIND_NAMES.get(found, found)}")
        self.path = tuple(path)
        self.found = found


_KIND_NAMES = {
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "literal": "true, false or null",
}


@dataclass(frozen=True, slots=True)
class _Style:
    unit: str  # one level of indentation
    newline: str


def _style(text: str) -> _Style:
    newline = "\r\n" if "\r\n" in text else "\n"
    indents = [
        m.group(1) for m in re.finditer(r"^([ \t]+)\S", text, flags=re.MULTILINE) if m.group(1)
    ]
    if any(i.startswith("\t") for i in indents):
        return _Style("\t", newline)
    spaces = [len(i) for i in indents if set(i) == {" "}]
    return _Style(" " * (min(spaces) if spaces else 2), newline)


def _line_indent(text: str, pos: int) -> str:
    line_start = text.rfind("\n", 0, pos) + 1
    match = re.match(r"[ \t]*", text[line_start:pos])
    return match.group() if match else ""


def _first_on_line(text: str, pos: int) -> bool:
    line_start = text.rfind("\n", 0, pos) + 1
    return not text[line_start:pos].strip()


def _render(value: Any, indent: str, style: _Style) -> str:
    rendered = json.dumps(value, indent=style.unit, ensure_ascii=False)
    return rendered.replace("\n", style.newline + indent)


def _render_inline(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def merge(text: str, path: Sequence[str], value: Any) -> str:
    """Set `path` to `value`, merging objects key by key so other keys stay.

    Where the value at `path` already equals `value`, nothing changes. Objects on the way
    are created when missing. Raises JsoncError (text does not parse) or PathTypeError
    (something on the way is not an object).
    """
    root = parse(text)
    if root.kind != "object":
        raise PathTypeError(("(top level)",), root.kind)
    if isinstance(value, Mapping):
        existing = _find(root, path)
        if existing is not None and existing.kind != "object":
            raise PathTypeError(path, existing.kind)
        if existing is not None:
            for key, sub in value.items():
                text = merge(text, (*path, key), sub)
            return text
    return set_value(text, path, value)


def _find(root: Node, path: Sequence[str]) -> Node | None:
    node: Node | None = root
    for key in path:
        if node is None or node.kind != "object":
            return None
        node = node.get(key)
    return node


def set_value(text: str, path: Sequence[str], value: Any) -> str:
    """Replace the value at `path`, or insert it (creating the objects on the way)."""
    if not path:
        raise ValueError("an empty path")
    style = _style(text)
    node = parse(text)
    for depth, key in enumerate(path):
        if node.kind != "object":
            raise PathTypeError(path[:depth] or ("(top level)",), node.kind)
        member = node.member(key)
        if member is None:
            nested: Any = value
            for inner in reversed(path[depth + 1 :]):
                nested = {inner: nested}
            return _insert(text, node, key, nested, style)
        if depth == len(path) - 1:
            if member.value.plain() == value and member.value.kind == _kind_of(value):
                return text
            if _is_multiline(text, node):
                rendered = _render(value, _line_indent(text, member.key_start), style)
            else:
                rendered = _render_inline(value)
            return text[: member.value.start] + rendered + text[member.value.end :]
        node = member.value
    raise AssertionError("unreachable")


def _kind_of(value: Any) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None or isinstance(value, bool):
        return "literal"
    return "number"


def _is_multiline(text: str, obj: Node) -> bool:
    """An object laid out one member per line (not `{"a": 1, "b": 2}` on one line)."""
    if not obj.members:
        return "\n" in text[obj.start : obj.end]
    return "\n" in text[obj.start : obj.end] and _first_on_line(text, obj.members[0].key_start)


def _insert(text: str, obj: Node, key: str, value: Any, style: _Style) -> str:
    """Insert `"key": value` as the last member of `obj`."""
    close = obj.end - 1  # the position of '}'
    key_text = json.dumps(key, ensure_ascii=False)
    obj_indent = _line_indent(text, obj.start)
    if not obj.members:
        inner = text[obj.start + 1 : close]
        child = obj_indent + style.unit
        member = f"{key_text}: {_render(value, child, style)}"
        if not inner.strip():
            # `{}` or `{ }`: write it out over several lines.
            body = f"{{{style.newline}{child}{member}{style.newline}{obj_indent}}}"
            return text[: obj.start] + body + text[obj.end :]
        # Only comments inside: keep them, add the member after them on its own line.
        before = text[:close].rstrip(" \t")
        insertion = f"{style.newline}{child}{member}{style.newline}{obj_indent}"
        if before.endswith("\n"):
            insertion = f"{child}{member}{style.newline}{obj_indent}"
        return before + insertion + text[close:]

    last = obj.members[-1]
    first = obj.members[0]
    if not _is_multiline(text, obj):
        member = f"{key_text}: {_render_inline(value)}"
        anchor, has_comma = _after_value(text, last.value.end, close)
        if has_comma:
            return text[:anchor] + f" {member}," + text[anchor:]
        return text[: last.value.end] + f", {member}" + text[last.value.end :]

    child = _line_indent(text, first.key_start)
    member = f"{key_text}: {_render(value, child, style)}"
    anchor, has_comma = _after_value(text, last.value.end, close)
    line_end = _end_of_line(text, anchor, close)
    # A file that ends its members with commas gets one after ours too.
    comma = "" if has_comma else ","
    trailing = "," if has_comma else ""
    if line_end is None:
        # The closing brace shares the line with the last member: break the line before it.
        if has_comma:
            return text[:anchor] + f"{style.newline}{child}{member}," + text[anchor:]
        end = last.value.end
        return text[:end] + f",{style.newline}{child}{member}" + text[end:]
    out = text[: last.value.end] + comma + text[last.value.end : line_end]
    return out + f"{style.newline}{child}{member}{trailing}" + text[line_end:]


def _after_value(text: str, pos: int, limit: int) -> tuple[int, bool]:
    """After a value: the position just past a following comma (if any) and whether one was."""
    scan = pos
    while scan < limit:
        if text[scan] in " \t\r\n":
            scan += 1
        elif text.startswith("//", scan):
            newline = text.find("\n", scan)
            scan = limit if newline < 0 else newline
        elif text.startswith("/*", scan):
            scan = text.find("*/", scan + 2) + 2
        elif text[scan] == ",":
            return scan + 1, True
        else:
            break
    return pos, False


def _end_of_line(text: str, pos: int, close: int) -> int | None:
    """Where the line holding `pos` ends (before its newline), past spaces and comments on
    it; None when the object's closing brace comes first."""
    scan = pos
    while scan < close:
        char = text[scan]
        if char == "\n":
            return scan - 1 if scan > 0 and text[scan - 1] == "\r" else scan
        if char in " \t\r":
            scan += 1
        elif text.startswith("//", scan):
            newline = text.find("\n", scan)
            scan = len(text) if newline < 0 else newline
        elif text.startswith("/*", scan):
            end = text.find("*/", scan + 2) + 2
            if "\n" in text[scan:end]:
                return scan  # a comment running over lines: insert before it
            scan = end
        else:
            return None
    return None
