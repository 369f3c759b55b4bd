"""The domain model: attrs classes, frozen and validated; change them with `attrs.evolve`."""

from crmcore.model.catalogue import PriceBook, Product, Quote, QuoteLine, QuoteStatus
from crmcore.model.channels import Channel, ChannelFamily, Direction
from crmcore.model.commerce import OrderLine, Purchase
from crmcore.model.customer import (
    Consent,
    ConsentStatus,
    Customer,
    LifecycleStage,
    PartyKind,
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
from crmcore.model.service import Case, CaseKind, CasePriority, CaseStatus

__all__ = [
    "Agent", "Campaign", "CampaignMember", "Case", "CaseKind", "CasePriority", "CaseStatus",
    "Channel", "ChannelFamily", "Consent", "ConsentStatus", "Customer", "Direction",
    "Interaction", "LifecycleStage", "Location", "MemberGroup", "MemberStatus", "Opportunity",
    "OpportunityKind", "OrderLine", "PartyKind", "PostalAddress", "Purchase", "Score", "Segment",
    "SegmentRun", "ServicePoint",
    "ServicePointKind", "Stage", "StageChange", "Team",
]
__all__ += [  # sales: pipelines, leads, catalogue, quotes
    "DEFAULT_PIPELINE", "Lead", "LeadStatus", "Pipeline", "PipelineStage", "PriceBook", "Product",
    "Quote", "QuoteLine", "QuoteStatus",
]
