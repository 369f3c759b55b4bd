"""Service-level policy: how long a case may wait for a first answer and for its resolution,
by priority and by the customer's tier (a platinum complaint gets a shorter promise).

Durations are business time on the calendar of the service point that took the case.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.model.service import CasePriority, Deadline, Target
from crmcore.operational.calendars import BusinessClock


def _positive(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ValidationError(attribute.name, value, "must be a positive timedelta")


@attrs.frozen
class SlaTarget:
    """The promise for one kind of case: a first answer within, and a resolution within."""

    first_response: timedelta = attrs.field(validator=_positive)
    resolution: timedelta = attrs.field(validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.resolution < self.first_response:
            raise ValidationError("resolution", self.resolution, "is shorter than first_response")


def _fraction(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValidationError(attribute.name, value, "must be a fraction in (0, 1]")


def _by_priority(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    missing = [str(p.name).lower() for p in CasePriority if p not in value]
    if missing:
        raise ValidationError(attribute.name, value, f"needs a target for {', '.join(missing)}")


@attrs.frozen
class SlaPolicy:
    """Targets by priority, overridden per customer tier; warn at `warn_at` of each target."""

    targets: dict[CasePriority, SlaTarget] = attrs.field(validator=_by_priority)
    tiers: dict[str, dict[CasePriority, SlaTarget]] = attrs.field(factory=dict)
    warn_at: float = attrs.field(default=0.75, validator=_fraction)
    escalation_team: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    """The team whose lead takes a breached case that has no team of its own."""

    def target(self, priority: CasePriority, tier: str | None) -> SlaTarget:
        special = self.tiers.get(tier or "", {})
        return special.get(priority) or self.targets[priority]

    def deadlines(
        self, clock: BusinessClock, opened: datetime, priority: CasePriority, tier: str | None
    ) -> tuple[Deadline, ...]:
        """The case's promises, counted in business time from `opened`."""
        target = self.target(priority, tier)
        return tuple(
            Deadline(name, clock.add(opened, within * self.warn_at), clock.add(opened, within))
            for name, within in ((Target.FIRST_RESPONSE, target.first_response),
                                 (Target.RESOLUTION, target.resolution))
        )


def _table(*rows: tuple[CasePriority, float, float]) -> dict[CasePriority, SlaTarget]:
    return {p: SlaTarget(timedelta(hours=first), timedelta(hours=done)) for p, first, done in rows}


U, H, N, L = CasePriority.URGENT, CasePriority.HIGH, CasePriority.NORMAL, CasePriority.LOW
DEFAULT_POLICY = SlaPolicy(
    targets=_table((U, 1, 4), (H, 4, 24), (N, 8, 72), (L, 24, 240)),
    tiers={
        "platinum": _table((U, 0.25, 2), (H, 1, 8), (N, 2, 24), (L, 8, 72)),
        "gold": _table((U, 0.5, 3), (H, 2, 16), (N, 4, 48), (L, 16, 168)),
    },
)
"""Hours of business time; the resolution targets match the old fixed `Cases.SLA` on a 24/7 calendar."""


# ---- the JSON form a stored policy takes (priorities by name, durations in seconds) ----


def policy_data(policy: SlaPolicy) -> dict[str, Any]:
    """`{"targets": {"urgent": {"first_response": 3600, "resolution": 14400}, ...},
    "tiers": {"platinum": {...}}, "warn_at": 0.75, "escalation_team": null}`."""
    def listed(targets: Mapping[CasePriority, SlaTarget]) -> dict[str, Any]:
        return {p.name.lower(): {"first_response": t.first_response.total_seconds(),
                                 "resolution": t.resolution.total_seconds()}
                for p, t in sorted(targets.items())}

    tiers = {tier: listed(targets) for tier, targets in sorted(policy.tiers.items())}
    return {"targets": listed(policy.targets), "tiers": tiers,
            "warn_at": policy.warn_at, "escalation_team": policy.escalation_team}


def policy_from_data(data: Any) -> SlaPolicy:
    """A policy from its JSON form; anything wrong is a ValidationError naming the place."""
    known = {"targets", "tiers", "warn_at", "escalation_team"}
    if not isinstance(data, Mapping) or not set(data) <= known or "targets" not in data:
        raise ValidationError("sla_policy", data,
                              "must be an object with targets (and maybe tiers, warn_at, escalation_team)")
    tiers = data.get("tiers") or {}
    if not isinstance(tiers, Mapping):
        raise ValidationError("tiers", tiers, "must map tier names to targets")
    warn_at = data.get("warn_at", 0.75)
    return SlaPolicy(
        targets=_targets_from(data["targets"], "targets"),
        tiers={v.name(tier, "tiers"): _targets_from(t, f"tiers.{tier}") for tier, t in tiers.items()},
        warn_at=warn_at, escalation_team=data.get("escalation_team"),
    )


def _targets_from(data: Any, field: str) -> dict[CasePriority, SlaTarget]:
    if not isinstance(data, Mapping):
        raise ValidationError(field, data, "must map priorities (urgent, high, normal, low) to targets")
    found = {}
    for name, target in data.items():
        if not isinstance(name, str) or name.upper() not in CasePriority.__members__:
            raise ValidationError(field, name, "is not a priority (urgent, high, normal, low)")
        where = f"{field}.{name}"
        if not isinstance(target, Mapping) or set(target) != {"first_response", "resolution"}:
            raise ValidationError(where, target, "needs first_response and resolution, in seconds")
        found[CasePriority[name.upper()]] = SlaTarget(
            _seconds(target["first_response"], f"{where}.first_response"),
            _seconds(target["resolution"], f"{where}.resolution"),
        )
    return found


def _seconds(value: Any, field: str) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(field, value, "must be a number of seconds")
    if not 0 < value <= 10 * 366 * 86400:
        raise ValidationError(field, value, "must be more than 0 seconds and at most ten years")
    return timedelta(seconds=value)
