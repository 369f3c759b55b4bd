"""Model invariants: bad input names the field, the value and the reason."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import attrs
import pytest

from crmcore import (
    Case,
    CaseKind,
    Channel,
    ChannelFamily,
    ConsentStatus,
    Customer,
    Money,
    Opportunity,
    OrderLine,
    PostalAddress,
    Purchase,
    Stage,
    ValidationError,
)

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


def test_new_customer_normalises_contact_details() -> None:
    ada = Customer.new(
        "Ada", emails=[" Ada@Example.ORG ", "ada@example.org"], phones=["01 23 45 67 89", "+33123456789"],
        addresses=[PostalAddress("FR", city="Paris")],
    )
    assert ada.emails == ("Ada@example.org",)
    assert ada.phones == ("+33123456789",)
    assert ada.country == "FR" and ada.version == 0


@pytest.mark.parametrize(
    ("fields", "field", "value"),
    [
        ({"emails": ["not-an-address"]}, "emails[0]", "not-an-address"),
        ({"phones": ["12"], "region": "FR"}, "phones[0]", "12"),
        ({"phones": ["01 23 45 67 89"]}, "phones[0]", "01 23 45 67 89"),
        ({"tier": "Gold Plus"}, "tier", "Gold Plus"),
        ({"tags": ["ok", "Not OK"]}, "tags[1]", "Not OK"),
        ({"attributes": {"since": datetime(2020, 1, 1)}}, "attributes['since']", datetime(2020, 1, 1)),
        ({"attributes": {"ratio": float("inf")}}, "attributes['ratio']", float("inf")),
        ({"attributes": {"spend": Decimal("NaN")}}, "attributes['spend']", None),
        ({"attributes": {"at": datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=2)))}},
         "attributes['at']", None),
        ({"created_at": datetime(2020, 1, 1)}, "created_at", datetime(2020, 1, 1)),
        ({"birth_date": "1990-01-01"}, "birth_date", "1990-01-01"),
    ],
)
def test_bad_customer_input_names_field_and_value(
    fields: dict[str, object], field: str, value: object
) -> None:
    with pytest.raises(ValidationError) as caught:
        Customer.new("Ada", **fields)  # type: ignore[arg-type]
    error = caught.value
    assert error.field.startswith(field.split("[")[0])
    assert error.field == field or field in error.field or error.value == value
    assert error.reason


def test_name_must_not_be_blank() -> None:
    with pytest.raises(ValidationError) as caught:
        Customer.new("   ")
    assert (caught.value.field, caught.value.value) == ("name", "   ")


def test_consent_is_explicit_and_replaces_the_previous_answer() -> None:
    ada = Customer.new("Ada")
    assert not ada.has_consent("marketing", Channel.EMAIL)
    granted = ada.with_consent("marketing", Channel.EMAIL, ConsentStatus.GRANTED, at=T0, source="portal")
    assert granted.has_consent("marketing", Channel.EMAIL)
    assert not granted.has_consent("marketing", Channel.PHONE)
    withdrawn = granted.with_consent(
        "marketing", Channel.EMAIL, ConsentStatus.WITHDRAWN, at=T0, source="imap"
    )
    assert not withdrawn.has_consent("marketing", Channel.EMAIL)
    assert len(withdrawn.consents) == 1


def test_channels_belong_to_their_family() -> None:
    assert {c for c in Channel if c.family is ChannelFamily.COLLABORATIVE} == {
        Channel.PORTAL, Channel.KIOSK, Channel.APP, Channel.IVR}
    assert Channel.VIDEO.family is ChannelFamily.OPERATIONAL


def test_money_is_exact() -> None:
    assert Money("0.10") + Money("0.20") == Money(Decimal("0.30"))
    with pytest.raises(ValidationError, match="float"):
        Money(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="decimal places"):
        Money("0.00001")
    with pytest.raises(ValidationError) as caught:
        Money("1", "euro")
    assert caught.value.field == "currency"


def test_purchase_totals_and_single_currency() -> None:
    lines = (OrderLine("cd", Money("9.99"), 2), OrderLine("dvd", Money("15.00")))
    purchase = Purchase("p1", "c1", T0, lines)
    assert purchase.total == Money("34.98")
    with pytest.raises(ValidationError) as caught:
        Purchase("p2", "c1", T0, (*lines, OrderLine("book", Money("5", "USD"))))
    assert caught.value.field == "lines[2].unit_price.currency"
    with pytest.raises(ValidationError, match="at least one line"):
        Purchase("p3", "c1", T0, ())


def test_opportunity_keeps_its_whole_stage_history() -> None:
    opp = Opportunity.open("o1", "c1", "Fibre upgrade", T0)
    opp = opp.move_to(Stage.PROPOSAL, T0 + timedelta(days=2)).move_to(Stage.WON, T0 + timedelta(days=9))
    assert [h.stage for h in opp.history] == [Stage.QUALIFICATION, Stage.PROPOSAL, Stage.WON]
    with pytest.raises(ValidationError, match="already won"):
        opp.move_to(Stage.LOST, T0 + timedelta(days=10))
    with pytest.raises(ValidationError, match="back in time"):
        Opportunity.open("o2", "c1", "x", T0).move_to(Stage.PROPOSAL, T0 - timedelta(days=1))


def test_case_resolution_and_sla() -> None:
    case = Case("k1", "c1", CaseKind.COMPLAINT, "Broken", T0, sla_due=T0 + timedelta(hours=4))
    assert case.status.is_open and case.within_sla is None
    done = case.resolve("Replaced", T0 + timedelta(hours=3))
    assert not done.status.is_open and done.within_sla is True
    late = case.resolve("Replaced", T0 + timedelta(hours=5))
    assert late.within_sla is False


def test_model_is_frozen() -> None:
    ada = Customer.new("Ada", birth_date=date(1815, 12, 10))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ada.name = "Other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"channel": "fax"}, "channel", "must be one of: visit, phone"),
        ({"direction": "sideways"}, "direction", "must be one of: inbound, outbound"),
        ({"satisfaction": 3.5}, "satisfaction", "whole number"),
        ({"nps": True}, "nps", "whole number"),
    ],
)
def test_interaction_refuses_unknown_choices_and_fractional_scores(
    fields: dict[str, object], field: str, reason: str
) -> None:
    from crmcore import Interaction

    base: dict[str, object] = {
        "id": "i1", "customer_id": "c1", "channel": "phone", "direction": "inbound", "occurred_at": T0,
    }
    with pytest.raises(ValidationError) as caught:
        Interaction(**{**base, **fields})  # type: ignore[arg-type]
    assert caught.value.field == field and reason in caught.value.reason
    assert caught.value.value == fields[field]


def test_opportunity_amount_and_facts_are_checked() -> None:
    with pytest.raises(ValidationError) as caught:
        Opportunity.open("o1", "c1", "Fibre", T0, amount="499")
    assert caught.value.field == "amount"
    with pytest.raises(ValidationError) as facts:
        Opportunity.open("o1", "c1", "Fibre", T0, attributes={"size": 1.5})
    assert facts.value.field == "attributes['size']"
    assert Opportunity.open("o1", "c1", "Fibre", T0, attributes={"size": "smb"}).attributes == {"size": "smb"}
