"""Property-based fuzzing of a live proxy from its own OpenAPI document (schemathesis):
no request, valid or not, gets a 5xx; every answer is what the document says it is; and
every error comes in the caller's shape (Anthropic's on /v1/messages*, OpenAI's
elsewhere).

The run is bounded and repeatable (a fixed seed, Hypothesis derandomized, no example
database). `python -m benchmarks.fuzz` runs the same test for longer.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from conftest import Proxy, claude_pids, proxy_env, start_proxy
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from test_openapi import DOC, assert_valid, payload_schema, resolve, sse_events
from upstream import Upstream

from tray_app.server import openapi

# benchmarks/fuzz.py sets these for a longer run; the defaults keep this test to a
# minute or two on two cores.
EXAMPLES = int(os.environ.get("CLAUDE_TRAY_FUZZ_EXAMPLES", "50"))
SEED = int(os.environ.get("CLAUDE_TRAY_FUZZ_SEED", "8"))
# Every route without /v1 is the same handler as its /v1 twin: fuzzing both doubles the
# time and finds nothing new. The /anthropic alias keeps its own error-shape rule.
ALL_ALIASES = os.environ.get("CLAUDE_TRAY_FUZZ_ALL_ROUTES") == "1"
PHASES = os.environ.get("CLAUDE_TRAY_FUZZ_PHASES", "examples,coverage,fuzzing").split(",")
# The coverage phase (schemathesis' boundary values for every keyword) sends every case
# the schema defines, with no bound: on a route that runs turns that is a minute and a
# half each, so the quick run leaves it to `python -m benchmarks.fuzz`.
TURN_COVERAGE = os.environ.get("CLAUDE_TRAY_FUZZ_TURN_COVERAGE") == "1"
TURN_ROUTES = r"/(chat/completions|responses|messages)$"

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"mode": "all", "max-examples": EXAMPLES, "database": "none"},
        "phases": {
            "examples": {"enabled": "examples" in PHASES},
            "coverage": {"enabled": "coverage" in PHASES},
            "fuzzing": {"enabled": "fuzzing" in PHASES},
            "stateful": {"enabled": False},
        },
        "operations": []
        if TURN_COVERAGE
        else [{"include-path-regex": TURN_ROUTES, "phases": {"coverage": {"enabled": False}}}],
        # Let every answered stream run to its end, so its last events are checked too.
        "max-stream-events": 500,
        "request-timeout": 60,
    }
)
# A regular expression over paths: fuzz only these (benchmarks/fuzz.py --only).
ONLY = os.environ.get("CLAUDE_TRAY_FUZZ_ONLY", "")


def _fuzzed(path: str) -> bool:
    if ONLY:
        return re.search(ONLY, path) is not None
    return (
        ALL_ALIASES or path.startswith(("/v1/", "/anthropic/")) or "/v1" + path not in DOC["paths"]
    )


# `exclude`, not `include`: schemathesis 4.32 drops an include filter when the config has
# per-operation entries (TURN_ROUTES above).
schema = schemathesis.openapi.from_path(openapi.DOCUMENT, config=CONFIG).exclude(
    path_regex="|".join(f"^{re.escape(p)}$" for p in DOC["paths"] if not _fuzzed(p)) or "^$"
)


def _is_anthropic(path: str) -> bool:
    return path.rstrip("/").endswith(("/messages", "/messages/count_tokens"))


def _documented(case: Any, status: int) -> dict[str, Any] | None:
    """The response the document names for this operation and status, if any."""
    operation = resolve(DOC["paths"][case.path]).get(case.method.lower())
    if operation is None:
        return None  # the coverage phase also tries methods a route does not have
    found = operation["responses"].get(str(status))
    return None if found is None else dict(resolve(found))


@schemathesis.check
def error_in_callers_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """An error answer is JSON in the shape of the API the caller speaks."""
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return None
    shape = "AnthropicError" if _is_anthropic(case.path) else "OpenAIError"
    documented = _documented(case, response.status_code)
    if documented and "application/json" in documented.get("content", {}):
        schema = documented["content"]["application/json"]["schema"]
        if schema.get("$ref", "").rsplit("/", 1)[-1] not in ("OpenAIError", "AnthropicError"):
            return None  # an answer of its own (a configure conflict): the schema checks it
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"error {response.status_code} is not JSON") from exc
    assert_valid(body, DOC["components"]["schemas"][shape], f"{shape} body")
    return True


@schemathesis.check
def stream_payloads_conform(ctx: Any, response: Any, case: Any) -> bool | None:
    """Each streamed event's JSON payload matches its documented schema (the built-in
    checks see an event's `data` only as a string)."""
    content_type = (response.headers.get("content-type") or [""])[0]
    if not content_type.startswith("text/event-stream") or response.stream_cut_short:
        return None
    documented = _documented(case, response.status_code)
    if documented is None or "text/event-stream" not in documented.get("content", {}):
        return None  # status_code_conformance and content_type_conformance report it
    inner = payload_schema(documented["content"]["text/event-stream"]["schema"])
    for event in sse_events(response.content.decode()):
        if event["data"] != "[DONE]":
            assert_valid(json.loads(event["data"]), inner, f"event {event['event']} payload")
    return True


CHECKS = [
    not_a_server_error,
    unsupported_method,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    error_in_callers_shape,
    stream_payloads_conform,
]


@pytest.fixture(scope="module")
def fuzz_proxy(
    upstream_server: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    """A proxy of the fuzz's own, logging warnings only: thousands of refused requests
    would otherwise fill the shared proxy's log with lines other tests search."""
    home = tmp_path_factory.mktemp("fuzz")
    before = claude_pids()
    started = start_proxy(home, proxy_env(home, upstream_server, log_level="warning"))
    yield started
    started.stop()
    deadline = time.monotonic() + 5
    while (left := claude_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"the fuzz proxy left claude processes behind: {sorted(left)}"


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzz(case: schemathesis.Case, fuzz_proxy: Proxy, upstream: Upstream) -> None:
    # Nothing is queued (the upstream fixture clears it): every turn the fuzz manages to
    # start is answered with the upstream's echo text.
    case.call_and_validate(base_url=fuzz_proxy.url, checks=CHECKS, timeout=60)
