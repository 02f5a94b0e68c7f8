"""Edit a YAML config by splicing lines, with ruamel.yaml to parse, locate and verify.

ruamel.yaml's round-trip dump re-indents a whole document to one style (a file mixing
`- item` and `  - item` comes back changed in lines we never touched) and moves blank
lines, so it cannot promise the bytes we do not own. Here ruamel parses the file (and
reports errors with their line), tells where the top-level keys and list items sit, and
re-parses the result to prove the data is exactly the old data plus our change; the
text itself is only ever changed in the lines of our own entries.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

_PLAIN = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_./:@+ -]*[A-Za-z0-9_./@+-])?")
_RESERVED = re.compile(
    r"(?i)(y|n|yes|no|on|off|true|false|null|~|[-+]?[0-9][0-9_.:eEoOxX+-]*|\.inf|\.nan)"
)


class YamlError(ValueError):
    """The text is not YAML we can edit; `line` is 1-based when known."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason if line is None else f"{reason} (line {line})")
        self.reason = reason
        self.line = line


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def load(text: str) -> Any:
    """The document's round-trip tree (None for an empty file), or YamlError."""
    try:
        documents = list(_yaml().load_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = exc.problem or exc.context or "not valid YAML"
        raise YamlError(f"is not valid YAML: {reason}", line) from exc
    except (YAMLError, ValueError) as exc:
        raise YamlError(f"is not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise YamlError("is nested too deeply for claude-tray to edit") from exc
    if len(documents) > 1:
        raise YamlError("holds several YAML documents; claude-tray edits single-document files")
    return documents[0] if documents else None


# More nodes than this (aliases can multiply a small file: "billion laughs") is not a
# config file claude-tray should be comparing.
MAX_NODES = 200_000


def plain(node: Any) -> Any:
    """The tree as plain dicts, lists and scalars, for comparing data."""
    budget = [MAX_NODES]

    def walk(item: Any) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise YamlError("is too large or uses too many aliases for claude-tray to edit")
        if isinstance(item, Mapping):
            return {str(k): walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        if isinstance(item, str):
            return str(item)
        if isinstance(item, bool | int | float) or item is None:
            return item
        return str(item)

    return walk(node)


def scalar(value: Any) -> str:
    """A value as one line of YAML (strings plain when unambiguous, else JSON-quoted)."""
    if isinstance(value, str):
        ambiguous = ": " in value or " #" in value or value.endswith(":")
        if _PLAIN.fullmatch(value) and not _RESERVED.fullmatch(value) and not ambiguous:
            return value
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    return json.dumps(value)


def block(mapping: Mapping[str, Any], indent: str) -> list[str]:
    """A mapping as block YAML lines (nested mappings indented by two spaces)."""
    lines: list[str] = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            lines.append(f"{indent}{key}:")
            lines.extend(block(value, indent + "  "))
        else:
            lines.append(f"{indent}{key}: {scalar(value)}")
    return lines


@dataclass(slots=True)
class _Lines:
    """The text as lines (each with its end of line) plus the newline style to add."""

    lines: list[str]
    newline: str

    @classmethod
    def of(cls, text: str) -> _Lines:
        newline = "\r\n" if "\r\n" in text else "\n"
        return cls(text.splitlines(keepends=True), newline)

    def text(self) -> str:
        return "".join(self.lines)

    def ensure_final_newline(self) -> None:
        if self.lines and not self.lines[-1].endswith(("\n", "\r")):
            self.lines[-1] += self.newline


def _is_filler(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _top_key_lines(root: CommentedMap) -> list[int]:
    return sorted(root.lc.key(k)[0] for k in root)


def _extent(lines: Sequence[str], start: int, stop: int) -> int:
    """End (exclusive) of the entry starting at `start` that may run to `stop`: trailing
    blank and comment lines are left to whatever follows."""
    end = stop
    while end > start + 1 and _is_filler(lines[end - 1]):
        end -= 1
    return end


def _verify(text: str, expected: Any) -> None:
    if plain(load(text)) != expected:
        raise YamlError("claude-tray could not change this file without side effects")


def set_top_level(text: str, values: Mapping[str, str]) -> str:
    """Set top-level `key: value` scalars, replacing the lines of keys that exist (an
    inline comment stays) and adding the others at the end of the file."""
    root = load(text)
    if root is None:
        root = CommentedMap()
    if not isinstance(root, CommentedMap):
        raise YamlError("does not hold a mapping (key: value lines) at the top level")
    expected = plain(root)
    doc = _Lines.of(text)
    starts = _top_key_lines(root) + [len(doc.lines)]
    appended: list[str] = []
    replacements: dict[int, tuple[int, str]] = {}
    for key, value in values.items():
        expected[key] = value
        if key not in root:
            appended.append(f"{key}: {scalar(value)}")
            continue
        if plain(root[key]) == value:
            continue
        line = root.lc.key(key)[0]
        stop = next(s for s in starts if s > line)
        end = _extent(doc.lines, line, stop)
        comment = ""
        if end == line + 1:
            match = re.search(r"\s+#.*$", doc.lines[line].rstrip("\r\n"))
            if match and not isinstance(root[key], (CommentedMap, CommentedSeq)):
                comment = match.group()
                # Only a comment after a simple value: a '#' inside quotes is not one.
                if "'" in comment or '"' in comment:
                    comment = ""
        replacements[line] = (end, f"{key}: {scalar(value)}{comment}{doc.newline}")
    if not appended and not replacements:
        return text
    for line in sorted(replacements, reverse=True):
        end, new = replacements[line]
        doc.lines[line:end] = [new]
    if appended:
        doc.ensure_final_newline()
        doc.lines.extend(line + doc.newline for line in appended)
    result = doc.text()
    _verify(result, expected)
    return result


def upsert_list_items(
    text: str,
    key: str,
    items: Sequence[Mapping[str, Any]],
    is_ours: Callable[[Any], bool],
    *,
    first: bool,
    new_document: Mapping[str, Any] | None = None,
) -> str:
    """Make the top-level list `key` hold `items` (ours) with every other item untouched.

    Our existing items (by `is_ours`) are replaced where the first of them stands; new
    ones go at the end, or at the start when `first`. Our items are written as block
    mappings at the list's own indentation.
    """
    root = load(text)
    if root is None:
        # Empty, or only comments: keep them, then a new document.
        newline = "\r\n" if "\r\n" in text else "\n"
        head = block(new_document, "") if new_document else []
        lines = [*head, f"{key}:", *(ln for item in items for ln in _item_lines(item, "    "))]
        prefix = text if text.strip() else ""
        if prefix and not prefix.endswith("\n"):
            prefix += newline
        result = prefix + "".join(line + newline for line in lines)
        _verify(result, {**plain(new_document or {}), key: [plain_item(i) for i in items]})
        return result
    if not isinstance(root, CommentedMap):
        raise YamlError("does not hold a mapping (key: value lines) at the top level")
    expected = plain(root)
    doc = _Lines.of(text)
    wanted = [plain_item(i) for i in items]
    if key not in root or root[key] is None:
        if key in root:
            line = root.lc.key(key)[0]
            if not re.fullmatch(rf"{re.escape(key)}:\s*(#.*)?", doc.lines[line].rstrip("\r\n")):
                raise YamlError(f"'{key}' has a value claude-tray cannot read", line + 1)
            insert_at = line + 1
        else:
            doc.ensure_final_newline()
            doc.lines.append(f"{key}:{doc.newline}")
            insert_at = len(doc.lines)
        new_lines = [ln + doc.newline for item in items for ln in _item_lines(item, "    ")]
        doc.lines[insert_at:insert_at] = new_lines
        expected[key] = wanted
        result = doc.text()
        _verify(result, expected)
        return result
    seq = root[key]
    if not isinstance(seq, CommentedSeq):
        line = root.lc.key(key)[0] + 1
        raise YamlError(f"'{key}' should be a list but is not", line)
    key_line = root.lc.key(key)[0]
    empty = re.fullmatch(
        rf"{re.escape(key)}:\s*\[\s*\](\s*#.*)?", doc.lines[key_line].rstrip("\r\n")
    )
    if not seq and empty:
        # `models: []`: becomes `models:` with our items under it (a comment stays).
        doc.lines[key_line] = f"{key}:{empty.group(1) or ''}{doc.newline}"
        new_lines = [ln + doc.newline for item in items for ln in _item_lines(item, "    ")]
        doc.lines[key_line + 1 : key_line + 1] = new_lines
        expected[key] = wanted
        result = doc.text()
        _verify(result, expected)
        return result
    if seq.fa.flow_style() or (seq and seq.lc.item(0)[0] == key_line):
        raise YamlError(
            f"'{key}' is written as a [flow] list; claude-tray edits only block lists "
            "(one '- ' item per line)",
            key_line + 1,
        )
    old_items = plain(seq)
    ours = [i for i, item in enumerate(seq) if is_ours(item)]
    others = [item for i, item in enumerate(old_items) if i not in ours]
    if not seq:
        raise YamlError(f"'{key}' is an empty list claude-tray cannot read", key_line + 1)
    starts = _top_key_lines(root) + [len(doc.lines)]
    seq_stop = next(s for s in starts if s > key_line)
    item_lines = [seq.lc.item(i)[0] for i in range(len(seq))]
    column = seq.lc.item(0)[1]
    dash = doc.lines[item_lines[0]][:column].rstrip()
    if not dash.endswith("-"):
        raise YamlError(f"the items of '{key}' are laid out in a way claude-tray cannot edit")
    indent = dash[:-1]
    bounds = [*item_lines[1:], seq_stop]
    new_lines = [ln + doc.newline for item in items for ln in _item_lines(item, indent + "  ")]
    if ours:
        position = ours[0]
        if first:
            position = 0
        # Remove ours from the end backwards, then insert at the first one's place.
        for index in reversed(ours):
            end = _extent(doc.lines, item_lines[index], bounds[index])
            del doc.lines[item_lines[index] : end]
        if position == 0 and first:
            insert_at = item_lines[0]
            new_order = wanted + others
        else:
            insert_at = item_lines[ours[0]]
            before = [item for i, item in enumerate(old_items) if i < ours[0] and i not in ours]
            after = [item for i, item in enumerate(old_items) if i > ours[0] and i not in ours]
            new_order = before + wanted + after
    elif first:
        insert_at = item_lines[0]
        new_order = wanted + others
    else:
        insert_at = _extent(doc.lines, item_lines[-1], seq_stop)
        new_order = others + wanted
    if new_order == old_items:
        return text
    if insert_at >= len(doc.lines):
        doc.ensure_final_newline()
    doc.lines[insert_at:insert_at] = new_lines
    expected[key] = new_order
    result = doc.text()
    _verify(result, expected)
    return result


def plain_item(item: Mapping[str, Any]) -> Any:
    return json.loads(json.dumps(item))


def _item_lines(item: Mapping[str, Any], indent: str) -> list[str]:
    """One list item: `- first: v` then the other keys under it."""
    lines = block(item, indent)
    first = lines[0]
    return [first[: len(indent) - 2] + "- " + first[len(indent) :], *lines[1:]]


def dump_check(data: Any) -> str:
    """Plain data as YAML text, for messages that show a snippet."""
    out = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(data, out)
    return out.getvalue()
