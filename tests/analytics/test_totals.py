"""The purchase totals kept with every purchase write equal the totals recounted from the
purchases, and the summary read from them equals the summary computed from scratch, on
every backend, whatever the sequence of writes: purchases on the same day, dated out of
order, refunds, in several currencies, merged away and back (reassign), erased (purge) and
bulk imported; and as of an instant before the last purchase."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crmcore
from crmcore import Customer, Money, OrderLine, Purchase
from crmcore.scoring.summary import MixedCurrencies, Summary, currencies, summarize, summary_of
from crmcore.scoring.totals import added, recount
from tests.analytics.conftest import BACKENDS, open_backend

T0 = datetime(2024, 3, 1, tzinfo=UTC)
PEOPLE = ("a", "b", "c")

# hours over 8 days: purchases on the same day and out of order are common; negative amounts
# are refunds (a day's, and a customer's, total may fall to 0 or below)
buy = st.tuples(st.just("buy"), st.sampled_from(PEOPLE), st.integers(0, 8 * 24 - 1),
                st.integers(-20_000, 50_000), st.sampled_from(["EUR", "USD"]))
bulk = st.tuples(st.just("bulk"), st.lists(buy, min_size=1, max_size=6))
many = st.tuples(st.just("many"), st.lists(buy, min_size=1, max_size=6))
"""A batch through `add_many`, as an import writes it: folded into the totals, not recounted."""
move = st.tuples(st.just("move"), st.sampled_from(PEOPLE), st.sampled_from(PEOPLE), st.booleans())
erase = st.tuples(st.just("erase"), st.sampled_from(PEOPLE))
steps = st.lists(st.one_of(buy, buy, bulk, many, many, move, erase), min_size=1, max_size=14)

_examples = itertools.count()


@pytest.fixture(scope="module", params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[crmcore.CRM]:
    yield from open_backend(request.param, tmp_path_factory.mktemp("totals"))


def _purchase(prefix: str, number: int, step: tuple[str, str, int, int, str]) -> Purchase:
    _, who, hours, cents, currency = step
    return Purchase(id=f"{prefix}p{number}", customer_id=prefix + who,
                    ordered_at=T0 + timedelta(hours=hours),
                    lines=(OrderLine("item", Money(Decimal(cents) / 100, currency)),))


def _rows(summary: Summary, prefix: str = "") -> list[dict[str, float | str]]:
    return [row for row in map(summary.row, range(len(summary)))
            if str(row["customer_id"]).startswith(prefix)]


def _same(found: list[dict[str, float | str]], expected: list[dict[str, float | str]]) -> None:
    assert [r["customer_id"] for r in found] == [r["customer_id"] for r in expected]
    for mine, reference in zip(found, expected, strict=True):
        assert {k: v for k, v in mine.items() if k != "customer_id"} == pytest.approx(
            {k: v for k, v in reference.items() if k != "customer_id"})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps, cutoff=st.integers(1, 8 * 24))
def test_kept_totals_equal_a_recount(store: crmcore.CRM, steps: list[tuple], cutoff: int) -> None:
    prefix = f"x{next(_examples)}-"  # each example its own customers: the base is shared
    ids = [prefix + who for who in PEOPLE]
    with store.transaction() as uow:
        for customer_id in ids:
            uow.customers.add(Customer(id=customer_id, name=customer_id, created_at=T0, updated_at=T0))
    numbers = itertools.count()
    for step in steps:
        if step[0] == "buy":
            with store.transaction() as uow:
                uow.purchases.add(_purchase(prefix, next(numbers), step))
        elif step[0] == "bulk":
            store.bulk_import([_purchase(prefix, next(numbers), s) for s in step[1]])
        elif step[0] == "many":
            with store.transaction() as uow:
                uow.purchases.add_many([_purchase(prefix, next(numbers), s) for s in step[1]])
        elif step[0] == "move":  # a merge moves every purchase; an unmerge some of them
            _, source, target, some = step
            with store.transaction() as uow:
                owned = [p.id for p in uow.purchases.for_customer(prefix + source)]
                uow.purchases.reassign(prefix + source, prefix + target, owned[::2] if some else None)
        else:
            with store.transaction() as uow:
                uow.purchases.purge(prefix + step[1])
    with store.reading() as uow:
        purchases = [p for c in ids for p in uow.purchases.for_customer(c)]
        kept = [t for t in uow.purchase_totals.all() if t.customer_id.startswith(prefix)]
    assert kept == recount(purchases)

    # the summaries: everything so far from the totals, a cutoff from the purchases
    end = T0 + timedelta(days=9)
    early = T0 + timedelta(hours=cutoff)
    for currency in ("EUR", "USD"):
        mine = [p for p in purchases if p.currency == currency]
        with store.reading() as uow:
            whole = summarize(uow, end, currency=currency)
            part = summarize(uow, early, currency=currency)
        assert whole.source == "purchase_totals" and whole.currency == currency
        _same(_rows(whole, prefix), _rows(summary_of(mine, end, currency=currency)))
        _same(_rows(part, prefix), _rows(summary_of(mine, early, currency=currency)))
        if any(p.ordered_at >= early for p in purchases if p.customer_id.startswith(prefix)):
            assert part.source == "purchases"


def test_the_incremental_rule_defers_an_earlier_day_to_a_recount() -> None:
    first = Purchase(id="p1", customer_id="c", ordered_at=T0 + timedelta(days=3, hours=12),
                     lines=(OrderLine("item", Money(Decimal(5), "EUR")),))
    earlier = Purchase(id="p2", customer_id="c", ordered_at=T0,
                       lines=(OrderLine("item", Money(Decimal(2), "EUR")),))
    same_day = Purchase(id="p3", customer_id="c", ordered_at=T0 + timedelta(days=3, hours=1),
                        lines=(OrderLine("item", Money(Decimal(1), "EUR")),))
    row = added(None, first)
    assert added(row, earlier) is None
    assert [added(row, same_day)] == recount([first, same_day])


def test_a_mix_of_currencies_read_from_the_totals_is_refused(tmp_path: Path) -> None:
    for backend in BACKENDS:
        (tmp_path / backend).mkdir()
        for crm in open_backend(backend, tmp_path / backend):
            with crm.transaction() as uow:
                uow.customers.add(Customer(id="c", name="c", created_at=T0, updated_at=T0))
            for number, step in enumerate([("buy", "c", 1, 100, "EUR"), ("buy", "c", 5, 200, "USD")]):
                with crm.transaction() as uow:
                    uow.purchases.add(_purchase("", number, step))
            with crm.reading() as uow, pytest.raises(MixedCurrencies):
                summarize(uow, T0 + timedelta(days=5))
            with crm.reading() as uow:
                days = summarize(uow, T0 + timedelta(days=5), amounts=False)
            assert days.source == "purchases" and list(days.frequency) == [0.0]
            with crm.reading() as uow:  # from the kept totals, then from the purchases
                assert currencies(uow, T0 + timedelta(days=5)) == ["EUR", "USD"]
                assert currencies(uow, T0 + timedelta(hours=3)) == ["EUR"]


def test_merge_unmerge_erasure_and_import_keep_the_totals(crm: crmcore.CRM) -> None:
    """Through the lifecycle facade and `bulk_import`, as an application would."""
    crm.bulk_import([Customer(id=c, name=c, created_at=T0, updated_at=T0) for c in ("ann", "bob", "cy")])
    bought = [("buy", "ann", 30, 1000, "EUR"), ("buy", "bob", 2, 500, "EUR"),
              ("buy", "bob", 50, 700, "USD"), ("buy", "ann", 2, 100, "EUR"), ("buy", "cy", 9, 300, "EUR")]
    crm.bulk_import([_purchase("", n, step) for n, step in enumerate(bought)])
    with crm.transaction() as uow:  # a later purchase dated before ann's last day
        uow.purchases.add(_purchase("", 9, ("buy", "ann", 1, 50, "EUR")))
    end = T0 + timedelta(days=9)

    def check(customers: set[str]) -> None:
        with crm.reading() as uow:
            purchases = [p for c in ("ann", "bob", "cy") for p in uow.purchases.for_customer(c)]
            assert uow.purchase_totals.all() == recount(purchases)
            assert {t.customer_id for t in uow.purchase_totals.all()} == customers
            kept = summarize(uow, end, currency="EUR")
        assert kept.explain()["source"] == "purchase_totals"
        _same(_rows(kept), _rows(summary_of(purchases, end, currency="EUR")))

    check({"ann", "bob", "cy"})
    record = crm.lifecycle.merge("ann", "bob")
    check({"ann", "cy"})
    crm.lifecycle.unmerge(record.id)
    check({"ann", "bob", "cy"})
    crm.lifecycle.erase_person("cy")
    check({"ann", "bob"})


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migration_backfills_the_totals_of_an_existing_base(backend: str, tmp_path: Path) -> None:
    """A base from before the totals: the migration that creates them counts what is there."""
    for crm in open_backend(backend, tmp_path):
        crm.bulk_import([Customer(id=c, name=c, created_at=T0, updated_at=T0) for c in ("ann", "bob")])
        bought = [("buy", "ann", 30, 1000, "EUR"), ("buy", "ann", 2, 100, "EUR"),
                  ("buy", "ann", 5, 100, "EUR"), ("buy", "bob", 50, 700, "USD")]
        crm.bulk_import([_purchase("", n, step) for n, step in enumerate(bought)])
        url = crm.storage.url
        with crm.reading() as uow:
            expected = recount([p for c in ("ann", "bob") for p in uow.purchases.for_customer(c)])
        crm.close()
        _forget_the_last_migration(backend, url)
        again = crmcore.open(url)
        try:
            with again.reading() as uow:
                assert uow.purchase_totals.all() == expected
        finally:
            again.close()


def _since_the_totals(migrations: Sequence[tuple[object, ...]]) -> tuple[int, list[str], list[str]]:
    """The schema version before the totals migration, the objects it and every later
    migration create ("VIEW name", "INDEX name" on older tables, "TABLE name"; dropped in
    that order, a view taking the name of a table created before it), and the columns
    later ones add to older tables, as "table DROP COLUMN column" (undone, so those
    migrations run again)."""
    first = next(i for i, steps in enumerate(migrations)
                 if any(isinstance(s, str) and "CREATE TABLE purchase_totals" in s for s in steps))
    later = [s for steps in migrations[first:] for s in steps if isinstance(s, str)]

    def created(kind: str) -> list[re.Match[str]]:
        return [m for s in later for m in [re.match(rf"\s*CREATE {kind} (\w+)(?: ON (\w+))?", s)] if m]

    views = [m.group(1) for m in created("VIEW")]
    tables = [m.group(1) for m in created("TABLE") if m.group(1) not in views]
    indexes = [m.group(1) for m in created("INDEX") if m.group(2) not in tables]
    added = (re.match(r"\s*ALTER TABLE (\w+) ADD COLUMN (?!IF NOT EXISTS)(\w+) ", s) for s in later)
    columns = [f"{m.group(1)} DROP COLUMN {m.group(2)}" for m in added
               if m and m.group(1) not in (*views, *tables)]
    objects = [*(f"VIEW {v}" for v in views), *(f"INDEX {i}" for i in indexes),
               *(f"TABLE {t}" for t in (*views, *tables))]
    return first, objects, columns


def _forget_the_last_migration(backend: str, url: str) -> None:
    """Step the schema version back to before the totals, as a base from before them."""
    if backend == "sqlite":
        import sqlite3

        from crmcore_adapters.storage.sqlite import MIGRATIONS

        version, objects, columns = _since_the_totals(MIGRATIONS)
        con = sqlite3.connect(url.removeprefix("sqlite:///"))
        for kind, name in (o.split() for o in objects):
            con.execute(f"DROP {kind} IF EXISTS {name}")
        for column in columns:
            con.execute(f"ALTER TABLE {column}")
        con.execute(f"PRAGMA user_version = {version}")
        con.commit()
        con.close()
        return
    import psycopg

    from crmcore_adapters.storage.postgres import MIGRATIONS as PG_MIGRATIONS

    version, objects, columns = _since_the_totals(PG_MIGRATIONS)
    server, _, query = url.partition("?")
    schema = dict(part.split("=", 1) for part in query.split("&"))["schema"]
    with psycopg.connect(server, autocommit=True) as conn:
        for kind, name in (o.split() for o in objects):
            conn.execute(f'DROP {kind} IF EXISTS "{schema}".{name}')
        for column in columns:
            conn.execute(f'ALTER TABLE "{schema}".{column}')
        conn.execute(f'UPDATE "{schema}".schema_version SET version = %s', (version,))
