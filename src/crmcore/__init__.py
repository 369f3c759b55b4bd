"""crmcore: one record of each customer for every service point and channel.

    import crmcore
    crm = crmcore.open("sqlite:///crm.db")
"""

from __future__ import annotations

from crmcore.crm import CRM, Clock
from crmcore.errors import (
    ConflictError,
    ConsentError,
    CRMError,
    IntegrityError,
    MissingExtra,
    NotFound,
    PluginError,
    RuleError,
    StorageError,
    UnknownScheme,
    ValidationError,
)
from crmcore.events import Event
from crmcore.hookspecs import Adapter, hookimpl
from crmcore.model import (
    Agent,
    Campaign,
    CampaignMember,
    Case,
    CaseKind,
    CasePriority,
    CaseStatus,
    Channel,
    ChannelFamily,
    Consent,
    ConsentStatus,
    Customer,
    Direction,
    Interaction,
    LifecycleStage,
    Location,
    MemberGroup,
    MemberStatus,
    Opportunity,
    OpportunityKind,
    OrderLine,
    PartyKind,
    PostalAddress,
    Purchase,
    ServicePoint,
    ServicePointKind,
    Stage,
    StageChange,
    Team,
)
from crmcore.values import Money

__version__ = "0.1.0"


def open(url: str, *, plugins: object | None = None, clock: Clock | None = None) -> CRM:
    """Open a customer base by URL: `sqlite:///path`, `memory://`, `postgresql://...`.

    `plugins` is a pluggy PluginManager (default: a fresh one with every installed
    plugin, so what one CRM registers never reaches another); `clock` returns the
    current aware datetime (inject one to replay the past).
    """
    import pluggy

    from crmcore.plugins import check_pending, make_plugin_manager, open_adapter, url_settings
    from crmcore.values import now

    if plugins is not None and not isinstance(plugins, pluggy.PluginManager):
        raise ValidationError("plugins", plugins, "must be a pluggy.PluginManager")
    pm = plugins if plugins is not None else make_plugin_manager()
    check_pending(pm)
    url = url_settings(pm, url)  # `NAME.key=value` options are settings of plugin NAME
    storage = open_adapter(pm, "storage", "crmcore_register_storage", url)
    return CRM(storage, plugins=pm, clock=clock or now)


__all__ = [
    "CRM", "Adapter", "Agent", "CRMError", "Campaign", "CampaignMember", "Case", "CaseKind",
    "CasePriority", "CaseStatus", "Channel", "ChannelFamily", "ConflictError", "Consent",
    "ConsentError", "ConsentStatus", "Customer", "Direction", "Event", "IntegrityError",
    "Interaction", "LifecycleStage", "Location", "MemberGroup", "MemberStatus", "MissingExtra",
    "Money", "NotFound", "Opportunity", "OpportunityKind", "OrderLine", "PartyKind",
    "PluginError", "PostalAddress", "Purchase", "RuleError", "ServicePoint", "ServicePointKind", "Stage",
    "StageChange", "StorageError", "Team", "UnknownScheme", "ValidationError", "hookimpl", "open",
]
