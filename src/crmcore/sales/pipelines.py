"""Pipelines and the moves an opportunity makes through them.

Every check (the stage belongs to the pipeline, the fields the stage requires are
there, a won or lost reason is one the pipeline lists) runs before anything is
written, and the move is written with its probability in the history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from crmcore.errors import NotFound, ValidationError
from crmcore.model import DEFAULT_PIPELINE, Opportunity, Pipeline
from crmcore.model.sales import stage_name

if TYPE_CHECKING:
    from crmcore.crm import CRM


def known_fields(cls: type, fields: dict[str, Any], what: str) -> None:
    """Refuse a keyword the model does not have (else it would be a TypeError)."""
    names = {f.name for f in attrs.fields(cls)}
    for name in fields:
        if name not in names:
            raise ValidationError(name, fields[name], f"is not a field of a {what}")


class Pipelines:
    """`crm.sales.pipelines`: the company's pipelines, and opportunities moved through them."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    def add(self, pipeline: Pipeline) -> Pipeline:
        if not isinstance(pipeline, Pipeline):
            raise ValidationError("pipeline", pipeline, "must be a Pipeline")
        with self.crm.transaction() as uow:
            stored = uow.pipelines.add(pipeline)
            self.crm.emit("pipeline.added", stored.id)
            return stored

    def update(self, pipeline: Pipeline) -> Pipeline:
        with self.crm.transaction() as uow:
            stored = uow.pipelines.update(pipeline)
            self.crm.emit("pipeline.updated", stored.id, version=stored.version)
            return stored

    def get(self, id: str) -> Pipeline:
        """A stored pipeline; `default` is built in unless the company stored its own."""
        with self.crm.reading() as uow:
            found = uow.pipelines.find(id)
        if found is not None:
            return found
        if id == DEFAULT_PIPELINE.id:
            return DEFAULT_PIPELINE
        raise NotFound("pipeline", id)

    def list(self) -> list[Pipeline]:
        with self.crm.reading() as uow:
            stored = uow.pipelines.list()
        ids = {p.id for p in stored}
        return sorted([*stored, *(() if DEFAULT_PIPELINE.id in ids else (DEFAULT_PIPELINE,))],
                      key=lambda p: p.id)

    def open(self, customer_id: str, title: str, *, pipeline: str = DEFAULT_PIPELINE.id,
             stage: str | None = None, **fields: Any) -> Opportunity:
        """Open an opportunity in a pipeline's first stage (or `stage`, which must be open)."""
        with self.crm.transaction():
            chosen = self.get(pipeline)
            name = stage_name(stage) if stage is not None else chosen.stages[0].name
            target = chosen.stage(name)
            if target is None:
                raise ValidationError("stage", name, "an opportunity opens in an open stage")
            known_fields(Opportunity, fields, "opportunity")
            draft = Opportunity.open("draft", customer_id, title, self.crm.clock(), stage=name,
                                     pipeline=chosen.id, **{k: v for k, v in fields.items() if k != "id"})
            chosen.check_move(draft, name, None)
            return self.crm.opportunities.open(customer_id, title, pipeline=chosen.id, stage=name,
                                               probability=target.probability, **fields)

    def move(self, opportunity_id: str, stage: str, *, by: str | None = None,
             reason: str | None = None) -> Opportunity:
        """Move to another stage of its pipeline; refused (naming the field) when the stage
        is not in the pipeline, a field it requires is missing, or the reason is not listed."""
        with self.crm.transaction():
            current = self.crm.opportunities.get(opportunity_id)
            chosen = self.get(current.pipeline)
            name = stage_name(stage)
            chosen.check_move(current, name, reason)
            moved = current.move_to(name, self.crm.clock(), by,
                                    probability=chosen.probability(name), reason=reason)
            stored = self.crm.opportunities.update(moved)
            self.crm.emit("opportunity.stage_changed", opportunity_id, stage=str(stored.stage),
                          pipeline=stored.pipeline)
            return stored

    def revise(self, opportunity_id: str, *, by: str | None = None, **facts: Any) -> Opportunity:
        """New amount or close date, kept in the history so earlier forecasts stay exact."""
        with self.crm.transaction():
            current = self.crm.opportunities.get(opportunity_id)
            return self.crm.opportunities.update(current.revise(self.crm.clock(), by, **facts))
