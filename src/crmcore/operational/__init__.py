"""Operational CRM: staff in contact with the customer (calls, e-mail, visits, cases, sales)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crmcore.crm import CRM


class Operational:
    """The operational family of a CRM; each part is built on first use."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm
