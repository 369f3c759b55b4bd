"""Pipelines: stages in order, probabilities, required fields, won/lost reasons, and the
opportunities stored before pipelines existed."""

from __future__ import annotations

import json
import sqlite3
from datetime import date
from pathlib import Path

import pytest

from crmcore import CRM, Customer
from crmcore.errors import NotFound, ValidationError
from crmcore.model import DEFAULT_PIPELINE, Opportunity, Pipeline, PipelineStage, Stage
from crmcore.plugins import make_plugin_manager
from crmcore.values import Money
from crmcore_adapters.storage import sqlite as sqlite_adapter
from tests.sales.conftest import T0, Clock

SMB = Pipeline(
    "smb", "Small business",
    (PipelineStage("discovery", 0.2), PipelineStage("demo", 0.5, ("amount", "attributes.budget")),
     PipelineStage("contract", 0.9, ("close_date",))),
    won_reasons=("price", "fit"), lost_reasons=("price", "timing"), team="smb-team",
)


@pytest.fixture
def ada(crm: CRM) -> Customer:
    return crm.customers.add(Customer.new("Ada", emails=["ada@example.org"]))


def test_moves_follow_the_pipeline_and_record_probabilities(crm: CRM, ada: Customer, clock: Clock) -> None:
    crm.sales.pipelines.add(SMB)
    deal = crm.sales.pipelines.open(ada.id, "Ten seats", pipeline="smb", amount=Money("1200.00"),
                                    attributes={"budget": "yes"}, close_date=date(2025, 3, 1))
    assert (deal.stage, deal.probability) == ("discovery", 0.2)
    clock.advance(days=2)
    crm.sales.pipelines.move(deal.id, "demo", by="ann")
    clock.advance(days=5)
    won = crm.sales.pipelines.move(deal.id, "won", reason="fit")
    assert [(h.stage, h.probability) for h in won.history] == [
        ("discovery", 0.2), ("demo", 0.5), ("won", 1.0)]
    assert (won.reason, won.close_date, won.is_closed) == ("fit", clock.now.date(), True)


def test_a_missing_required_field_is_named_and_nothing_is_written(crm: CRM, ada: Customer) -> None:
    crm.sales.pipelines.add(SMB)
    deal = crm.sales.pipelines.open(ada.id, "Ten seats", pipeline="smb", amount=Money("1200.00"))
    with pytest.raises(ValidationError) as caught:
        crm.sales.pipelines.move(deal.id, "demo")
    assert caught.value.field == "attributes.budget"
    with pytest.raises(ValidationError) as caught:
        crm.sales.pipelines.open(ada.id, "x", pipeline="smb", stage="contract")
    assert caught.value.field == "close_date"
    assert crm.opportunities.get(deal.id) == deal
    assert crm.opportunities.for_customer(ada.id) == [deal]


def test_a_stage_outside_the_pipeline_is_refused(crm: CRM, ada: Customer) -> None:
    crm.sales.pipelines.add(SMB)
    deal = crm.sales.pipelines.open(ada.id, "Ten seats", pipeline="smb")
    with pytest.raises(ValidationError) as caught:
        crm.sales.pipelines.move(deal.id, Stage.NEGOTIATION)
    assert caught.value.field == "stage" and "discovery, demo, contract, won, lost" in caught.value.reason
    with pytest.raises(ValidationError):
        crm.sales.pipelines.move(deal.id, "Not A Name")
    assert crm.opportunities.get(deal.id).history == deal.history


def test_won_and_lost_need_a_listed_reason(crm: CRM, ada: Customer) -> None:
    crm.sales.pipelines.add(SMB)
    deal = crm.sales.pipelines.open(ada.id, "Ten seats", pipeline="smb")
    for reason in (None, "mood"):
        with pytest.raises(ValidationError) as caught:
            crm.sales.pipelines.move(deal.id, "lost", reason=reason)
        assert caught.value.field == "reason"
    assert crm.sales.pipelines.move(deal.id, "lost", reason="timing").reason == "timing"
    with pytest.raises(ValidationError):
        crm.sales.pipelines.move(deal.id, "won", reason="fit")


@pytest.mark.parametrize("probability", [-0.01, 1.5, float("nan"), True])
def test_a_probability_outside_zero_to_one_is_refused(probability: float) -> None:
    with pytest.raises(ValidationError) as caught:
        PipelineStage("demo", probability)
    assert caught.value.field == "probability"


def test_pipeline_shape_is_checked() -> None:
    with pytest.raises(ValidationError):
        Pipeline("p", "P", ())
    with pytest.raises(ValidationError):
        Pipeline("p", "P", (PipelineStage("a", 0.1), PipelineStage("a", 0.2)))
    with pytest.raises(ValidationError):
        PipelineStage("won", 1.0)
    with pytest.raises(ValidationError):
        PipelineStage("a", 0.1, ("colour",))


def test_default_pipeline_is_built_in_and_unknown_ones_are_not_found(crm: CRM) -> None:
    assert crm.sales.pipelines.get("default") == DEFAULT_PIPELINE
    assert [p.id for p in crm.sales.pipelines.list()] == ["default"]
    with pytest.raises(NotFound):
        crm.sales.pipelines.get("nope")


def test_standard_stage_opportunities_keep_working(crm: CRM, ada: Customer) -> None:
    opp = crm.opportunities.open(ada.id, "Old style", amount=Money("50.00"))
    crm.opportunities.move(opp.id, Stage.PROPOSAL)
    moved = crm.sales.pipelines.move(opp.id, "won")
    assert moved.stage is Stage.WON and moved.pipeline == "default"
    assert crm.sales.cycle().won == 1


OLD_DOC = {
    "id": "o1", "customer_id": "c1", "title": "Legacy", "stage": "proposal",
    "history": [{"stage": "qualification", "at": "2024-01-01T00:00:00+00:00", "by": None},
                {"stage": "proposal", "at": "2024-01-11T12:00:00.250000+00:00", "by": "ann"}],
    "amount": {"amount": "1000.00", "currency": "EUR"}, "kind": "new", "product": None,
    "owner": "ann", "source": None, "attributes": {}, "version": 1,
}


def test_sqlite_migration_backfills_the_history_of_stored_opportunities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    monkeypatch.setattr(sqlite_adapter, "MIGRATIONS", sqlite_adapter.MIGRATIONS[:1])
    sqlite_adapter.SQLiteStorage(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO opportunities (id, version, customer_id, stage, kind, opened_at, owner, doc) "
            "VALUES ('o1', 1, 'c1', 'proposal', 'new', 0, 'ann', ?)", (json.dumps(OLD_DOC),))
    monkeypatch.undo()
    crm = CRM(sqlite_adapter.SQLiteStorage(f"sqlite:///{path}"),
              plugins=make_plugin_manager(load_entry_points=False), clock=Clock(T0))
    _check_legacy(crm)


def test_postgres_migration_backfills_the_history_of_stored_opportunities(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psycopg

    from crmcore_adapters.storage import postgres as pg
    from tests.postgres.conftest import Schemas
    from tests.support import postgres_url

    schemas = Schemas(postgres_url())
    try:
        url = schemas.url()
        monkeypatch.setattr(pg, "MIGRATIONS", pg.MIGRATIONS[:1])
        pg.PostgresStorage(url).close()
        monkeypatch.undo()
        with psycopg.connect(postgres_url(), autocommit=True) as conn:
            conn.execute(
                f"INSERT INTO {schemas.created[-1]}.opportunities (id, version, customer_id, stage, "
                "kind, opened_at, owner, doc) VALUES ('o1', 1, 'c1', 'proposal', 'new', now(), 'ann', %s)",
                (json.dumps(OLD_DOC),))
        crm = CRM(pg.PostgresStorage(url), plugins=make_plugin_manager(load_entry_points=False),
                  clock=Clock(T0))
        try:
            _check_legacy(crm)
        finally:
            crm.close()
    finally:
        schemas.drop_all()


def _check_legacy(crm: CRM) -> None:
    from crmcore.sales.history import rows

    legacy = crm.opportunities.get("o1")
    assert isinstance(legacy, Opportunity) and legacy.pipeline == "default"
    with crm.reading() as uow:
        table = uow.select(  # type: ignore[attr-defined]
            "SELECT seq, stage, probability, currency, owner FROM opportunity_history ORDER BY seq")
    assert [tuple(r) for r in table] == [
        (r.seq, r.stage, r.probability, r.currency, r.owner) for r in rows(legacy)]
    mid = crm.sales.forecast(T0.replace(year=2024, month=1, day=5), by=None)
    assert [(f.currency, f.pipeline, f.weighted) for f in mid] == [("EUR", 1000, 100)]
    assert crm.sales.cycle(as_of=T0).stages[0].mean_days == pytest.approx(10.5 + 0.25 / 86400, rel=1e-12)


def test_the_older_move_goes_through_the_pipeline_checks(crm: CRM, ada: Customer) -> None:
    crm.sales.pipelines.add(SMB)
    deal = crm.sales.pipelines.open(ada.id, "Ten seats", pipeline="smb", amount=Money("10.00"))
    with pytest.raises(ValidationError) as caught:
        crm.opportunities.move(deal.id, "demo")
    assert caught.value.field == "attributes.budget"
    with pytest.raises(ValidationError) as caught:
        crm.opportunities.move(deal.id, "lost", by="ann")
    assert caught.value.field == "reason"
    assert crm.opportunities.get(deal.id) == deal


def test_unknown_fields_are_refused_by_name(crm: CRM, ada: Customer) -> None:
    with pytest.raises(ValidationError) as caught:
        crm.sales.pipelines.open(ada.id, "x", colour="red")
    assert caught.value.field == "colour"
    with pytest.raises(ValidationError) as caught:
        crm.sales.leads.capture("x", colour="red")
    assert caught.value.field == "colour"
    with pytest.raises(ValidationError):
        crm.rates.load(["EUR/USD 1.1"])  # type: ignore[list-item]
    assert crm.opportunities.for_customer(ada.id) == [] and crm.rates.all() == []
