"""The e-mail and phone normalisers remember their results (imports and the model's
validators see the same values again and again); what they return or raise must not depend
on what was normalised before: always what the functions without memory give."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import phonenumbers
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from crmcore import Customer, ValidationError
from crmcore import values as v

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)

Outcome = tuple[Any, ...]


def outcome(normalise: Callable[..., str], *args: Any) -> Outcome:
    """What a call returns, or the field, value and reason it raises."""
    try:
        return ("ok", normalise(*args))
    except ValidationError as exc:
        return ("refused", type(exc), exc.field, exc.value, exc.reason)


@pytest.fixture(autouse=True)
def forgotten() -> Iterator[None]:
    """Each test starts and ends with empty memories (others must not see what it kept)."""
    v._EMAILS.clear()
    v._PHONES.clear()
    yield
    v._EMAILS.clear()
    v._PHONES.clear()


emails = st.one_of(
    st.text(max_size=40),
    st.builds(lambda local, domain, pad: f"{pad}{local}@{domain}{pad}",
              st.text(st.characters(codec="utf-8"), min_size=1, max_size=12),
              st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.-]{0,10}[A-Za-z0-9]", fullmatch=True),
              st.sampled_from(("", " ", "\t", "\u00a0"))),
)

phone_texts = st.one_of(
    st.text(max_size=24),
    st.builds(lambda plus, prefix, digits, gap: plus + prefix + gap.join(digits),
              st.sampled_from(("", "+", "00", "+971", "+355", "+33", "+39", "+1")),
              st.sampled_from(("", "0", "00", "8", "1")),
              st.lists(st.text("0123456789", min_size=1, max_size=4), min_size=1, max_size=5),
              st.sampled_from(("", " ", "-", "."))),
)
regions = st.one_of(st.none(), st.sampled_from(REGIONS))


@given(emails, st.sampled_from(("email", "emails[0]")))
def test_email_remembered_is_email_computed(text: str, field: str) -> None:
    computed = outcome(v._email, text, field)
    assert outcome(v.email, text, field) == computed  # the first time
    assert outcome(v.email, text, field) == computed  # and remembered
    if computed[0] == "ok":
        canonical = computed[1]
        assert outcome(v.email, canonical, field) == outcome(v._email, canonical, field) == computed


@given(phone_texts, regions, regions)
@example("000501234567", "AE", None)  # +97100501234567 reads as +9710501234567 once more
@example("+97100501234567", None, None)
@example("0008001234", "AL", "FR")
def test_phone_remembered_is_phone_computed(text: str, region: str | None, other: str | None) -> None:
    computed = outcome(v._phone, text, "phones[0]", region)
    assert outcome(v.phone, text, "phones[0]", region) == computed
    assert outcome(v.phone, text, "phones[0]", region) == computed
    if computed[0] == "ok":  # the model's validator reads the result again, without a region
        e164 = computed[1]
        for again in (None, other):
            assert outcome(v.phone, e164, "phones[0]", again) == outcome(v._phone, e164, "phones[0]", again)


@given(phone_texts, st.sampled_from(REGIONS))
def test_a_number_in_its_e164_form_reads_the_same_in_every_region(text: str, region: str) -> None:
    """Why `phone` may remember a number given in E.164 form as its own without a region."""
    computed = outcome(v._phone, text, "phone", region)
    if computed[0] == "ok" and computed[1] == text:
        assert outcome(v._phone, text, "phone", None) == computed


@given(phone_texts, st.sampled_from(REGIONS))
def test_a_phone_number_normalised_is_its_own_normal_form(text: str, region: str) -> None:
    """The law the memory and the model's validator rest on: normalising the E.164 form
    again, without a region, gives it back (the model stores what it checks)."""
    computed = outcome(v._phone, text, "phone", region)
    if computed[0] == "ok":
        assert outcome(v._phone, computed[1], "phone", None) == computed


def test_a_number_whose_e164_form_is_another_number_is_refused_with_why_every_time() -> None:
    """Remembered as its own, the E.164 form would pass the model's check in this process
    and not in a fresh one (nor would it be found again by a lookup in another process);
    it is refused where it is read, naming both forms."""
    for _ in range(2):
        with pytest.raises(ValidationError) as refused:
            Customer.new("Ahmed", phones=["000501234567"], region="AE")
        assert (refused.value.field, refused.value.value) == ("phones[0]", "000501234567")
        assert "+97100501234567" in refused.value.reason and "+9710501234567" in refused.value.reason
    assert v.phone("+9710501234567") == v.phone(v.phone("+9710501234567")) == "+971501234567"
