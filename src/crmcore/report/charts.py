"""The report's charts as Vega-Lite specifications, built with altair from the figures."""

from __future__ import annotations

from typing import Any

from crmcore.errors import MissingExtra
from crmcore.report.figures import Figures, Missing, Rows

WIDTH = 540
"""Chart width in pixels: with its legend, a chart fits the page's 760-pixel column."""


def _altair() -> Any:
    try:
        import altair
    except ImportError:
        raise MissingExtra("the HTML report", "report") from None
    return altair


def specs(figures: Figures) -> dict[str, dict[str, Any] | Missing]:
    """Chart id -> Vega-Lite spec (a dict), or `Missing` when its figure could not be had."""
    alt = _altair()
    built: dict[str, dict[str, Any] | Missing] = {}

    def chart(name: str, rows: Rows | Missing, make: Any) -> None:
        if isinstance(rows, Missing):
            built[name] = rows
        elif not rows:
            built[name] = Missing("no data yet")
        else:
            spec = make(alt.Chart(alt.Data(values=rows))).properties(width=WIDTH).to_dict()
            spec.pop("$schema", None)  # a URL nobody needs to fetch
            built[name] = spec

    chart("lifecycle", figures.lifecycle_by_month, lambda c: c.mark_bar().encode(
        x=alt.X("month:O", title="month the customer was created"),
        y=alt.Y("customers:Q", stack=True, title="customers"),
        color=alt.Color("lifecycle:N", title="lifecycle now"),
        tooltip=["month:O", "lifecycle:N", "customers:Q"]).properties(height=240))
    chart("tiers", figures.tiers, lambda c: c.mark_bar().encode(
        y=alt.Y("tier:N", title="tier"), x=alt.X("customers:Q", stack=True),
        color=alt.Color("lifecycle:N"), tooltip=["tier:N", "lifecycle:N", "customers:Q"]))
    chart("rfm", figures.rfm_grid, lambda c: c.mark_rect().encode(
        x=alt.X("frequency:O", title="frequency score (5 = most orders)"),
        y=alt.Y("recency:O", title="recency score (5 = most recent)", sort="descending"),
        color=alt.Color("customers:Q", scale=alt.Scale(scheme="blues")),
        tooltip=["recency:O", "frequency:O", "customers:Q", "mean_spend:Q", "currency:N"],
    ).properties(height=260))
    chart("clv", figures.clv_histogram, lambda c: c.mark_bar().encode(
        x=alt.X("from:Q", bin="binned", title="12-month customer lifetime value"), x2="to:Q",
        y=alt.Y("customers:Q"), color=alt.Color("tail:N", title="top 1%"),
        tooltip=["from:Q", "to:Q", "customers:Q"]).properties(height=220))
    chart("churn", figures.churn_risk, lambda c: c.mark_bar().encode(
        y=alt.Y("customer:N", sort="-x", title=None), x=alt.X("value:Q", title="value at risk"),
        color=alt.Color("p_alive:Q", scale=alt.Scale(scheme="reds", reverse=True), title="P(alive)"),
        tooltip=["customer:N", "customer_id:N", "p_alive:Q", "value:Q", "since_last:Q"]))
    chart("repurchase", figures.repurchase_due, lambda c: c.mark_bar().encode(
        x=alt.X("label:N", sort=alt.SortField("week"), title="next purchase due"), y="customers:Q",
        color=alt.condition("datum.week < 0", alt.value("#d62728"), alt.value("#1f77b4")),
        tooltip=["label:N", "customers:Q"]).properties(height=220))
    chart("offers", figures.next_offers, lambda c: c.mark_bar().encode(
        y=alt.Y("item:N", sort="-x", title="next best offer"), x="customers:Q",
        tooltip=["item:N", "customers:Q"]))
    for dimension in ("channel", "service_point"):
        rows = figures.quality_by_channel if dimension == "channel" else figures.quality_by_point
        chart(f"quality_{dimension}", rows, lambda c, d=dimension: c.mark_line(point=True).encode(
            x=alt.X("month:O"), y=alt.Y("csat:Q", title="CSAT (% satisfied)", scale=alt.Scale(zero=False)),
            color=alt.Color(f"{d}:N", title=d.replace("_", " ")),
            tooltip=[f"{d}:N", "month:O", "contacts:Q", "csat:Q", "nps:Q", "sla:Q"]).properties(height=240))
    chart("pipeline", figures.pipeline, lambda c: c.mark_bar().encode(
        y=alt.Y("stage:N", sort=alt.SortField("order"), title="stage"), x=alt.X("opportunities:Q"),
        color=alt.Color("stage:N", legend=None), tooltip=["stage:N", "opportunities:Q", "amounts:N"]))
    chart("campaign_lift", figures.campaign_lift, lambda c: _lift(alt, c))
    return built


def _lift(alt: Any, base: Any) -> Any:
    """Each campaign's lift as a point on its confidence interval, beside the line of no effect."""
    y = alt.Y("label:N", title=None, sort=None)
    interval = base.mark_rule(strokeWidth=2).encode(
        x=alt.X("low:Q", title="lift, percentage points (target rate - control rate)"), x2="high:Q", y=y,
        color=alt.Color("significant:N", title="real difference",
                        scale=alt.Scale(domain=[True, False], range=["#2ca02c", "#999999"])))
    point = base.mark_point(filled=True, size=70).encode(
        x="lift:Q", y=y, color=alt.Color("significant:N"),
        tooltip=["campaign:N", "campaign_id:N", "measure:N", "lift:Q", "low:Q", "high:Q", "target:Q",
                 "control:Q", "p_value:Q", "members:N", "population:N", "confidence:N"])
    zero = base.mark_rule(strokeDash=[4, 3], color="#444").encode(x=alt.datum(0))
    return alt.layer(interval, point, zero).properties(height=alt.Step(22))
