"""Sales force automation: pipelines, leads, opportunities and the stages they pass through.

A stage is a machine name. The standard names of the default pipeline come back as
`Stage` members (so `opportunity.stage is Stage.WON` still holds); a team's own
pipeline may name its open stages as it likes. Every pipeline ends in `won` or `lost`.
"""

from __future__ import annotations

import itertools
import math
from datetime import date, datetime
from typing import Any

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.model.ownership import Assignment


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


CLOSED = ("won", "lost")


def stage_name(value: object) -> str:
    """A stage's machine name; a standard one comes back as its `Stage` member."""
    if isinstance(value, Stage):
        return value
    text = v.name(value, "stage")
    return Stage._value2member_map_.get(text, text)  # type: ignore[return-value]


def is_closed(stage: str) -> bool:
    return stage in CLOSED


def _probability(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(attribute.name, value, "must be a number between 0 and 1")
    if not 0 <= value <= 1:
        raise ValidationError(attribute.name, value, "must be between 0 and 1")


class OpportunityKind(v.Choice):
    __field__ = "kind"

    NEW = "new"
    CROSS_SELL = "cross_sell"
    UPSELL = "upsell"
    RENEWAL = "renewal"


@attrs.frozen
class StageChange:
    """One step of an opportunity's history: from `at` on, it stood in `stage` with these
    forecast facts (win probability, expected close date, amount). A change of the facts
    alone is a step that keeps the stage, so the forecast as of any instant is exact."""

    stage: str = attrs.field(converter=stage_name)
    at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    by: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    probability: float | None = attrs.field(default=None, validator=_probability)
    close_date: date | None = attrs.field(default=None, validator=v.optional(v.instance_of(date)))
    amount: v.Money | None = attrs.field(default=None, validator=v.optional(v.instance_of(v.Money)))


def _history(instance: Opportunity, attribute: attrs.Attribute[Any], value: tuple[StageChange, ...]) -> None:
    if not value:
        raise ValidationError(attribute.name, value, "must hold at least the opening stage")
    if value[-1].stage != instance.stage:
        raise ValidationError("stage", instance.stage, "differs from the last stage in history")
    for earlier, later in itertools.pairwise(value):
        if later.at < earlier.at:
            raise ValidationError(attribute.name, later, "goes back in time")
        if is_closed(earlier.stage):
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
    stage: str = attrs.field(converter=stage_name)
    history: tuple[StageChange, ...] = attrs.field(converter=v.as_tuple, validator=_history)
    amount: v.Money | None = attrs.field(default=None, validator=v.optional(v.instance_of(v.Money)))
    kind: OpportunityKind = attrs.field(default=OpportunityKind.NEW, converter=OpportunityKind)
    product: str | None = attrs.field(default=None, validator=v.optional(v.is_text(100)))
    owner: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    source: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    attributes: dict[str, str] = attrs.field(factory=dict, validator=_facts)
    """Categorical facts about the lead (industry, size, source) that lead scoring learns from."""
    version: int = attrs.field(default=0, validator=v.integer(0, 2**62))
    pipeline: str = attrs.field(default="default", validator=v.check(v.name))
    close_date: date | None = attrs.field(default=None, validator=v.optional(v.instance_of(date)))
    """When the deal is expected to close; set to the day it closed when it closes."""
    team: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    reason: str | None = attrs.field(default=None, validator=v.optional(v.is_text(200)))
    """Why it was won or lost (one of the pipeline's reasons, when it lists them)."""
    assignment: Assignment | None = attrs.field(
        default=None, validator=v.optional(v.instance_of(Assignment)))
    """Why `owner` owns it: the rule and its reason, from the last assignment by rule."""

    @classmethod
    def open(cls, id: str, customer_id: str, title: str, at: datetime, **fields: Any) -> Opportunity:
        stage = fields.pop("stage", Stage.QUALIFICATION)
        probability = fields.pop("probability", None)
        first = StageChange(stage, at, fields.get("owner"), probability, fields.get("close_date"),
                            fields.get("amount"))
        return cls(id=id, customer_id=customer_id, title=title, stage=first.stage,
                   history=(first,), **fields)

    def move_to(self, stage: str, at: datetime, by: str | None = None, *,
                probability: float | None = None, reason: str | None = None) -> Opportunity:
        """The opportunity in `stage` from `at` on; closing it sets the close date to that day."""
        if self.is_closed:
            raise ValidationError("stage", stage, f"the opportunity is already {self.stage}")
        name = stage_name(stage)
        close_date = at.date() if is_closed(name) else self.close_date
        change = StageChange(name, at, by, probability, close_date, self.amount)
        return attrs.evolve(self, stage=change.stage, history=(*self.history, change),
                            close_date=close_date, reason=reason if is_closed(name) else self.reason)

    def revise(self, at: datetime, by: str | None = None, **facts: Any) -> Opportunity:
        """New forecast facts (`amount`, `close_date`) from `at` on, kept in the history."""
        unknown = set(facts) - {"amount", "close_date"}
        if unknown:
            raise ValidationError("facts", sorted(unknown), "only amount and close_date are revised")
        if self.is_closed:
            raise ValidationError("stage", self.stage, "a closed opportunity is not revised")
        revised = attrs.evolve(self, **facts)
        change = StageChange(self.stage, at, by, self.probability, revised.close_date, revised.amount)
        return attrs.evolve(revised, history=(*self.history, change))

    @property
    def opened_at(self) -> datetime:
        return self.history[0].at

    @property
    def is_closed(self) -> bool:
        return is_closed(self.stage)

    @property
    def probability(self) -> float | None:
        """The win probability recorded with the current stage, if any."""
        return self.history[-1].probability


# ---- pipelines ----


REQUIRABLE = ("amount", "close_date", "owner", "team", "product", "source")
"""Opportunity fields a stage may require; `attributes.NAME` requires one fact."""


def _required(_instance: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for field in value:
        if field in REQUIRABLE:
            continue
        head, _, rest = field.partition(".")
        if head != "attributes" or not rest:
            raise ValidationError(attribute.name, field,
                                  f"must be one of {REQUIRABLE} or attributes.NAME")
        v.name(rest, attribute.name)


def _open_stage(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if is_closed(value):
        raise ValidationError(attribute.name, value, "won and lost end every pipeline; list open stages")


@attrs.frozen
class PipelineStage:
    """An open stage: its win probability and the fields an opportunity needs to enter it."""

    name: str = attrs.field(converter=stage_name, validator=_open_stage)
    probability: float = attrs.field(validator=_probability)
    required: tuple[str, ...] = attrs.field(default=(), converter=v.as_tuple, validator=_required)


def _stages(_instance: Any, attribute: attrs.Attribute[Any], value: tuple[PipelineStage, ...]) -> None:
    if not value:
        raise ValidationError(attribute.name, value, "a pipeline needs at least one open stage")
    names = [s.name for s in value]
    for index, item in enumerate(value):
        if not isinstance(item, PipelineStage):
            raise ValidationError(f"stages[{index}]", item, "must be a PipelineStage")
        if names.count(item.name) > 1:
            raise ValidationError(f"stages[{index}].name", item.name, "appears twice")


def _reasons(_instance: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for reason in value:
        v.text(reason, attribute.name, max_length=200)


@attrs.frozen
class Pipeline:
    """Ordered open stages for one team or product line, then won or lost."""

    id: str = attrs.field(validator=v.check(v.name))
    name: str = attrs.field(validator=v.is_text(200))
    stages: tuple[PipelineStage, ...] = attrs.field(converter=v.as_tuple, validator=_stages)
    won_reasons: tuple[str, ...] = attrs.field(default=(), converter=v.as_tuple, validator=_reasons)
    lost_reasons: tuple[str, ...] = attrs.field(default=(), converter=v.as_tuple, validator=_reasons)
    team: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    product_line: str | None = attrs.field(default=None, validator=v.optional(v.is_text(100)))
    version: int = attrs.field(default=0, validator=v.integer(0, 2**62))

    @property
    def order(self) -> tuple[str, ...]:
        """Every stage, open ones first, then won and lost."""
        return (*(s.name for s in self.stages), *CLOSED)

    def stage(self, name: str) -> PipelineStage | None:
        """The open stage of that name (None for won and lost); a stranger is refused."""
        for item in self.stages:
            if item.name == name:
                return item
        if name in CLOSED:
            return None
        raise ValidationError("stage", name, f"is not a stage of pipeline {self.id!r}; "
                                             f"its stages: {', '.join(self.order)}")

    def probability(self, name: str) -> float:
        found = self.stage(name)
        if found is not None:
            return found.probability
        return 1.0 if name == Stage.WON else 0.0

    def check_move(self, opportunity: Opportunity, stage: str, reason: str | None) -> None:
        """Refuse a move the pipeline does not allow, naming the missing field."""
        target = self.stage(stage_name(stage))
        for field in target.required if target is not None else ():
            if not _has(opportunity, field):
                raise ValidationError(field, None, f"is required to enter stage {stage!r}")
        reasons = {"won": self.won_reasons, "lost": self.lost_reasons}.get(str(stage_name(stage)), ())
        if reasons and reason not in reasons:
            raise ValidationError("reason", reason, f"must be one of {', '.join(reasons)}")


def _has(opportunity: Opportunity, field: str) -> bool:
    head, _, rest = field.partition(".")
    if head == "attributes":
        return bool(opportunity.attributes.get(rest))
    return getattr(opportunity, field) is not None


DEFAULT_PIPELINE = Pipeline(
    "default", "Default",
    (PipelineStage(Stage.QUALIFICATION, 0.1), PipelineStage(Stage.NEEDS_ANALYSIS, 0.25),
     PipelineStage(Stage.PROPOSAL, 0.5), PipelineStage(Stage.NEGOTIATION, 0.75)),
)
"""Where opportunities without a pipeline of their own (all those stored before pipelines
existed) live: the standard `Stage` names in order."""


def default_probability(stage: str) -> float | None:
    """The default pipeline's probability of a stage, None for a stage it does not know."""
    try:
        return DEFAULT_PIPELINE.probability(stage)
    except ValidationError:
        return None


# ---- leads ----


class LeadStatus(v.Choice):
    __field__ = "status"

    NEW = "new"
    QUALIFIED = "qualified"
    DISQUALIFIED = "disqualified"
    CONVERTED = "converted"


@attrs.frozen
class Lead:
    """Someone who might buy, before they are a customer: qualified, then converted into a
    customer and an opportunity at once."""

    id: str = attrs.field(validator=v.is_text(64))
    name: str = attrs.field(validator=v.is_text(200))
    created_at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    email: str | None = attrs.field(default=None, validator=v.optional(v.check(v.email)))
    phone: str | None = attrs.field(default=None, validator=v.optional(v.is_text(40)))
    company: str | None = attrs.field(default=None, validator=v.optional(v.is_text(200)))
    source: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    attributes: dict[str, str] = attrs.field(factory=dict, validator=_facts)
    status: LeadStatus = attrs.field(default=LeadStatus.NEW, converter=LeadStatus)
    reason: str | None = attrs.field(default=None, validator=v.optional(v.is_text(200)))
    customer_id: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    opportunity_id: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    version: int = attrs.field(default=0, validator=v.integer(0, 2**62))
