"""Automation: "when event E happens and rule R holds for the customer, do actions A".

Rules are configured in code (`crm.operational.automation.add(rule)`) or stored
(`automation.stored.save(...)`, checked against the base and kept with every version; a
stored rule replaces a code rule of the same name), and run as an event subscriber once
`enable()` is called, so they act after the triggering write has
committed, at least once per event; the automation log (storage) lets each rule run
at most once per event. A rule's actions run in one transaction with the log line that
records them: if one fails, everything it wrote is undone and the run is logged
`failed`. Events emitted by a rule's actions carry the rule's name (`caused_by`); when
such an event would trigger the same rule again, the run is logged `loop` and stops.

Actions are plugins (`crmcore_register_actions`); the built-in ones create a task,
assign an owner, add a tag to the customer, make them a campaign member, and e-mail
them a template. An action may
also offer `check(uow, params)`, run when a rule using it is stored.

Side effects outside the base (a message on the wire) cannot be rolled back, so an
action defers them with `after_commit`: they happen once the run is logged, and never
for a run undone (a failure, or a redelivered event the log already holds).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from crmcore import values as v
from crmcore.errors import CRMError, NotFound, ValidationError
from crmcore.events import CAUSED_BY, Event
from crmcore.hookspecs import hookimpl
from crmcore.model import AutomationRun, ConfigKind, Customer, RunOutcome
from crmcore.operational.configuration import Stored

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.operational.mail import Mailer, Template
    from crmcore.ports import UnitOfWork

log = logging.getLogger(__name__)
MAX_CHAIN = 8
"""Rules triggering rules deeper than this are stopped as a loop, even without repetition."""
STORED_RULES_TTL = 5.0
"""Seconds the stored rules are kept between reads (not one read per event); a save or
retirement through this CRM takes effect at once, one made elsewhere within this time."""


class Action(Protocol):
    """An automation action: what it is called in rules, and what it does."""

    @property
    def name(self) -> str: ...

    def run(self, crm: CRM, event: Event, customer: Customer, params: dict[str, str]) -> str:
        """Do it (inside the run's transaction); return a short outcome for the log."""
        ...


def _params(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(x, str) for k, x in value.items()
    ):
        raise ValidationError(attribute.name, value, "must map names to texts")


@attrs.frozen
class ActionCall:
    """One action of a rule, with its parameters."""

    action: str = attrs.field(validator=v.check(v.name))
    params: dict[str, str] = attrs.field(factory=dict, validator=_params)


def _steps(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not value or not all(isinstance(s, ActionCall) for s in value):
        raise ValidationError(attribute.name, value, "a rule needs at least one ActionCall")


@attrs.frozen
class Rule:
    name: str = attrs.field(validator=v.check(v.name))
    on: str = attrs.field(validator=v.check(v.name))
    """The event topic that triggers it ('case.sla_breached', 'interaction.logged', ...)."""
    steps: tuple[ActionCall, ...] = attrs.field(converter=v.as_tuple, validator=_steps)
    condition: str | None = attrs.field(default=None, validator=v.optional(v.is_text(5000)))
    """A segment rule the customer must satisfy at the time of the event (None: always)."""


_AFTER_COMMIT: ContextVar[list[Callable[[], None]] | None] = ContextVar("crmcore_after_commit", default=None)


def after_commit(work: Callable[[], None]) -> None:
    """Do `work` once the running rule's log line has committed (at once, outside a rule)."""
    pending = _AFTER_COMMIT.get()
    if pending is None:
        work()
    else:
        pending.append(work)


# ---- built-in actions ----


@attrs.frozen
class CreateTask:
    """`create_task`: title, due_in_hours, owner ('customer_owner', 'case_agent' or an agent id)."""

    name: str = "create_task"

    def run(self, crm: CRM, event: Event, customer: Customer, params: dict[str, str]) -> str:
        case_id = event.aggregate_id if event.topic.startswith("case.") else None
        owner = params.get("owner")
        if owner == "customer_owner":
            owner = customer.owner
        elif owner == "case_agent":
            owner = crm.cases.get(case_id).agent if case_id else None
        hours = params.get("due_in_hours")
        due = crm.clock() + timedelta(hours=_number(hours, "due_in_hours")) if hours else None
        task = crm.operational.tasks.create(
            params.get("title", event.topic), due_at=due, owner=owner, customer_id=customer.id,
            case_id=case_id,
        )
        return f"task {task.id} for {owner or 'nobody'}"

    def check(self, uow: UnitOfWork, params: dict[str, str]) -> None:
        _known(params, {"title", "due_in_hours", "owner"})
        owner = params.get("owner")
        if owner not in (None, "customer_owner", "case_agent") and uow.agents.find(owner) is None:
            raise ValidationError("owner", owner, "no such agent (nor customer_owner, case_agent)")
        if "due_in_hours" in params:
            _number(params["due_in_hours"], "due_in_hours")


@attrs.frozen
class Assign:
    """`assign`: the case of the event (or the customer) by `rule`, `skills`, `language`, `team`."""

    name: str = "assign"

    def run(self, crm: CRM, event: Event, customer: Customer, params: dict[str, str]) -> str:
        wanted: dict[str, Any] = {
            "rule": params.get("rule", "least_loaded"),
            "skills": [s for s in params.get("skills", "").split(",") if s],
            "language": params.get("language"), "team": params.get("team"),
        }
        assigner = crm.operational.assignment
        if event.topic.startswith("case."):
            case = assigner.case(event.aggregate_id, **wanted)
            return f"case {case.id} to {case.agent}"
        decided = assigner.customer(customer.id, **wanted)
        return f"customer {customer.id} to {decided.agent}"

    def check(self, uow: UnitOfWork, params: dict[str, str]) -> None:
        _known(params, {"rule", "skills", "language", "team"})
        team = params.get("team")
        if team is not None and uow.teams.find(team) is None:
            raise ValidationError("team", team, "no such team")


@attrs.frozen
class AddTag:
    """`add_tag`: put `tag` on the customer."""

    name: str = "add_tag"

    def run(self, crm: CRM, event: Event, customer: Customer, params: dict[str, str]) -> str:
        tag = v.name(params.get("tag"), "tag")
        current = crm.customers.get(customer.id)
        crm.customers.update(attrs.evolve(current, tags=current.tags | {tag}))
        return f"tagged {tag}"

    def check(self, uow: UnitOfWork, params: dict[str, str]) -> None:
        _known(params, {"tag"})
        v.name(params.get("tag"), "tag")


@attrs.frozen
class JoinCampaign:
    """`join_campaign`: make the customer a member of the launched `campaign` (its id), in
    the group drawn for them alone (`crm.marketing.join`)."""

    name: str = "join_campaign"

    def run(self, crm: CRM, event: Event, customer: Customer, params: dict[str, str]) -> str:
        member = crm.marketing.join(v.text(params.get("campaign"), "campaign", max_length=64), customer.id)
        return f"member of {member.campaign_id} ({member.group})"

    def check(self, uow: UnitOfWork, params: dict[str, str]) -> None:
        _known(params, {"campaign"})
        campaign = uow.campaigns.find(v.text(params.get("campaign"), "campaign", max_length=64))
        if campaign is None:
            raise ValidationError("campaign", params.get("campaign"), "no such campaign")


@attrs.frozen
class SendTemplate:
    """`send_template`: e-mail the customer a stored template (`template`, its name) or one
    given (`subject`, `text`), for `purpose`, through the automation's Mailer.

    The Mailer checks consent for the purpose (a refusal is recorded, nothing sent) and
    refuses any value that would bend a header. The message is composed in the run (a
    fault fails the run) and handed over after it commits, so a run undone sends nothing.
    """

    name: str = "send_template"

    def run(self, crm: CRM, event: Event, customer: Customer, params: dict[str, str]) -> str:
        mailer = crm.operational.automation.mailer
        if mailer is None:
            raise ValidationError("mailer", None, "send_template needs automation.use_mailer(...) first")
        template = self._template(crm, params)
        purpose = v.name(params.get("purpose"), "purpose")
        case_id = event.aggregate_id if event.topic.startswith("case.") else None
        mailer.compose(customer, template, purpose=purpose)  # a value that cannot be sent fails the run now

        def send() -> None:
            sent = mailer.send(customer.id, template, purpose=purpose, case_id=case_id)
            log.info("automation e-mail %s to %s: %s", template.name, customer.id, sent.status)

        after_commit(send)
        return f"e-mail {template.name} for {purpose} handed to the mailer"

    def check(self, uow: UnitOfWork, params: dict[str, str]) -> None:
        _known(params, {"template", "subject", "text", "purpose"})
        v.name(params.get("purpose"), "purpose")
        if "template" in params:
            if {"subject", "text"} & set(params):
                raise ValidationError("template", params["template"], "name a stored template or give "
                                      "subject and text, not both")
            current = uow.configurations.current(str(ConfigKind.MAIL_TEMPLATE), params["template"])
            if current is None or current.retired:
                raise ValidationError("template", params["template"], "no such stored template")
        else:
            _given(params)

    def _template(self, crm: CRM, params: dict[str, str]) -> Template:
        if "template" not in params:
            return _given(params)
        found = crm.operational.mail.templates.get(params["template"])
        if found is None:
            raise ValidationError("template", params["template"], "no such stored template")
        return found


def _given(params: dict[str, str]) -> Template:
    from crmcore.operational.mail import Template

    if "subject" not in params or "text" not in params:
        raise ValidationError("params", sorted(params), "send_template needs template, or subject and text")
    return Template(params["subject"], params["text"], name="automation")


def _known(params: dict[str, str], names: set[str]) -> None:
    unknown = sorted(set(params) - names)
    if unknown:
        raise ValidationError("params", unknown, f"not understood; known: {', '.join(sorted(names))}")


BUILT_IN: tuple[Action, ...] = (CreateTask(), Assign(), AddTag(), JoinCampaign(), SendTemplate())


def _number(text: str, field: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValidationError(field, text, "must be a number") from None


class Automation:
    """`crm.operational.automation`."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm
        self.rules: dict[str, Rule] = {}
        """Rules configured in code, by name (stored ones: `stored`)."""
        self.mailer: Mailer | None = None
        """Where `send_template` hands its messages (`use_mailer`)."""
        self._enabled = False
        self._stored_read: tuple[float, dict[str, Rule]] | None = None

    @functools.cached_property
    def stored(self) -> Stored[Rule]:
        """Rules kept in storage, checked when saved (actions, parameters, condition)."""
        return Stored(self.crm, ConfigKind.AUTOMATION_RULE, Rule, check=self._check_stored,
                      on_change=self._forget_stored)

    def _forget_stored(self) -> None:
        self._stored_read = None

    def use_mailer(self, mailer: Mailer) -> None:
        """The Mailer `send_template` sends through (its consent rules apply)."""
        self.mailer = mailer

    def actions(self) -> dict[str, Action]:
        """Built-in actions, then those of plugins (a plugin may replace a built-in one)."""
        found: dict[str, Action] = {a.name: a for a in BUILT_IN}
        for contributed in self.crm.plugins.hook.crmcore_register_actions():
            for action in contributed:
                found[action.name] = action
        return found

    def add(self, rule: Rule) -> Rule:
        """Check a rule (its actions exist, its condition parses) and start applying it."""
        self._check(rule)
        self.rules[rule.name] = rule
        return rule

    def _check(self, rule: Rule) -> None:
        from crmcore.segments.functions import registry
        from crmcore.segments.parse import checked

        if not isinstance(rule, Rule):
            raise ValidationError("rule", rule, "must be an automation Rule")
        known = self.actions()
        for step in rule.steps:
            if step.action not in known:
                raise ValidationError("action", step.action, f"unknown; known: {', '.join(sorted(known))}")
        if rule.condition is not None:
            checked(rule.condition, registry(self.crm.plugins))

    def enable(self) -> None:
        """Subscribe to events (once); rules then run after each transaction commits."""
        if not self._enabled:
            self.crm.plugins.register(_Subscriber(self), name=f"crmcore-automation-{id(self)}")
            self._enabled = True

    def runs(self, rule: str, *, limit: int | None = None) -> list[AutomationRun]:
        with self.crm.reading() as uow:
            return uow.automation_runs.for_rule(rule, limit=limit)

    def _check_stored(self, uow: UnitOfWork, name: str, rule: Rule) -> None:
        if name != rule.name:
            raise ValidationError("name", name, f"differs from the rule's own name {rule.name!r}")
        self._check(rule)
        known = self.actions()
        for step in rule.steps:
            check = getattr(known[step.action], "check", None)
            if check is not None:
                check(uow, step.params)

    def in_force(self) -> dict[str, Rule]:
        """The rules that apply: those configured in code, replaced by stored ones of the same
        name (read at most every `STORED_RULES_TTL` seconds)."""
        now, read = time.monotonic(), self._stored_read
        if read is None or now - read[0] > STORED_RULES_TTL:
            with self.crm.reading() as uow:
                read = self._stored_read = (now, self.stored.in_force(uow))
        return {**self.rules, **read[1]}

    def handle(self, event: Event) -> list[AutomationRun]:
        """Run every rule listening to this event's topic; returns the runs logged."""
        done = []
        for rule in [r for r in self.in_force().values() if r.on == event.topic]:
            found = self._run(rule, event)
            if found is not None:
                done.append(found)
        return done

    def _run(self, rule: Rule, event: Event) -> AutomationRun | None:
        chain = tuple(event.payload.get("caused_by") or ())
        customer = self._customer(event)

        def record(outcome: RunOutcome, detail: str, actions: tuple[str, ...] = ()) -> AutomationRun:
            return AutomationRun(
                v.new_id(), rule.name, event.id, event.topic, self.crm.clock(), outcome,
                customer.id if customer else None, actions, detail[:2000],
            )

        if rule.name in chain or len(chain) >= MAX_CHAIN:
            return self._log(record(
                RunOutcome.LOOP,
                f"stopped: triggered by its own actions ({' > '.join((*chain, rule.name))})"))
        if customer is None:
            return self._log(record(RunOutcome.SKIPPED, "the event names no customer"))
        actions = self.actions()
        token = CAUSED_BY.set((*chain, rule.name))
        try:
            deferred: list[Callable[[], None]] = []
            pending = _AFTER_COMMIT.set(deferred)
            try:
                with self.crm.transaction() as uow:
                    if not self._holds(rule, customer):
                        run = record(RunOutcome.SKIPPED, "condition false")
                    else:
                        outcomes = [actions[s.action].run(self.crm, event, customer, s.params)
                                    for s in rule.steps]
                        run = record(RunOutcome.DONE, "; ".join(outcomes),
                                     tuple(s.action for s in rule.steps))
                    if not uow.automation_runs.record(run):
                        raise _AlreadyRan
                    self.crm.emit("automation.ran", rule.name, event_id=event.id, outcome=str(run.outcome))
            except _AlreadyRan:
                return None
            except Exception as exc:  # an action failed: its writes are undone, the failure logged
                log.warning("automation rule %s failed on %s: %r", rule.name, event.id, exc)
                return self._log(record(RunOutcome.FAILED, repr(exc)))
            finally:
                _AFTER_COMMIT.reset(pending)
            for work in deferred:  # the run is logged: now what cannot be undone, still as the rule
                try:
                    work()
                except CRMError as exc:
                    log.warning("automation rule %s on %s: after commit: %r", rule.name, event.id, exc)
            return run
        finally:
            CAUSED_BY.reset(token)

    def _log(self, run: AutomationRun) -> AutomationRun | None:
        with self.crm.transaction() as uow:
            return run if uow.automation_runs.record(run) else None

    def _holds(self, rule: Rule, customer: Customer) -> bool:
        if rule.condition is None:
            return True
        from crmcore.segments.context import Context
        from crmcore.segments.evaluate import UowSource, members
        from crmcore.segments.functions import registry
        from crmcore.segments.parse import checked

        tree, types = checked(rule.condition, registry(self.crm.plugins))
        with self.crm.reading() as uow:
            fresh = uow.customers.get(customer.id)
            return bool(members(tree, types, Context(self.crm.clock()), [fresh], UowSource(uow)))

    def _customer(self, event: Event) -> Customer | None:
        """The customer an event is about: named in its payload, or its aggregate."""
        with self.crm.reading() as uow:
            named = event.payload.get("customer_id")
            if isinstance(named, str):
                return uow.customers.find(named)
            if event.topic.startswith("case."):
                case = uow.cases.find(event.aggregate_id)
                return None if case is None else uow.customers.find(case.customer_id)
            return uow.customers.find(event.aggregate_id)


class _AlreadyRan(Exception):
    """The log already holds this rule's run for this event (a redelivery): undo and skip."""


class _Subscriber:
    def __init__(self, automation: Automation) -> None:
        self.automation = automation

    @hookimpl
    def crmcore_on_event(self, event: Event) -> None:
        try:
            self.automation.handle(event)
        except NotFound:  # the record went away before the rule could look at it
            log.info("automation skipped %s: its record is gone", event.id)
