"""Stored configuration: SLA policies, automation rules and mail templates kept in storage.

Every save is a new version; none is overwritten, so what was in force at any time can
be read back, and two staff saving at once cannot silently undo each other (the second
finds its version taken). The document is the configuration's JSON form (crmcore's
converter); `None` marks a name retired from that version on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from crmcore import values as v


class ConfigKind(v.Choice):
    __field__ = "kind"

    SLA_POLICY = "sla_policy"
    AUTOMATION_RULE = "automation_rule"
    MAIL_TEMPLATE = "mail_template"


@attrs.frozen
class ConfigVersion:
    """One version of one named piece of configuration."""

    kind: ConfigKind = attrs.field(converter=ConfigKind)
    name: str = attrs.field(validator=v.check(v.name))
    version: int = attrs.field(validator=v.integer(1, 2**62))
    at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    doc: dict[str, Any] | None = None
    """The configuration's JSON form; None: retired at this version."""
    actor: str | None = attrs.field(default=None, validator=v.optional(v.is_text(200)))

    @property
    def retired(self) -> bool:
        return self.doc is None
