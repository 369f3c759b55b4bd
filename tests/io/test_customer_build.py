"""The shortcuts a customer import takes while building its records give what the general
code gives: the same values, and for bad input the same refusal (field, value, reason).

- consents of the written shape are built straight (`records._consents`) instead of
  through the converter (`records._structured`);
- a choice called with one of its values is a dict lookup (`values._ChoiceType`) instead of
  `Enum.__new__`;
- an instant already in UTC is not converted again (`values.utc`).
"""

from __future__ import annotations

import csv
import enum
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmcore import limits
from crmcore import values as v
from crmcore.errors import CRMError
from crmcore.io import import_file
from crmcore.io import records as r
from crmcore.model import Channel, Consent
from crmcore.model.customer import ConsentStatus, LifecycleStage
from crmcore.model.service import CasePriority
from tests.support import open_crm

WORDS = st.sampled_from(["marketing", "service", "Marketing", "email", "letter", "granted",
                         "withdrawn", "web-form", "", " ", "store", "sms", "1"])
INSTANTS = st.sampled_from(["2024-10-31T16:18:13.090356+00:00", "2024-10-31T16:18:13+02:00",
                            "2024-10-31T16:18:13", "2024-10-31", "0001-01-01T00:00:00+00:00",
                            "9999-12-31T23:59:59+00:00", "yesterday", "2024-02-30T10:00:00+00:00"])
SCALARS = st.one_of(WORDS, INSTANTS, st.integers(-2, 2), st.none(), st.booleans(), st.just(1.5),
                    st.just([]), st.just({}))


@st.composite
def consent_record(draw: st.DrawFn) -> Any:
    record: dict[str, Any] = {"purpose": draw(WORDS), "channel": draw(WORDS), "status": draw(WORDS),
                              "at": draw(INSTANTS), "source": draw(WORDS)}
    for key in draw(st.lists(st.sampled_from([*record, "extra"]), max_size=2)):
        if key in record and draw(st.booleans()):
            del record[key]
        else:
            record[key] = draw(SCALARS)
    return record if draw(st.integers(0, 9)) else draw(SCALARS)


CONSENTS = st.one_of(st.lists(consent_record(), max_size=3), SCALARS)


def outcome(build: Any, fields: dict[str, Any]) -> Any:
    try:
        return ("built", build(fields), fields)
    except r.Refused as refused:
        return ("refused", refused.field, repr(refused.value), refused.reason, fields)


@settings(max_examples=400, deadline=None)
@given(CONSENTS)
def test_consents_built_straight_are_what_the_converter_builds(records: Any) -> None:
    straight = outcome(r._consents, {"consents": records, "name": "x"})
    converted = outcome(lambda f: r._structured(f, "consents", Consent), {"consents": records, "name": "x"})
    assert straight == converted


CHOICES = (Channel, ConsentStatus, LifecycleStage, CasePriority)
ANY_VALUE = st.one_of(st.sampled_from([m for c in CHOICES for m in c]),
                      st.sampled_from([m.value for c in CHOICES for m in c]),
                      st.text(max_size=8), st.integers(-1, 5), st.floats(allow_nan=False), st.booleans(),
                      st.none(), st.just(["email"]), st.just(b"email"))


def called(call: Any) -> Any:
    try:
        found = call()
    except (CRMError, ValueError, TypeError) as exc:
        return ("refused", type(exc), str(exc))
    return ("found", type(found), found)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(CHOICES), ANY_VALUE)
def test_a_choice_called_with_a_value_is_what_enum_gives(choice: type[enum.Enum], value: Any) -> None:
    assert called(lambda: choice(value)) == called(lambda: enum.EnumType.__call__(choice, value))


def utc_before(value: object, field: str = "time") -> datetime:
    """`values.utc` as it was written before its shortcut for instants already in UTC."""
    if not isinstance(value, datetime):
        raise v.ValidationError(field, value, "must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise v.ValidationError(field, value, "must be timezone-aware")
    return limits.in_calendar(value, field).astimezone(UTC)


ZONES = st.sampled_from([UTC, None, timezone(timedelta(hours=2)), timezone(timedelta(0))])


@settings(max_examples=400, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), ZONES)
def test_utc_shortcut_is_the_general_conversion(moment: datetime, zone: Any) -> None:
    moment = moment.replace(tzinfo=zone)
    after, before = called(lambda: v.utc(moment, "at")), called(lambda: utc_before(moment, "at"))
    assert after == before
    if after[0] == "found":
        assert after[2].tzinfo is before[2].tzinfo


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_customer_file_with_consents_in_every_shape(backend: str, tmp_path: Path) -> None:
    """Good consents are stored as given; a bad one refuses its row with field, value and
    reason (the refusals the converter gave before consents were built straight)."""
    good = {"purpose": "marketing", "channel": "email", "status": "granted",
            "at": "2024-10-31T16:18:13.090356+02:00", "source": "web-form"}
    rows = [("c1", "Ann", [good]), ("c2", "Bob", [{**good, "channel": "pigeon"}]),
            ("c3", "Cyd", [{**good, "at": "2024-10-31T16:18:13"}]), ("c4", "Dee", [{**good, "extra": 1}]),
            ("c5", "Eve", [good, good]), ("c6", "Fay", [{k: x for k, x in good.items() if k != "source"}])]
    path = tmp_path / "customers.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(("id", "name", "consents"))
        writer.writerows((key, name, json.dumps(consents)) for key, name, consents in rows)
    with open_crm(backend, tmp_path) as crm:
        result = import_file(crm, "customers", path)
        assert (result.inserted, result.refused) == (1, 5)
        same = [("marketing", Channel.EMAIL)] * 2
        assert [(x.line, x.field, x.value, x.reason) for x in result.refusals] == [
            (3, "consents", "pigeon", "must be one of: " + ", ".join(c.value for c in Channel)),
            (4, "consents", datetime(2024, 10, 31, 16, 18, 13), "must be timezone-aware"),
            (5, "consents", None, "Extra fields in constructor for Consent: extra"),
            (6, "consents", same, "holds two answers for one purpose and channel"),
            (7, "consents", None, "source is missing"),
        ]
        stored = crm.customers.get("c1")
        at = datetime(2024, 10, 31, 14, 18, 13, 90356, tzinfo=UTC)
        expected = Consent("marketing", Channel.EMAIL, ConsentStatus.GRANTED, at, "web-form")
        assert stored.consents == (expected,)


@pytest.mark.parametrize("value", ["email", Channel.EMAIL])
def test_a_known_channel_is_its_member(value: Any) -> None:
    assert Channel(value) is Channel.EMAIL
