"""RFM ranks in numpy and in pure Python give the same scores, ties included, so an install
without numpy scores customers exactly as one with it."""

from __future__ import annotations

import array
from datetime import date
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmcore.errors import ValidationError
from crmcore.scoring import rfm as rfm_module
from crmcore.scoring.ranks import machine_numbers, numpy_scores, python_scores, quantile_scores
from crmcore.scoring.rfm import rfm
from crmcore.scoring.summary import Period, Summary

# a few values drawn often (ties), among arbitrary ones; -0.0 and 0.0 are one value
tied = st.sampled_from([0.0, -0.0, 1.0, 2.5, -3.0, 1e300, float("inf"), float("-inf")])
floats = st.lists(st.one_of(tied, st.floats(allow_nan=False), st.integers(-10, 10).map(float)),
                  max_size=60)
whole = st.lists(st.integers(-(2**62), 2**62) | st.integers(0, 5), max_size=60)
bins = st.integers(1, 100)


@settings(max_examples=300, deadline=None)
@given(values=st.one_of(floats, whole), bins=bins, better=st.booleans())
def test_numpy_and_python_ranks_agree(values: list[float], bins: int, better: bool) -> None:
    expected = python_scores(values, bins, better)
    assert numpy_scores(machine_numbers(values), bins, better).tolist() == expected
    assert quantile_scores(values, bins, higher_is_better=better) == expected
    assert all(1 <= s <= bins for s in expected)
    # equal values, equal scores; a better value never scores lower
    for a, sa in zip(values, expected, strict=True):
        for b, sb in zip(values, expected, strict=True):
            if a == b:
                assert sa == sb
            elif (a > b) == better:
                assert sa >= sb


@st.composite
def summaries(draw: st.DrawFn) -> Summary:
    """A summary with whole and fractional ages, ties in every column, any unit of time."""
    n = draw(st.integers(0, 40))
    unit = draw(st.sampled_from([1.0, 7.0, 0.5, 30.4375, 1 / 3]))
    period = Period.as_of(date(2024, 6, 30), unit)
    T = [draw(st.integers(0, 400)) / unit for _ in range(n)]
    recency = [draw(st.sampled_from([0.0, t, t / 2, t / 3])) for t in T]
    frequency = [float(draw(st.integers(0, 4))) for _ in range(n)]
    total = [draw(st.one_of(st.sampled_from([0.0, 10.0, -5.0]), st.floats(-1e6, 1e6))) for _ in range(n)]
    return Summary(period, [f"c{i:03d}" for i in range(n)], array.array("d", frequency),
                   array.array("d", recency), array.array("d", T), array.array("d", [0.0] * n),
                   array.array("d", total), currency="EUR")


@settings(max_examples=150, deadline=None)
@given(summary=summaries(), bins=st.integers(1, 9))
def test_rfm_is_the_same_with_and_without_numpy(summary: Summary, bins: int) -> None:
    with_numpy = rfm(summary, bins=bins)
    with mock.patch.object(rfm_module, "numpy_or_none", lambda: None):
        without = rfm(summary, bins=bins)
    assert with_numpy == without
    assert [type(x) for row in with_numpy for x in row] == [type(x) for row in without for x in row]


@pytest.mark.parametrize(("values", "field"), [([1.0, float("nan")], "values[1]"),
                                               ([float("nan")], "values[0]")])
def test_nan_is_refused_by_both(values: list[float], field: str) -> None:
    for score in (lambda: python_scores(values, 5, True), lambda: quantile_scores(values)):
        with pytest.raises(ValidationError) as raised:
            score()
        assert raised.value.field == field


def test_values_that_do_not_compare_are_refused() -> None:
    with pytest.raises(ValidationError) as raised:
        quantile_scores([1.0, "a", None])  # type: ignore[list-item]
    assert raised.value.field == "values"
