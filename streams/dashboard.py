"""The live dashboard: one page served by the worker at ``/`` (and ``/dashboard``).

Self-contained: inline CSS and plain JavaScript, no build step, nothing loaded from anywhere
else; charts are inline SVG drawn by the page's own code. Every 2 s it reads the worker's
``GET /api/status`` and shows spend against budget per tenant, the alerts firing, the
tenants in degraded modes and why, SLO compliance (the latest SLA snapshot per tenant against
its tier's targets), throughput and consumer lag.

Each worker shows the tenants of the partitions it owns (its ``/api/status``).
"""

from __future__ import annotations

import json
from typing import Any

import faust
from faust.web import Request, Response, View

from streams.policy import DEFAULT_TIERS, Policy

__all__ = ["DASHBOARD_HTML", "add_dashboard_view", "render_dashboard"]

_CONFIG_MARK = "/*LLMTEL_CONFIG*/"

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>llmtel · live</title>
<style>
:root { color-scheme: light; --ok: #16a34a; --warn: #d97706; --bad: #dc2626; --muted: #6b7280; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #111827; background: #f3f4f6; }
header { display: flex; align-items: baseline; gap: 16px; background: #111827; color: #f9fafb;
  padding: 12px 24px; }
header h1 { margin: 0; font-size: 20px; }
#conn { font-size: 13px; padding: 2px 10px; border-radius: 10px; background: #374151; }
#conn.live { background: var(--ok); }
#conn.down { background: var(--bad); }
#updated { color: #9ca3af; font-size: 13px; margin-left: auto; }
main { display: grid; grid-template-columns: repeat(12, 1fr); gap: 14px; padding: 16px 24px; }
section { background: #fff; border-radius: 8px; padding: 12px 16px;
  box-shadow: 0 1px 2px rgba(0,0,0,.08); min-width: 0; }
section h2 { margin: 0 0 8px; font-size: 15px; }
.w12 { grid-column: span 12; } .w7 { grid-column: span 7; } .w5 { grid-column: span 5; }
.w6 { grid-column: span 6; }
@media (max-width: 900px) { .w7, .w5, .w6 { grid-column: span 12; } }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { flex: 1 1 140px; background: #f9fafb; border-radius: 6px; padding: 8px 12px; }
.card b { display: block; font-size: 22px; font-variant-numeric: tabular-nums; }
.card span { color: var(--muted); font-size: 12px; }
.card.alerting b { color: var(--bad); }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid #e5e7eb; vertical-align: top; }
th { font-weight: 600; color: #374151; background: #f9fafb; font-size: 12px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.empty { color: var(--muted); font-style: italic; }
.pill { display: inline-block; padding: 0 8px; border-radius: 9px; font-size: 12px; color: #fff;
  margin: 1px 2px 1px 0; background: #6b7280; }
.pill.ok { background: var(--ok); } .pill.warning { background: var(--warn); }
.pill.exceeded, .pill.critical { background: var(--bad); }
.pill.mode { background: #7c3aed; }
.met { color: #166534; background: #dcfce7; }
.missed { color: #991b1b; background: #fee2e2; font-weight: 600; }
.na { color: #9ca3af; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: #374151; }
small { color: var(--muted); }
</style>
</head>
<body>
<header><h1>llmtel</h1><span id="conn">connecting</span><span id="updated"></span></header>
<main>
<section class="w12"><div class="cards" id="cards"></div></section>
<section class="w7" id="spend"><h2>Spend today vs daily budget</h2><div id="spend-body" class="empty">waiting for data</div></section>
<section class="w5" id="alerts"><h2>Firing alerts</h2><div id="alerts-body" class="empty">waiting for data</div></section>
<section class="w6" id="degraded"><h2>Degraded tenants</h2><div id="degraded-body" class="empty">waiting for data</div></section>
<section class="w6" id="pipeline"><h2>Throughput and lag</h2><div id="pipeline-body" class="empty">waiting for data</div></section>
<section class="w12" id="slo"><h2>SLO compliance <small>latest SLA snapshot per tenant vs its tier</small></h2><div id="slo-body" class="empty">waiting for data</div></section>
</main>
<script>
"use strict";
const CONFIG = /*LLMTEL_CONFIG*/{"tiers": {}, "warn_at": 0.8, "poll_ms": 2000}/*END*/;
const HISTORY = [];  // [wall ms, events/s]
let last = null;

function esc(v) {
  return String(v === null || v === undefined ? "" : v).replace(/[&<>"']/g,
    c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function money(v) {
  if (v === null || v === undefined) return "-";
  const n = Number(v);
  if (Math.abs(n) >= 100) return "$" + n.toFixed(0);
  if (Math.abs(n) >= 1) return "$" + n.toFixed(2);
  return "$" + n.toFixed(4);
}
function num(v, digits) { return v === null || v === undefined ? null : Number(v).toFixed(digits); }
function when(v) {
  if (v === null || v === undefined || v === "") return "";
  const d = typeof v === "number" ? new Date(v * 1000) : new Date(String(v).replace(" ", "T") + (/[zZ]|[+-]\\d\\d:?\\d\\d$/.test(String(v)) ? "" : "Z"));
  return isNaN(d) ? String(v) : d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}
function set(id, html) {
  const el = document.getElementById(id);
  el.classList.remove("empty");
  el.innerHTML = html;
}

function cards(s) {
  const tenants = s.tenants || [];
  const degraded = tenants.filter(t => Object.keys(t.degraded || {}).length).length;
  const over = tenants.filter(t => t.level === "exceeded").length;
  const firing = (s.alerts_firing || []).length;
  const lag = Object.values(s.lag || {}).reduce((a, b) => a + Number(b), 0);
  const tp = s.throughput || {};
  const items = [
    [tenants.length, "tenants", ""],
    [firing, "alerts firing", firing ? "alerting" : ""],
    [over, "over budget today", over ? "alerting" : ""],
    [degraded, "tenants degraded", degraded ? "alerting" : ""],
    [Number(tp.events_per_s || 0).toFixed(1), "events / s", ""],
    [Number(tp.events_consumed || 0).toLocaleString("en"), "events consumed", ""],
    [lag.toLocaleString("en"), "consumer lag", ""],
  ];
  set("cards", items.map(([v, k, c]) => `<div class="card ${c}"><b>${esc(v)}</b><span>${esc(k)}</span></div>`).join(""));
}

function spend(s) {
  const rows = (s.tenants || []).map(t => ({...t, used: t.budget_usd ? t.spend_usd / t.budget_usd : 0}));
  rows.sort((a, b) => b.used - a.used || a.tenant_id.localeCompare(b.tenant_id));
  if (!rows.length) { set("spend-body", '<p class="empty">No tenant seen yet.</p>'); return; }
  const shown = rows.slice(0, 30);
  const scale = Math.max(1.25, Math.min(3, Math.max(...shown.map(r => r.used)) * 1.05));
  const W = 760, left = 110, right = 250, rowH = 24, top = 16;
  const plot = W - left - right, H = top + rowH * shown.length + 6;
  const x = v => left + Math.min(Math.max(v, 0), scale) / scale * plot;
  const colors = {ok: "#16a34a", warning: "#d97706", exceeded: "#dc2626"};
  let svg = `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="spend vs budget">`;
  shown.forEach((r, i) => {
    const y = top + i * rowH;
    const label = `${money(r.spend_usd)} of ${money(r.budget_usd)} (${Math.round(r.used * 100)} %)`;
    svg += `<text x="${left - 8}" y="${y + 15}" text-anchor="end">${esc(r.tenant_id.slice(0, 16))}</text>`;
    svg += `<rect x="${left}" y="${y + 4}" width="${plot}" height="14" fill="#f3f4f6"/>`;
    svg += `<rect x="${left}" y="${y + 4}" width="${(x(r.used) - left).toFixed(1)}" height="14" fill="${colors[r.level] || "#6b7280"}"><title>${esc(r.tenant_id)} (${esc(r.plan)}, ${esc(r.tier)}): ${esc(label)}</title></rect>`;
    svg += `<text x="${left + plot + 6}" y="${y + 15}">${esc(label)} · ${esc(r.plan)}</text>`;
  });
  const bottom = top + rowH * shown.length;
  svg += `<line x1="${x(1).toFixed(1)}" y1="${top - 2}" x2="${x(1).toFixed(1)}" y2="${bottom}" stroke="#111827" stroke-width="1.5"/>`;
  svg += `<line x1="${x(CONFIG.warn_at).toFixed(1)}" y1="${top - 2}" x2="${x(CONFIG.warn_at).toFixed(1)}" y2="${bottom}" stroke="#111827" stroke-dasharray="4 3"/>`;
  svg += `<text x="${x(1).toFixed(1)}" y="${top - 5}" text-anchor="middle">100 %</text>`;
  svg += "</svg>";
  const more = rows.length > shown.length ? `<small>${rows.length - shown.length} more tenants not shown</small>` : "";
  set("spend-body", svg + more);
}

function alerts(s) {
  const rows = s.alerts_firing || [];
  if (!rows.length) { set("alerts-body", '<p class="empty">No alert firing.</p>'); return; }
  const sorted = rows.slice().sort((a, b) => a.rule.localeCompare(b.rule) || String(a.tenant_id).localeCompare(String(b.tenant_id)));
  set("alerts-body", "<table><tr><th>rule</th><th>tenant</th><th>since (event time)</th></tr>" +
    sorted.map(a => `<tr class="alert-row"><td><span class="pill critical">FIRING</span> ${esc(a.rule)}</td><td>${esc(a.tenant_id)}</td><td><small>${esc(a.since ? when(a.since) : String(a.alert_id || "").split(":").pop())}</small></td></tr>`).join("") +
    "</table>");
}

function degraded(s) {
  const rows = (s.tenants || []).filter(t => Object.keys(t.degraded || {}).length);
  if (!rows.length) { set("degraded-body", '<p class="empty">No tenant in a degraded mode.</p>'); return; }
  set("degraded-body", "<table><tr><th>tenant</th><th>mode</th><th>because of</th></tr>" +
    rows.map(t => Object.entries(t.degraded).map(([mode, reasons]) =>
      `<tr><td>${esc(t.tenant_id)}</td><td><span class="pill mode">${esc(mode)}</span></td><td>${(reasons || []).map(esc).join(", ")}</td></tr>`).join("")).join("") +
    "</table>");
}

function sparkline(points, W, H) {
  if (points.length < 2) return "";
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const vmax = Math.max(1, ...points.map(p => p[1]));
  const xy = points.map(([t, v]) => `${(4 + (t - t0) / Math.max(1, t1 - t0) * (W - 8)).toFixed(1)},${(H - 14 - v / vmax * (H - 24)).toFixed(1)}`).join(" ");
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="events per second">` +
    `<polyline points="${xy}" fill="none" stroke="#2563eb" stroke-width="2"/>` +
    `<text x="4" y="10">${esc(vmax.toFixed(1))} events/s</text><text x="4" y="${H - 2}">last ${Math.round((t1 - t0) / 1000)} s</text></svg>`;
}

function pipeline(s) {
  const tp = s.throughput || {};
  const lag = Object.entries(s.lag || {}).sort((a, b) => Number(a[0]) - Number(b[0]));
  const lagMax = Math.max(1, ...lag.map(([, v]) => Number(v)));
  let html = `<p><b>${esc(Number(tp.events_per_s || 0).toFixed(1))}</b> events/s · <b>${esc(Number(tp.events_consumed || 0).toLocaleString("en"))}</b> consumed by this worker</p>`;
  html += sparkline(HISTORY, 520, 80);
  if (lag.length) {
    const W = 520, rowH = 18, H = rowH * lag.length + 4;
    let svg = `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="lag per partition">`;
    lag.forEach(([p, v], i) => {
      const w = Number(v) / lagMax * (W - 160);
      svg += `<text x="4" y="${i * rowH + 13}">partition ${esc(p)}</text><rect x="90" y="${i * rowH + 3}" width="${w.toFixed(1)}" height="12" fill="${Number(v) > 1000 ? "#dc2626" : "#0891b2"}"/><text x="${(96 + w).toFixed(1)}" y="${i * rowH + 13}">${esc(v)}</text>`;
    });
    html += "<h3 style='font-size:13px;margin:8px 0 4px'>Consumer lag (records behind)</h3>" + svg + "</svg>";
  } else {
    html += '<p class="empty">No partition consumed yet.</p>';
  }
  set("pipeline-body", html);
}

const SLIS = [
  ["availability", "availability", true, v => (v * 100).toFixed(2) + " %"],
  ["p95_latency_ms", "p95_latency_ms", false, v => Math.round(v) + " ms"],
  ["json_valid_rate", "json_valid", true, v => (v * 100).toFixed(1) + " %"],
  ["groundedness", "groundedness", true, v => Number(v).toFixed(2)],
  ["cost_p95_usd", "cost_p95_usd", false, v => "$" + Number(v).toFixed(4)],
];

function slo(s) {
  const rows = s.slo || [];
  if (!rows.length) { set("slo-body", '<p class="empty">No SLA snapshot yet (the SLA watchdog writes one per tenant every slo.interval).</p>'); return; }
  let html = "<table><tr><th>tenant</th><th>tier</th><th>availability</th><th>p95 latency</th><th>JSON valid</th><th>groundedness</th><th>p95 cost</th><th>error budget left</th><th>breaches</th><th>snapshot</th></tr>";
  for (const r of rows) {
    const tier = CONFIG.tiers[r.tier] || null;
    html += `<tr><td>${esc(r.tenant_id)}</td><td>${esc(r.tier)}</td>`;
    for (const [col, key, higher, fmt] of SLIS) {
      const v = r[col];
      if (v === null || v === undefined) { html += '<td class="na">no data</td>'; continue; }
      const target = tier ? tier[key] : null;
      const ok = target === null || (higher ? v >= target : v <= target);
      html += `<td class="${ok ? "met" : "missed"}">${esc(fmt(v))}${target === null ? "" : ` <small>${higher ? "≥" : "≤"} ${esc(fmt(target))}</small>`}</td>`;
    }
    const budget = r.error_budget_remaining;
    html += `<td class="num ${budget !== null && budget < 0 ? "missed" : ""}">${budget === null || budget === undefined ? "-" : esc((budget * 100).toFixed(1) + " %")}</td>`;
    const breaches = Array.isArray(r.breaches) ? r.breaches : [];
    html += `<td>${breaches.length ? breaches.map(b => `<span class="pill critical">${esc(b)}</span>`).join("") : "-"}</td><td><small>${esc(when(r.ts))}</small></td></tr>`;
  }
  set("slo-body", html + "</table>");
}

function render(s) {
  for (const [name, fn] of [["cards", cards], ["spend", spend], ["alerts", alerts], ["degraded", degraded], ["pipeline", pipeline], ["slo", slo]]) {
    try { fn(s); } catch (e) { console.error(name, e); }
  }
}

async function poll() {
  const conn = document.getElementById("conn");
  try {
    const response = await fetch("api/status", {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    last = await response.json();
    HISTORY.push([Date.now(), Number((last.throughput || {}).events_per_s || 0)]);
    if (HISTORY.length > 150) HISTORY.shift();
    render(last);
    conn.textContent = "live";
    conn.className = "live";
    document.getElementById("updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
  } catch (e) {
    conn.textContent = "disconnected, retrying";
    conn.className = "down";
  }
}

poll();
setInterval(poll, CONFIG.poll_ms);
</script>
</body>
</html>
"""


def _config(policy: Policy | None, poll_ms: int = 2000) -> dict[str, Any]:
    tiers = policy.slo.tiers if policy is not None else DEFAULT_TIERS
    return {
        "tiers": {name: spec.model_dump() for name, spec in tiers.items()},
        "warn_at": policy.budget.warn_at if policy is not None else 0.8,
        "poll_ms": poll_ms,
    }


def render_dashboard(policy: Policy | None = None, poll_ms: int = 2000) -> str:
    """The dashboard page with the policy's tier targets and ``budget.warn_at`` inlined."""
    head, rest = _PAGE.split(_CONFIG_MARK, 1)
    _, tail = rest.split("/*END*/", 1)
    config = json.dumps(_config(policy, poll_ms), sort_keys=True).replace("</", "<\\/")
    return f"{head}{config}{tail}"


DASHBOARD_HTML: str = render_dashboard()
"""The page for the default policy (``render_dashboard(policy)`` for another)."""


def add_dashboard_view(app: faust.App, policy: Policy | None = None) -> None:
    """Serve the dashboard at ``GET /`` and ``GET /dashboard`` (targets from ``policy``)."""
    page = render_dashboard(policy)

    class DashboardView(View):
        async def get(self, request: Request) -> Response:
            return self.html(page, headers={"Cache-Control": "no-cache"})

    app.page("/", name="dashboard")(type("DashboardIndex", (DashboardView,), {}))
    app.page("/dashboard", name="dashboard-page")(type("DashboardPage", (DashboardView,), {}))
