"""The domain model: attrs classes, frozen and validated; change them with `attrs.evolve`."""

from crmcore.model.account import Account, AccountKind, AccountMember
from crmcore.model.activity import Task, TaskStatus
from crmcore.model.automation import AutomationRun, RunOutcome
from crmcore.model.calendar import BusinessCalendar, CalendarError, OpeningHours
from crmcore.model.catalogue import PriceBook, Product, Quote, QuoteLine, QuoteStatus
from crmcore.model.channels import Channel, ChannelFamily, Direction
from crmcore.model.commerce import OrderLine, Purchase
from crmcore.model.configuration import ConfigKind, ConfigVersion
from crmcore.model.customer import (
    Consent,
    ConsentStatus,
    ContactKind,
    Customer,
    LifecycleStage,
    PartyKind,
    PendingContact,
    PostalAddress,
)
from crmcore.model.interaction import Interaction
from crmcore.model.marketing import Campaign, CampaignMember, MemberGroup, MemberStatus
from crmcore.model.places import Agent, Location, ServicePoint, ServicePointKind, Team
from crmcore.model.sales import (
    DEFAULT_PIPELINE,
    Lead,
    LeadStatus,
    Opportunity,
    OpportunityKind,
    Pipeline,
    PipelineStage,
    Stage,
    StageChange,
)
from crmcore.model.scores import Score
from crmcore.model.segments import Segment, SegmentRun
from crmcore.model.service import Case, CaseKind, CasePriority, CaseStatus, Deadline, Rung, Step, Target
from crmcore.model.staff import Assignment

__all__ = [
    "Account",
    "AccountKind",
    "AccountMember",
    "Agent",
    "Assignment",
    "AutomationRun",
    "BusinessCalendar",
    "CalendarError",
    "Campaign",
    "CampaignMember",
    "Case",
    "CaseKind",
    "CasePriority",
    "CaseStatus",
    "Channel",
    "ChannelFamily",
    "ConfigKind",
    "ConfigVersion",
    "Consent",
    "ConsentStatus",
    "ContactKind",
    "Customer",
    "Deadline",
    "Direction",
    "Interaction",
    "LifecycleStage",
    "Location",
    "MemberGroup",
    "MemberStatus",
    "OpeningHours",
    "Opportunity",
    "OpportunityKind",
    "OrderLine",
    "PartyKind",
    "PendingContact",
    "PostalAddress",
    "Purchase",
    "RunOutcome",
    "Rung",
    "Score",
    "Segment",
    "SegmentRun",
    "ServicePoint",
    "ServicePointKind",
    "Stage",
    "StageChange",
    "Step",
    "Target",
    "Task",
    "TaskStatus",
    "Team",
]
__all__ += [  # sales: pipelines, leads, catalogue, quotes
    "DEFAULT_PIPELINE", "Lead", "LeadStatus", "Pipeline", "PipelineStage", "PriceBook", "Product",
    "Quote", "QuoteLine", "QuoteStatus",
]
