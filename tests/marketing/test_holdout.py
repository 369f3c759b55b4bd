"""The control group: exact per block and stratum, deterministic, auditable; last-touch attribution."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from crmcore.marketing import holdout
from crmcore.marketing.attribution import Touch, last_touch
from crmcore.model import MemberGroup

audiences = st.lists(
    st.tuples(st.text("0123456789abcdef", min_size=8, max_size=8), st.sampled_from(["", "gold", "silver"])),
    max_size=400,
    unique_by=lambda row: row[0],
).map(sorted)
fractions = st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.25, 1 / 3, 0.5])


@given(audiences, fractions, st.text(max_size=5))
def test_every_complete_block_of_every_stratum_holds_out_exactly_the_fraction(
    members: list[tuple[str, str]], fraction: float, seed: str
) -> None:
    design = holdout.Design.of("spring", seed, fraction)
    drawn = list(holdout.assign(design, members))
    assert [(c, s) for c, s, _ in drawn] == members
    for stratum in {s for _, s in members}:
        groups = [g for _, s, g in drawn if s == stratum]
        complete = len(groups) - len(groups) % design.size
        held = Counter(groups[:complete])[MemberGroup.CONTROL]
        assert held == complete // design.size * design.held
        assert abs(Counter(groups)[MemberGroup.CONTROL] - len(groups) * fraction) <= design.held + 1


@given(audiences, fractions)
def test_the_draw_is_a_function_of_campaign_and_seed_and_an_audit_finds_any_change(
    members: list[tuple[str, str]], fraction: float
) -> None:
    design = holdout.Design.of("spring", "s1", fraction)
    drawn = list(holdout.assign(design, members))
    assert drawn == list(holdout.assign(holdout.Design.of("spring", "s1", fraction), members))
    assert holdout.audit(design, drawn) == []
    if drawn:
        customer, stratum, group = drawn[0]
        flipped = MemberGroup.TARGET if group is MemberGroup.CONTROL else MemberGroup.CONTROL
        assert holdout.audit(design, [(customer, stratum, flipped), *drawn[1:]]) == [customer]


def test_other_seeds_draw_other_controls() -> None:
    members = [(f"{i:08x}", "") for i in range(1000)]
    first = {
        c for c, _, g in holdout.assign(holdout.Design.of("x", "a", 0.1), members) if g is MemberGroup.CONTROL
    }
    second = {
        c for c, _, g in holdout.assign(holdout.Design.of("x", "b", 0.1), members) if g is MemberGroup.CONTROL
    }
    assert len(first) == len(second) == 100
    assert len(first & second) < 40  # independent draws overlap by about 10


T = datetime(2026, 3, 1, tzinfo=UTC)
touches = st.lists(
    st.builds(
        Touch,
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 30).map(lambda d: T + timedelta(days=d)),
        st.one_of(st.none(), st.integers(1, 60).map(lambda d: T + timedelta(days=d))),
    ),
    max_size=6,
)


@given(touches, st.integers(0, 60))
def test_last_touch_credits_at_most_the_latest_open_touch_whatever_the_order(
    found: list[Touch], day: int
) -> None:
    bought = T + timedelta(days=day)
    winner = last_touch(bought, found)
    backwards = last_touch(bought, list(reversed(found)))
    assert (winner and winner.campaign_id) == (backwards and backwards.campaign_id)
    open_ones = [t for t in found if t.at <= bought and (t.window_ends is None or bought < t.window_ends)]
    if not open_ones:
        assert winner is None
    else:
        assert winner is not None and winner in open_ones
        assert winner.at == max(t.at for t in open_ones)
        assert winner.campaign_id == min(t.campaign_id for t in open_ones if t.at == winner.at)


@given(st.sampled_from([0.0, 0.1, 0.25, 0.5]), st.text(max_size=5))
def test_a_late_joiner_is_drawn_alone_with_the_designs_fraction(fraction: float, seed: str) -> None:
    design = holdout.Design.of("spring", seed, fraction)
    ids = [f"{i:08x}" for i in range(4000)]
    groups = [holdout.joined_group(design, c) for c in ids]
    assert groups == [holdout.joined_group(holdout.Design.of("spring", seed, fraction), c) for c in ids]
    held = Counter(groups)[MemberGroup.CONTROL]
    spread = (len(ids) * fraction * (1 - fraction)) ** 0.5
    assert abs(held - len(ids) * fraction) <= 5 * spread  # binomial: five standard deviations
