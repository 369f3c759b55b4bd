"""`crm.marketing`: the campaign loop a marketer runs, each step recorded and evented.

    create -> launch (freeze the audience, draw the holdout, check the power)
           -> send (eligibility, e-mail or letters) -> responses (clicks, replies, purchases)
           -> analyse (lift with confidence intervals) -> close

Marketing is its own family rather than a corner of `analytical` or
`operational` because it is both: it acts on customers (sends) and measures
what that did (lift), and the measurement is only honest if the design (the
holdout) is fixed before the action. Events: campaign.launched,
campaign.member_skipped, campaign.sent, campaign.member_failed,
campaign.responded, campaign.converted, campaign.closed.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from crmcore import values as v
from crmcore.errors import NotFound, ValidationError
from crmcore.marketing import analysis, audience, holdout, responses, rules, sending, stats
from crmcore.marketing.eligibility import Policy
from crmcore.marketing.tracking import ClickApp, Links
from crmcore.model import Campaign, CampaignMember, Channel, Direction, MemberGroup, MemberStatus
from crmcore.model.marketing import CampaignStatus

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.operational.mail import Mailer


_MANAGED = frozenset({"status", "launched_at", "closed_at", "version"})
"""Campaign fields the service sets, never the caller."""


class UnderpoweredCampaign(ValidationError):
    """The audience is too small to detect the lift the campaign was meant to detect."""

    def __init__(self, needed: stats.SampleSize, target: int, control: int) -> None:
        self.needed = needed
        self.target = target
        self.control = control
        super().__init__(
            "audience",
            target + control,
            f"too small: {target} target and {control} control members, but {needed.explain()}",
        )


@attrs.frozen
class Launch:
    """The frozen audience: its size, the two groups, per stratum, and the power check."""

    campaign: Campaign
    target: int
    control: int
    strata: Mapping[str, tuple[int, int]]
    """(target, control) per stratum."""
    needed: stats.SampleSize | None

    def explain(self) -> str:
        head = (
            f"campaign {self.campaign.id} launched at {self.campaign.launched_at:%Y-%m-%d %H:%M} UTC: "
            f"{self.target + self.control} members, {self.target} target, {self.control} control"
        )
        if self.needed is not None:
            head += f"; enough for the power asked: {self.needed.explain()}"
        return head


class Marketing:
    """Campaigns with measured response."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm
        rules.register(crm)

    # ------------------------------------------------------------------ design

    def create(
        self,
        id: str,
        name: str,
        *,
        channel: Channel | str,
        subject: str = "",
        text: str,
        html: str | None = None,
        segment: str | None = None,
        rule: str | None = None,
        purpose: str = "marketing",
        **fields: Any,
    ) -> Campaign:
        """A draft campaign over a saved segment (by id) or a rule; see `Campaign` for the other fields.

        Refused up front: an unknown segment (NotFound), neither or both of segment
        and rule, a rule that does not parse, a control larger than the target, a
        window that ends before it starts, a template naming a missing link.
        """
        if (segment is None) == (rule is None):
            raise ValidationError("segment", segment, "give a saved segment or a rule (exactly one)")
        unknown = sorted(set(fields) - set(attrs.fields_dict(Campaign)) | set(fields) & _MANAGED)
        if unknown:
            raise ValidationError("fields", unknown, "are not campaign fields a caller may set")
        campaign = Campaign(
            id=id,
            name=name,
            channel=Channel(channel),
            purpose=purpose,
            rule=rule,
            segment_id=segment,
            subject=subject,
            text=text,
            html=html,
            **fields,
        )
        if campaign.channel not in (Channel.EMAIL, Channel.LETTER):
            raise ValidationError("channel", str(campaign.channel), "campaigns send by email or letter")
        audience.check_stratify(campaign.stratify)
        sending.check_template(campaign)
        with self.crm.transaction() as uow:
            if segment is not None:
                uow.segments.get(segment)
            else:
                self.crm.segments.canonical(rule or "")
            return self.crm.campaigns.add(campaign)

    def get(self, id: str) -> Campaign:
        return self.crm.campaigns.get(id)

    def sample_size(
        self,
        baseline: float,
        lift: float,
        *,
        control_fraction: float = 0.1,
        alpha: float = 0.05,
        power: float = 0.8,
    ) -> stats.SampleSize:
        """Members per group needed to detect an absolute `lift` in conversion over `baseline`."""
        return stats.sample_size(baseline, lift, control_fraction=control_fraction, alpha=alpha, power=power)

    # ------------------------------------------------------------------ launch

    def launch(self, id: str, *, at: datetime | None = None) -> Launch:
        """Freeze the audience as of `at` (default now) and draw the control group, all or nothing.

        The audience streams from storage into the campaign's members (memory stays
        flat); an empty or underpowered audience, or a template field a member lacks,
        raises and leaves the campaign a draft with no members.
        """
        moment = v.utc(at, "at") if at is not None else self.crm.clock()
        with self.crm.transaction() as uow:
            campaign = uow.campaigns.get(id)
            if campaign.status is not CampaignStatus.DRAFT:
                raise ValidationError(
                    "campaign", id, f"is {campaign.status}, not a draft: it was launched already"
                )
            if campaign.ends_at is not None and campaign.ends_at <= moment:
                raise ValidationError("ends_at", campaign.ends_at, f"is over before the launch at {moment}")
            rule = uow.segments.get(campaign.segment_id).rule if campaign.segment_id else campaign.rule or ""
            design = holdout.Design.of(campaign.id, campaign.seed, campaign.control_fraction)
            found = audience.stream(
                uow, rule, as_of=moment, functions=self.crm.segments.functions(), stratify=campaign.stratify
            )
            strata: dict[str, list[int]] = {}
            custom = sending.custom_fields(campaign)

            def members() -> Iterator[CampaignMember]:
                for customer_id, stratum, group in holdout.assign(design, found):
                    counts = strata.setdefault(stratum, [0, 0])
                    counts[group is MemberGroup.CONTROL] += 1
                    if custom and group is MemberGroup.TARGET:
                        _check_fields(uow.customers.get(customer_id).attributes, custom, customer_id)
                    yield CampaignMember(
                        campaign.id, customer_id, group, MemberStatus.SELECTED, moment, stratum
                    )

            uow.campaign_members.put_many(members())
            target = sum(t for t, _ in strata.values())
            control = sum(c for _, c in strata.values())
            if target + control == 0:
                raise ValidationError("audience", 0, f"campaign {id} selects nobody as of {moment}")
            needed = None
            if campaign.baseline_rate is not None and campaign.minimum_lift is not None:
                needed = self.sample_size(
                    campaign.baseline_rate,
                    campaign.minimum_lift,
                    control_fraction=campaign.control_fraction or 0.5,
                    alpha=campaign.alpha,
                    power=campaign.power,
                )
                if control == 0 or control < needed.control or target < needed.target:
                    raise UnderpoweredCampaign(needed, target, control)
            launched = uow.campaigns.update(
                attrs.evolve(
                    campaign,
                    status=CampaignStatus.LAUNCHED,
                    launched_at=moment,
                    starts_at=campaign.starts_at or moment,
                )
            )
            self.crm.emit(
                "campaign.launched",
                id,
                at=moment.isoformat(),
                target=target,
                control=control,
                strata={s: list(c) for s, c in strata.items()},
                seed=campaign.seed,
                control_fraction=campaign.control_fraction,
            )
            return Launch(launched, target, control, {s: (t, c) for s, (t, c) in strata.items()}, needed)

    def join(self, id: str, customer_id: str, *, at: datetime | None = None) -> CampaignMember:
        """Add a customer to a launched campaign (a trigger, an automation rule): their group
        is drawn alone (`holdout.joined_group`), so the control group keeps its fraction and
        the audit its proof. A member already there is returned as they are."""
        moment = v.utc(at, "at") if at is not None else self.crm.clock()
        id = v.text(id, "campaign", max_length=64)
        customer_id = v.text(customer_id, "customer_id", max_length=64)
        with self.crm.transaction() as uow:
            campaign = uow.campaigns.get(id)
            if campaign.status is not CampaignStatus.LAUNCHED:
                raise ValidationError("campaign", id,
                                      f"is {campaign.status}: only a launched campaign takes members")
            if campaign.ends_at is not None and campaign.ends_at <= moment:
                raise ValidationError("at", moment, f"campaign {id} ended at {campaign.ends_at}")
            # held as a foreign key would (Dialect.key_lock): a merge or unmerge moving this
            # customer's memberships waits for this join, or this join for it (and then finds
            # the customer gone, or the membership it moved)
            customer = uow.customers.lock(customer_id, shared=True)
            found = uow.campaign_members.find(id, customer.id)
            if found is not None:
                return found
            design = holdout.Design.of(campaign.id, campaign.seed, campaign.control_fraction)
            group = holdout.joined_group(design, customer.id)
            custom = sending.custom_fields(campaign)
            if custom and group is MemberGroup.TARGET:
                _check_fields(customer.attributes, custom, customer.id)
            stratum = audience.stratum_of(uow, customer, campaign.stratify, moment)
            member = CampaignMember(campaign.id, customer.id, group, MemberStatus.SELECTED, moment, stratum,
                                    joined=True)
            uow.campaign_members.put_many([member])
            self.crm.emit("campaign.joined", id, customer=customer.id, group=str(group), stratum=stratum)
            return member

    def members(
        self, id: str, *, after: str | None = None, limit: int = 1000
    ) -> builtins.list[CampaignMember]:
        with self.crm.reading() as uow:
            return uow.campaign_members.page(id, after=after, limit=limit)

    def counts(self, id: str) -> dict[tuple[str, str], int]:
        """Members by (group, status)."""
        with self.crm.reading() as uow:
            return uow.campaign_members.counts(id)

    def audit(self, id: str) -> builtins.list[str]:
        """Customers whose recorded group differs from a fresh draw (campaign id, seed): none, normally."""
        campaign = self.get(id)
        design = holdout.Design.of(campaign.id, campaign.seed, campaign.control_fraction)
        members = builtins.list(self._all(id))
        drawn = sorted(((m.customer_id, m.stratum, m.group) for m in members if not m.joined),
                       key=lambda row: row[0])
        late = [m.customer_id for m in members
                if m.joined and m.group is not holdout.joined_group(design, m.customer_id)]
        return sorted([*holdout.audit(design, drawn), *late])

    def _all(self, id: str) -> Iterator[CampaignMember]:
        after: str | None = None
        while True:
            page = self.members(id, after=after, limit=2000)
            if not page:
                return
            yield from page
            after = page[-1].customer_id

    # ------------------------------------------------------------------ send

    def send(
        self,
        id: str,
        *,
        mailer: Mailer | None = None,
        letters: str | os.PathLike[str] | None = None,
        links: Links | None = None,
        policy: Policy | None = None,
        page: int = 100,
        limit: int | None = None,
    ) -> sending.SendReport:
        """Send to the members not yet handled (e-mail through `mailer`, letters into the folder
        `letters`); safe to run again after a crash: nobody is sent twice."""
        campaign = self.get(id)
        if campaign.status is not CampaignStatus.LAUNCHED:
            raise ValidationError("campaign", id, f"is {campaign.status}: only a launched campaign sends")
        if campaign.links and links is None:
            raise ValidationError("links", None, f"campaign {id} has tracked links: pass a Links signer")
        outlet: sending.Outlet
        if campaign.channel is Channel.EMAIL:
            if mailer is None:
                raise ValidationError("mailer", None, "an e-mail campaign needs a Mailer")
            outlet = sending.EmailOutlet(mailer, links)
        else:
            if letters is None:
                raise ValidationError("letters", None, "a letter campaign needs a folder for the mail merge")
            outlet = sending.LetterOutlet(letters, links)
        v.whole(page, "page", 1, 10_000)
        return sending.run(self.crm, campaign, outlet, policy or Policy(), page=page, limit=limit)

    # ------------------------------------------------------------------ responses

    def click_app(self, links: Links) -> ClickApp:
        """The WSGI app serving this CRM's tracked links."""
        return ClickApp(self.crm, links)

    def record_click(self, campaign_id: str, customer_id: str, link: str, *, record: bool = True) -> str:
        """Put a click on the timeline (first one: `campaign.responded`) and return where it leads."""
        with self.crm.transaction() as uow:
            campaign = uow.campaigns.get(campaign_id)
            destination = campaign.links.get(link)
            # the customer held first, as in `join`: an unmerge moving the membership in
            # the meantime is waited for, and the membership read where it went
            if record:
                try:
                    uow.customers.lock(customer_id, shared=True)
                except NotFound:
                    raise NotFound("campaign link", f"{campaign_id}/{link}") from None
            member = uow.campaign_members.find(campaign_id, customer_id)
            if destination is None or member is None:
                raise NotFound("campaign link", f"{campaign_id}/{link}")
            if not record:
                return destination
            now = self.crm.clock()
            self.crm.interactions.log(
                customer_id,
                channel=campaign.channel,
                direction=Direction.INBOUND,
                at=now,
                subject=f"clicked {link}",
                outcome="clicked",
                campaign_id=campaign_id,
            )
            if member.responded_at is None and member.status in responses.SENT_STATES:
                uow.campaign_members.put(
                    attrs.evolve(
                        member,
                        status=MemberStatus.RESPONDED
                        if member.status is MemberStatus.SENT
                        else member.status,
                        response="clicked",
                        responded_at=now,
                        at=now,
                    )
                )
                self.crm.emit(
                    "campaign.responded",
                    campaign_id,
                    customer_id=customer_id,
                    kind="clicked",
                    link=link,
                    at=now.isoformat(),
                )
            return destination

    def collect(self, id: str) -> responses.Collected:
        """Settle replies, unsubscribes and last-touch conversions from timelines and purchases."""
        campaign = self.get(id)
        _, end = analysis.window(campaign, self.crm.clock())
        return responses.collect(self.crm, campaign, campaign.ends_at or end)

    # ------------------------------------------------------------------ results

    def analyse(
        self, id: str, *, confidence: float = 0.95, engine: str = "auto", population: str = "reachable"
    ) -> analysis.Report:
        """Target against control over the response window (so far): see `analysis`."""
        if not 0.5 <= confidence < 1:
            raise ValidationError("confidence", confidence, "must be from 0.5 to below 1")
        with self.crm.reading() as uow:
            campaign = uow.campaigns.get(id)
            span = analysis.window(campaign, self.crm.clock())
            counted, used = analysis.tallies(uow, campaign, *span, engine=engine, population=population)
        return analysis.report(campaign, counted, used, span, confidence)

    def rehearse(
        self, *, days: int = 90, rule: str = "consent.marketing.email", control_fraction: float = 0.2,
        seed: str = "rehearsal", stratify: str | None = "tier",
    ) -> analysis.Report:
        """An A/A rehearsal on history: a campaign drawn `days` ago that sent nothing, measured
        to now over everyone assigned. Its lift should be indistinguishable from zero (about
        19 times in 20): a check of the measurement on the company's own data, and the demo's.
        The campaign is stored closed, as `rehearsal-<date>`."""
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
            raise ValidationError("days", days, "must be a whole number of days from 1 to 3650")
        now = self.crm.clock()
        start = now - timedelta(days=days)
        id = f"rehearsal-{start:%Y%m%d%H%M%S}"
        self.create(
            id, f"A/A rehearsal from {start:%Y-%m-%d}", channel=Channel.EMAIL, rule=rule,
            text="(never sent)", control_fraction=control_fraction, seed=seed, stratify=stratify, ends_at=now,
        )
        self.launch(id, at=start)
        result = self.analyse(id, population="assigned")
        with self.crm.transaction() as uow:
            campaign = uow.campaigns.get(id)
            uow.campaigns.update(attrs.evolve(campaign, status=CampaignStatus.CLOSED, closed_at=now))
        return result

    def close(self, id: str) -> analysis.Report:
        """Collect the last responses, analyse, and mark the campaign closed (`campaign.closed`)."""
        self.collect(id)
        result = self.analyse(id)
        with self.crm.transaction() as uow:
            campaign = uow.campaigns.get(id)
            if campaign.status is CampaignStatus.CLOSED:
                raise ValidationError("campaign", id, "is closed already")
            now = self.crm.clock()
            uow.campaigns.update(attrs.evolve(campaign, status=CampaignStatus.CLOSED, closed_at=now))
            overall = result.overall
            self.crm.emit(
                "campaign.closed",
                id,
                at=now.isoformat(),
                target=overall.target.members,
                control=overall.control.members,
                conversion_lift=overall.conversion.difference,
                conversion_p=overall.conversion.p_value,
                incremental_revenue=str(overall.incremental_revenue.amount),
                currency=overall.incremental_revenue.currency,
            )
        return result


def _check_fields(attributes: Mapping[str, object], needed: frozenset[str], customer_id: str) -> None:
    missing = sorted(needed - set(attributes))
    if missing:
        raise ValidationError(
            "template", f"${missing[0]}", f"names a field customer {customer_id} does not have"
        )
