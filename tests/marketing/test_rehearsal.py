"""An A/A rehearsal on a synthetic history: a campaign that sent nothing shows no lift."""

from __future__ import annotations

from pathlib import Path

import crmcore
from crmcore.model.marketing import CampaignStatus
from crmcore.synthetic import SyntheticBase


def test_a_campaign_that_sent_nothing_measures_no_lift(tmp_path: Path) -> None:
    base = SyntheticBase(size=1500, seed=3)
    with crmcore.open(f"sqlite:///{tmp_path / 'crm.db'}", clock=lambda: base.as_of) as crm:
        crm.bulk_import(base.records())
        report = crm.marketing.rehearse(days=120)
        overall = report.overall
        assert overall.target.members + overall.control.members == len(
            crm.customers.ids_matching("consent.marketing.email", as_of=report.window[0])
        )
        assert overall.control.members > 50 and overall.conversion.target.successes > 0
        assert overall.conversion.low <= 0 <= overall.conversion.high  # seeded: holds for this base
        assert not overall.conversion.significant()
        assert crm.marketing.get(report.campaign_id).status is CampaignStatus.CLOSED
        assert "not distinguishable from no effect" in report.explain()
