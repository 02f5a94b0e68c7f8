"""Team scale (DESIGN.md section 7, docs/team-scale.md): the real LiteLLM proxy in front of
two headless claude-tray instances, each with its own API key.

LiteLLM's virtual keys (and their budgets and spend logs) live in its database
(PostgreSQL through prisma), which cannot run offline here: prisma's query and schema
engines come only from prisma's own download host, not from PyPI or npm. These tests
cover what LiteLLM does without one (the master key, the model list, load balancing
across the instances, per-instance request limits and budgets, a team-wide budget,
streaming, health checks) and pin down that key management says it needs a database.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import Proxy, proxy_env, start_proxy
from tools import LITELLM_VERSION, require_litellm
from upstream import Upstream

MASTER_KEY = "sk-claude-tray-team-test"
GROUP = "claude-sonnet"
# A second model group over the same two instances with a tiny per-instance limit, so
# the limit can be reached in a test without touching the main group.
LIMITED_GROUP = "claude-sonnet-limited"
LIMITED_RPM = 2
# A third group over the same two instances, each with a budget of its own (LiteLLM keeps
# a deployment's spend in memory: no database). Every deployment is priced at Sonnet's
# list price, so LiteLLM turns the tokens claude-tray reports into dollars.
BUDGET_GROUP = "claude-sonnet-budget"
INPUT_PRICE = 3e-6  # USD per input token
OUTPUT_PRICE = 15e-6  # USD per output token
# Each budgeted turn is scripted at 1000 input and 200 output tokens: 0.006 USD. Seat A
# may spend 0.01 (so it serves 2 turns), seat B 0.02 (4 turns).
BUDGET_TURN = {"input_tokens": 1000, "output_tokens": 200}
SEAT_BUDGETS = {"a": 0.01, "b": 0.02}
# All instances are `openai/` deployments to LiteLLM: a budget on that provider caps the
# whole team's spend. Large here, so it never refuses; /provider/budgets reports the spend.
TEAM_BUDGET = 100.0
# LiteLLM's startup imports most of its providers: ~15-25 s on 2 busy cores.
LITELLM_START_TIMEOUT = 120.0

CONFIG = """\
model_list:
  # One entry per claude-tray instance (one per seat), all under one public name.
  - model_name: {group}
    litellm_params:
      model: openai/sonnet
      api_base: {a}/v1
      api_key: os.environ/CLAUDE_TRAY_A_KEY
      rpm: 1000
      input_cost_per_token: {input_price:.6f}
      output_cost_per_token: {output_price:.6f}
    model_info:
      id: tray-a
  - model_name: {group}
    litellm_params:
      model: openai/sonnet
      api_base: {b}/v1
      api_key: os.environ/CLAUDE_TRAY_B_KEY
      rpm: 1000
      input_cost_per_token: {input_price:.6f}
      output_cost_per_token: {output_price:.6f}
    model_info:
      id: tray-b
  - model_name: {limited}
    litellm_params:
      model: openai/sonnet
      api_base: {a}/v1
      api_key: os.environ/CLAUDE_TRAY_A_KEY
      rpm: {rpm}
      input_cost_per_token: {input_price:.6f}
      output_cost_per_token: {output_price:.6f}
    model_info:
      id: tray-a-limited
  - model_name: {limited}
    litellm_params:
      model: openai/sonnet
      api_base: {b}/v1
      api_key: os.environ/CLAUDE_TRAY_B_KEY
      rpm: {rpm}
      input_cost_per_token: {input_price:.6f}
      output_cost_per_token: {output_price:.6f}
    model_info:
      id: tray-b-limited
  # A seat's budget: past it LiteLLM routes around the instance, for budget_duration.
  - model_name: {budget_group}
    litellm_params:
      model: openai/sonnet
      api_base: {a}/v1
      api_key: os.environ/CLAUDE_TRAY_A_KEY
      input_cost_per_token: {input_price:.6f}
      output_cost_per_token: {output_price:.6f}
      max_budget: {budget_a}
      budget_duration: 1d
    model_info:
      id: tray-a-budget
  - model_name: {budget_group}
    litellm_params:
      model: openai/sonnet
      api_base: {b}/v1
      api_key: os.environ/CLAUDE_TRAY_B_KEY
      input_cost_per_token: {input_price:.6f}
      output_cost_per_token: {output_price:.6f}
      max_budget: {budget_b}
      budget_duration: 1d
    model_info:
      id: tray-b-budget

router_settings:
  # Sends each request to the instance with the least use this minute and keeps each
  # instance under its rpm/tpm (a seat has limits of its own).
  routing_strategy: usage-based-routing-v2
  num_retries: 0
  # The whole team's budget: every instance is an `openai/` deployment to LiteLLM.
  provider_budget_config:
    openai:
      budget_limit: {team_budget}
      time_period: 1d

general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""


@dataclass
class Team:
    litellm_url: str
    litellm: subprocess.Popen[bytes]
    log: Path
    instances: dict[str, Proxy]
    startup_seconds: float

    def client(self, api_key: str = MASTER_KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.litellm_url + "/v1", api_key=api_key, max_retries=0)

    def usage(self) -> dict[str, dict[str, float]]:
        """Each claude-tray instance's own record (requests, tokens, cost), from /v1/usage."""
        totals = {}
        for name, proxy in self.instances.items():
            response = httpx.get(
                proxy.url + "/v1/usage", headers={"x-api-key": proxy.env["CLAUDE_TRAY_API_KEY"]}
            )
            response.raise_for_status()
            totals[name] = response.json()["total"]
        return totals

    def served(self) -> dict[str, int]:
        """Turns each claude-tray instance has answered."""
        return {name: int(total["requests"]) for name, total in self.usage().items()}

    def team_budget(self) -> dict[str, Any]:
        """LiteLLM's in-memory record of the team budget (the `openai` provider's)."""
        response = httpx.get(
            self.litellm_url + "/provider/budgets",
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
        )
        response.raise_for_status()
        return dict(response.json()["providers"]["openai"])

    def wait_for_team_spend(self, at_least: float) -> float:
        """The team's spend once LiteLLM has booked it: it adds a turn's cost in a
        logging callback after the answer has gone out."""
        deadline = time.monotonic() + 30
        while True:
            spend = float(self.team_budget()["spend"])
            if spend >= at_least - 1e-9:
                return spend
            if time.monotonic() > deadline:
                pytest.fail(f"LiteLLM booked {spend} USD, not the {at_least} expected")
            time.sleep(0.05)


def _free_port() -> int:
    # LiteLLM takes a fixed --port; the OS picks one that is free now.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _litellm_env(home: Path, keys: dict[str, str]) -> dict[str, str]:
    env = {k: v for k in ("PATH", "LANG", "LC_ALL", "TZ") if (v := os.environ.get(k))}
    env.update(
        {
            "HOME": str(home),
            "TMPDIR": str(home),
            # The bundled model-price map instead of downloading it.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "CLAUDE_TRAY_A_KEY": keys["a"],
            "CLAUDE_TRAY_B_KEY": keys["b"],
        }
    )
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="module")
def team(upstream_server: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    litellm = require_litellm()
    root = tmp_path_factory.mktemp("team")
    keys = {"a": "sk-tray-a-test", "b": "sk-tray-b-test"}
    instances: dict[str, Proxy] = {}
    process: subprocess.Popen[bytes] | None = None
    try:
        for name, key in keys.items():
            home = root / f"tray-{name}"
            instances[name] = start_proxy(home, proxy_env(home, upstream_server, api_key=key))
        config = root / "litellm.yaml"
        config.write_text(
            CONFIG.format(
                group=GROUP,
                limited=LIMITED_GROUP,
                rpm=LIMITED_RPM,
                budget_group=BUDGET_GROUP,
                budget_a=SEAT_BUDGETS["a"],
                budget_b=SEAT_BUDGETS["b"],
                team_budget=TEAM_BUDGET,
                input_price=INPUT_PRICE,
                output_price=OUTPUT_PRICE,
                a=instances["a"].url,
                b=instances["b"].url,
            )
        )
        port = _free_port()
        log = root / "litellm.log"
        home = root / "litellm-home"
        home.mkdir()
        started = time.monotonic()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(litellm), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
                env=_litellm_env(home, keys),
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health/readiness", timeout=5).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() - started > LITELLM_START_TIMEOUT:
                pytest.fail(f"LiteLLM did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield Team(url, process, log, instances, time.monotonic() - started)
    finally:
        if process is not None:
            _stop(process)
        for proxy in instances.values():
            proxy.stop()


def test_litellm_is_the_pinned_version(team: Team) -> None:
    # The public probe a load balancer uses. Without DATABASE_URL LiteLLM runs, and
    # says so: no virtual keys, no spend tracking.
    readiness = httpx.get(team.litellm_url + "/health/readiness").json()
    assert readiness == {"status": "healthy", "db": "Not connected"}
    details = httpx.get(
        team.litellm_url + "/health/readiness/details",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    ).json()
    assert details["litellm_version"] == LITELLM_VERSION


def test_the_master_key_lists_the_model_groups_and_other_keys_are_refused(team: Team) -> None:
    before = team.served()
    with team.client() as client:
        models = {m.id for m in client.models.list()}
    assert models == {GROUP, LIMITED_GROUP, BUDGET_GROUP}

    with (
        team.client(api_key="sk-not-a-key") as stranger,
        pytest.raises(openai.APIStatusError) as refused,
    ):
        stranger.chat.completions.create(
            model=GROUP, messages=[{"role": "user", "content": "hello"}]
        )
    # LiteLLM looks an unknown key up in its database; with none it answers 400
    # "No connected db" (with one: 401). Either way nothing reached claude-tray.
    assert refused.value.status_code in (400, 401)
    # Each claude-tray instance requires its own key: LiteLLM's master key is not it.
    direct = httpx.post(
        team.instances["a"].url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={"model": "sonnet", "messages": [{"role": "user", "content": "hello"}]},
    )
    assert direct.status_code == 401
    assert team.served() == before


def test_requests_through_litellm_are_shared_between_both_instances(
    team: Team, upstream: Upstream
) -> None:
    before = team.served()
    with team.client() as client:
        for i in range(10):
            answer = client.chat.completions.create(
                model=GROUP, messages=[{"role": "user", "content": f"team request {i}"}]
            )
            assert answer.choices[0].message.content == f"echo: team request {i}"
    after = team.served()
    extra = {name: after[name] - before[name] for name in after}
    assert sum(extra.values()) == 10
    assert extra["a"] > 0
    assert extra["b"] > 0
    # One upstream call per request: LiteLLM did not retry or duplicate any.
    assert len(upstream.messages_requests()) == 10


def test_streaming_through_litellm(team: Team, upstream: Upstream) -> None:
    from upstream import text

    upstream.push(text("Streamed ", "through ", "LiteLLM"))
    before = team.served()
    pieces = []
    with (
        team.client() as client,
        client.chat.completions.create(
            model=GROUP,
            messages=[{"role": "user", "content": "stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        ) as stream,
    ):
        usage = None
        for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    pieces.append(choice.delta.content)
            usage = chunk.usage or usage
    assert "".join(pieces) == "Streamed through LiteLLM"
    assert len(pieces) >= 3  # token by token, not one block at the end
    assert usage is not None and usage.completion_tokens > 0
    after = team.served()
    assert sum(after.values()) - sum(before.values()) == 1


def test_litellm_keeps_each_instance_under_its_request_limit(team: Team) -> None:
    """`rpm` on a deployment caps what one seat receives per (calendar) minute."""
    # LiteLLM counts per calendar minute: the check must not straddle two. It starts
    # early in a minute, and one that straddled anyway (a slow machine) is repeated in a
    # minute of its own.
    for _attempt in range(2):
        if time.gmtime().tm_sec > 50:
            _next_minute()
        minute = time.gmtime().tm_min
        before = team.served()
        statuses = []
        with team.client() as client:
            for i in range(3 * LIMITED_RPM):
                try:
                    client.chat.completions.create(
                        model=LIMITED_GROUP,
                        messages=[{"role": "user", "content": f"limited {i}"}],
                    )
                    statuses.append(200)
                except openai.RateLimitError:
                    statuses.append(429)
        after = team.served()
        if time.gmtime().tm_min == minute:
            break
        _next_minute()
    served = {name: after[name] - before[name] for name in after}
    # Both instances took requests, neither more than its rpm (LiteLLM stops routing to
    # a deployment one short of it), and LiteLLM refused the rest itself.
    assert 0 < served["a"] <= LIMITED_RPM
    assert 0 < served["b"] <= LIMITED_RPM
    assert statuses.count(200) == sum(served.values())
    assert statuses[-1] == 429


def _next_minute() -> None:
    time.sleep(61 - time.gmtime().tm_sec)


def test_litellm_keeps_each_instance_within_its_budget(team: Team, upstream: Upstream) -> None:
    """`max_budget`/`budget_duration` on a deployment caps what one seat may spend: LiteLLM
    routes around a seat past its budget, and refuses once every seat is past its own."""
    from upstream import text

    turn_cost = (
        BUDGET_TURN["input_tokens"] * INPUT_PRICE + BUDGET_TURN["output_tokens"] * OUTPUT_PRICE
    )
    expected = {
        name: math.ceil(budget / turn_cost) for name, budget in SEAT_BUDGETS.items()
    }  # turns each seat serves before its spend reaches its budget: a 2, b 4
    upstream.push(*(text(f"budgeted {i}", **BUDGET_TURN) for i in range(sum(expected.values()))))
    before = team.usage()
    spend = team.wait_for_team_spend(0.0)
    served_by = []
    with team.client() as client:
        for i in range(sum(expected.values())):
            raw = client.chat.completions.with_raw_response.create(
                model=BUDGET_GROUP, messages=[{"role": "user", "content": f"budget {i}"}]
            )
            answer = raw.parse()
            assert answer.choices[0].message.content == f"budgeted {i}"
            assert answer.usage is not None
            assert answer.usage.prompt_tokens == BUDGET_TURN["input_tokens"]
            assert answer.usage.completion_tokens == BUDGET_TURN["output_tokens"]
            # LiteLLM prices the turn from the tokens claude-tray reported...
            cost = float(raw.headers["x-litellm-response-cost"])
            assert cost == pytest.approx(turn_cost)
            # ...and books it (after answering) before the next request is routed.
            spend = team.wait_for_team_spend(spend + cost)
            served_by.append(raw.headers["x-litellm-model-id"])
        # Past both budgets LiteLLM answers 429 itself, saying why.
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(
                model=BUDGET_GROUP, messages=[{"role": "user", "content": "one more"}]
            )
    assert refused.value.status_code == 429
    assert "No deployments available - crossed budget" in str(refused.value)
    assert "tray-a-budget" in str(refused.value)
    assert "tray-b-budget" in str(refused.value)
    # Seat A stopped at its budget and the requests after that went to seat B.
    assert served_by.count("tray-a-budget") == expected["a"]
    assert served_by.count("tray-b-budget") == expected["b"]
    last_a = max(n for n, seat in enumerate(served_by) if seat == "tray-a-budget")
    assert set(served_by[last_a + 1 :]) == {"tray-b-budget"}
    # claude-tray's own records agree: the same turns and tokens reached each instance,
    # and none past the budgets (the refused request reached no one).
    after = team.usage()
    for name, turns in expected.items():
        assert after[name]["requests"] - before[name]["requests"] == turns
        assert after[name]["input_tokens"] - before[name]["input_tokens"] == (
            turns * BUDGET_TURN["input_tokens"]
        )
        assert after[name]["output_tokens"] - before[name]["output_tokens"] == (
            turns * BUDGET_TURN["output_tokens"]
        )
        # Each instance also keeps the CLI's own cost for what it served (the CLI's
        # prices, not the ones LiteLLM was given).
        assert after[name]["cost_usd"] > before[name]["cost_usd"]
    assert len(upstream.messages_requests()) == sum(expected.values())
    # The team budget counted all of it, and it is far from its own limit.
    team_budget = team.team_budget()
    assert team_budget["budget_limit"] == TEAM_BUDGET
    assert team_budget["time_period"] == "1d"
    assert team_budget["spend"] == pytest.approx(spend)
    assert spend >= sum(expected.values()) * turn_cost - 1e-9


def test_health_checks_reach_both_instances(team: Team) -> None:
    # LiteLLM's /health sends one small completion to every deployment: a real turn each.
    health = httpx.get(
        team.litellm_url + "/health",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=120,
    ).json()
    assert health["unhealthy_count"] == 0
    assert health["healthy_count"] == 6  # two instances, each in three model groups
    for proxy in team.instances.values():
        assert httpx.get(proxy.url + "/health").json()["status"] == "ok"


def test_virtual_keys_and_budgets_need_litellms_database(team: Team) -> None:
    response = httpx.post(
        team.litellm_url + "/key/generate",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={"models": [GROUP], "max_budget": 5.0, "rpm_limit": 10},
    )
    assert response.status_code >= 400
    # The reason is in LiteLLM's log (the body hides it behind a generic 500 when the
    # prisma client is not installed, as with plain `litellm[proxy]`).
    assert "DB not connected" in team.log.read_text(errors="replace")
