"""``llmtel report``: one self-contained HTML file of spend, budgets, quality and SLOs.

Everything is inline: CSS in a ``<style>``, charts as SVG drawn here from the query results.
The file loads nothing (no script, font, image or stylesheet from anywhere), so it can be
mailed, archived or opened offline.

``rows_fetcher(sql)`` runs SQL on llmtel's ClickHouse and returns ``(columns, rows)``; the
CLI's ``run_query`` result ``(columns, types, rows)`` is accepted as well. Values may be
Python objects (Decimal, datetime) or their JSON forms (strings), as the worker's
``POST /query`` returns them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from streams.durations import format_duration
from streams.policy import Policy
from streams.presets import budget_sql, quality_sql, slo_sql

__all__ = ["RowsFetcher", "render_report", "write_report"]

RowsFetcher = Callable[[str], Sequence[Any]]

PALETTE = (
    "#2563eb",
    "#dc2626",
    "#16a34a",
    "#d97706",
    "#7c3aed",
    "#0891b2",
    "#db2777",
    "#65a30d",
    "#9ca3af",
)
LEVEL_COLORS = {"ok": "#16a34a", "warning": "#d97706", "exceeded": "#dc2626"}
MAX_SERIES = 8  # tenants drawn as their own line; the others are summed as "other"

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
  color: #111827; background: #f3f4f6; }
header { background: #111827; color: #f9fafb; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #d1d5db; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 28px 40px; }
section { background: #fff; border-radius: 8px; padding: 16px 20px; margin: 0 0 18px;
  box-shadow: 0 1px 2px rgba(0,0,0,.08); }
section h2 { font-size: 17px; margin: 0 0 4px; }
section p.note { color: #6b7280; margin: 0 0 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 18px; }
.card { background: #fff; border-radius: 8px; padding: 12px 16px; min-width: 170px;
  box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.card b { display: block; font-size: 22px; }
.card span { color: #6b7280; }
table { border-collapse: collapse; width: 100%; margin-top: 8px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e5e7eb; }
td.num, td.met, td.missed, td.na, td.when { white-space: nowrap; }
th { color: #374151; font-weight: 600; background: #f9fafb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
small { color: #6b7280; font-weight: normal; }
.met { color: #166534; background: #dcfce7; }
.missed { color: #991b1b; background: #fee2e2; font-weight: 600; }
.na { color: #9ca3af; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; color: #fff; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 14px; }
table.compact { width: auto; min-width: 420px; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: #374151; }
.empty { color: #6b7280; font-style: italic; padding: 10px 0; }
footer { color: #6b7280; text-align: center; font-size: 12px; padding-bottom: 24px; }
"""


# -- values -------------------------------------------------------------------------------


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> float | None:
    """A number from a query value (Decimal, int, float, or their JSON string); None if none."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    try:
        number = float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None
    return None if math.isnan(number) else number


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "$0"
    if abs(value) >= 100:
        return f"${value:,.0f}"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    return f"${value:.4f}"


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f} %"


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        value = value.astimezone(UTC) if value.tzinfo else value
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value or "")[:19].replace("T", " ")


def _fetch(fetcher: RowsFetcher, sql: str) -> list[dict[str, Any]]:
    result = fetcher(sql)
    columns, rows = (result[0], result[2]) if len(result) == 3 else (result[0], result[1])
    return [dict(zip(columns, row, strict=True)) for row in rows]


# -- SVG charts ---------------------------------------------------------------------------


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value``."""
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    start: float,
    end: float,
    fmt: Callable[[float], str],
    width: int = 1100,
    height: int = 300,
) -> str:
    """Lines of (epoch seconds, value) per series, with axes and a legend."""
    left, right, top, bottom = 70, 170, 14, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    y_max = _nice_max(max((v for points in series.values() for _, v in points), default=0))
    span = max(end - start, 1.0)

    def x(t: float) -> float:
        return left + (t - start) / span * plot_w

    def y(v: float) -> float:
        return top + plot_h - v / y_max * plot_h

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    for i in range(5):
        v = y_max * i / 4
        parts.append(
            f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + plot_w}" y2="{y(v):.1f}" '
            f'stroke="#e5e7eb"/><text x="{left - 6}" y="{y(v) + 4:.1f}" '
            f'text-anchor="end">{_esc(fmt(v))}</text>'
        )
    for i in range(6):
        t = start + span * i / 5
        label = datetime.fromtimestamp(t, UTC).strftime("%m-%d %H:%M")
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - 12}" text-anchor="middle">{_esc(label)}</text>'
        )
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#9ca3af"/>'
    )
    for i, (name, points) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
        if len(points) > 1:
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2">'
                f"<title>{_esc(name)}</title></polyline>"
            )
        for t, v in points:
            if v > 0:
                parts.append(
                    f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}">'
                    f"<title>{_esc(name)} {_esc(fmt(v))} at "
                    f"{datetime.fromtimestamp(t, UTC):%Y-%m-%d %H:%M} UTC</title></circle>"
                )
        ly = top + 8 + i * 18
        parts.append(
            f'<rect x="{left + plot_w + 16}" y="{ly - 8}" width="12" height="12" fill="{color}"/>'
            f'<text x="{left + plot_w + 34}" y="{ly + 2}">{_esc(name[:22])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    bars: list[tuple[str, float, str, str]],
    scale_max: float,
    marker: float | None = None,
    marker_label: str = "",
    limit: float | None = None,
    width: int = 380,
    left: int = 90,
    right: int = 70,
) -> str:
    """Horizontal bars: (label, value, color, text shown after the bar).

    ``marker`` draws a dashed threshold line; ``limit`` a solid one (e.g. 100 % of budget).
    """
    row_h, top = 24, 18
    plot_w = width - left - right
    height = top + row_h * len(bars) + 10
    scale_max = scale_max or 1.0

    def x(v: float) -> float:
        return left + min(max(v, 0.0), scale_max) / scale_max * plot_w

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    for i, (label, value, color, text) in enumerate(bars):
        y = top + i * row_h
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{_esc(label[: left // 7])}</text>'
            f'<rect x="{left}" y="{y + 4}" width="{plot_w}" height="14" fill="#f3f4f6"/>'
            f'<rect x="{left}" y="{y + 4}" width="{x(value) - left:.1f}" height="14" '
            f'fill="{color}"><title>{_esc(label)}: {_esc(text)}</title></rect>'
            f'<text x="{left + plot_w + 6}" y="{y + 15}">{_esc(text)}</text>'
        )
    bottom = top + row_h * len(bars)
    if limit is not None:
        parts.append(
            f'<line x1="{x(limit):.1f}" y1="{top}" x2="{x(limit):.1f}" y2="{bottom}" '
            'stroke="#111827" stroke-width="1.5"/>'
        )
    if marker is not None:
        parts.append(
            f'<line x1="{x(marker):.1f}" y1="{top - 4}" x2="{x(marker):.1f}" y2="{bottom}" '
            'stroke="#111827" stroke-dasharray="4 3"/>'
            f'<text x="{x(marker):.1f}" y="{top - 6}" text-anchor="middle">{_esc(marker_label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


# -- sections -----------------------------------------------------------------------------


def _bucket(since_seconds: int) -> int:
    """Points of the spend lines: per minute up to 2 h, 5 min up to 12 h, hour up to 8 d, day."""
    if since_seconds <= 2 * 3600:
        return 60
    if since_seconds <= 12 * 3600:
        return 300
    if since_seconds <= 8 * 86400:
        return 3600
    return 86400


def _spend_section(fetch: RowsFetcher, since: int, now: float) -> tuple[str, dict[str, float]]:
    bucket = _bucket(since)
    rows = _fetch(
        fetch,
        f"""SELECT toString(tenant_id) AS tenant, intDiv(toUInt32(minute), {bucket}) * {bucket} AS t,
       sum(cost_usd) AS usd, sum(requests) AS calls
FROM rollups_1m
WHERE minute >= now() - INTERVAL {since} SECOND
GROUP BY tenant, t
ORDER BY t, tenant""",
    )
    totals: dict[str, float] = {}
    calls: dict[str, float] = {}
    for r in rows:
        totals[r["tenant"]] = totals.get(r["tenant"], 0.0) + (_num(r["usd"]) or 0.0)
        calls[r["tenant"]] = calls.get(r["tenant"], 0.0) + (_num(r["calls"]) or 0.0)
    ranked = sorted(totals, key=lambda t: (-totals[t], t))
    shown = ranked[:MAX_SERIES] if len(ranked) <= MAX_SERIES + 1 else ranked[: MAX_SERIES - 1]
    start = (now - since) // bucket * bucket
    end = now // bucket * bucket
    steps = [start + i * bucket for i in range(int((end - start) // bucket) + 1)]
    per: dict[str, dict[float, float]] = {t: {} for t in shown}
    if len(shown) < len(ranked):
        per["other"] = {}
    for r in rows:
        name = r["tenant"] if r["tenant"] in shown else "other"
        t = float(_num(r["t"]) or 0)
        per[name][t] = per[name].get(t, 0.0) + (_num(r["usd"]) or 0.0)
    series = {name: [(t, values.get(t, 0.0)) for t in steps] for name, values in per.items()}
    width = {60: "minute", 300: "5 minutes", 3600: "hour", 86400: "day"}[bucket]
    body = (
        line_chart(series, start, end, _money)
        if rows
        else '<p class="empty">No llm_call spend in this period.</p>'
    )
    table = "".join(
        f'<tr><td>{_esc(t)}</td><td class="num">{_money(totals[t])}</td>'
        f'<td class="num">{int(calls[t]):,}</td></tr>'
        for t in ranked[:25]
    )
    more = f"<p class='note'>… and {len(ranked) - 25} more tenants.</p>" if len(ranked) > 25 else ""
    html_ = f"""<section id="spend"><h2>Spend per tenant over time</h2>
<p class="note">USD per {width} of event time, from <code>rollups_1m</code> (exact sums).</p>
{body}
<table class="compact"><tr><th>tenant</th><th>spend</th><th>llm calls</th></tr>{table}</table>{more}</section>"""
    return html_, totals


def _budget_section(fetch: RowsFetcher, policy: Policy) -> tuple[str, list[dict[str, Any]]]:
    rows = _fetch(fetch, budget_sql(policy))
    bars = []
    for r in rows[:30]:
        spend, limit = _num(r["spend_usd"]) or 0.0, _num(r["budget_usd"]) or 1.0
        state = str(r["state"])
        bars.append(
            (
                str(r["tenant_id"]),
                spend / limit,
                LEVEL_COLORS.get(state, "#6b7280"),
                f"{_money(spend)} of {_money(limit)} ({state})",
            )
        )
    top = max([1.0] + [b[1] for b in bars])
    warn = policy.budget.warn_at
    chart = (
        bar_chart(
            bars,
            _nice_max(top) if top > 1 else 1.0,
            marker=warn,
            marker_label=f"warn {warn:.0%}",
            limit=1.0,
            width=1100,
            left=130,
            right=230,
        )
        if bars
        else '<p class="empty">No tenant has spent anything today.</p>'
    )
    table = "".join(
        f"<tr><td>{_esc(r['tenant_id'])}</td><td>{_esc(r['plan'])}</td>"
        f'<td class="num">{_money(_num(r["spend_usd"]))}</td>'
        f'<td class="num">{_money(_num(r["budget_usd"]))}</td>'
        f'<td class="num">{_esc(r["used_pct"])} %</td>'
        f'<td><span class="badge" style="background:{LEVEL_COLORS.get(str(r["state"]), "#6b7280")}">'
        f"{_esc(r['state'])}</span></td></tr>"
        for r in rows[:50]
    )
    html_ = f"""<section id="budget"><h2>Budget burn today (UTC)</h2>
<p class="note">Spend since 00:00 UTC against each tenant's plan limit (solid line: 100 %,
dashed: <code>budget.warn_at</code>). Limits from the policy; tenants off the list are on
the <code>{_esc(policy.default_plan)}</code> plan.</p>
{chart}
<table><tr><th>tenant</th><th>plan</th><th>spend</th><th>daily budget</th><th>used</th><th>state</th></tr>{table}</table></section>"""
    return html_, rows


def _rule(policy: Policy, name: str) -> tuple[float | None, str]:
    for spec in policy.rule_specs():
        if spec.name == name:
            return spec.threshold, format_duration(spec.window)
    return None, ""


def _quality_section(fetch: RowsFetcher, policy: Policy, since: int) -> str:
    rows = _fetch(fetch, quality_sql(since))
    if not rows:
        return """<section id="quality"><h2>Quality</h2>
<p class="empty">No evaluation, guardrail or tool_call events in this period.</p></section>"""
    hall_t, _ = _rule(policy, "hallucination_rate_high")
    faith_t, _ = _rule(policy, "faithfulness_low")
    inj_t, inj_w = _rule(policy, "prompt_injection_surge")
    charts = []
    hall = [
        (str(r["tenant_id"]), v, "#dc2626" if hall_t is not None and v > hall_t else "#2563eb")
        for r in rows
        if (v := _num(r["hallucination_rate"])) is not None
    ]
    if hall:
        charts.append(
            "<div><h3>Hallucination rate</h3>"
            + bar_chart(
                [(t, v, c, f"{v:.1%}") for t, v, c in hall],
                _nice_max(max([v for _, v, _ in hall] + [hall_t or 0])),
                marker=hall_t,
                marker_label=f"alert > {hall_t:.0%}" if hall_t is not None else "",
            )
            + "</div>"
        )
    faith = [
        (str(r["tenant_id"]), v, "#dc2626" if faith_t is not None and v < faith_t else "#16a34a")
        for r in rows
        if (v := _num(r["faithfulness_mean"])) is not None
    ]
    if faith:
        charts.append(
            "<div><h3>Mean faithfulness</h3>"
            + bar_chart(
                [(t, v, c, f"{v:.2f}") for t, v, c in faith],
                1.0,
                marker=faith_t,
                marker_label=f"alert < {faith_t:.2f}" if faith_t is not None else "",
            )
            + "</div>"
        )
    inj = [(str(r["tenant_id"]), _num(r["injections_blocked"]) or 0.0) for r in rows]
    inj = [(t, v) for t, v in inj if v > 0]
    if inj:
        charts.append(
            "<div><h3>Prompt injections blocked</h3>"
            + bar_chart(
                [(t, v, "#7c3aed", f"{int(v):,}") for t, v in inj],
                _nice_max(max([v for _, v in inj] + [inj_t or 0])),
                marker=inj_t,
                marker_label=f"alert > {inj_t:.0f} in {inj_w}" if inj_t is not None else "",
            )
            + "</div>"
        )
    table = "".join(
        f"<tr><td>{_esc(r['tenant_id'])}</td>"
        f'<td class="num">{_esc(r["hallucination_evals"])}</td>'
        f'<td class="num">{_pct(_num(r["hallucination_rate"]))}</td>'
        f'<td class="num">{_esc(r["faithfulness_evals"])}</td>'
        f'<td class="num">{"-" if (f := _num(r["faithfulness_mean"])) is None else f"{f:.3f}"}</td>'
        f'<td class="num">{"-" if (g := _num(r["groundedness_mean"])) is None else f"{g:.3f}"}</td>'
        f'<td class="num">{_esc(r["injections_blocked"])}</td></tr>'
        for r in rows[:50]
    )
    return f"""<section id="quality"><h2>Quality</h2>
<p class="note">Over the whole period: hallucination = share of <code>hallucination</code>
scores &gt;= 0.5; dashed lines are the alert thresholds of the policy (the alerts themselves
use their own windows).</p>
<div class="grid">{"".join(charts)}</div>
<div class="scroll"><table><tr><th>tenant</th><th>hallucination evals</th><th>hallucination rate</th>
<th>faithfulness evals</th><th>mean faithfulness</th><th>mean groundedness</th>
<th>injections blocked</th></tr>{table}</table></div></section>"""


SLO_CHECKS = (
    # (column, tier field, label, higher is better, format)
    ("availability", "availability", "availability", True, lambda v: f"{v * 100:.2f} %"),
    ("p95_latency_ms", "p95_latency_ms", "p95 latency", False, lambda v: f"{v:,.0f} ms"),
    ("json_valid_rate", "json_valid", "JSON valid", True, lambda v: f"{v * 100:.1f} %"),
    ("groundedness", "groundedness", "groundedness", True, lambda v: f"{v:.2f}"),
    ("cost_p95_usd", "cost_p95_usd", "p95 cost / request", False, lambda v: f"${v:.4f}"),
)


def _slo_section(fetch: RowsFetcher, policy: Policy, since: int) -> tuple[str, int]:
    rows = _fetch(fetch, slo_sql(since))
    if not rows:
        return (
            """<section id="slo"><h2>SLO compliance</h2>
<p class="empty">No SLA snapshot in this period (the SLA watchdog writes one per tenant every
<code>slo.interval</code>).</p></section>""",
            0,
        )
    head = "".join(f"<th>{_esc(label)}</th>" for _, _, label, _, _ in SLO_CHECKS)
    body = []
    missed_tenants = 0
    for r in rows:
        tier_name = str(r["tier"])
        tier = policy.slo.tiers.get(tier_name)
        cells = []
        missed = 0
        for column, field, _, higher, fmt in SLO_CHECKS:
            value = _num(r[column])
            target = getattr(tier, field) if tier is not None else None
            if value is None:
                cells.append('<td class="na">no data</td>')
                continue
            ok = target is None or (value >= target if higher else value <= target)
            missed += not ok
            goal = (
                ""
                if target is None
                else f"<br><small>{'≥' if higher else '≤'} {_esc(fmt(target))}</small>"
            )
            cells.append(f'<td class="{"met" if ok else "missed"}">{_esc(fmt(value))}{goal}</td>')
        missed_tenants += missed > 0
        budget = _num(r["error_budget_remaining"])
        breaches = r["breaches"]
        if isinstance(breaches, str):
            breaches = breaches.strip("[]").replace("'", "").replace('"', "")
        else:
            breaches = ", ".join(str(b) for b in breaches or [])
        body.append(
            f"<tr><td>{_esc(r['tenant_id'])}</td><td>{_esc(tier_name)}</td>"
            f'<td class="num">{_esc(r["calls"])}</td>{"".join(cells)}'
            f'<td class="num {"missed" if budget is not None and budget < 0 else ""}">{_pct(budget)}</td>'
            f"<td>{_esc(breaches) or '-'}</td><td>{_esc(str(r['degraded_mode'] or '').replace(',', ', ')) or '-'}</td>"
            f'<td class="when">{_esc(_when(r["snapshot_ts"])).replace(" ", "<br>", 1)}</td></tr>'
        )
    return (
        f"""<section id="slo"><h2>SLO compliance</h2>
<p class="note">The latest SLA snapshot of each tenant against its tier's targets (over the
last <code>slo.evaluation_window</code> = {_esc(format_duration(policy.slo.evaluation_window))}
of its event time). <em>Breaches</em> are the SLO alerts firing at that snapshot.</p>
<div class="scroll"><table><tr><th>tenant</th><th>tier</th><th>calls</th>{head}<th>error budget left</th>
<th>breaches</th><th>degraded</th><th>snapshot (UTC)</th></tr>{"".join(body)}</table></div></section>""",
        missed_tenants,
    )


def _alerts_section(fetch: RowsFetcher, since: int) -> tuple[str, int]:
    rows = _fetch(
        fetch,
        f"""SELECT rule, ifNull(tenant_id, '(all tenants)') AS tenant, severity,
       countIf(state = 'firing') AS fired, countIf(state = 'resolved') AS resolved,
       min(event_time) AS first_event_time, max(value) AS max_value, any(threshold) AS threshold
FROM alerts FINAL
WHERE event_time >= now() - INTERVAL {since} SECOND
GROUP BY rule, tenant, severity
ORDER BY fired DESC, rule, tenant
LIMIT 100""",
    )
    if not rows:
        return (
            """<section id="alerts"><h2>Alerts</h2>
<p class="empty">No alert in this period.</p></section>""",
            0,
        )
    colors = {"critical": "#dc2626", "warning": "#d97706", "info": "#2563eb"}
    table = "".join(
        f"<tr><td>{_esc(r['rule'])}</td><td>{_esc(r['tenant'])}</td>"
        f'<td><span class="badge" style="background:{colors.get(str(r["severity"]), "#6b7280")}">'
        f"{_esc(r['severity'])}</span></td>"
        f'<td class="num">{_esc(r["fired"])}</td><td class="num">{_esc(r["resolved"])}</td>'
        f'<td class="num">{_esc(_fmt_value(_num(r["max_value"])))}</td>'
        f'<td class="num">{_esc(_fmt_value(_num(r["threshold"])))}</td>'
        f"<td>{_esc(_when(r['first_event_time']))}</td></tr>"
        for r in rows
    )
    fired = sum(int(_num(r["fired"]) or 0) for r in rows)
    return (
        f"""<section id="alerts"><h2>Alerts</h2>
<p class="note">Alert episodes of the period, from the <code>alerts</code> table.</p>
<div class="scroll"><table><tr><th>rule</th><th>tenant</th><th>severity</th><th>fired</th><th>resolved</th>
<th>max value</th><th>threshold</th><th>first (event time, UTC)</th></tr>{table}</table></div></section>""",
        fired,
    )


def _fmt_value(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"


# -- the page -----------------------------------------------------------------------------


def render_report(
    rows_fetcher: RowsFetcher,
    policy: Policy,
    since_seconds: float,
    *,
    now: datetime | None = None,
    title: str = "llmtel report",
) -> str:
    """The report as one HTML string (see the module docstring)."""
    since = max(60, int(since_seconds))
    now_dt = now or datetime.now(UTC)
    now_ts = now_dt.timestamp()
    spend_html, totals = _spend_section(rows_fetcher, since, now_ts)
    budget_html, budget_rows = _budget_section(rows_fetcher, policy)
    quality_html = _quality_section(rows_fetcher, policy, since)
    slo_html, slo_missed = _slo_section(rows_fetcher, policy, since)
    alerts_html, fired = _alerts_section(rows_fetcher, since)
    over = sum(1 for r in budget_rows if r["state"] == "exceeded")
    start = datetime.fromtimestamp(now_ts - since, UTC)
    cards = [
        (_money(sum(totals.values())), f"spend in the last {format_duration(since)}"),
        (f"{len(totals):,}", "tenants with spend"),
        (f"{over:,}", "tenants over budget today"),
        (f"{fired:,}", "alerts fired"),
        (f"{slo_missed:,}", "tenants missing an SLO"),
    ]
    cards_html = "".join(
        f"<div class='card'><b>{_esc(v)}</b><span>{_esc(k)}</span></div>" for v, k in cards
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header><h1>{_esc(title)}</h1>
<p>{start:%Y-%m-%d %H:%M} to {now_dt.astimezone(UTC):%Y-%m-%d %H:%M} UTC (last {_esc(format_duration(since))})
· generated {now_dt.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC</p></header>
<main>
<div class="cards">{cards_html}</div>
{spend_html}
{budget_html}
{quality_html}
{slo_html}
{alerts_html}
</main>
<footer>llmtel · self-contained report: no scripts, nothing loaded from elsewhere</footer>
</body>
</html>
"""


def write_report(
    rows_fetcher: RowsFetcher,
    policy: Policy,
    since_seconds: float,
    out_path: str | Path,
    *,
    now: datetime | None = None,
    title: str = "llmtel report",
) -> Path:
    """Write the HTML report of the last ``since_seconds`` to ``out_path``; return the path."""
    path = Path(out_path)
    text = render_report(rows_fetcher, policy, since_seconds, now=now, title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
