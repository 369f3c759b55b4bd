"""Assignment: who owns a case, a customer, an account or an opportunity, and why.

The built-in rules narrow the staff down (active agents of the right team, with the
skills and the language asked for, at the service point or covering the territory),
then choose among those left: the least loaded (open cases against capacity) or the
next in turn (round-robin). A company rule (`crmcore_assign` hook) sees the same
candidates first and may decide instead. Every decision comes back as an `Assignment`
that names its rule and says why in words; it is kept on the record and emitted as
an `assignment.made` event.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from crmcore import values as v
from crmcore.errors import Unassignable, ValidationError
from crmcore.model import Agent, Assignment, Case, Team

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.ports import UnitOfWork

RULES = ("least_loaded", "round_robin")
"""The built-in ways of choosing among the agents that qualify."""

LOAD_LOCK = "least_loaded"
"""The `Turns` row every assignment that reads the load takes first (pools are JSON lists,
so it is nobody's pool): they queue on it, each reading the load its predecessor left."""


def _names(values: Iterable[str] | None) -> frozenset[str]:
    return frozenset(v.name(x, "skills") for x in values or ())


@attrs.frozen
class WorkItem:
    """What needs an owner, and what the owner must be able to do."""

    kind: str = attrs.field(validator=v.check(v.name))
    id: str = attrs.field(validator=v.is_text(64))
    skills: frozenset[str] = attrs.field(default=frozenset(), converter=_names)
    language: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    team: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    service_point: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    territory: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    customer_id: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))


class Staff:
    """The agents of a CRM indexed for assignment: each filter is a set look-up, so a
    decision among a thousand agents costs a few set intersections and one scan of the
    agents left. It also knows the teams, to refuse an unknown one without a read."""

    def __init__(self, agents: Iterable[Agent], teams: Iterable[Team] = ()) -> None:
        self.agents = {a.id: a for a in agents if a.active}
        self.teams = frozenset(t.id for t in teams)
        self.by_team: dict[str, set[str]] = {}
        self.by_skill: dict[str, set[str]] = {}
        self.by_language: dict[str, set[str]] = {}
        self.by_place: dict[str, set[str]] = {}
        for agent in self.agents.values():
            if agent.team:
                self.by_team.setdefault(agent.team, set()).add(agent.id)
            for skill in agent.skills:
                self.by_skill.setdefault(skill, set()).add(agent.id)
            for language in agent.languages:
                self.by_language.setdefault(language, set()).add(agent.id)
            for place in {agent.service_point, *agent.territories} - {None}:
                self.by_place.setdefault(str(place), set()).add(agent.id)

    def candidates(self, item: WorkItem) -> tuple[list[Agent], list[str]]:
        """The agents every filter lets through (by id), and the filters applied, in words."""
        sets: list[set[str]] = []
        said: list[str] = []
        if item.team:
            sets.append(self.by_team.get(item.team, set()))
            said.append(f"team {item.team}")
        for skill in sorted(item.skills):
            sets.append(self.by_skill.get(skill, set()))
            said.append(f"skill {skill}")
        if item.language:
            sets.append(self.by_language.get(item.language, set()))
            said.append(f"language {item.language}")
        place = item.territory or item.service_point
        if place:
            sets.append(self.by_place.get(place, set()))
            said.append(f"territory {place}")
        if not sets:
            return sorted(self.agents.values(), key=lambda a: a.id), said
        sets.sort(key=len)
        ids = set(sets[0]).intersection(*sets[1:])
        return [self.agents[i] for i in sorted(ids)], said


Turn = Callable[[str], int]
"""Takes the next turn of a pool of agents (`Turns.take`, or `peek` for a decision not kept)."""


class Decider:
    """Chooses among candidates. Round-robin turns are counted per pool of agents (the
    team, skills, language and place asked for) by the `turn` given, the storage's shared
    counter; without one, in this object (one process's turns)."""

    def __init__(self) -> None:
        self._turns: dict[str, int] = {}

    def _local_turn(self, pool: str) -> int:
        self._turns[pool] = self._turns.get(pool, -1) + 1
        return self._turns[pool]

    def choose(
        self, rule: str, item: WorkItem, candidates: list[Agent], loads: dict[str, int],
        filters: list[str], now: datetime, turn: Turn | None = None,
    ) -> Assignment:
        if not candidates:
            wanted = ", ".join(filters) or "any active agent"
            raise Unassignable(f"no agent can take {item.kind} {item.id}: none with {wanted}")
        qualified = f"{len(candidates)} agent(s) with {', '.join(filters) or 'no condition'}"
        if rule == "round_robin":
            taken = (turn or self._local_turn)(pool_of(item))
            chosen = candidates[taken % len(candidates)]
            reason = f"{qualified}; next in turn ({taken}): {chosen.id}"
        elif rule == "least_loaded":
            chosen = min(candidates, key=lambda a: (loads.get(a.id, 0) / a.capacity, a.id))
            reason = (f"{qualified}; least loaded: {chosen.id} with {loads.get(chosen.id, 0)} "
                      f"open case(s) for a capacity of {chosen.capacity}")
        else:
            raise ValidationError("rule", rule, f"must be one of {', '.join(RULES)}")
        team = item.team or chosen.team
        return Assignment(chosen.id, rule, reason[:500], now, team)


def pool_of(item: WorkItem) -> str:
    """The round-robin pool an item draws from: the same conditions, the same turns."""
    place = item.territory or item.service_point
    return json.dumps([item.team, sorted(item.skills), item.language, place])


class Assigner:
    """`crm.operational.assignment`: assign records by rule, keep and announce why."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm
        self.decider = Decider()
        self._kept: tuple[int, Staff] | None = None
        """The staff index and the storage's staff generation it was read at."""

    def decide(self, item: WorkItem, *, rule: str = "least_loaded") -> Assignment:
        """Who should own `item`, and why; writes nothing (round-robin: whose turn it is)."""
        with self.crm.reading() as uow:
            return self._decide(uow, item, rule, keep=False)

    def _decide(self, uow: UnitOfWork, item: WorkItem, rule: str, *, keep: bool = True) -> Assignment:
        if rule not in RULES:
            raise ValidationError("rule", rule, f"must be one of {', '.join(RULES)}")
        staff = self.staff(uow)
        if item.team is not None and item.team not in staff.teams:
            raise ValidationError("team", item.team, "no such team")
        candidates, filters = staff.candidates(item)
        hook = self.crm.plugins.hook.crmcore_assign
        turns = getattr(uow, "turns", None)  # a storage without shared turns: this process's
        loads: dict[str, int] = {}
        if candidates and (rule == "least_loaded" or hook.get_hookimpls()):
            if keep and turns is not None:
                # assignments by load take turns across processes: the row stays locked
                # until this one commits, so the next reads a load that counts this case
                turns.take(LOAD_LOCK)
            # the load changes with every assignment, by any process: read it now, for these
            loads = uow.cases.open_load([a.id for a in candidates])
        now = self.crm.clock()
        chosen = hook(item=item, candidates=candidates, loads=loads, now=now)
        if chosen is not None:
            if not isinstance(chosen, Assignment) or chosen.agent not in staff.agents:
                raise ValidationError("crmcore_assign", chosen, "must name an active agent")
            return chosen
        turn = None if turns is None else turns.take if keep else turns.peek
        return self.decider.choose(rule, item, candidates, loads, filters, now, turn)

    def staff(self, uow: UnitOfWork) -> Staff:
        """The staff index as this transaction sees it: the one kept while the storage's
        staff generation is unchanged (one read), else read anew and kept. The generation is
        read before the staff, so an index is never labelled newer than what it holds; one
        built by a transaction that changed the staff itself is used but not kept."""
        counter = getattr(uow, "staff_generation", None)  # a storage without one: read each time
        generation = None if counter is None else counter.current()
        kept = self._kept
        if generation is not None and kept is not None and kept[0] == generation:
            return kept[1]
        staff = Staff(_every(uow.agents), _every(uow.teams))
        if generation is not None:
            self._kept = (generation, staff)
        return staff

    def case(self, case_id: str, *, rule: str = "least_loaded", skills: Iterable[str] = (),
             language: str | None = None, team: str | None = None,
             territory: str | None = None) -> Case:
        """Give a case an owner by rule; its team and service point narrow the choice."""
        with self.crm.transaction() as uow:
            case = uow.cases.get(case_id)
            item = WorkItem("case", case_id, frozenset(skills), language, team or case.team,
                            case.service_point if territory is None else None, territory,
                            case.customer_id)
            decided = self._decide(uow, item, rule)
            stored = self.crm.operational.cases.assign(case_id, decided)
            self._announce(item, decided)
            return stored

    def customer(self, customer_id: str, **wanted: Any) -> Assignment:
        """Choose the customer's owner (their language and service point narrow the choice)."""
        with self.crm.transaction() as uow:
            customer = uow.customers.get(customer_id)
            wanted.setdefault("language", _primary_language(customer.language))
            wanted.setdefault("territory", customer.service_point)
            decided, item = self._owner(uow, "customer", customer_id, customer_id, wanted)
            self.crm.customers.update(attrs.evolve(customer, owner=decided.agent, assignment=decided))
            self._announce(item, decided)
            return decided

    def account(self, account_id: str, **wanted: Any) -> Assignment:
        with self.crm.transaction() as uow:
            account = uow.accounts.get(account_id)
            wanted.setdefault("territory", account.service_point)
            decided, item = self._owner(uow, "account", account_id, None, wanted)
            self.crm.operational.accounts.update(
                attrs.evolve(account, owner=decided.agent, assignment=decided))
            self._announce(item, decided)
            return decided

    def opportunity(self, opportunity_id: str, **wanted: Any) -> Assignment:
        with self.crm.transaction() as uow:
            deal = uow.opportunities.get(opportunity_id)
            decided, item = self._owner(uow, "opportunity", opportunity_id, deal.customer_id, wanted)
            self.crm.opportunities.update(attrs.evolve(deal, owner=decided.agent, assignment=decided))
            self._announce(item, decided)
            return decided

    def _owner(
        self, uow: UnitOfWork, kind: str, id: str, customer_id: str | None, wanted: dict[str, Any]
    ) -> tuple[Assignment, WorkItem]:
        rule = wanted.pop("rule", "least_loaded")
        item = WorkItem(kind, id, customer_id=customer_id, **wanted)
        return self._decide(uow, item, rule), item

    def _announce(self, item: WorkItem, decided: Assignment) -> None:
        self.crm.emit(
            "assignment.made", item.id, kind=item.kind, agent=decided.agent, team=decided.team,
            rule=decided.rule, reason=decided.reason, customer_id=item.customer_id,
        )


def _primary_language(tag: str | None) -> str | None:
    """'fr-FR' -> 'fr': agents list the languages they speak, not regional variants."""
    primary = (tag or "").split("-")[0].split("_")[0].strip().lower()
    return primary if primary.isalpha() else None


def _every(repository: Any, page: int = 1000) -> Iterable[Any]:
    after: str | None = None
    while True:
        batch: list[Any] = repository.list(after=after, limit=page)
        yield from batch
        if len(batch) < page:
            return
        after = batch[-1].id
