"""Sending a launched campaign: eligibility, the message, the record, exactly once at most.

A run takes the members still `selected`, in pages. For each page, in one
transaction: eligibility is checked (skips keep their reason, control members
become `held`), messages are composed and the members to send are marked
`sending` with the message's own id. Then the messages are handed over, and in
a second transaction each is settled: `sent` with its entry on the timeline
(tagged with the campaign), or `failed`. A Python exception in mid-page still
settles what went out and puts the rest back to `selected`; a hard crash (the
process killed) leaves some members `sending`: the next run finds those, marks
the ones whose send reached the timeline `sent` and the others `failed`
("interrupted"), and never sends them again. Nobody gets the message twice.

Channels: e-mail through the operational `Mailer` (consent is the campaign's
own check; the List-Unsubscribe header comes with the Mailer), and letters as a
mail-merge folder a printer takes: `letters.csv` plus one rendered text file a letter.
"""

from __future__ import annotations

import csv
import hashlib
import os
import string
from collections.abc import Mapping
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import attrs

from crmcore.errors import CRMError, ValidationError
from crmcore.marketing import eligibility
from crmcore.marketing.tracking import Links
from crmcore.model import Campaign, CampaignMember, Channel, Customer, Direction, MemberGroup, MemberStatus
from crmcore.ports import UnitOfWork

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.operational.mail import Mailer, Template

STANDARD = frozenset({"customer_id", "name", "first_name", "email", "tier", "language", "campaign"})
"""Placeholders every template may use; `link_<name>` gives a tracked link; letters add ADDRESS."""
ADDRESS = frozenset({"address", "city", "postal_code", "country"})


def placeholders(campaign: Campaign) -> frozenset[str]:
    found: set[str] = set()
    for text in (campaign.subject, campaign.text, campaign.html or ""):
        found |= set(string.Template(text).get_identifiers())
    return frozenset(found)


def custom_fields(campaign: Campaign) -> frozenset[str]:
    """Placeholders that must come from each customer's custom attributes (checked at launch)."""
    known = STANDARD | {f"link_{name}" for name in campaign.links}
    if campaign.channel is Channel.LETTER:
        known |= ADDRESS
    return frozenset(p for p in placeholders(campaign) if p not in known and not p.startswith("link_"))


def check_template(campaign: Campaign) -> None:
    """A placeholder naming a link the campaign lacks, or a malformed one, is refused up front."""
    for part, text in (("subject", campaign.subject), ("text", campaign.text), ("html", campaign.html or "")):
        if not string.Template(text).is_valid():
            raise ValidationError(f"template.{part}", text[:60], "has a malformed $placeholder")
    if not campaign.text.strip():
        raise ValidationError("template.text", campaign.text, "must not be empty")
    for name in sorted(placeholders(campaign)):
        if name.startswith("link_") and name[len("link_") :] not in campaign.links:
            raise ValidationError(
                "template", f"${name}", f"names a link the campaign does not have ({sorted(campaign.links)})"
            )


@attrs.frozen
class Prepared:
    member: CampaignMember
    reference: str
    subject: str
    payload: EmailMessage | Letter


@attrs.frozen
class Letter:
    reference: str
    customer: Customer
    subject: str
    text: str


class Outlet(Protocol):
    """How one channel turns a member into something to hand over, and hands it over."""

    channel: Channel

    def prepare(
        self, campaign: Campaign, customer: Customer, member: CampaignMember, now: datetime
    ) -> Prepared: ...

    def deliver(self, prepared: Prepared) -> CRMError | None:
        """Hand it over; the error if it did not go out."""
        ...


def _template(campaign: Campaign) -> Template:
    from crmcore.operational.mail import Template

    return Template(subject=campaign.subject, text=campaign.text, html=campaign.html, name="campaign")


def _context(campaign: Campaign, customer: Customer, links: Links | None, now: datetime) -> dict[str, str]:
    context = {"campaign": campaign.name}
    for name in campaign.links:
        if links is None:
            raise ValidationError(
                "links", None, f"campaign {campaign.id} has links: pass a Links signer to send"
            )
        context[f"link_{name}"] = links.url(campaign.id, customer.id, name, now=now)
    return context


class EmailOutlet:
    channel = Channel.EMAIL

    def __init__(self, mailer: Mailer, links: Links | None = None) -> None:
        self.mailer = mailer
        self.links = links

    def prepare(
        self, campaign: Campaign, customer: Customer, member: CampaignMember, now: datetime
    ) -> Prepared:
        message = self.mailer.compose(
            customer,
            _template(campaign),
            purpose=campaign.purpose,
            context=_context(campaign, customer, self.links, now),
        )
        return Prepared(member, str(message["Message-ID"]), str(message["Subject"]), message)

    def deliver(self, prepared: Prepared) -> CRMError | None:
        assert isinstance(prepared.payload, EmailMessage)
        _, error = self.mailer.transmit(prepared.payload)
        return error


class LetterOutlet:
    """Writes a mail-merge folder: `letters.csv` (one row a letter) and `<reference>.txt` each.

    Files are written (text first, then its row) but not synced one by one: a power
    cut may lose the last letters of a run that the campaign records as sent.
    """

    channel = Channel.LETTER
    COLUMNS = ("reference", "customer_id", "name", "address", "postal_code", "city", "country", "file")

    def __init__(self, folder: str | os.PathLike[str], links: Links | None = None) -> None:
        self.folder = Path(folder)
        self.links = links
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValidationError("letters", str(folder), f"cannot be made a folder: {exc}") from None

    def prepare(
        self, campaign: Campaign, customer: Customer, member: CampaignMember, now: datetime
    ) -> Prepared:
        address = customer.addresses[0]
        values = {key: str(value) for key, value in customer.attributes.items()}
        values.update(
            customer_id=customer.id,
            name=customer.name,
            first_name=customer.name.split()[0],
            email="",
            tier=customer.tier or "",
            language=customer.language or "",
            address="\n".join(address.lines),
            city=address.city,
            postal_code=address.postal_code,
            country=address.country,
        )
        values.update(_context(campaign, customer, self.links, now))
        subject, text, _ = _template(campaign).for_language(customer.language).render(values)
        digest = hashlib.sha256(f"{campaign.id}|{customer.id}".encode()).hexdigest()[:20]
        reference = f"L{digest}"
        return Prepared(member, reference, subject, Letter(reference, customer, subject, text))

    def deliver(self, prepared: Prepared) -> CRMError | None:
        try:
            self._write(prepared)
        except OSError as exc:
            return CRMError(f"the letter could not be written: {exc}")
        return None

    def _write(self, prepared: Prepared) -> None:
        letter = prepared.payload
        assert isinstance(letter, Letter)
        body = self.folder / f"{letter.reference}.txt"
        temporary = body.with_suffix(".tmp")
        address = letter.customer.addresses[0]
        temporary.write_text(
            "\n".join(
                [
                    letter.customer.name,
                    *address.lines,
                    f"{address.postal_code} {address.city}".strip(),
                    address.country,
                    "",
                    letter.subject,
                    "",
                    letter.text,
                ]
            )
            + "\n",
            encoding="utf-8",
        )
        os.replace(temporary, body)
        index = self.folder / "letters.csv"
        new = not index.exists()
        with open(index, "a", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            if new:
                writer.writerow(self.COLUMNS)
            writer.writerow(
                _cell(value)
                for value in [
                    letter.reference,
                    letter.customer.id,
                    letter.customer.name,
                    " / ".join(address.lines),
                    address.postal_code,
                    address.city,
                    address.country,
                    body.name,
                ]
            )


def _cell(value: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (names are untrusted text)."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@attrs.frozen
class SendReport:
    """What one run did; `skipped` by reason."""

    sent: int = 0
    held: int = 0
    failed: int = 0
    deferred: int = 0
    recovered: int = 0
    skipped: Mapping[str, int] = attrs.field(factory=dict)

    def explain(self) -> str:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items())) or "none"
        return (
            f"sent {self.sent}, held out {self.held}, failed {self.failed}, deferred {self.deferred} "
            f"(quiet hours), recovered after a crash {self.recovered}; skipped: {reasons}"
        )


class _Counts:
    def __init__(self) -> None:
        self.sent = self.held = self.failed = self.deferred = self.recovered = 0
        self.skipped: dict[str, int] = {}

    def report(self) -> SendReport:
        return SendReport(
            self.sent, self.held, self.failed, self.deferred, self.recovered, dict(self.skipped)
        )


def run(
    crm: CRM, campaign: Campaign, outlet: Outlet, policy: eligibility.Policy, *, page: int, limit: int | None
) -> SendReport:
    counts = _Counts()
    _recover(crm, campaign, counts)
    after: str | None = None
    while limit is None or counts.sent + counts.failed < limit:
        room = page if limit is None else min(page, limit - counts.sent - counts.failed)
        with crm.transaction() as uow:
            members = uow.campaign_members.page(
                campaign.id, after=after, limit=room, status=MemberStatus.SELECTED
            )
            if not members:
                break
            after = members[-1].customer_id
            batch = _admit(crm, uow, campaign, outlet, policy, members, counts)
        _hand_over(crm, campaign, outlet, batch, counts)
    return counts.report()


def _admit(
    crm: CRM,
    uow: UnitOfWork,
    campaign: Campaign,
    outlet: Outlet,
    policy: eligibility.Policy,
    members: list[CampaignMember],
    counts: _Counts,
) -> list[Prepared]:
    """Inside the page's transaction: verdicts recorded, the members to send marked `sending`
    (written together at the end of the page)."""
    now = crm.clock()
    changed: list[CampaignMember] = []
    prepared_all: list[Prepared] = []
    for member in members:
        customer = uow.customers.get(member.customer_id)
        recent = (
            uow.interactions.for_customer(customer.id, since=now - policy.frequency_window, limit=None)
            if policy.frequency_cap is not None
            else ()
        )
        verdict = eligibility.check(
            policy, customer, purpose=campaign.purpose, channel=outlet.channel, now=now, recent=recent
        )
        if verdict.deferred:
            counts.deferred += 1
            continue
        if not verdict.eligible:
            reason = verdict.reason or "not eligible"
            changed.append(attrs.evolve(member, status=MemberStatus.SKIPPED, reason=reason, at=now))
            crm.emit(
                "campaign.member_skipped",
                campaign.id,
                customer_id=member.customer_id,
                group=str(member.group),
                reason=reason,
            )
            key = reason.split(":")[0]
            counts.skipped[key] = counts.skipped.get(key, 0) + 1
            continue
        if member.group is MemberGroup.CONTROL:
            changed.append(attrs.evolve(member, status=MemberStatus.HELD, at=now))
            counts.held += 1
            continue
        try:
            prepared = outlet.prepare(campaign, customer, member, now)
        except ValidationError as error:
            _fail(crm, campaign, member, f"could not compose: {error}", now)
            counts.failed += 1
            continue
        sending = attrs.evolve(member, status=MemberStatus.SENDING, reference=prepared.reference, at=now)
        changed.append(sending)
        prepared_all.append(attrs.evolve(prepared, member=sending))
    uow.campaign_members.put_many(changed)
    return prepared_all


def _hand_over(crm: CRM, campaign: Campaign, outlet: Outlet, batch: list[Prepared], counts: _Counts) -> None:
    done: list[tuple[Prepared, CRMError | None]] = []
    try:
        for prepared in batch:
            done.append((prepared, outlet.deliver(prepared)))
    finally:
        with crm.transaction() as uow:
            now = crm.clock()
            sent: list[CampaignMember] = []
            for prepared, error in done:
                if error is None:
                    _log(crm, outlet.channel, campaign, prepared, now)
                    sent.append(attrs.evolve(prepared.member, status=MemberStatus.SENT, sent_at=now, at=now))
                else:
                    _fail(crm, campaign, prepared.member, str(error), now)
                    counts.failed += 1
            uow.campaign_members.put_many(sent)
            counts.sent += len(sent)
            if sent:  # one event a page, like segment runs: a million sends are not a million outbox rows
                crm.emit(
                    "campaign.sent",
                    campaign.id,
                    channel=str(outlet.channel),
                    customers=[m.customer_id for m in sent],
                    references=[m.reference for m in sent],
                )
            for prepared in batch[len(done) :]:  # never handed over: back in the queue
                uow.campaign_members.put(
                    attrs.evolve(prepared.member, status=MemberStatus.SELECTED, reference=None, at=now)
                )


def _log(crm: CRM, channel: Channel, campaign: Campaign, prepared: Prepared, now: datetime) -> None:
    crm.interactions.log(
        prepared.member.customer_id,
        channel=channel,
        direction=Direction.OUTBOUND,
        at=now,
        subject=prepared.subject[:1000],
        reference=prepared.reference,
        campaign_id=campaign.id,
        outcome="campaign",
    )


def _fail(crm: CRM, campaign: Campaign, member: CampaignMember, reason: str, now: datetime) -> None:
    with crm.transaction() as uow:
        uow.campaign_members.put(
            attrs.evolve(member, status=MemberStatus.FAILED, reason=reason[:500], at=now)
        )
    crm.emit("campaign.member_failed", campaign.id, customer_id=member.customer_id, reason=reason[:500])


def _recover(crm: CRM, campaign: Campaign, counts: _Counts) -> None:
    """Members a killed run left `sending`: `sent` if the timeline has the send, else `failed`."""
    while True:
        with crm.transaction() as uow:
            stuck = uow.campaign_members.page(campaign.id, limit=500, status=MemberStatus.SENDING)
            if not stuck:
                return
            now = crm.clock()
            for member in stuck:
                logged = [
                    i
                    for i in uow.interactions.by_reference(member.customer_id, member.reference or "")
                    if i.direction is Direction.OUTBOUND and i.campaign_id == campaign.id
                ]
                if logged:
                    uow.campaign_members.put(
                        attrs.evolve(member, status=MemberStatus.SENT, sent_at=logged[0].occurred_at, at=now)
                    )
                else:
                    _fail(
                        crm, campaign, member, "interrupted: may have gone out, so it is not sent again", now
                    )
                counts.recovered += 1
