"""Sales force automation: opportunities and the stages they pass through."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError


class Stage(v.Choice):
    QUALIFICATION = "qualification"
    NEEDS_ANALYSIS = "needs_analysis"
    PROPOSAL = "proposal"
    NEGOTIATION = "negotiation"
    WON = "won"
    LOST = "lost"

    @property
    def is_closed(self) -> bool:
        return self in (Stage.WON, Stage.LOST)


class OpportunityKind(v.Choice):
    __field__ = "kind"

    NEW = "new"
    CROSS_SELL = "cross_sell"
    UPSELL = "upsell"
    RENEWAL = "renewal"


@attrs.frozen
class StageChange:
    stage: Stage = attrs.field(converter=Stage)
    at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    by: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))


def _history(instance: Opportunity, attribute: attrs.Attribute[Any], value: tuple[StageChange, ...]) -> None:
    if not value:
        raise ValidationError(attribute.name, value, "must hold at least the opening stage")
    if value[-1].stage != instance.stage:
        raise ValidationError("stage", instance.stage, "differs from the last stage in history")
    for earlier, later in itertools.pairwise(value):
        if later.at < earlier.at:
            raise ValidationError(attribute.name, later, "goes back in time")
        if earlier.stage.is_closed:
            raise ValidationError(attribute.name, later, f"continues after {earlier.stage}")


def _facts(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError(attribute.name, value, "must be a dict of names to texts")
    for key, fact in value.items():
        v.name(key, f"{attribute.name} key")
        v.text(fact, f"{attribute.name}[{key!r}]", max_length=200)


@attrs.frozen
class Opportunity:
    """A potential sale traced through its whole cycle: `history` keeps every stage change."""

    id: str = attrs.field(validator=v.is_text(64))
    customer_id: str = attrs.field(validator=v.is_text(64))
    title: str = attrs.field(validator=v.is_text(200))
    stage: Stage = attrs.field(converter=Stage)
    history: tuple[StageChange, ...] = attrs.field(converter=v.as_tuple, validator=_history)
    amount: v.Money | None = attrs.field(default=None, validator=v.optional(v.instance_of(v.Money)))
    kind: OpportunityKind = attrs.field(default=OpportunityKind.NEW, converter=OpportunityKind)
    product: str | None = attrs.field(default=None, validator=v.optional(v.is_text(100)))
    owner: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    source: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    attributes: dict[str, str] = attrs.field(factory=dict, validator=_facts)
    """Categorical facts about the lead (industry, size, source) that lead scoring learns from."""
    version: int = attrs.field(default=0, validator=v.integer(0, 2**62))

    @classmethod
    def open(cls, id: str, customer_id: str, title: str, at: datetime, **fields: Any) -> Opportunity:
        first = StageChange(Stage.QUALIFICATION, at, fields.get("owner"))
        return cls(id=id, customer_id=customer_id, title=title, stage=first.stage,
                   history=(first,), **fields)

    def move_to(self, stage: Stage, at: datetime, by: str | None = None) -> Opportunity:
        if self.stage.is_closed:
            raise ValidationError("stage", stage, f"the opportunity is already {self.stage}")
        change = StageChange(stage, at, by)
        return attrs.evolve(self, stage=change.stage, history=(*self.history, change))

    @property
    def opened_at(self) -> datetime:
        return self.history[0].at
