"""Collaborative CRM: the customer serves themself, with no staff in the loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crmcore.crm import CRM


class Collaborative:
    """The self-service family of a CRM."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm
