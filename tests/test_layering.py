"""The import layering of DESIGN.md section 1, and which module may import which library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tray_app"

# Lower ranks never import higher ones; equal ranks are siblings that do not import
# each other (integrations and backend), except within one package.
RANKS = {
    "errors": 0,
    "settings": 1,
    "logs": 2,
    "protocol": 3,
    "integrations": 4,
    "backend": 4,
    "server": 5,
    "supervisor": 6,
    "tray": 7,
    "app": 8,
    "__main__": 9,
}
# Libraries only one layer may import.
OWNERS = {
    "aiohttp": {"server"},
    "claude_agent_sdk": {"backend"},
    "keyring": {"integrations"},
    "pystray": {"tray"},
    "PIL": {"tray"},
}
# The pure layer does no I/O of any kind.
PURE_FORBIDDEN = {
    "asyncio",
    "subprocess",
    "socket",
    "threading",
    "aiohttp",
    "claude_agent_sdk",
    "keyring",
    "pystray",
    "PIL",
    "os",
    "sqlite3",
}


def layer_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path: Path) -> None:
    layer = layer_of(path)
    assert layer in RANKS, f"{layer} is not a known layer: add it to DESIGN.md and RANKS"
    for name in imports_of(path):
        top = name.split(".")[0]
        if top == "tray_app":
            parts = name.split(".")
            if len(parts) == 1:
                continue  # the package's __version__
            target = parts[1]
            assert target in RANKS, f"{path.name} imports unknown layer {target}"
            if target == layer:
                continue
            assert RANKS[target] < RANKS[layer], f"{layer} must not import {target} ({name})"
        elif top in OWNERS:
            assert layer in OWNERS[top], f"only {OWNERS[top]} may import {top}, not {layer}"
        if layer == "protocol":
            assert top not in PURE_FORBIDDEN, f"protocol/ is pure; {path.name} imports {name}"


def test_every_module_says_its_job() -> None:
    for path in PACKAGE.rglob("*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc, f"{path} has no module docstring"
