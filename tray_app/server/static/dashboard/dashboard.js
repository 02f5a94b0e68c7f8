// claude-tray's dashboard: polls the proxy's own JSON API and draws what it says.
// Everything is built with DOM calls and textContent (never innerHTML), so nothing a
// client sent (a session title, an error message) can become markup.

import { barList, columns, legend, sparkline } from "/dashboard/charts.js";

// ?poll=<ms> polls faster (the browser test uses it); never below a quarter second.
const POLL_MS = Math.max(250, Number(new URLSearchParams(location.search).get("poll")) || 3000);
const TOOLS_EVERY = 10; // polls between two reads of the tools' config files
const SPARK_SAMPLES = 60; // 3 minutes of polls
const KEY_STORE = "claude-tray-api-key";

const state = {
  key: sessionStorage.getItem(KEY_STORE) || "",
  days: 30,
  query: "",
  source: "claude-tray",
  polls: 0,
  timer: null,
  inflight: [],
  shown: {}, // section -> the JSON last drawn, so an unchanged section is left alone
  health: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function button(text, onClick, className) {
  const node = el("button", className, text);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

// ---- formatting ----

function tokens(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${Math.round(n / 1e3)}k`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

function usd(n) {
  if (!n) return "$0";
  if (n < 0.01) return `$${Number(n.toPrecision(2))}`;
  if (n < 100) return `$${n.toFixed(2)}`;
  return `$${Math.round(n).toLocaleString("en-US")}`;
}

function ago(seconds) {
  const s = Date.now() / 1000 - seconds;
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function until(seconds) {
  let s = Math.max(0, Math.round(seconds - Date.now() / 1000));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  const m = Math.round((s - h * 3600) / 60);
  if (d) return `in ${d} d ${h} h`;
  if (h) return `in ${h} h ${m} min`;
  return `in ${m} min`;
}

const when = (seconds) => new Date(seconds * 1000).toLocaleString();
const clock = (seconds) => new Date(seconds * 1000).toLocaleTimeString();
const sumTokens = (u) => u.input_tokens + u.output_tokens + u.cache_read_tokens + u.cache_write_tokens;

// ---- the API ----

class ApiError extends Error {
  constructor(status, message, requestId) {
    super(message);
    this.status = status;
    this.requestId = requestId;
  }
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.key) headers["x-api-key"] = state.key;
  const response = await fetch(path, { ...options, headers, cache: "no-store" });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.status === 401) {
    showKeyForm();
    throw new ApiError(401, "the API key is needed", response.headers.get("x-request-id"));
  }
  if (!response.ok && !(options.acceptStatus || []).includes(response.status)) {
    const message = body && body.error ? body.error.message : response.statusText;
    throw new ApiError(response.status, message, response.headers.get("x-request-id"));
  }
  return body;
}

function showKeyForm() {
  $("key-form").hidden = false;
  stopPolling();
}

function takeKeyFromFragment() {
  // The tray opens /dashboard#key=...: the fragment never reaches a server or a log.
  const match = /^#key=(.+)$/.exec(location.hash);
  if (match) {
    state.key = decodeURIComponent(match[1]);
    sessionStorage.setItem(KEY_STORE, state.key);
    history.replaceState(null, "", location.pathname + location.search);
  }
}

// Draw `section` only when its data changed, so a poll never disturbs what people use.
function changed(section, data) {
  const json = JSON.stringify(data);
  if (state.shown[section] === json) return false;
  state.shown[section] = json;
  return true;
}

// ---- status cards ----

function setText(id, text, className) {
  const node = $(id);
  node.textContent = text;
  node.className = className || "";
}

function billingRoute(signin, quota) {
  // The same rule as the tray's (supervisor/status.py billing_route).
  if (signin.method === "api_key") return ["API key", "its account pays per token", ""];
  if (quota.extra_usage.active) return ["Extra usage", "calls are billed beyond the plan", "bad-text"];
  if ((signin.method === "subscription" || signin.method === "oauth_token") && signin.signed_in) {
    return ["Plan", "your subscription's usage limits", "ok-text"];
  }
  return ["Unknown", "not signed in", "muted"];
}

const EXTRA_USAGE_POLICY = {
  pause: "pause: refuse requests until the window resets",
  warn: "warn: answer, and flag each response",
  allow: "allow: answer",
};

const WINDOW_NAMES = { five_hour: "5-hour window", seven_day: "Weekly window" };

function drawHealth(health) {
  state.health = health;
  $("version").textContent = `v${health.version}`;
  const pill = $("proxy-pill");
  pill.textContent = health.status === "ok" ? "running" : health.status;
  pill.className = `pill ${health.status === "ok" ? "ok" : "warn"}`;
  setText("proxy-status", health.status === "ok" ? "running" : `${health.status}`, health.status === "ok" ? "ok-text" : "warn-text");
  setText("cli-version", health.cli.version || "unknown");
  setText("cli-path", health.cli.path || "–", "mono small");
  $("cli-problem").hidden = !health.cli.problem;
  $("cli-problem").textContent = health.cli.problem || "";
  const pool = health.pool;
  setText("pool", pool.enabled ? `${pool.warm} warm · ${pool.holding_conversations} holding · ${pool.processes} of ${pool.max_processes} processes` : "off");
  setText("sessions-kept", health.sessions_kept ? "yes" : "no (store unavailable)", health.sessions_kept ? "" : "bad-text");

  const signin = health.signin;
  setText("signin-state", signin.signed_in ? `signed in (${signin.method.replace("_", " ")})` : "not signed in", signin.signed_in ? "ok-text" : "bad-text");
  setText("signin-plan", signin.plan || (signin.method === "api_key" ? "none (API key)" : "–"));
  const [route, why, cls] = billingRoute(signin, health.quota);
  const routeNode = $("billing-route");
  routeNode.replaceChildren(el("span", cls, route), el("span", "sub muted small", ` ${why}`));
  setText("on-extra-usage", EXTRA_USAGE_POLICY[health.quota.on_extra_usage] || health.quota.on_extra_usage);
  $("signin-detail").textContent = signin.detail + (signin.expires_at ? ` Token expires ${new Date(signin.expires_at).toLocaleString()}.` : "");

  drawQuota(health.quota, signin);
  drawInflight(health.turns);

  const banner = $("banner");
  if (health.quota.extra_usage.active) {
    banner.hidden = false;
    banner.className = "banner warn";
    banner.textContent = `Requests are being billed as extra usage (since ${clock(health.quota.extra_usage.since)}, until ${when(health.quota.extra_usage.until)}). on_extra_usage is "${health.quota.on_extra_usage}".`;
  } else {
    banner.hidden = true;
  }
}

function drawQuota(quota, signin) {
  const bars = $("quota-bars");
  const names = Object.keys(quota.windows).sort((a, b) => (a in WINDOW_NAMES ? 0 : 1) - (b in WINDOW_NAMES ? 0 : 1) || a.localeCompare(b));
  const minute = Math.floor(Date.now() / 60000); // "resets in ..." moves on
  if (!changed("quota", [quota.windows, quota.status, signin.method, minute])) return;
  if (!names.length) {
    bars.replaceChildren();
    $("quota-note").textContent =
      signin.method === "api_key"
        ? "Not applicable: requests are billed to the API key."
        : "Not reported yet: the CLI reports the plan's windows after a call when signed in with a subscription.";
    return;
  }
  bars.replaceChildren(
    ...names.map((name) => {
      const window = quota.windows[name];
      const used = Math.max(0, Math.min(1, window.utilization ?? 0));
      const box = el("div", "quota");
      box.dataset.window = name;
      const line = el("div", "line");
      line.append(
        el("span", "", WINDOW_NAMES[name] || name.replaceAll("_", " ")),
        el("span", "muted", `${Math.round(used * 100)}% used${window.resets_at ? ` · resets ${until(window.resets_at)}` : ""}`),
      );
      const track = el("div", "track");
      const fill = el("span", `fill ${used >= 1 ? "bad" : used >= 0.8 ? "warn" : ""}`);
      fill.style.width = `${used * 100}%`;
      track.append(fill);
      box.append(line, track);
      return box;
    }),
  );
  $("quota-note").textContent = quota.checked_at ? `Reported by the CLI ${ago(quota.checked_at)} (status: ${quota.status || "unknown"}).` : "";
}

function drawInflight(turns) {
  setText("inflight-active", turns.active, "big");
  setText("inflight-queued", turns.queued, "big");
  $("inflight-max").textContent = turns.max_concurrent;
  $("inflight-max-queue").textContent = turns.max_queue;
  state.inflight.push(turns.active + turns.queued);
  if (state.inflight.length > SPARK_SAMPLES) state.inflight.shift();
  sparkline($("inflight-spark"), state.inflight, Math.max(1, turns.max_concurrent / 2));
}

// ---- usage ----

const SERIES = [
  { key: "input_tokens", name: "input", cls: "s1" },
  { key: "output_tokens", name: "output", cls: "s2" },
  { key: "cache_read_tokens", name: "cache read", cls: "s3" },
  { key: "cache_write_tokens", name: "cache write", cls: "s4" },
];

function dayRange(byDay) {
  // Every day of the period, empty ones too, so the columns keep their spacing.
  const today = new Date();
  const end = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate());
  let count = state.days;
  if (!count) {
    const first = byDay.length ? Date.parse(`${byDay[0].day}T00:00:00Z`) : end;
    count = Math.min(366, Math.round((end - first) / 86400000) + 1);
  }
  const days = [];
  for (let i = count - 1; i >= 0; i--) days.push(new Date(end - i * 86400000).toISOString().slice(0, 10));
  return days;
}

function drawUsage(usage) {
  if (!changed("usage", [usage, state.days])) return;
  const total = usage.total;
  const totals = [
    ["requests", "Requests", total.requests.toLocaleString("en-US")],
    ["input_tokens", "Input tokens", tokens(total.input_tokens)],
    ["output_tokens", "Output tokens", tokens(total.output_tokens)],
    ["cache_read_tokens", "Cache read", tokens(total.cache_read_tokens)],
    ["cache_write_tokens", "Cache write", tokens(total.cache_write_tokens)],
    ["cost_usd", "Cost", usd(total.cost_usd)],
  ];
  $("usage-totals").replaceChildren(
    ...totals.map(([field, label, value]) => {
      const box = el("div");
      box.dataset.field = field;
      box.title = field === "cost_usd" ? `$${total.cost_usd}` : String(total[field]);
      box.append(el("span", "value", value), el("span", "label", label));
      return box;
    }),
  );
  const days = dayRange(usage.by_day);
  const byDay = Object.fromEntries(usage.by_day.map((d) => [d.day, d]));
  const shortDay = (d) => d.slice(5);
  columns($("chart-days-tokens"), {
    labels: days,
    series: SERIES.map((s) => ({ ...s, values: days.map((d) => (byDay[d] ? byDay[d][s.key] : 0)) })),
    format: tokens,
    labelOf: shortDay,
  });
  legend($("legend-tokens"), SERIES);
  columns($("chart-days-cost"), {
    labels: days,
    series: [{ name: "cost", cls: "cost", values: days.map((d) => (byDay[d] ? byDay[d].cost_usd : 0)) }],
    format: usd,
    labelOf: shortDay,
  });
  const rows = (list, nameKey) =>
    [...list]
      .sort((a, b) => sumTokens(b) - sumTokens(a))
      .map((u) => ({
        name: u[nameKey],
        parts: SERIES.map((s) => ({ cls: s.cls, value: u[s.key] })),
        text: `${tokens(sumTokens(u))} tok · ${usd(u.cost_usd)} · ${u.requests} req`,
        tip: SERIES.map((s) => `${s.name} ${tokens(u[s.key])}`).join(", "),
      }));
  barList($("by-client"), rows(usage.by_client, "client"), "No requests in this period.");
  barList($("by-model"), rows(usage.by_model, "model"), "No requests in this period.");
}

// ---- sessions ----

function sessionsPath() {
  const params = new URLSearchParams({ limit: "200" });
  if (state.source !== "claude-tray") params.set("source", state.source);
  if (state.query && state.source === "claude-tray") params.set("q", state.query);
  return `/v1/sessions?${params}`;
}

function drawSessions(list) {
  let rows = list.data;
  if (state.source === "claude-code" && state.query) {
    // That listing has no server-side search: filter what it returned.
    const q = state.query.toLowerCase();
    rows = rows.filter((s) => `${s.title} ${s.cwd || ""} ${s.git_branch || ""}`.toLowerCase().includes(q));
  }
  const minute = Math.floor(Date.now() / 60000); // "... min ago" moves on
  if (!changed("sessions", [rows, state.source, minute])) return;
  const ours = state.source === "claude-tray";
  $("col-client").textContent = ours ? "Client" : "Folder";
  $("col-model").textContent = ours ? "Model" : "Branch";
  $("session-rows").replaceChildren(
    ...rows.map((s) => {
      const tr = el("tr");
      tr.dataset.id = s.id;
      const title = el("td", "title");
      title.append(el("span", "", s.title || "(untitled)"), el("span", "sub mono", s.id));
      const total = ours ? sumTokens(s) : null;
      const actions = el("td", "actions");
      actions.append(button("Transcript", () => openTranscript(s), "open"));
      if (ours) actions.append(button("Delete", () => deleteSession(s, tr), "danger delete"));
      tr.append(
        title,
        el("td", ours ? "" : "mono small", ours ? s.client : s.cwd || "–"),
        el("td", "", ours ? s.model : s.git_branch || "–"),
        el("td", "num", ours ? s.turns : "–"),
        el("td", "num", ours ? tokens(total) : "–"),
        el("td", "num", ours ? usd(s.cost_usd) : "–"),
        el("td", "", ago(s.last_used)),
        actions,
      );
      tr.children[6].title = when(s.last_used);
      if (ours) tr.children[4].title = `${total} tokens (input ${s.input_tokens}, output ${s.output_tokens}, cache read ${s.cache_read_tokens}, cache write ${s.cache_write_tokens})`;
      return tr;
    }),
  );
  const empty = $("sessions-empty");
  empty.hidden = rows.length > 0;
  empty.textContent = state.query ? `No session matches “${state.query}”.` : "No sessions yet.";
}

async function deleteSession(session, row) {
  if (!confirm(`Delete the session “${session.title || session.id}”? claude-tray forgets it; a client resending the conversation starts a new one.`)) return;
  try {
    await api(`/v1/sessions/${encodeURIComponent(session.id)}`, { method: "DELETE" });
    row.remove();
    state.shown.sessions = null;
    await refreshSessions();
  } catch (err) {
    alert(`Could not delete: ${err.message}`);
  }
}

async function openTranscript(session) {
  const dialog = $("transcript");
  $("transcript-title").textContent = session.title || "(untitled)";
  $("transcript-id").textContent = session.id;
  const body = $("transcript-body");
  body.replaceChildren(el("p", "muted", "Loading…"));
  if (!dialog.open) dialog.showModal();
  const source = state.source === "claude-tray" ? "" : `?source=${state.source}`;
  try {
    const transcript = await api(`/v1/sessions/${encodeURIComponent(session.id)}/transcript${source}`);
    body.replaceChildren(...transcript.data.map(drawMessage));
    if (!transcript.data.length) body.replaceChildren(el("p", "muted", "The transcript holds no messages."));
    if (transcript.has_more) body.append(el("p", "muted", "(later messages left out)"));
  } catch (err) {
    body.replaceChildren(el("p", "error", err.message));
  }
}

function drawMessage(message) {
  const box = el("div", `message ${message.role}`);
  box.append(el("div", "role", message.role + (message.model ? ` · ${message.model}` : "")));
  for (const block of message.content) box.append(drawBlock(block));
  return box;
}

function drawBlock(block) {
  switch (block.type) {
    case "text":
      return el("div", "text", block.text);
    case "thinking": {
      const details = el("details");
      details.append(el("summary", "", "thinking"), el("div", "text", block.thinking));
      return details;
    }
    case "tool_use": {
      const box = el("div");
      box.append(el("div", "tool-head", `→ calls ${block.name}`), el("pre", "", JSON.stringify(block.input, null, 2)));
      return box;
    }
    case "tool_result": {
      const box = el("div");
      box.append(el("div", `tool-head${block.is_error ? " error" : ""}`, block.is_error ? "← tool error" : "← tool result"));
      for (const inner of block.content) box.append(drawBlock(inner));
      return box;
    }
    case "image":
      return el("div", "muted", `[image ${block.media_type || ""}${block.bytes ? `, ${tokens(block.bytes)}B` : ""}]`);
    default:
      return el("div", "muted", `[${block.type}]`);
  }
}

// ---- errors and tools ----

function drawErrors(list) {
  if (!changed("errors", list.data)) return;
  $("error-rows").replaceChildren(
    ...list.data.map((e) => {
      const tr = el("tr");
      tr.dataset.requestId = e.request_id;
      const time = el("td", "nowrap", clock(e.time));
      time.title = when(e.time);
      const status = el("td", e.status >= 500 ? "bad-text" : "warn-text", e.status);
      status.append(el("span", "sub", e.code || e.type));
      const request = el("td", "mono small", `${e.method} ${e.path}`);
      request.append(el("span", "sub rid", e.request_id), el("span", "sub", e.client));
      tr.append(time, status, request, el("td", "message", e.message));
      return tr;
    }),
  );
  $("errors-empty").hidden = list.data.length > 0;
}

const toolNotes = {}; // tool -> the last configure result, shown under it

function drawTools(list) {
  if (!changed("tools", [list.data, toolNotes])) return;
  $("tool-list").replaceChildren(
    ...list.data.map((t) => {
      const li = el("li");
      li.dataset.tool = t.id;
      const name = el("div", "", t.label);
      name.append(
        el("span", `badge ${t.configured ? "ok" : ""}`, t.configured ? "configured" : "not configured"),
        el("span", "badge", t.found ? "installed" : "not found here"),
      );
      const action = button(t.configured ? "Configure again" : "Configure", () => configureTool(t, action), "configure");
      const path = el("div", "path mono", t.short_path || t.path);
      path.title = t.path;
      li.append(name, action, path);
      const note = toolNotes[t.id];
      if (note) li.append(el("div", `result ${note.ok ? "ok-text" : "bad-text"}`, note.message));
      return li;
    }),
  );
}

async function configureTool(tool, action) {
  if (!confirm(`Point ${tool.label} at claude-tray? ${tool.path} is backed up first; \`claude-tray configure ${tool.id} --undo\` puts it back.`)) return;
  action.disabled = true;
  try {
    const result = await api(`/v1/tools/${encodeURIComponent(tool.id)}/configure`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
      acceptStatus: [409],
    });
    toolNotes[tool.id] = { ok: result.ok, message: result.message };
  } catch (err) {
    toolNotes[tool.id] = { ok: false, message: err.message };
  }
  state.shown.tools = null;
  drawTools(await api("/v1/tools"));
}

// ---- polling ----

async function refreshSessions() {
  drawSessions(await api(sessionsPath()));
}

async function poll() {
  const since = state.days ? `?since=${Math.floor(Date.now() / 1000 - state.days * 86400)}` : "";
  const jobs = [
    api("/health").then(drawHealth),
    api(`/v1/usage${since}`).then(drawUsage),
    refreshSessions(),
    api("/v1/errors").then(drawErrors),
  ];
  if (state.polls % TOOLS_EVERY === 0) jobs.push(api("/v1/tools").then(drawTools));
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r) => r.status === "rejected");
  const banner = $("banner");
  if (failed && !(failed.reason instanceof ApiError && failed.reason.status === 401)) {
    const reason = failed.reason;
    const unreachable = !(reason instanceof ApiError);
    $("proxy-pill").className = "pill bad";
    $("proxy-pill").textContent = unreachable ? "unreachable" : "error";
    banner.hidden = false;
    banner.className = "banner";
    banner.textContent = unreachable
      ? `claude-tray is not answering (${reason.message}); retrying every ${POLL_MS / 1000} s.`
      : `${reason.message}${reason.requestId ? ` (request ${reason.requestId})` : ""}`;
  }
  state.polls += 1;
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  document.body.dataset.polls = String(state.polls);
}

function stopPolling() {
  clearTimeout(state.timer);
  state.timer = null;
}

async function loop() {
  stopPolling();
  if (!document.hidden && $("live").checked && $("key-form").hidden) await poll();
  if ($("key-form").hidden) state.timer = setTimeout(loop, POLL_MS);
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function start() {
  takeKeyFromFragment();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("key-input").value.trim();
    sessionStorage.setItem(KEY_STORE, state.key);
    $("key-input").value = "";
    $("key-form").hidden = true;
    state.polls = 0;
    loop();
  });
  for (const b of document.querySelectorAll("#range button")) {
    b.addEventListener("click", () => {
      state.days = Number(b.dataset.days);
      for (const other of document.querySelectorAll("#range button")) other.classList.toggle("on", other === b);
      loop();
    });
  }
  $("session-search").addEventListener(
    "input",
    debounce(() => {
      state.query = $("session-search").value.trim();
      refreshSessions().catch(() => {});
    }, 250),
  );
  $("session-source").addEventListener("change", () => {
    state.source = $("session-source").value;
    refreshSessions().catch(() => {});
  });
  $("transcript-close").addEventListener("click", () => $("transcript").close());
  $("live").addEventListener("change", () => loop());
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) loop();
  });
  loop();
}

start();
