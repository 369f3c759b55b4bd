"""Saved segments: a named, versioned rule, and runs that move its membership.

Each run evaluates the rule as of an instant, compares the members with the
ones the last run left, stores the difference and writes it to the outbox in
the same transaction: `segment.entered` / `segment.left` events listing the
customers (at most `CHUNK` a event, so a first run over a million customers is
two thousand outbox rows, not a million) and one `segment.ran` summary.
Subscribers (a campaign, an alert) learn who entered and who left, at least once.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from crmcore.errors import ValidationError
from crmcore.model import Segment, SegmentRun
from crmcore.segments import functions as fn
from crmcore.segments.parse import parse
from crmcore.segments.printer import to_text

if TYPE_CHECKING:
    from crmcore.crm import CRM

CHUNK = 500


@attrs.frozen
class Difference:
    """What one run found: the run record, and who entered and left since the previous run."""

    run: SegmentRun
    entered: frozenset[str]
    left: frozenset[str]
    members: frozenset[str]


class Segments:
    """`crm.segments`: saved rules and their runs."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    def functions(self) -> Mapping[str, fn.RuleFunction]:
        return fn.registry(self.crm.plugins)

    def canonical(self, rule: str) -> str:
        """The rule checked and written the one canonical way (so versions compare by text)."""
        return to_text(parse(rule, self.functions()))

    def save(self, id: str, name: str, rule: str, description: str = "") -> Segment:
        """Create the segment, or store a new version of it when the rule or its words changed."""
        text = self.canonical(rule)
        with self.crm.transaction() as uow:
            current = uow.segments.find(id)
            if current is None:
                stored = uow.segments.add(Segment(id, name, text, description))
                self.crm.emit("segment.saved", id, version=stored.version)
                return stored
            changed = attrs.evolve(current, name=name, rule=text, description=description)
            if changed == current:
                return current
            stored = uow.segments.update(changed)
            self.crm.emit("segment.saved", id, version=stored.version)
            return stored

    def get(self, id: str) -> Segment:
        with self.crm.reading() as uow:
            return uow.segments.get(id)

    def list(self) -> builtins.list[Segment]:
        with self.crm.reading() as uow:
            return uow.segments.list()

    def members(self, id: str) -> set[str]:
        """The members as of the segment's last run."""
        with self.crm.reading() as uow:
            return uow.segment_members.current(id)

    def runs(self, id: str) -> builtins.list[SegmentRun]:
        with self.crm.reading() as uow:
            return uow.segment_members.runs(id)

    def run(self, id: str, *, as_of: datetime | None = None) -> Difference:
        """Evaluate the segment now (or as of an instant) and record who entered and who left."""
        from crmcore.segments import select_ids

        at = as_of or self.crm.clock()
        with self.crm.transaction() as uow:
            segment = uow.segments.get(id)
            previous = uow.segment_members.runs(id)
            if previous and previous[-1].at >= at:
                raise ValidationError("as_of", at, f"segment {id} was already run as of {previous[-1].at}")
            found = frozenset(select_ids(uow, segment.rule, as_of=at, functions=self.functions()))
            before = uow.segment_members.current(id)
            entered, left = found - before, frozenset(before) - found
            run = SegmentRun(id, at, segment.version, len(found), len(entered), len(left))
            uow.segment_members.apply(run, sorted(entered), sorted(left))
            for topic, moved in (("segment.entered", sorted(entered)), ("segment.left", sorted(left))):
                for start in range(0, len(moved), CHUNK):
                    self.crm.emit(topic, id, customers=moved[start:start + CHUNK], at=at.isoformat(),
                                  version=segment.version)
            self.crm.emit("segment.ran", id, version=segment.version, size=len(found),
                          entered=len(entered), left=len(left), at=at.isoformat())
            return Difference(run, entered, left, found)
