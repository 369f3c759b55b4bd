"""The report as one self-contained HTML page: styles, the Vega libraries and the data inline.

Nothing is fetched when the page opens, so it works from a mail attachment or a
machine without network. Every piece of customer text is escaped: HTML text with
`html.escape`, chart data as JSON whose `<`, `>` and `&` are written as `\\u` escapes,
so no value can close the script element that carries it.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
from pathlib import Path
from typing import Any

from crmcore.errors import MissingExtra
from crmcore.report.figures import Figures, Missing

SECTIONS = (
    ("lifecycle", "Customers by lifecycle", "New customers per month, coloured by where they are now."),
    ("tiers", "Customers by tier", "Each tier split by lifecycle stage."),
    ("rfm", "RFM grid", "Buyers by recency and frequency score; darker means more customers."),
    ("clv", "Customer lifetime value", "Expected value over the next 12 months (BG/NBD + Gamma-Gamma)."),
    ("churn", "Churn risk", "Valuable customers who have probably stopped buying (lowest P(alive))."),
    ("repurchase", "Repurchase due", "When each buyer's next purchase is due, from their own rhythm."),
    ("offers", "Next best offers", "What the basket rules suggest offering next, by item."),
    ("quality_channel", "Service quality by channel", "Satisfaction (CSAT) per month and channel."),
    ("quality_service_point", "Service quality by service point",
     "Satisfaction (CSAT) per month and service point."),
    ("pipeline", "Sales pipeline", "Opportunities by stage, in the order of the sales cycle."),
    ("campaign_lift", "Campaign lift",
     "What each recent campaign changed: target rate minus control rate, with its confidence "
     "interval (Newcombe); green where the interval excludes no effect."),
)

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:760px;
color:#222;padding:0 1rem}h1{margin-bottom:.2rem}.meta{color:#666;margin-top:0}
section{margin:2.5rem 0}h2{border-bottom:1px solid #ddd;padding-bottom:.3rem}p.why{color:#555}
.missing{color:#8a6d3b;background:#fcf8e3;padding:.6rem;border-radius:4px}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;padding:.25rem .5rem;
border-bottom:1px solid #eee}td.n{text-align:right;font-variant-numeric:tabular-nums}
"""

_RUN = """
const specs = JSON.parse(document.getElementById("crmcore-specs").textContent);
const pending = Object.entries(specs).map(([id, spec]) => {
  const element = document.getElementById(id);
  return vegaEmbed(element, spec, {renderer: "svg", actions: false})
    .then(() => { element.dataset.rendered = "yes"; })
    .catch((error) => { element.dataset.rendered = "error"; element.textContent = "chart failed: " + error;
                        console.error(error); });
});
Promise.all(pending).then(() => { document.body.dataset.charts = "done"; });
"""


@functools.cache
def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed in one script (shipped inside the vl-convert-python wheel).

    Bundling takes seconds, so the result is kept in the user's cache folder, per version.
    """
    try:
        import vl_convert
    except ImportError:
        raise MissingExtra("the HTML report", "report") from None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "crmcore"
    kept = cache / f"vega-bundle-{getattr(vl_convert, '__version__', 'unknown')}.js"
    try:
        return kept.read_text(encoding="utf-8")
    except OSError:
        pass
    # no snippet: the bare libraries as globals (the type stub wrongly requires a snippet)
    bundle: str = vl_convert.javascript_bundle(None)  # type: ignore[arg-type]
    bundle = re.sub(r"</(script)", r"<\\/\1", bundle, flags=re.IGNORECASE)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        partial = kept.with_name(f"{kept.name}.{os.getpid()}.partial")
        partial.write_text(bundle, encoding="utf-8")
        partial.replace(kept)
    except OSError:  # a read-only home: bundle again next time
        pass
    return bundle


def script_json(data: Any) -> str:
    """JSON that is safe inside a <script> element, whatever strings it carries."""
    text = json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(title: str, figures: Figures, charts: dict[str, dict[str, Any] | Missing]) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_STYLE}</style>",
        f"<script>{vega_bundle()}</script></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="meta">{figures.customers:,} customers, as of {figures.as_of:%Y-%m-%d %H:%M} UTC</p>',
    ]
    specs: dict[str, Any] = {}
    for name, heading, why in SECTIONS:
        chart = charts[name]
        parts.append(f'<section id="section-{name}"><h2>{e(heading)}</h2><p class="why">{e(why)}</p>')
        if isinstance(chart, Missing):
            parts.append(f'<p class="missing" data-missing="{e(name)}">Not available: {e(chart.reason)}</p>')
        else:
            specs[f"chart-{name}"] = chart
            parts.append(f'<div class="chart" id="chart-{name}" data-chart="{e(name)}"></div>')
        if name == "churn" and not isinstance(figures.churn_risk, Missing) and figures.churn_risk:
            parts.append(_table(figures.churn_risk,
                                ("customer", "customer_id", "p_alive", "value", "since_last"),
                                ("customer", "id", "P(alive)", "value at risk", "weeks since last purchase")))
        if name == "campaign_lift" and not isinstance(figures.campaign_lift, Missing):
            parts.append(_table(figures.campaign_lift, ("campaign", "measure", "target", "control", "lift",
                                                        "low", "high", "p_value"),
                                ("campaign", "measure", "target %", "control %", "lift (points)", "low",
                                 "high", "p")))
        if name == "pipeline" and not isinstance(figures.pipeline, Missing):
            parts.append(_table(figures.pipeline, ("stage", "opportunities", "amounts"),
                                ("stage", "opportunities", "amount")))
        parts.append("</section>")
    parts.append(f'<script id="crmcore-specs" type="application/json">{script_json(specs)}</script>')
    parts.append(f"<script>{_RUN}</script></body></html>")
    return "\n".join(parts)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _table(rows: list[dict[str, Any]], keys: tuple[str, ...], headings: tuple[str, ...]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in headings)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="n">{row[k]:,}</td>' if _is_number(row[k]) else f"<td>{e(str(row[k]))}</td>"
            for k in keys) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
