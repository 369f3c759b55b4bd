"""Marketing automation with measured response (see docs/marketing.md): `crm.marketing`."""

from crmcore.marketing.analysis import Figures, Lift, Report, RevenueLift
from crmcore.marketing.campaigns import Launch, Marketing, UnderpoweredCampaign
from crmcore.marketing.eligibility import Policy
from crmcore.marketing.sending import SendReport
from crmcore.marketing.stats import SampleSize
from crmcore.marketing.tracking import ClickApp, LinkRefused, Links

__all__ = [
    "ClickApp",
    "Figures",
    "Launch",
    "Lift",
    "LinkRefused",
    "Links",
    "Marketing",
    "Policy",
    "Report",
    "RevenueLift",
    "SampleSize",
    "SendReport",
    "UnderpoweredCampaign",
]
