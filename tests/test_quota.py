"""Quota windows and the extra-usage policy: pure state, then the real CLI signed in
with a subscription token against the scripted upstream's rate-limit headers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from conftest import Proxy, proxy_env, start_proxy
from upstream import Upstream, error, text

from tray_app.backend.quota import DEFAULT_PAUSE, Quota
from tray_app.protocol.model import QuotaWindow, RateLimitReported


def report(*, overage: bool, resets_at: int | None = 2000) -> RateLimitReported:
    return RateLimitReported(
        status="rejected" if overage else "allowed",
        window="five_hour",
        resets_at=resets_at,
        utilization=None,
        using_overage=overage,
        windows=(QuotaWindow("five_hour", 0.93, 2000), QuotaWindow("seven_day", 0.4, 9000)),
    )


def test_quota_tracks_windows_and_extra_usage() -> None:
    quota = Quota()
    assert quota.note(report(overage=False), now=1000) is False
    assert quota.windows == {
        "five_hour": {"utilization": 0.93, "resets_at": 2000},
        "seven_day": {"utilization": 0.4, "resets_at": 9000},
    }
    assert not quota.extra_usage(now=1000)
    assert quota.note(report(overage=True), now=1100) is True
    assert quota.note(report(overage=True), now=1200) is False  # began once
    assert quota.extra_usage(now=1999)
    assert not quota.extra_usage(now=2000)  # the window reset
    assert Quota.from_json(quota.to_json()).extra_usage_until == 2000
    quota.note(report(overage=False), now=1300)
    assert not quota.extra_usage(now=1300)


def test_extra_usage_without_a_reset_time_pauses_for_a_default_while() -> None:
    quota = Quota()
    quota.note(report(overage=True, resets_at=None), now=1000)
    assert quota.extra_usage_until == 1000 + DEFAULT_PAUSE


def limit_headers(status: str) -> dict[str, str]:
    now = int(time.time())
    return {
        "anthropic-ratelimit-unified-status": status,
        "anthropic-ratelimit-unified-representative-claim": "five_hour",
        "anthropic-ratelimit-unified-reset": str(now + 3600),
        "anthropic-ratelimit-unified-5h-utilization": "1.0",
        "anthropic-ratelimit-unified-5h-reset": str(now + 3600),
        "anthropic-ratelimit-unified-7d-utilization": "0.4",
        "anthropic-ratelimit-unified-7d-reset": str(now + 3 * 86400),
        "anthropic-ratelimit-unified-overage-status": "allowed",
        "anthropic-ratelimit-unified-overage-in-use": "true",
    }


def subscription_proxy(home: Path, upstream: Upstream, **settings: str) -> Proxy:
    """A proxy whose CLI signs in like a subscriber (an OAuth token), which is when the
    CLI reads the plan's rate-limit headers."""
    env = proxy_env(home, upstream, **settings)
    del env["CLAUDE_TRAY_UPSTREAM_API_KEY"]
    env["CLAUDE_CODE_OAUTH_TOKEN"] = "sk-ant-oat01-test-token"
    return start_proxy(home, env)


def ask(proxy: Proxy, path: str = "/v1/chat/completions") -> httpx.Response:
    if path.endswith("/messages"):
        body: dict[str, Any] = {"max_tokens": 50}
    else:
        body = {}
    return httpx.post(
        proxy.url + path,
        json={"model": "sonnet", "messages": [{"role": "user", "content": "hi"}], **body},
        timeout=60,
    )


def test_extra_usage_pauses_until_the_window_resets(
    upstream_server: Upstream, upstream: Upstream, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    upstream.push(text("billed as extra", headers=limit_headers("rejected")))
    proxy = subscription_proxy(home, upstream_server)
    try:
        first = ask(proxy)
        assert first.status_code == 200  # already answered (and billed): delivered
        quota = httpx.get(proxy.url + "/health").json()["quota"]
        assert quota["extra_usage"]["active"] is True
        assert quota["on_extra_usage"] == "pause"
        assert quota["windows"]["five_hour"]["utilization"] == 1.0
        assert quota["windows"]["seven_day"]["utilization"] == 0.4

        refused = ask(proxy)
        assert refused.status_code == 402
        assert refused.json()["error"]["code"] == "extra_usage_paused"
        assert "on_extra_usage" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) > 3000
        anthropic_shape = ask(proxy, "/v1/messages")
        assert anthropic_shape.status_code == 402
        assert anthropic_shape.json()["error"]["type"] == "billing_error"
        assert len(upstream.messages_requests()) == 1  # nothing more was billed
    finally:
        assert proxy.stop() == 0
    # The pause survives a restart.
    again = subscription_proxy(home, upstream_server)
    try:
        assert ask(again).status_code == 402
    finally:
        assert again.stop() == 0


def test_extra_usage_with_warn_answers_and_says_so(
    upstream_server: Upstream, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.push(
        text("billed as extra", headers=limit_headers("rejected")),
        text("still answering", headers=limit_headers("rejected")),
    )
    proxy = subscription_proxy(tmp_path / "home", upstream_server, on_extra_usage="warn")
    try:
        assert ask(proxy).status_code == 200
        second = ask(proxy)
        assert second.status_code == 200
        assert second.headers["x-claude-tray-warning"] == "billed-as-extra-usage"
        assert "billed this request as extra usage" in proxy.log()
    finally:
        assert proxy.stop() == 0


def test_the_third_party_extra_usage_answer_is_a_402_and_pauses(
    make_proxy: Any, upstream: Upstream
) -> None:
    """Anthropic's 400 for third-party traffic on a plan (DESIGN.md §5)."""
    message = "Third-party apps now draw from your extra usage, not your plan limits."
    # The CLI retries a 400 twice with CLAUDE_CODE_MAX_RETRIES=0 (seen with 2.1.330).
    upstream.push(error(400, message), error(400, message), error(400, message))
    proxy = make_proxy()
    first = ask(proxy)
    assert first.status_code == 402
    assert first.json()["error"]["code"] == "extra_usage_required"
    assert "extra usage" in first.json()["error"]["message"]
    second = ask(proxy)
    assert second.status_code == 402
    assert second.json()["error"]["code"] == "extra_usage_paused"
    assert httpx.get(proxy.url + "/health").json()["quota"]["extra_usage"]["active"] is True
