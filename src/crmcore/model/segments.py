"""Saved segments: a named rule, versioned, and the record of each membership run."""

from __future__ import annotations

from datetime import datetime

import attrs

from crmcore import values as v


@attrs.frozen
class Segment:
    id: str = attrs.field(validator=v.check(v.name))
    name: str = attrs.field(validator=v.is_text(200))
    rule: str = attrs.field(validator=v.is_text(10_000))
    description: str = attrs.field(default="", validator=v.is_text(2000, empty=True))
    version: int = attrs.field(default=0, validator=v.integer(0, 2**62))


@attrs.frozen
class SegmentRun:
    """What one evaluation of a segment found, compared with the run before it."""

    segment_id: str = attrs.field(validator=v.check(v.name))
    at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    rule_version: int = attrs.field(validator=v.integer(0, 2**62))
    size: int = attrs.field(validator=v.integer(0, 2**62))
    entered: int = attrs.field(validator=v.integer(0, 2**62))
    left: int = attrs.field(validator=v.integer(0, 2**62))
