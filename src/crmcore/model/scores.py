"""Dated score snapshots (RFM, CLV, churn, lead ...) that segment rules can read."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError


def _finite(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(attribute.name, value, "must be a finite number")


@attrs.frozen
class Score:
    """One scorer's verdict on one customer as of one instant; `details` explains it."""

    customer_id: str = attrs.field(validator=v.is_text(64))
    scorer: str = attrs.field(validator=v.check(v.name))
    as_of: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    value: float = attrs.field(converter=float, validator=_finite)
    label: str | None = attrs.field(default=None, validator=v.optional(v.is_text(100)))
    details: dict[str, str | int | float] = attrs.field(factory=dict)
