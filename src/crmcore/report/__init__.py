"""The HTML report: one self-contained page of charts a manager reads at a glance.

    from crmcore.report import write_report
    write_report(crm, "report.html")

Needs the `report` extra (altair and vl-convert-python, which ships the Vega
JavaScript that is inlined into the page). `crmcore report --url ... --out ...`
is the command-line form.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from crmcore.errors import ValidationError
from crmcore.report.charts import specs
from crmcore.report.figures import Figures, Missing, gather
from crmcore.report.page import render

if TYPE_CHECKING:
    from crmcore.crm import CRM


def build_report(crm: CRM, *, as_of: datetime | None = None, title: str = "Customer report") -> str:
    """The report's HTML, as of an instant (default: the CRM's clock)."""
    figures = gather(crm, as_of)
    return render(title, figures, specs(figures))


def write_report(crm: CRM, path: Path | str, *, as_of: datetime | None = None,
                 title: str = "Customer report") -> Path:
    """Write the report to `path` (written whole, then moved in place)."""
    target = Path(path)
    page = build_report(crm, as_of=as_of, title=title)
    partial = target.with_name(target.name + ".partial")
    try:
        partial.write_text(page, encoding="utf-8")
        partial.replace(target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ValidationError("out", str(target), f"cannot be written: {exc.strerror}") from None
    return target


__all__ = ["Figures", "Missing", "build_report", "gather", "write_report"]
