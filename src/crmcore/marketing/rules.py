"""Campaign results readable by segment rules, through the rule-function registry.

    campaign_responded(id, "spring") = true      campaign_group(id, "spring") = "control"
    campaign_converted(id, "spring") = true      campaign_status(id, "spring") = "skipped"

(The dotted form `campaign.spring.responded` would need a new path in the rule
language itself; functions give the same answers without touching it.) Each
function has a Python body reading the CRM it was registered for and a SQL
translation for SQLite and PostgreSQL, so a rule using them still runs in the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from crmcore.hookspecs import hookimpl
from crmcore.model import CampaignMember, MemberStatus
from crmcore.segments.functions import RuleFunction
from crmcore.segments.schema import Type

if TYPE_CHECKING:
    from crmcore.crm import CRM

PLUGIN_NAME = "crmcore.marketing.rules"
RESPONDED = (MemberStatus.RESPONDED, MemberStatus.CONVERTED)


def _member_sql(expression: str, condition: str = "") -> Callable[[str, str], str]:
    def translate(customer: str, campaign: str) -> str:
        return (
            f"(SELECT {expression} FROM campaign_members cm WHERE cm.campaign_id = {campaign} "  # noqa: S608
            f"AND cm.customer_id = {customer}{condition})"
        )

    return translate


def _exists_sql(statuses: tuple[MemberStatus, ...]) -> dict[str, Callable[[str, str], str]]:
    listed = ", ".join(f"'{status}'" for status in statuses)  # enum values: constants, not input

    def translate(customer: str, campaign: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM campaign_members cm WHERE cm.campaign_id = {campaign} "  # noqa: S608
            f"AND cm.customer_id = {customer} AND cm.status IN ({listed}))"
        )

    return {"sqlite": translate, "postgresql": translate}


class CampaignRules:
    """The plugin contributing the campaign functions of one CRM."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    def _member(self, customer_id: str | None, campaign_id: str | None) -> CampaignMember | None:
        if customer_id is None or campaign_id is None:
            return None
        with self.crm.reading() as uow:
            return uow.campaign_members.find(campaign_id, customer_id)

    def _has(self, statuses: tuple[MemberStatus, ...]) -> Callable[[str | None, str | None], bool]:
        def body(customer_id: str | None, campaign_id: str | None) -> bool:
            member = self._member(customer_id, campaign_id)
            return member is not None and member.status in statuses

        return body

    def _text(self, field: str) -> Callable[[str | None, str | None], str | None]:
        def body(customer_id: str | None, campaign_id: str | None) -> str | None:
            member = self._member(customer_id, campaign_id)
            return None if member is None else str(getattr(member, field))

        return body

    @hookimpl
    def crmcore_register_rule_functions(self) -> list[RuleFunction]:
        both = (Type.TEXT, Type.TEXT)
        group = _member_sql("cm.grp")
        status = _member_sql("cm.status")
        return [
            RuleFunction(
                "campaign_group",
                both,
                Type.TEXT,
                self._text("group"),
                {"sqlite": group, "postgresql": group},
                doc="The customer's group in a campaign (target, control), or unknown if not a member.",
            ),
            RuleFunction(
                "campaign_status",
                both,
                Type.TEXT,
                self._text("status"),
                {"sqlite": status, "postgresql": status},
                doc="The customer's status in a campaign (sent, held, skipped, responded...).",
            ),
            RuleFunction(
                "campaign_responded",
                both,
                Type.BOOL,
                self._has(RESPONDED),
                _exists_sql(RESPONDED),
                doc="True when the customer responded to (or bought after) the campaign.",
            ),
            RuleFunction(
                "campaign_converted",
                both,
                Type.BOOL,
                self._has((MemberStatus.CONVERTED,)),
                _exists_sql((MemberStatus.CONVERTED,)),
                doc="True when a purchase of the customer was credited to the campaign.",
            ),
        ]


def register(crm: CRM) -> None:
    """Make the functions available to this CRM's rules (once per plugin manager)."""
    if crm.plugins.get_plugin(PLUGIN_NAME) is None:
        crm.plugins.register(CampaignRules(crm), name=PLUGIN_NAME)
