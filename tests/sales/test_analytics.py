"""Forecast and cycle analytics in SQL (SQLite, PostgreSQL) and in Python (memory), each
checked against an independent pandas computation on thousands of synthetic opportunities."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmcore import CRM
from crmcore.model import DEFAULT_PIPELINE, Opportunity
from crmcore.plugins import make_plugin_manager
from crmcore.sales import synthetic
from crmcore.testing.sales import forecast_opportunities
from crmcore_adapters.storage.memory import MemoryStorage
from crmcore_adapters.storage.sqlite import SQLiteStorage
from tests.sales.conftest import OPENERS, Clock

N = 3_000
INSTANTS = [datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 7, 15, 12, tzinfo=UTC),
            datetime(2025, 6, 1, tzinfo=UTC)]
DEALS = list(synthetic.opportunities(N, seed=11))


@pytest.fixture(scope="module", params=sorted(OPENERS))
def loaded(request: pytest.FixtureRequest) -> Iterator[CRM]:
    store = OPENERS[request.param]()
    crm = CRM(store, plugins=make_plugin_manager(load_entry_points=False), clock=Clock())
    with crm.transaction() as uow:
        for deal in DEALS:
            uow.opportunities.add(deal)
    yield crm
    store.close()


# ---- the independent reference: pandas over the opportunities' own histories ----


def frame(deals: list[Opportunity]) -> pd.DataFrame:
    records = [
        {"id": o.id, "seq": seq, "at": change.at, "stage": str(change.stage),
         "p": change.probability, "close": change.close_date, "owner": o.owner,
         "currency": change.amount.currency if change.amount else None,
         "amount": float(change.amount.amount) if change.amount else None}
        for o in deals for seq, change in enumerate(o.history)
    ]
    return pd.DataFrame.from_records(records)


def as_of(df: pd.DataFrame, moment: datetime) -> pd.DataFrame:
    seen = df[df["at"] <= moment].sort_values(["id", "seq"]).copy()
    grouped = seen.groupby("id")
    seen["next_at"] = grouped["at"].shift(-1)
    seen["prev_close"] = grouped["close"].shift(1)
    seen["opened"] = grouped["at"].transform("min")
    return seen


def reference_forecast(df: pd.DataFrame, commit: float = 0.7, best: float = 0.4) -> pd.DataFrame:
    now = df[df["next_at"].isna() & df["amount"].notna() & (df["stage"] != "lost")].copy()
    is_open = now["stage"] != "won"
    now["period"] = now["close"].map(lambda d: f"{d.year:04d}-{d.month:02d}")
    now["won"] = now["amount"].where(~is_open, 0.0)
    now["pipeline"] = now["amount"].where(is_open, 0.0)
    now["best_case"] = now["pipeline"].where(now["p"] >= best, 0.0)
    now["commit"] = now["pipeline"].where(now["p"] >= commit, 0.0)
    now["weighted"] = now["pipeline"] * now["p"]
    return now.groupby(["period", "owner", "currency"]).agg(
        count=("id", "size"), won=("won", "sum"), pipeline=("pipeline", "sum"),
        best_case=("best_case", "sum"), commit=("commit", "sum"), weighted=("weighted", "sum"),
    )


@pytest.mark.parametrize("moment", INSTANTS)
def test_forecast_matches_pandas(loaded: CRM, moment: datetime) -> None:
    expected = reference_forecast(as_of(frame(DEALS), moment))
    lines = loaded.sales.forecast(moment, by="owner")
    assert len(lines) == len(expected) > 0
    for line in lines:
        row = expected.loc[(line.period, line.who, line.currency)]
        assert line.count == row["count"]
        for figure in ("won", "pipeline", "best_case", "commit", "weighted"):
            assert float(getattr(line, figure)) == pytest.approx(row[figure], abs=0.011), figure


@pytest.mark.parametrize("moment", INSTANTS)
def test_cycle_matches_pandas(loaded: CRM, moment: datetime) -> None:
    df = as_of(frame(DEALS), moment)
    cycle = loaded.sales.cycle("default", moment)
    open_stages = df[~df["stage"].isin(["won", "lost"])].copy()
    stay = (open_stages["next_at"].fillna(moment) - open_stages["at"]).dt.total_seconds() / 86_400
    open_stages["stay"] = stay
    per_stage = open_stages.groupby("stage").agg(n=("id", "nunique"), days=("stay", "sum"))
    order = [*DEFAULT_PIPELINE.order[:-1]]
    rank = df["stage"].map({name: i for i, name in enumerate(order)})
    furthest = rank.groupby(df["id"]).max().dropna()
    current = df[df["next_at"].isna()]
    won = current[current["stage"] == "won"]
    lost = current[current["stage"] == "lost"]
    slipped = open_stages[open_stages["close"] > open_stages["prev_close"]]
    for index, figures in enumerate(cycle.stages):
        assert figures.reached == int((furthest >= index).sum())
        if figures.stage != "won":
            row = per_stage.loc[figures.stage]
            assert figures.mean_days == pytest.approx(row["days"] / row["n"], rel=1e-9)
    reached = [f.reached for f in cycle.stages]
    assert reached == sorted(reached, reverse=True)
    if moment == INSTANTS[1]:  # the synthetic history exercises every figure
        assert min(cycle.won, cycle.lost, cycle.open, cycle.slipped) > 0 and len(cycle.velocity) == 2
    assert (cycle.won, cycle.lost, cycle.open) == (len(won), len(lost), len(current) - len(won) - len(lost))
    assert cycle.win_rate == pytest.approx(len(won) / (len(won) + len(lost)))
    cycle_days = ((won["at"] - won["opened"]).dt.total_seconds() / 86_400).mean()
    assert cycle.mean_cycle_days == pytest.approx(cycle_days, rel=1e-9)
    assert cycle.slipped == slipped["id"].nunique()
    assert cycle.slipped_days == pytest.approx(
        sum((a - b).days for a, b in zip(slipped["close"], slipped["prev_close"], strict=True)))
    is_open = ~current["stage"].isin(["won", "lost"])
    for currency, velocity in cycle.velocity.items():
        mine = won[won["currency"] == currency]
        expected = (int((is_open & (current["currency"] == currency)).sum()) * mine["amount"].mean()
                    * cycle.win_rate / cycle_days)
        assert float(velocity) == pytest.approx(expected, abs=0.006)


def test_backtest_says_what_the_forecast_said_then_and_what_closed(loaded: CRM) -> None:
    results = loaded.sales.backtest(date(2024, 2, 1), date(2024, 11, 30))
    df = frame(DEALS)
    assert {r.month for r in results} == {f"2024-{m:02d}" for m in range(2, 12)}
    for result in results:
        year, month = map(int, result.month.split("-"))
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        said = reference_forecast(as_of(df, start)).reset_index()
        said = said[(said["period"] == result.month) & (said["currency"] == result.currency)]
        came = reference_forecast(as_of(df, end)).reset_index()
        came = came[(came["period"] == result.month) & (came["currency"] == result.currency)]
        assert float(result.weighted) == pytest.approx(said["weighted"].sum(), abs=0.05)
        assert float(result.commit) == pytest.approx(said["commit"].sum(), abs=0.01)
        assert float(result.won) == pytest.approx(came["won"].sum(), abs=0.01)
        assert result.error == result.weighted - result.won


def test_forecast_in_a_reporting_currency_converts_each_currency_at_the_days_rate(loaded: CRM) -> None:
    from crmcore.exchange import Rate, convert

    moment = INSTANTS[1]
    loaded.rates.load([Rate("USD", "EUR", date(2024, 1, 1), Decimal("0.9")),
                       Rate("USD", "EUR", date(2024, 7, 1), Decimal("0.92"))])
    per_currency = loaded.sales.forecast(moment, by="team")
    table = loaded.rates.table()
    converted = {(line.period, line.who): line for line in
                 loaded.sales.forecast(moment, by="team", currency="EUR")}
    expected: dict[tuple[str | None, str | None], Decimal] = {}
    for line in per_currency:
        key = (line.period, line.who)
        expected[key] = expected.get(key, Decimal(0)) + convert(
            line.money("pipeline"), "EUR", moment.date(), table).amount
    assert {k: v.pipeline for k, v in converted.items()} == expected
    assert {line.currency for line in converted.values()} == {"EUR"}


# ---- the funnel law, for any history ----


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(deals=st.lists(forecast_opportunities(), max_size=12, unique_by=lambda o: o.id),
       moment=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2036, 1, 1),
                           timezones=st.just(UTC)))
def test_funnel_counts_never_grow_down_the_stages(deals: list[Opportunity], moment: datetime) -> None:
    figures = []
    for store in (MemoryStorage(), SQLiteStorage("sqlite:///:memory:")):
        crm = CRM(store, plugins=make_plugin_manager(load_entry_points=False), clock=Clock())
        with crm.transaction() as uow:
            for deal in deals:
                uow.opportunities.add(deal)
        cycle = crm.sales.cycle("default", moment)
        reached = [s.reached for s in cycle.stages]
        assert reached == sorted(reached, reverse=True)
        assert reached[0] == sum(1 for d in deals if d.opened_at <= moment)  # each opens ranked
        figures.append((reached, cycle.won, cycle.lost, cycle.open, cycle.slipped))
        store.close()
    assert figures[0] == figures[1]



def test_summary_lines_carry_the_cycle_and_forecast_figures(loaded: CRM) -> None:
    moment = INSTANTS[1]
    lines = loaded.sales.summary(moment)
    cycle = loaded.sales.cycle("default", moment)
    assert lines[0] == "pipeline default: " + " > ".join(f"{s.stage} {s.reached:,}" for s in cycle.stages)
    assert f"win rate {cycle.win_rate:.0%}" in lines[1]
    ahead = [f for f in loaded.sales.forecast(moment, by=None) if f.period and f.period >= "2024-07"]
    assert [line for line in lines if line.startswith("  forecast")] == [
        f"  forecast {f.period}: weighted {f.money('weighted')}, commit {f.money('commit')}, "
        f"pipeline {f.money('pipeline')}" for f in ahead]


def test_attainment_sets_won_in_every_currency_against_the_quota(loaded: CRM) -> None:
    from crmcore.exchange import Rate
    from crmcore.values import Money

    moment = INSTANTS[1]
    loaded.rates.load([Rate("EUR", "USD", date(2023, 1, 1), Decimal("1.25"))])
    quotas = {("ann", "2024-05"): Money("100000.00", "USD"), ("bob", "2024-06"): Money("50000.00")}
    found = {(a.who, a.period): a for a in loaded.sales.attainment(quotas, as_of=moment)}
    expected = reference_forecast(as_of(frame(DEALS), moment))
    ann = expected.loc[("2024-05", "ann")]["won"]
    bob = expected.loc[("2024-06", "bob")]["won"]
    assert float(found[("ann", "2024-05")].won.amount) == pytest.approx(
        ann.get("EUR", 0) * 1.25 + ann.get("USD", 0), abs=0.01)
    usd_eur = float(loaded.rates.table().rate("USD", "EUR", moment.date()))  # stored by any test
    assert float(found[("bob", "2024-06")].won.amount) == pytest.approx(
        bob.get("EUR", 0) + bob.get("USD", 0) * usd_eur, abs=0.01)
    ann_figures = found[("ann", "2024-05")]
    assert ann_figures.share == pytest.approx(float(ann_figures.won.amount) / 100_000)
