"""Every hook a crmcore plugin can implement.

Hooks are called with keyword arguments. Contributions (adapters, rule functions,
scorers) come through `crmcore_register_*` hooks that return lists; `firstresult`
is used only where one answer is wanted. A plugin is a module or object with
functions marked `@crmcore.hookimpl`, registered under the entry-point group
`crmcore` (the built-in adapters register exactly that way).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.events import Event
    from crmcore.model import Customer

hookspec = pluggy.HookspecMarker("crmcore")
hookimpl = pluggy.HookimplMarker("crmcore")


@attrs.frozen
class Adapter:
    """An adapter for one URL scheme: `open(url)` returns an object implementing the port."""

    scheme: str
    open: Callable[[str], Any]


@hookspec
def crmcore_register_storage() -> list[Adapter]:
    """Storage adapters this plugin provides, one per URL scheme (`sqlite`, `memory`, ...).

    Called when a storage URL is opened. Each `Adapter.open(url)` must return an
    object implementing `crmcore.ports.Storage`.
    """
    raise NotImplementedError


@hookspec
def crmcore_register_email_transports() -> list[Adapter]:
    """Outbound e-mail transports by URL scheme (`smtp`, `smtps`, ...).

    `Adapter.open(url)` returns an object implementing `crmcore.ports.EmailTransport`.
    """
    raise NotImplementedError


@hookspec
def crmcore_register_mailboxes() -> list[Adapter]:
    """Inbound mailboxes by URL scheme (`imap`, `imaps`, ...).

    `Adapter.open(url)` returns an object implementing `crmcore.ports.Mailbox`.
    """
    raise NotImplementedError


@hookspec
def crmcore_register_telephony() -> list[Adapter]:
    """Telephony backends by URL scheme (`baresip`, ...).

    `Adapter.open(url)` returns an object implementing `crmcore.ports.Telephony`.
    """
    raise NotImplementedError


@hookspec
def crmcore_register_rule_functions() -> list[Any]:
    """Functions usable in segment rules (`crmcore.segments.RuleFunction`), each with an
    optional SQL translation per dialect.

    Called when a rule is compiled. Without a SQL translation for the storage's
    dialect, the rule is evaluated in Python and the compiled plan says so.
    """
    raise NotImplementedError


@hookspec
def crmcore_register_scorers() -> list[Any]:
    """Scorers (RFM, CLV, churn, lead, ...) this plugin provides: `crmcore.scoring.registry.Scorer`
    objects, a `name` plus `score(crm, as_of) -> Iterable[Score]`.

    Called when scores are computed; each result is stored as a dated snapshot
    that segment rules can read.
    """
    raise NotImplementedError


@hookspec
def crmcore_register_commands() -> list[Any]:
    """Subcommands this plugin adds to the `crmcore` command line.

    Called once when the command line starts. Return a list of `typer.Typer` apps,
    each created with a `name`; each becomes a group of subcommands, `crmcore NAME
    COMMAND ...`. A name that clashes with an existing command is refused with a
    clear error.
    """
    raise NotImplementedError


@hookspec
def crmcore_validate_customer(customer: Customer) -> None:
    """Company rules on a customer, checked before every add and update.

    Raise `crmcore.errors.ValidationError` to refuse the write; nothing is stored.
    """


@hookspec
def crmcore_on_event(event: Event, crm: CRM) -> None:
    """An event subscriber, called after the transaction that wrote `event` committed.

    Delivery is at least once: a subscriber that raises is called again with the
    same event later (its `id` lets it ignore a repeat); other subscribers are
    not held back by it.
    """


@hookspec(firstresult=True)
def crmcore_route_call(call: Any, waiting: list[Any], agents: list[Any], now: datetime) -> Any:
    """Override call routing: return an assignment, or None to leave it to the default."""


@hookspec(firstresult=True)
def crmcore_send_verification(crm: CRM, customer_id: str, kind: str, address: str, token: str) -> bool | None:
    """Deliver a verification token to a contact detail a customer added in self-service.

    Called inside the transaction that records the detail as pending, for a phone
    number (`kind` "phone", `address` in E.164) and for an e-mail address when the
    session has no mailer (`kind` "email"). Send `token` to `address` (an SMS, a
    voice call, a message) and return True; return None to leave it to another
    plugin. When no plugin sends it, the change is refused and nothing is written;
    raising a `CRMError` refuses it the same way.
    """


# operational: company assignment rules and automation actions


@hookspec(firstresult=True)
def crmcore_assign(item: Any, candidates: list[Any], loads: dict[str, int], now: datetime) -> Any:
    """A company rule choosing who owns a record, consulted before the built-in rules.

    Called by `crm.operational.assignment` for every assignment, with the
    `crmcore.operational.assignment.WorkItem` to place, the agents the built-in filters
    left (`crmcore.model.Agent`, active, of the right team, skills, language and
    territory), the number of open cases each agent owns, and the CRM's current time.
    Return a `crmcore.model.Assignment` (its `rule` names your rule and its `reason` says
    why, for the record) to decide, or None to leave the choice to the built-in rule.
    """


@hookspec(firstresult=True)
def crmcore_survivorship(survivor: Customer, merged: Customer, proposed: Customer) -> Customer | None:
    """Company rules for a merge: the survivor's record as it should be stored.

    Called inside the merge's transaction, after the field-by-field policy built
    `proposed` (the survivor's id and version, fields chosen from both records).
    Return a changed copy (`attrs.evolve(proposed, ...)`) or None to accept it.
    Raise `crmcore.errors.ValidationError` to refuse the merge; nothing is written.
    """


@hookspec
def crmcore_register_actions() -> list[Any]:
    """Automation actions this plugin provides: `crmcore.operational.automation.Action`
    objects, a `name` plus `run(crm, event, customer, params) -> str` (a short outcome).

    Called when automation rules are run; a rule names its actions, and the action runs
    in the transaction that logs the run, so a failure undoes what it wrote.
    """
    raise NotImplementedError


# sales: a provider of exchange rates behind the stored ones


@hookspec(firstresult=True)
def crmcore_exchange_rates(base: str, quote: str, on: date) -> Decimal | None:
    """A rates provider: units of `quote` for one unit of `base` on day `on`.

    Called by `crm.rates` when the rates the company stored have none for that pair
    on or before that day. Return a positive Decimal, or None to leave it to the next
    provider (with no answer at all, the rate is `NotFound`).
    """


@hookspec
def crmcore_on_merge(crm: CRM, survivor_id: str, merged_id: str) -> dict[str, Any] | None:
    """Move a plugin's own data of customer `merged_id` to `survivor_id`.

    Called inside the merge's transaction (write through `crm.transaction()`, which
    joins it; raising rolls the whole merge back). Return `{plugin_name: undo_data}`
    with JSON-able data enough to undo the move, or None; it is kept in the merge
    journal and handed back to `crmcore_on_unmerge`.
    """


@hookspec
def crmcore_on_unmerge(crm: CRM, survivor_id: str, merged_id: str, journal: dict[str, Any]) -> None:
    """Undo what `crmcore_on_merge` did: `journal` maps plugin names to the data they returned.

    Called inside the unmerge's transaction, after the core rows went back.
    """


@hookspec
def crmcore_export_person(crm: CRM, customer_id: str) -> dict[str, Any] | None:
    """What the plugin holds about a person, for a privacy export.

    Called inside a reading transaction. Return `{section_name: JSON-able data}` (the
    sections join the core's in one document) or None when it holds nothing.
    """


@hookspec
def crmcore_erase_person(crm: CRM, customer_id: str, values: list[str]) -> None:
    """Remove or anonymise everything the plugin holds about a person.

    Called inside the erasure's transaction, before the core's own rows go;
    `values` are the person's names, e-mails, phones and external ids, to search
    free text for. Raising rolls the erasure back.
    """
