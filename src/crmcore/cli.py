"""The `crmcore` command.

Built on typer (with rich for tables and progress). Every command that works on a
base takes `--url` (or the `CRMCORE_URL` environment variable); the commands for data
in and out, segments, scores, the report, migrations and the event worker live in
`crmcore.commands`, and plugins add their own through the `crmcore_register_commands`
hook. Errors are one line on stderr and a non-zero exit (2: bad input or a refused
request; 1: anything unexpected); `crmcore --debug ...` shows the traceback instead.

The sections of the demo summary are a registry: a later feature adds one with
`@section(...)` without touching the code that prints the rest.
"""

from __future__ import annotations

import collections
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import attrs
import typer

from crmcore import values as v
from crmcore.crm import CRM
from crmcore.errors import CRMError, PluginError, ValidationError
from crmcore.model import CaseKind, CaseStatus, Channel, Customer, Interaction, Purchase, Stage
from crmcore.synthetic import AS_OF, SyntheticBase

EXIT_REFUSED = 2
"""Bad input, or a request the library refused (a `CRMError`)."""
EXIT_FAILED = 1
"""Something unexpected (a bug, or the reader of the output left)."""


class State:
    debug = False


def _new_app() -> typer.Typer:
    return typer.Typer(
        name="crmcore", help="One customer record for every service point and channel.",
        no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


app = _new_app()
"""crmcore's own commands; `build()` adds the plugins' to a copy, fresh on every run."""


def _version(value: bool) -> None:
    if value:
        from crmcore import __version__

        typer.echo(f"crmcore {__version__}")
        raise typer.Exit()


@app.callback()
def _top(
    debug: Annotated[bool, typer.Option("--debug", envvar="CRMCORE_DEBUG",
                                        help="Show the traceback of an error.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    State.debug = debug


def build() -> Any:
    """The command: crmcore's own subcommands, then every plugin's."""
    from crmcore import commands

    commands.register(app)
    whole = _new_app()
    whole.registered_callback = app.registered_callback
    whole.registered_commands = list(app.registered_commands)
    whole.registered_groups = list(app.registered_groups)
    taken = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    taken |= {g.name or "" for g in app.registered_groups}
    for contributed in _plugin_commands():
        name = contributed.info.name if isinstance(contributed, typer.Typer) else None
        if not isinstance(name, str) or not name:
            raise PluginError(f"crmcore_register_commands returned {contributed!r}, not a named typer.Typer")
        if name in taken:
            raise PluginError(f"a plugin's command {name!r} clashes with an existing command")
        taken.add(name)
        whole.add_typer(contributed, name=name)
    return typer.main.get_command(whole)


def _plugin_commands() -> list[Any]:
    from crmcore.plugins import get_plugin_manager

    return [item for found in get_plugin_manager().hook.crmcore_register_commands() for item in found]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    State.debug = "--debug" in args or os.environ.get("CRMCORE_DEBUG", "") not in ("", "0", "false")
    try:
        code = build().main(args=args, prog_name="crmcore", standalone_mode=False)
        sys.stdout.flush()  # here, so a closed pipe is handled below and not at exit
        return int(code or 0)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted")
        return 130
    except typer.TyperException as exc:  # bad usage: an unknown option, a missing --url, a bad value
        _fail(getattr(exc, "format_message", exc.__str__)())
        return EXIT_REFUSED
    except CRMError as exc:
        if State.debug:
            traceback.print_exc()
        _fail(str(exc))
        return EXIT_REFUSED
    except BrokenPipeError:
        # the reader left early (`crmcore demo | head`): stop quietly, as the Python docs advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:
        if State.debug:
            traceback.print_exc()
        _fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return EXIT_FAILED


def _fail(message: str) -> None:
    print(f"crmcore: error: {message}", file=sys.stderr)


# ---- the demo summary ----


class Tally:
    """Figures counted while the base streams into storage, so they cost no second pass."""

    def __init__(self) -> None:
        self.lifecycle: collections.Counter[str] = collections.Counter()
        self.tiers: collections.Counter[str] = collections.Counter()
        self.countries: collections.Counter[str] = collections.Counter()
        self.channels: collections.Counter[str] = collections.Counter()
        self.families: collections.Counter[str] = collections.Counter()
        self.buyers = 0
        """Customers with a purchase (the generator streams each one's purchases together)."""
        self.revenue: dict[str, Decimal] = collections.defaultdict(Decimal)
        self.orders: collections.Counter[str] = collections.Counter()
        self.busiest: tuple[int, str] = (0, "")
        """(interactions, customer id) of the customer with the longest timeline."""
        self._run: tuple[int, str] = (0, "")
        self._last_buyer = ""

    def add(self, item: Any) -> None:
        if isinstance(item, Customer):
            self.lifecycle[str(item.lifecycle)] += 1
            self.tiers[item.tier or "(none)"] += 1
            self.countries[item.country or "?"] += 1
        elif isinstance(item, Purchase):
            self.revenue[item.currency] += item.total.amount
            self.orders[item.currency] += 1
            if item.customer_id != self._last_buyer:
                self.buyers += 1
                self._last_buyer = item.customer_id
        elif isinstance(item, Interaction):
            self.channels[str(item.channel)] += 1
            self.families[str(item.family)] += 1
            count, customer = self._run
            self._run = (count + 1 if customer == item.customer_id else 1, item.customer_id)
            self.busiest = max(self.busiest, self._run)


@attrs.frozen
class Demo:
    """What a summary section sees: the loaded base, its generator and the tally."""

    crm: CRM
    base: SyntheticBase
    tally: Tally


@attrs.frozen
class Section:
    title: str
    render: Callable[[Demo], Iterable[str]]


SECTIONS: list[Section] = []


def section(title: str) -> Callable[[Callable[[Demo], Iterable[str]]], Callable[[Demo], Iterable[str]]]:
    """Register a section of the demo summary; sections print in registration order."""

    def register(render: Callable[[Demo], Iterable[str]]) -> Callable[[Demo], Iterable[str]]:
        SECTIONS.append(Section(title, render))
        return render

    return register


def table(rows: Iterable[Sequence[object]], indent: int = 2) -> list[str]:
    """Rows as aligned text columns: text to the left, numbers to the right."""
    cells = [[f"{c:,}" if isinstance(c, int) else str(c) for c in row] for row in rows]
    if not cells:
        return []
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(max(map(len, cells)))]
    numeric = [all(_is_number(row[i]) for row in cells if i < len(row)) for i in range(len(widths))]
    return [
        " " * indent + "  ".join(
            cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in cells
    ]


def _is_number(text: str) -> bool:
    return text.replace(",", "").replace(".", "").replace("-", "").replace("%", "").isdigit()


def _money(amount: Decimal, currency: str) -> str:
    return str(v.Money(amount.quantize(Decimal("0.01")), currency))


@section("Customers")
def _customers(demo: Demo) -> Iterable[str]:
    t = demo.tally
    yield f"  {demo.crm.customers.count():,} stored"
    yield from table([("lifecycle", *(f"{k} {n:,}" for k, n in sorted(t.lifecycle.items())))])
    yield from table([("tier", *(f"{k} {n:,}" for k, n in sorted(t.tiers.items())))])
    yield from table([("country", *(f"{k} {n:,}" for k, n in t.countries.most_common()))])


@section("Service points")
def _service_points(demo: Demo) -> Iterable[str]:
    by_kind: dict[str, list[str]] = collections.defaultdict(list)
    for point in demo.crm.service_points.iterate():
        by_kind[str(point.kind)].append(point.id)
    yield from table((kind, len(ids), ", ".join(ids)) for kind, ids in sorted(by_kind.items()))
    agents = list(demo.crm.agents.iterate())
    teams = collections.Counter(a.team or "(none)" for a in agents)
    yield f"  {len(agents)} agents in {demo.crm.teams.count()} teams: " + ", ".join(
        f"{team} {n}" for team, n in sorted(teams.items())
    )


@section("Interactions by channel")
def _channels(demo: Demo) -> Iterable[str]:
    t = demo.tally
    rows = [(c, str(Channel(c).family), n) for c, n in t.channels.most_common()]
    yield from table(rows)
    yield from table([(f"{family} family", n) for family, n in sorted(t.families.items())])
    with demo.crm.transaction() as uow:
        stored = uow.interactions.count()
    yield f"  {stored:,} stored"


@section("Purchases")
def _purchases(demo: Demo) -> Iterable[str]:
    t = demo.tally
    with demo.crm.transaction() as uow:
        stored = uow.purchases.count()
    yield f"  {stored:,} stored, by {t.buyers:,} buyers"
    yield from table(
        (currency, t.orders[currency], f"revenue {_money(total, currency)}",
         f"average basket {_money(total / t.orders[currency], currency)}")
        for currency, total in sorted(t.revenue.items())
    )


@section("Cases")
def _cases(demo: Demo) -> Iterable[str]:
    cases = list(demo.crm.cases.iterate())
    now = demo.base.as_of
    open_ = [c for c in cases if c.status.is_open]
    complaints = [c for c in open_ if c.kind is CaseKind.COMPLAINT]
    overdue = [c for c in open_ if c.sla_due is not None and c.sla_due < now]
    judged = [c.within_sla for c in cases if c.within_sla is not None]
    yield (f"  {len(cases):,} cases, {len(open_):,} open "
           f"({len(complaints):,} complaints, {len(overdue):,} past their SLA)")
    if judged:
        yield f"  resolved within SLA: {sum(judged) / len(judged):.0%} of {len(judged):,}"
    kinds = collections.Counter((str(c.kind), str(c.status)) for c in cases)
    yield from table(
        (kind, *(f"{status} {kinds[kind, str(status)]:,}" for status in CaseStatus))
        for kind in sorted({k for k, _ in kinds})
    )


@section("Sales pipeline")
def _pipeline(demo: Demo) -> Iterable[str]:
    opportunities = list(demo.crm.opportunities.iterate())
    count: collections.Counter[str] = collections.Counter()
    amounts: dict[str, dict[str, Decimal]] = collections.defaultdict(lambda: collections.defaultdict(Decimal))
    for o in opportunities:
        count[o.stage] += 1
        if o.amount is not None:
            amounts[o.stage][o.amount.currency] += o.amount.amount
    yield from table(
        (str(stage), count[stage], ", ".join(_money(a, c) for c, a in sorted(amounts[stage].items())))
        for stage in Stage if count[stage]
    )
    closed = count[Stage.WON] + count[Stage.LOST]
    if closed:
        yield f"  win rate {count[Stage.WON] / closed:.0%} of {closed:,} closed"
    try:  # funnel, cycle, velocity and the weighted forecast from the stage history
        yield from (f"  {line}" for line in demo.crm.sales.summary())
    except CRMError as error:
        yield f"  forecast skipped: {error}"


@section("Campaign measurement (an A/A rehearsal: held out, nothing sent)")
def _rehearsal(demo: Demo) -> Iterable[str]:
    try:
        report = demo.crm.marketing.rehearse(days=90)
    except CRMError as error:
        yield f"  skipped: {error}"
        return
    overall = report.explain().split("\n-- stratum")[0]
    yield from (f"  {line}" for line in overall.splitlines()[1:4])


DEMO_RULES = {
    "gold or platinum in France": 'tier in ("gold", "platinum") and country = "FR"',
    "spent over 500 in the last year": "sum(purchases.total, last 365 days) > 500",
    "lapsed: bought, but not in 180 days": "count(purchases) > 0 and count(purchases, last 180 days) = 0",
    "open complaint": 'count(cases where open and kind = "complaint") > 0',
    "self-service fans": 'count(interactions where family = "collaborative", last 90 days) >= 3',
}


@section("Segments (company rules, run as SQL)")
def _segments(demo: Demo) -> Iterable[str]:
    yield from table((name, len(demo.crm.customers.ids_matching(rule))) for name, rule in DEMO_RULES.items())


@section("RFM segments, per currency")
def _rfm(demo: Demo) -> Iterable[str]:
    # each currency's buyers are ranked among themselves: one column of counts per currency
    counts = collections.Counter((score.segment, score.currency or "") for score in demo.crm.analytical.rfm())
    codes = sorted({code for _, code in counts})
    segments = sorted({segment for segment, _ in counts}, key=lambda s: -sum(counts[s, c] for c in codes))
    yield from table([("segment", *codes), *((s, *(counts[s, c] for c in codes)) for s in segments)])


@section("Lifetime value and churn (BG/NBD + Gamma-Gamma), per currency")
def _clv(demo: Demo) -> Iterable[str]:
    analytical = demo.crm.analytical
    try:
        valuations = analytical.clv_by_currency()
    except CRMError as error:  # no `analytics` extra, or too little history to fit
        yield f"  skipped: {error}"
        return
    for currency, value in sorted(valuations.items()):
        total, alive = float(value.clv.sum()), float(value.p_alive.mean())
        yield (f"  {currency}: {len(value.customer_ids):,} customers, {value.horizon.describe()} CLV "
               f"{total:,.0f} {currency}; mean P(alive) {alive:.2f}")
    try:
        first = min(valuations) if valuations else None
        model = analytical.fit_clv(currency=first) if first else None
        alerts = analytical.churn_alerts(model=model, threshold=0.3, emit=False) if model else []
    except CRMError as error:
        yield f"  churn alerts skipped: {error}"
        return
    yield f"  {len(alerts):,} valuable {first} customers about to leave (P(alive) < 0.3), e.g.:"
    rows = ((a.customer_id, f"P(alive) {a.p_alive:.2f}", f"value {a.value:,.0f}") for a in alerts[:3])
    yield from table(rows, indent=4)


@section("Next best offers (mined from baskets)")
def _offers(demo: Demo) -> Iterable[str]:
    offers = demo.crm.analytical.next_offers()
    yield f"  {len(offers):,} customers have an offer, e.g.:"
    yield from table(((o.customer_id, o.item, f"lift {o.rule.lift:.2f}") for o in list(offers.values())[:3]),
                     indent=4)


@section("Service quality by channel")
def _quality(demo: Demo) -> Iterable[str]:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.0f}%"

    rows = demo.crm.analytical.service_quality(by=("channel",))
    header = ("channel", "contacts", "CSAT", "NPS", "complaints/100", "first-contact", "SLA met")
    yield from table([header] + [
        (q.channel, q.interactions, pct(q.csat), "-" if q.nps is None else f"{q.nps:+.0f}",
         "-" if q.complaint_rate is None else f"{q.complaint_rate:.1f}",
         pct(q.first_contact_resolution), pct(q.sla_compliance))
        for q in rows
    ])


@section("A customer's timeline")
def _sample(demo: Demo) -> Iterable[str]:
    customer_id = demo.tally.busiest[1]
    if not customer_id:
        yield "  (no interactions)"
        return
    crm = demo.crm
    c = crm.customers.get(customer_id)
    purchases = crm.purchases.for_customer(c.id)
    spent: dict[str, Decimal] = collections.defaultdict(Decimal)
    for p in purchases:
        spent[p.currency] += p.amount
    yield f"  {c.name} ({c.id})"
    yield f"  {c.lifecycle}, tier {c.tier or '-'}, {c.country}, customer since {c.created_at:%Y-%m-%d}"
    yield f"  {', '.join((*c.emails, *c.phones)) or 'no e-mail or phone'}"
    if purchases:
        totals = " + ".join(_money(amount, currency) for currency, amount in sorted(spent.items()))
        yield f"  {len(purchases)} purchases, {totals} in all"
    for case in crm.cases.for_customer(c.id):
        yield f"  case {case.opened_at:%Y-%m-%d} {case.kind}: {case.subject} [{case.status}]"
    rows = [
        (f"{i.occurred_at:%Y-%m-%d %H:%M}", i.channel, i.direction, i.service_point or "",
         i.subject + (f" ({i.outcome})" if i.outcome else ""))
        for i in crm.interactions.timeline(c.id, limit=10)
    ]
    yield "  latest contacts:"
    yield from table(rows, indent=4)


# ---- crmcore demo ----


def instant(text: str) -> datetime:
    """An aware instant from ISO 8601 text; a time without an offset is refused, not guessed."""
    try:
        return v.utc(v.as_utc(text), "--as-of")
    except (ValidationError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--as-of") from None


@app.command()
def demo(
    db: Annotated[Path, typer.Option(help="SQLite file to build (overwritten).")] = Path("crmcore-demo.db"),
    customers: Annotated[int, typer.Option(help="How many customers.")] = 1_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed builds the same base.")] = 0,
    as_of: Annotated[datetime, typer.Option(
        "--as-of", parser=instant, metavar="ISO-8601",
        help=f"End of history, with its UTC offset (default: {AS_OF.isoformat()}).")] = AS_OF,
    url: Annotated[str | None, typer.Option(
        help="Load into this empty base instead of --db (CRMCORE_URL is not read here, "
             "so the demo never writes into your real base by accident).")] = None,
) -> None:
    """Build a synthetic customer base in a SQLite file and summarise it."""
    import crmcore

    base = SyntheticBase(size=customers, seed=seed, as_of=as_of)
    if url is None:
        _replace(db)
        url, where = f"sqlite:///{db.resolve()}", str(db)
    else:
        where = url
    started = time.perf_counter()
    tally = Tally()
    with crmcore.open(url, clock=lambda: base.as_of) as crm:
        if url != f"sqlite:///{db.resolve()}" and crm.customers.count():
            raise ValidationError("url", url, "holds customers already; the demo loads into an empty base")
        base.load(crm, watch=tally.add)
        elapsed = time.perf_counter() - started
        print(f"crmcore demo: {base.size:,} customers, seed {base.seed}, "
              f"as of {base.as_of:%Y-%m-%d %H:%M} UTC")
        print(f"built {where} in {elapsed:.1f} s")
        for entry in SECTIONS:
            print(f"\n{entry.title}")
            for line in entry.render(Demo(crm, base, tally)):
                if line:
                    print(line)


def _replace(path: Path) -> None:
    """Remove an earlier demo file, refusing to delete anything that is not SQLite."""
    if any(mark in str(path) for mark in "?#"):
        raise ValidationError("db", str(path), "must not contain '?' or '#'")
    if path.is_dir():
        raise ValidationError("db", str(path), "is a directory, not a database file")
    if path.exists():
        with path.open("rb") as f:
            header = f.read(16)
        if header and header != b"SQLite format 3\x00":
            raise ValidationError("db", str(path), "exists and is not a SQLite file; not overwriting it")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
