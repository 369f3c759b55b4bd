"""E-mail as a CRM channel: consent-checked sending, and an inbox read onto the timeline.

Out: a `Template` is rendered for one customer into an `EmailMessage`; the
customer's consent for the purpose is checked first (a refusal is recorded as an
`email.refused` event), a temporary failure is retried with backoff, and only a
message the server accepted becomes an outbound interaction.

In: a `Poller` reads a mailbox by UID and keeps its cursor between runs, so a
restart skips nothing, and a message read again is recognised by its
Message-ID and not logged twice. Each message is handled in one
transaction: matched to a customer by sender, threaded to the message it
answers, a case opened when it was written to a support address. Unknown
senders become leads or are parked; bounces and unsubscribe requests withdraw
consent. Whatever a message holds, it ends in exactly one outcome and the
poller moves on; only a storage failure stops it, before the cursor moves.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import html
import json
import logging
import os
import re
import string
import tempfile
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from crmcore import values as v
from crmcore.errors import ConflictError, ConsentError, CRMError, StorageError, ValidationError, shown
from crmcore.model import (
    CaseKind,
    Channel,
    ConsentStatus,
    ContactKind,
    Customer,
    Direction,
    Interaction,
    LifecycleStage,
)
from crmcore.plugins import open_adapter
from crmcore.ports.email import (
    Cursor,
    CursorStore,
    DeliveryError,
    EmailTransport,
    Mailbox,
    MailboxError,
    Received,
)

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.operational.configuration import Stored

log = logging.getLogger(__name__)

MARKETING = frozenset({"marketing"})
_MSGID = re.compile(r"<[^<>\s]{1,996}>")
_PARSER = BytesParser(policy=policy.default)


class Mail:
    """The e-mail channel of a CRM: `crm.operational.mail`."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    @functools.cached_property
    def templates(self) -> Stored[Template]:
        """Stored templates by name (automation's `send_template` sends them)."""
        from crmcore.model import ConfigKind
        from crmcore.operational.configuration import Stored

        return Stored(self.crm, ConfigKind.MAIL_TEMPLATE, Template)

    def mailer(self, transport: str | EmailTransport, *, sender: str, **options: Any) -> Mailer:
        """A `Mailer` over a transport URL (`smtp://...`) or an open `EmailTransport`."""
        opened: EmailTransport = (
            open_adapter(self.crm.plugins, "email transport", "crmcore_register_email_transports", transport)
            if isinstance(transport, str) else transport
        )
        return Mailer(self.crm, opened, sender=sender, **options)

    def poller(
        self, mailbox: str | Mailbox, *, state: str | os.PathLike[str] | CursorStore, **options: Any
    ) -> Poller:
        """A `Poller` over a mailbox URL (`imap://...`); `state` is a cursor file path or store."""
        store = FileCursor(state) if isinstance(state, str | os.PathLike) else state
        opened: Mailbox = (
            open_adapter(self.crm.plugins, "mailbox", "crmcore_register_mailboxes", mailbox)
            if isinstance(mailbox, str) else mailbox
        )
        return Poller(self.crm, opened, store, **options)


# ---------------------------------------------------------------- outbound


def _template_text(_instance: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    v.text(value, f"template.{attribute.name}", max_length=1_000_000, empty=attribute.name != "subject")
    if not string.Template(value).is_valid():
        raise ValidationError(f"template.{attribute.name}", value[:60], "has a malformed $placeholder")


@attrs.frozen
class Template:
    """A message written once and personalised per customer with `$placeholders`, in their language.

    Available: `$name`, `$first_name`, `$email`, `$customer_id`, `$tier`,
    `$language`, every custom attribute of the customer, and the `context` given
    to `send` (which wins). Values are HTML-escaped in the HTML part.
    """

    subject: str = attrs.field(validator=_template_text)
    text: str = attrs.field(validator=_template_text)
    html: str | None = attrs.field(default=None, validator=_template_text)
    name: str = attrs.field(default="message", validator=v.check(v.name))
    translations: Mapping[str, Template] = attrs.field(factory=dict)
    """The same message in other languages, by tag ("fr", "pt-BR"), chosen by the customer's language."""

    @translations.validator
    def _translations(self, attribute: attrs.Attribute[Any], value: Mapping[str, Any]) -> None:
        for tag, translation in value.items():
            v.text(tag, "template.translations", max_length=35)
            if not isinstance(translation, Template):
                raise ValidationError(f"template.translations[{tag!r}]", translation, "must be a Template")

    def for_language(self, language: str | None) -> Template:
        """The translation for `language` (else for its primary tag, "fr" for "fr-CA"), else this one."""
        if not language:
            return self
        lowered = {tag.lower(): t for tag, t in self.translations.items()}
        tag = language.lower()
        return lowered.get(tag) or lowered.get(tag.split("-")[0]) or self

    def render(self, values: Mapping[str, str]) -> tuple[str, str, str | None]:
        """(subject, text, html) for one set of values; a missing value is a ValidationError."""
        escaped = {key: html.escape(value) for key, value in values.items()}
        return (
            _substitute(self.subject, values, "subject"),
            _substitute(self.text, values, "text"),
            None if self.html is None else _substitute(self.html, escaped, "html"),
        )


def _substitute(text: str, values: Mapping[str, str], part: str) -> str:
    try:
        return string.Template(text).substitute(values)
    except KeyError as missing:
        raise ValidationError(f"template.{part}", missing.args[0], "has no value for this customer") from None


VERIFICATION = Template(
    subject="Your verification code",
    text="Hello $name,\n\nto confirm that $email is yours, enter this code: $token\n\n"
         "If you did not ask for this, ignore this message: nothing changes.\n",
    name="verification",
)
"""The message `Mailer.send_verification` sends by default ($token is the code)."""


class Status(enum.StrEnum):
    SENT = "sent"
    REFUSED = "refused"
    """No consent: nothing left, the refusal is on record."""
    FAILED = "failed"
    """The server did not take it (after retries); nothing is on the timeline."""


@attrs.frozen
class Outcome:
    """What became of one message."""

    status: Status
    customer_id: str
    message_id: str | None = None
    interaction: Interaction | None = None
    error: CRMError | None = None
    attempts: int = 0

    def raise_for_status(self) -> Outcome:
        """The outcome itself when sent; else its error (ConsentError or DeliveryError)."""
        if self.error is not None:
            raise self.error
        return self


class Mailer:
    """Sends personalised messages to customers, honouring consent, onto the timeline.

    `exempt` purposes (e.g. "service" replies, when company policy says so) need
    no consent; every other purpose needs an explicit grant for e-mail.
    Messages for `marketing` purposes carry a List-Unsubscribe header pointing at
    `unsubscribe`, which the `Poller` understands.
    """

    def __init__(
        self,
        crm: CRM,
        transport: EmailTransport,
        *,
        sender: str,
        unsubscribe: str | None = None,
        marketing: Iterable[str] = MARKETING,
        exempt: Iterable[str] = (),
        attempts: int = 4,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.crm = crm
        self.transport = transport
        self.sender = _address(sender, "sender")
        self._from = policy.SMTP.header_factory("From", str(self.sender))  # parsed once, not per message
        self.unsubscribe = None if unsubscribe is None else v.email(unsubscribe, "unsubscribe")
        self.marketing = frozenset(v.name(p, "marketing") for p in marketing)
        self.exempt = frozenset(v.name(p, "exempt") for p in exempt)
        if self.marketing and self.unsubscribe is None:
            raise ValidationError("unsubscribe", None, "marketing messages need an unsubscribe address")
        if not 1 <= attempts <= 20:
            raise ValidationError("attempts", attempts, "must be between 1 and 20")
        if not 0 <= backoff <= 3600:
            raise ValidationError("backoff", backoff, "must be between 0 and 3600 seconds")
        self.attempts = attempts
        self.backoff = backoff
        self.sleep = sleep

    def send(
        self,
        customer_id: str,
        template: Template,
        *,
        purpose: str,
        context: Mapping[str, object] | None = None,
        to: str | None = None,
        in_reply_to: str | None = None,
        case_id: str | None = None,
        agent: str | None = None,
    ) -> Outcome:
        """Send `template` to one customer for `purpose`; see `Outcome` for what can happen.

        Bad input (a template value missing, a line break headed for a header)
        raises ValidationError before anything is sent.
        """
        drafted = self._draft(
            customer_id, template, purpose, context, to=to, in_reply_to=in_reply_to, case_id=case_id,
            agent=agent,
        )
        if isinstance(drafted, Outcome):
            return drafted
        return self._settle(drafted, *self._transmit(drafted.message))

    def send_many(
        self,
        customer_ids: Iterable[str],
        template: Template,
        *,
        purpose: str,
        context: Mapping[str, object] | Callable[[Customer], Mapping[str, object]] | None = None,
        batch: int = 50,
    ) -> Iterator[Outcome]:
        """`send` to each customer in turn (a campaign), yielding outcomes in the same order.

        Consent, retries and "only what the server took is logged" work as in
        `send`; the timeline is written in one transaction per `batch` messages,
        so a campaign pays for the SMTP exchange rather than a commit per message
        (a crash may then lose the timeline entries of at most one batch already
        sent). A customer whose data cannot make a valid message comes out FAILED
        with the ValidationError instead of stopping the run; stopping the
        iteration early still logs what went out.
        """
        pending: list[Outcome | tuple[_Draft, int, DeliveryError | None]] = []
        try:
            for customer_id in customer_ids:
                try:
                    drafted = self._draft(customer_id, template, purpose, context)
                except ValidationError as error:
                    drafted = self._failed(customer_id, purpose, template, None, error, 0)
                pending.append(
                    drafted if isinstance(drafted, Outcome) else (drafted, *self._transmit(drafted.message))
                )
                if len(pending) >= batch:
                    ready, pending = self._settle_all(pending), []
                    yield from ready
            ready, pending = self._settle_all(pending), []
            yield from ready
        finally:
            if pending:  # the caller stopped early, or a send raised: what went out is still logged
                self._settle_all(pending)

    def _settle_all(self, items: list[Outcome | tuple[_Draft, int, DeliveryError | None]]) -> list[Outcome]:
        with self.crm.transaction():
            return [item if isinstance(item, Outcome) else self._settle(*item) for item in items]

    def _draft(
        self,
        customer_id: str,
        template: Template,
        purpose: str,
        context: Mapping[str, object] | Callable[[Customer], Mapping[str, object]] | None,
        **fields: Any,
    ) -> _Draft | Outcome:
        """The consent check and the composed message, or the refusal (recorded)."""
        purpose = v.name(purpose, "purpose")
        customer = self.crm.customers.get(customer_id)
        if purpose not in self.exempt and not customer.has_consent(purpose, Channel.EMAIL):
            return self._refused(customer, purpose, template)
        values = context(customer) if callable(context) else context
        message = self.compose(
            customer, template, purpose=purpose, context=values, to=fields.pop("to", None),
            in_reply_to=fields.get("in_reply_to"),
        )
        return _Draft(customer.id, purpose, template, message, **fields)

    def transmit(self, message: EmailMessage) -> tuple[int, DeliveryError | None]:
        """Hand over a message `compose` built, with the retries `send` uses: (attempts, final error).

        For callers that keep their own record of each send (a campaign marks the
        member before and after); nothing is logged here.
        """
        return self._transmit(message)

    def _transmit(self, message: EmailMessage) -> tuple[int, DeliveryError | None]:
        """Hand the message over, retrying temporary failures: (attempts, final error or None)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                self.transport.send(message)
                return attempt, None
            except (ValueError, UnicodeError) as exc:  # the message cannot be written: no retry helps
                reason = f"the message cannot be written: {shown(str(exc))}"
                return attempt, DeliveryError(reason, temporary=False)
            except DeliveryError as error:
                if not error.temporary or attempt >= self.attempts:
                    return attempt, error
                self.sleep(self.backoff * 2 ** (attempt - 1))

    def _settle(self, draft: _Draft, attempts: int, error: DeliveryError | None) -> Outcome:
        """Only a message the server took goes onto the timeline."""
        message_id = str(draft.message["Message-ID"])
        if error is not None:
            return self._failed(draft.customer_id, draft.purpose, draft.template, message_id, error, attempts)
        interaction = self.crm.interactions.log(
            draft.customer_id, channel=Channel.EMAIL, direction=Direction.OUTBOUND,
            subject=_clean(str(draft.message["Subject"]), 1000), reference=message_id,
            in_reply_to=_first_id(draft.in_reply_to), case_id=draft.case_id, agent=draft.agent,
        )
        return Outcome(Status.SENT, draft.customer_id, message_id, interaction, attempts=attempts)

    def compose(
        self,
        customer: Customer,
        template: Template,
        *,
        purpose: str,
        context: Mapping[str, object] | None = None,
        to: str | None = None,
        in_reply_to: str | None = None,
    ) -> EmailMessage:
        """The message `send` would send, built with the standard library's EmailMessage."""
        address = v.email(to, "to") if to is not None else next(iter(customer.emails), None)
        if address is None:
            raise ValidationError("customer.emails", customer.emails, "holds no address to write to")
        if address not in customer.emails:  # the timeline must not claim a message it did not get
            raise ValidationError("to", to, f"is not an address of customer {customer.id}")
        values = _values(customer, address, context)
        return self._message(customer, address, template, values, purpose, in_reply_to)

    def send_verification(
        self, customer: Customer, address: str, token: str, template: Template | None = None
    ) -> None:
        """Mail `token` to an address the customer added and has not proven yet (self-service).

        Only to a pending address of this customer, never to one of `emails`; it
        needs no consent (the customer just asked for it) and goes on no timeline.
        Raises DeliveryError when the server does not take it.
        """
        pending = {p.value for p in customer.pending if p.kind is ContactKind.EMAIL}
        if address not in pending:
            raise ValidationError("to", address, f"is not an address customer {customer.id} is verifying")
        values = _values(customer, address, {"token": token})
        message = self._message(customer, address, template or VERIFICATION, values, "verification", None)
        _attempts, error = self._transmit(message)
        if error is not None:
            raise error

    def _message(
        self, customer: Customer, address: str, template: Template, values: Mapping[str, str],
        purpose: str, in_reply_to: str | None,
    ) -> EmailMessage:
        subject, text, body_html = template.for_language(customer.language).render(values)
        message = EmailMessage(policy=policy.SMTP)
        message["From"] = self._from
        _put(message, "To", _address(address, "to", display_name=customer.name), "to")
        _put(message, "Subject", _header_text(subject, "subject").strip(), "subject")  # no outer blanks
        message["Date"] = format_datetime(self.crm.clock())
        message["Message-ID"] = make_msgid(domain=self.sender.domain)
        reply = _first_id(in_reply_to)
        if in_reply_to is not None and reply is None:
            raise ValidationError("in_reply_to", in_reply_to, "is not a Message-ID such as <id@host>")
        if reply is not None:
            _put(message, "In-Reply-To", reply, "in_reply_to")
            _put(message, "References", reply, "in_reply_to")
        if purpose in self.marketing:
            message["List-Unsubscribe"] = f"<mailto:{self.unsubscribe}?subject=unsubscribe%20{purpose}>"
        message.set_content(text)
        if body_html is not None:
            message.add_alternative(body_html, subtype="html")
        return message

    def _refused(self, customer: Customer, purpose: str, template: Template) -> Outcome:
        reason = f"no e-mail consent for {purpose!r}"
        with self.crm.transaction():
            self.crm.emit(
                "email.refused", customer.id, purpose=purpose, template=template.name, reason=reason
            )
        return Outcome(Status.REFUSED, customer.id, error=ConsentError(f"customer {customer.id}: {reason}"))

    def _failed(
        self, customer_id: str, purpose: str, template: Template, message_id: str | None,
        error: CRMError, attempts: int,
    ) -> Outcome:
        with self.crm.transaction():
            self.crm.emit(
                "email.failed", customer_id, purpose=purpose, template=template.name,
                message_id=message_id, reason=str(error), attempts=attempts,
            )
        return Outcome(Status.FAILED, customer_id, message_id, error=error, attempts=attempts)

    def close(self) -> None:
        self.transport.close()


@attrs.frozen
class _Draft:
    """A message composed for a customer who consented, not yet handed over."""

    customer_id: str
    purpose: str
    template: Template
    message: EmailMessage
    in_reply_to: str | None = None
    case_id: str | None = None
    agent: str | None = None


def _values(customer: Customer, address: str, context: Mapping[str, object] | None) -> dict[str, str]:
    values = {key: str(value) for key, value in customer.attributes.items()}
    values.update(
        customer_id=customer.id, name=customer.name, first_name=customer.name.split()[0],
        email=address, tier=customer.tier or "", language=customer.language or "",
    )
    values.update((key, str(value)) for key, value in (context or {}).items())
    return values


_LINE_BREAKING = re.compile(f"[{v.LINE_BREAKING}\ud800-\udfff]")
"""`values.LINE_BREAKING` and lone surrogates (Cs)."""


def _breaks_lines(value: str) -> bool:
    """True if the text holds a line break of any kind (CR, LF, U+2028/9, NEL...) or a control character."""
    return _LINE_BREAKING.search(value) is not None


_ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[bBqQ]\?[^?\s]*\?=")
"""An RFC 2047 encoded word: a reader decodes it, so text holding one would not read as written."""


def _header_text(value: str, field: str) -> str:
    """Text bound for a header: a line break, a control character or an encoded word is refused,
    not folded away or decoded into something else."""
    if _breaks_lines(value):
        raise ValidationError(field, value, "must not contain line breaks or control characters")
    if "=?" in value and _ENCODED_WORD.search(value):
        raise ValidationError(field, value, "must not contain an encoded word (=?charset?q?...?=)")
    return value


def _put(message: EmailMessage, name: str, value: object, field: str) -> None:
    """Set a header and check what the e-mail library made of it.

    The library decodes RFC 2047 encoded words (`=?utf-8?q?a=0D=0Ab?=`) as it
    parses a header, so text that was clean going in can hold a line break once
    decoded, and the generator would write that break to the wire as a new
    header or body. What the header *means* is checked, after decoding.
    """
    try:
        message[name] = value
        written = value.display_name + value.addr_spec if isinstance(value, Address) else str(value)
        # only an encoded word decodes into something else: without "=?" the header holds the text as given
        decoded = str(message[name]) if "=?" in written else written
    except (ValueError, TypeError, IndexError) as exc:
        del message[name]
        raise ValidationError(field, value, f"is not usable in the {name} header: {exc}") from None
    if _breaks_lines(decoded):
        del message[name]
        raise ValidationError(field, value, f"would put a line break into the {name} header once decoded")


def _address(text: str, field: str, display_name: str | None = None) -> Address:
    name, addr = parseaddr(text) if display_name is None else (display_name, text)
    addr = v.email(addr or text, field)
    try:
        return Address(_header_text(name, f"{field} name"), addr_spec=addr)
    except (ValueError, IndexError) as exc:
        raise ValidationError(field, text, f"is not a usable address: {exc}") from None


# ---------------------------------------------------------------- inbound


class Unknown(enum.StrEnum):
    """What to do with a message from an address no customer has."""

    LEAD = "lead"
    PARK = "park"


class Handled(enum.StrEnum):
    """The one outcome of an inbound message."""

    LOGGED = "logged"
    CASE = "case"
    """Logged, with a new case opened (a message to a support address)."""
    LEAD = "lead"
    """From an unknown sender, now a lead; logged on the lead's timeline."""
    UNSUBSCRIBED = "unsubscribed"
    BOUNCE = "bounce"
    DUPLICATE = "duplicate"
    """Already on the timeline (read again after a crash or a UIDVALIDITY change)."""
    PARKED = "parked"
    """Kept aside for a person: an `email.parked` event names it; it stays on the server."""


@attrs.frozen
class PollReport:
    handled: Mapping[Handled, int]
    cursor: Cursor | None

    @property
    def total(self) -> int:
        return sum(self.handled.values())


class Poller:
    """Reads a mailbox into the CRM, message by message, from where it last stopped."""

    def __init__(
        self,
        crm: CRM,
        mailbox: Mailbox,
        state: CursorStore,
        *,
        name: str = "inbox",
        support: Iterable[str] = (),
        unsubscribe: str | None = None,
        marketing: Iterable[str] = MARKETING,
        unknown: Unknown | str = Unknown.PARK,
        batch: int = 100,
        max_bytes: int = 10 * 2**20,
    ) -> None:
        self.crm = crm
        self.mailbox = mailbox
        self.state = state
        self.name = v.text(name, "name", max_length=64)
        self.support = frozenset(v.email(a, "support").lower() for a in support)
        self.unsubscribe = None if unsubscribe is None else v.email(unsubscribe, "unsubscribe").lower()
        self.marketing = frozenset(v.name(p, "marketing") for p in marketing)
        self.unknown = Unknown(unknown)
        self.batch = batch
        self.max_bytes = max_bytes

    def poll(self, *, limit: int | None = None) -> PollReport:
        """Handle every new message (at most `limit`), saving the cursor after each batch.

        The cursor never runs ahead of what was handled; if it lags (a crash in
        mid-batch), the messages read again are recognised by their Message-ID
        and come out as DUPLICATE, so nothing is logged twice.
        """
        counts: Counter[Handled] = Counter()
        cursor = saved = self.state.load()
        try:
            while limit is None or counts.total() < limit:
                room = self.batch if limit is None else min(self.batch, limit - counts.total())
                batch = self.mailbox.fetch(cursor, limit=room, max_bytes=self.max_bytes)
                if cursor is None or cursor.uidvalidity != batch.uidvalidity:
                    cursor = Cursor(batch.uidvalidity, 0)
                for received in batch.messages:
                    counts[self.handle(received, uidvalidity=batch.uidvalidity)] += 1
                    cursor = Cursor(batch.uidvalidity, received.uid)
                if cursor != saved:
                    self.state.save(cursor)
                    saved = cursor
                if not batch.messages:
                    break
        finally:
            if cursor is not None and cursor != saved:
                self.state.save(cursor)
        return PollReport(dict(counts), cursor)

    def close(self) -> None:
        self.mailbox.close()

    def run(self, stop: threading.Event, *, interval: float = 30.0) -> None:
        """Poll until `stop` is set; a mailbox or storage outage is logged and retried."""
        while not stop.is_set():
            try:
                self.poll()
            except (MailboxError, StorageError):
                log.exception("polling %s failed; trying again in %s s", self.name, interval)
            stop.wait(interval)

    def handle(self, received: Received, *, uidvalidity: int = 0) -> Handled:
        """One message into the CRM, all or nothing; anything unexpected parks it.

        Only a storage failure propagates (so the cursor does not move past it).
        """
        try:
            message = _PARSER.parsebytes(received.raw)
            with self.crm.transaction():
                return self._handle(message, received, uidvalidity)
        except (StorageError, ConflictError):
            raise
        except Exception as exc:  # hostile or broken input must not stop the poller
            return self._park(received, uidvalidity, f"{type(exc).__name__}: {exc}", None)

    def _handle(self, message: EmailMessage, received: Received, uidvalidity: int) -> Handled:
        sender = _sender(message)
        if _is_bounce(message, sender):
            return self._bounce(message, received, uidvalidity)
        if sender is None:
            return self._park(received, uidvalidity, "no usable sender address", message)
        address, display = sender
        customer = self.crm.customers.by_email(address)
        unsubscribing = self._is_unsubscribe(message)
        automatic = (_text(message, "Auto-Submitted").strip().lower() or "no") != "no"
        handled = Handled.LOGGED
        if customer is None:
            if unsubscribing or automatic or self.unknown is Unknown.PARK:
                return self._park(received, uidvalidity, "unknown sender", message)
            customer = self.crm.customers.add(
                Customer.new(name=_clean(display, 200) or address.split("@")[0], emails=[address],
                             lifecycle=LifecycleStage.LEAD)
            )
            handled = Handled.LEAD
        reference = _reference(message, received)
        if self._already_logged(customer.id, reference, received):
            return Handled.DUPLICATE
        subject = _clean(_text(message, "Subject"), 1000)
        if unsubscribing:
            self._withdraw(customer, self._purposes(subject), "email-unsubscribe")
            self._log(customer.id, received.received_at, subject, reference, None, None, "unsubscribed")
            return Handled.UNSUBSCRIBED
        reply_to = _replied_id(message)
        original = self._find(customer.id, reply_to) if reply_to else None
        case_id = original.case_id if original is not None else None
        if case_id is not None:
            case = self.crm.cases.get(case_id)
            if case.status.is_open:
                self.crm.cases.update(attrs.evolve(case, contacts=case.contacts + 1))
        elif not automatic and self.support & _recipients(message):
            case_id = self.crm.cases.open(
                customer.id, CaseKind.REQUEST, subject or "(no subject)", channel=Channel.EMAIL
            ).id
            handled = Handled.CASE if handled is Handled.LOGGED else handled
        at = received.received_at
        if original is not None and original.occurred_at >= at:  # IMAP dates are in whole seconds
            at = original.occurred_at + timedelta(microseconds=1)  # a reply never precedes its question
        self._log(customer.id, at, subject, reference, reply_to, case_id)
        return handled

    def _log(
        self, customer_id: str, at: datetime, subject: str, reference: str,
        in_reply_to: str | None, case_id: str | None, outcome: str | None = None,
    ) -> None:
        self.crm.interactions.log(
            customer_id, channel=Channel.EMAIL, direction=Direction.INBOUND, at=at,
            subject=subject, reference=reference, in_reply_to=in_reply_to, case_id=case_id,
            outcome=outcome,
        )

    def _already_logged(self, customer_id: str, reference: str, received: Received) -> bool:
        found = self.crm.interactions.by_reference(customer_id, reference)
        return any(i.direction is Direction.INBOUND for i in found)

    def _find(self, customer_id: str, reference: str) -> Interaction | None:
        return next(iter(self.crm.interactions.by_reference(customer_id, reference)), None)

    def _is_unsubscribe(self, message: EmailMessage) -> bool:
        if self.unsubscribe is not None and self.unsubscribe in _recipients(message):
            return True
        words = _text(message, "Subject").split()
        return bool(words) and words[0].lower() == "unsubscribe"

    def _purposes(self, subject: str) -> frozenset[str]:
        """The purpose named after "unsubscribe" if it is a marketing one, else all of them."""
        words = subject.lower().split()
        named = words[1] if len(words) > 1 else None
        return frozenset({named}) if named in self.marketing else self.marketing

    def _withdraw(self, customer: Customer, purposes: Iterable[str], source: str) -> list[str]:
        withdrawn = []
        for purpose in sorted(purposes):
            answer = customer.consent(purpose, Channel.EMAIL)
            if answer is None or answer.status is ConsentStatus.GRANTED:
                self.crm.customers.set_consent(
                    customer.id, purpose, Channel.EMAIL, ConsentStatus.WITHDRAWN, source=source
                )
                withdrawn.append(purpose)
        return withdrawn

    def _bounce(self, message: EmailMessage, received: Received, uidvalidity: int) -> Handled:
        failures = _hard_bounces(message)
        if not failures:
            return self._park(received, uidvalidity, "bounce without a permanent failure report", message)
        for address, status in failures:
            customer = self.crm.customers.by_email(address)
            if customer is None:
                continue
            granted = [c.purpose for c in customer.consents
                       if c.channel is Channel.EMAIL and c.status is ConsentStatus.GRANTED]
            withdrawn = self._withdraw(customer, granted, f"bounce {status}")
            self.crm.emit("email.bounced", customer.id, address=address, status=status, withdrawn=withdrawn,
                          message_id=_reference(message, received))
        return Handled.BOUNCE

    def _park(self, received: Received, uidvalidity: int, reason: str, message: Message | None) -> Handled:
        def header(name: str) -> str:
            return _clean(_text(message, name), 300) if message is not None else ""

        with self.crm.transaction():
            self.crm.emit(
                "email.parked", self.name, uid=received.uid, uidvalidity=uidvalidity,
                size=received.size, truncated=received.truncated, reason=_clean(reason, 300),
                sender=header("From"), subject=header("Subject"), message_id=header("Message-ID"),
            )
        return Handled.PARKED


def _clean(value: str, limit: int) -> str:
    """Untrusted header text made storable: valid UTF-8, no control characters, bounded."""
    text = value.encode("utf-8", "replace").decode("utf-8")
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cs") else ch for ch in text)
    return " ".join(text.split())[:limit]


def _first_id(value: str | None) -> str | None:
    found = _MSGID.search(value or "")
    return found.group(0) if found else None


def _replied_id(message: EmailMessage) -> str | None:
    """The Message-ID this one answers: In-Reply-To, else the last of References."""
    replied = _first_id(_text(message, "In-Reply-To"))
    if replied is None:
        references = _MSGID.findall(_text(message, "References"))
        replied = references[-1] if references else None
    return replied


def _reference(message: EmailMessage, received: Received) -> str:
    """The message's own id (its Message-ID, else a digest): the same on every re-read."""
    return _first_id(_text(message, "Message-ID")) or _digest_id(received.raw)


def _digest_id(raw: bytes) -> str:
    """A stable stand-in for a missing Message-ID, so a re-read is still recognised."""
    return f"<{hashlib.sha256(raw).hexdigest()[:40]}@no-message-id.invalid>"


def _text(message: Message, name: str) -> str:
    """A header's decoded text; its raw text when decoding fails on a hostile encoding."""
    try:
        return str(message.get(name, ""))
    except Exception:
        return next(iter(_raw(message, name)), "")


def _addresses(message: Message, *names: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of the headers named, decoded leniently."""
    found: list[tuple[str, str]] = []
    for name in names:
        try:
            for header in message.get_all(name, []):
                found += [(a.display_name, a.addr_spec) for a in getattr(header, "addresses", ())]
        except Exception:
            found += getaddresses(_raw(message, name))
    return found


def _raw(message: Message, name: str) -> list[str]:
    return [str(value) for key, value in message.raw_items() if key.lower() == name.lower()]


def _sender(message: EmailMessage) -> tuple[str, str] | None:
    """(canonical address, display name) of the first From address, or None."""
    found = _addresses(message, "From")
    if not found:
        return None
    display, address = found[0]
    try:
        return v.email(_clean(address, 320), "from"), display
    except ValidationError:
        return None


def _recipients(message: EmailMessage) -> set[str]:
    return {
        _clean(address, 320).lower()
        for _, address in _addresses(message, "To", "Cc", "Delivered-To", "X-Original-To")
    }


def _is_bounce(message: EmailMessage, sender: tuple[str, str] | None) -> bool:
    if message.get_content_type() == "multipart/report":
        return str(message.get_param("report-type", "")).lower() == "delivery-status"
    return sender is not None and sender[0].split("@")[0].lower() in ("mailer-daemon", "postmaster")


def _hard_bounces(message: Message) -> list[tuple[str, str]]:
    """(address, status) of every recipient a delivery report says failed for good (5.x.x)."""
    found = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        for block in blocks[1:] if isinstance(blocks, list) else ():
            if not isinstance(block, Message):
                continue
            action = str(block.get("Action", "")).strip().lower()
            status = str(block.get("Status", "")).strip()
            recipient = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
            address = recipient.split(";", 1)[-1].strip()
            if action == "failed" and status.startswith("5"):
                try:
                    found.append((v.email(address, "Final-Recipient"), _clean(status, 20)))
                except ValidationError:
                    continue
    return found


class FileCursor:
    """A `CursorStore` in a small JSON file, replaced atomically and synced to disk.

    Symbolic links are never followed: the new content goes to a fresh file made
    with O_EXCL in the same directory and is renamed over the cursor, and a
    cursor that is a link is refused rather than read (another user who can
    write to the directory must not steer the write to a file of their choice).
    """

    MAX_BYTES = 4096

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> Cursor | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            reason = f"cannot be read as a mailbox cursor: {exc.strerror}"
            raise ValidationError(str(self.path), "...", reason) from None
        try:
            with os.fdopen(fd, "rb") as file:
                raw = file.read(self.MAX_BYTES + 1)
            if len(raw) > self.MAX_BYTES:
                raise ValueError("the file is too large")
            data = json.loads(raw)
            return Cursor(int(data["uidvalidity"]), int(data["uid"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValidationError(str(self.path), "...", f"is not a mailbox cursor: {exc}") from None

    def save(self, cursor: Cursor) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as file:
                json.dump({"uidvalidity": cursor.uidvalidity, "uid": cursor.uid}, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)  # renames over a link; never writes through one
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
