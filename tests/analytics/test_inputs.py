"""Bad input is refused with a typed error naming the field; nothing is half-written."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

import crmcore
from crmcore.errors import ValidationError
from crmcore.scoring import clv
from crmcore.scoring.churn import churn_alerts
from crmcore.scoring.rfm import compile_segments, quantile_scores
from crmcore.scoring.summary import Period, summary_of, summary_sql


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: Period.as_of(datetime(2024, 1, 1)), "as_of"),  # naive: refused, not guessed
        (lambda: Period.as_of("2024-01-01"), "as_of"),  # type: ignore[arg-type]
        (lambda: Period.as_of(date(2024, 1, 1), 0), "unit_days"),
        (lambda: summary_sql("oracle"), "dialect"),
        (lambda: quantile_scores([1.0], 0), "bins"),
        (lambda: compile_segments({"[": "broken"}), "segments['[']"),
        (lambda: clv.BetaGeo.fit([1, 2], [1], [2, 3]), "columns"),
        (lambda: clv.BetaGeo.fit([-1], [0], [2]), "frequency[0]"),
        (lambda: clv.BetaGeo.fit([1, 1.5], [1, 1], [2, 2]), "frequency[1]"),
        (lambda: clv.BetaGeo.fit([1], [3], [2]), "recency[0]"),
        (lambda: clv.BetaGeo.fit([0], [1], [2]), "recency[0]"),
        (lambda: clv.BetaGeo.fit([0], [0], [float("nan")]), "T[0]"),
        (lambda: clv.BetaGeo(1, 1, 2, 2).expected_purchases(-1, [1], [1], [2]), "t"),
        (lambda: clv.lifetime_value(clv.BetaGeo(1, 1, 2, 2), clv.GammaGamma(6, 4, 15), [1], [1], [2],
                                    [10], periods=0), "periods"),
    ],
)
def test_bad_input_names_the_field(call: object, field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        call()  # type: ignore[operator]
    assert raised.value.field == field


def test_churn_thresholds_are_checked() -> None:
    empty = summary_of([], date(2024, 1, 1))
    with pytest.raises(ValidationError, match="threshold"):
        churn_alerts(empty, [], threshold=1.5)
    with pytest.raises(ValidationError, match="p_alive"):
        churn_alerts(empty, [0.5])
    assert churn_alerts(empty, []) == []


def test_fitting_nothing_is_a_clear_error() -> None:
    with pytest.raises(clv.FitError):
        clv.BetaGeo.fit([], [], [])
    with pytest.raises(clv.FitError):
        clv.GammaGamma.fit([0, 0], [0, 0])


def test_a_failed_churn_run_writes_nothing() -> None:
    crm = crmcore.open("memory://")
    with pytest.raises(ValidationError):
        crm.analytical.churn_alerts(datetime(2024, 1, 1, tzinfo=UTC), threshold=2.0)
    with crm.transaction() as uow:
        assert uow.outbox.pending_count() == 0
