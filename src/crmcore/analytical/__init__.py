"""Analytical CRM: segments, scores and service-quality figures computed from the data."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crmcore.crm import CRM


class Analytical:
    """The analytical family of a CRM."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm
