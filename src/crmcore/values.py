"""Value types and the validators the model is built from.

Every check raises `ValidationError` naming the field, the value and the reason,
so the model never holds a value it would later have to doubt.
"""

from __future__ import annotations

import enum
import math
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import attrs
import phonenumbers

from crmcore import limits
from crmcore.errors import LimitExceeded, ValidationError

T = TypeVar("T")

MONEY_SCALE = 4
"""Decimal places a money amount may carry; storage keeps amounts exact at this scale."""

_EMAIL = re.compile(r"^[^@\s\"<>(),;:\\\[\]]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def new_id() -> str:
    """A fresh random id: 32 hex digits, safe in URLs, SQL keys and file names."""
    return uuid.uuid4().hex


def now() -> datetime:
    return datetime.now(UTC)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch: how SQLite stores an instant, exactly."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


# ---- normalisers: raise ValidationError or return the canonical form ----


def email(value: object, field: str = "email") -> str:
    """Canonical e-mail address: trimmed, domain lower-cased (the local part is the owner's)."""
    if not isinstance(value, str):
        raise ValidationError(field, value, "must be a string")
    known = _EMAILS.get(value)
    if known is not None:
        return known
    canonical = _email(value, field)
    _remember(_EMAILS, value, canonical)
    _remember(_EMAILS, canonical, canonical)  # the model's validator checks it again (idempotent)
    return canonical


def _email(value: str, field: str) -> str:
    """`email` without the memory (tests compare the two)."""
    text = value.strip()
    if not _EMAIL.match(text) or ".." in text.split("@")[-1] or not _encodable(text):
        raise ValidationError(field, value, "is not an e-mail address")
    local, domain = text.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def phone(value: object, field: str = "phone", region: str | None = None) -> str:
    """E.164 form of a phone number written in any format (region for national numbers)."""
    if not isinstance(value, str):
        raise ValidationError(field, value, "must be a string")
    known = _PHONES.get((value, region))
    if known is not None:
        return known
    e164 = _phone(value, field, region)
    _remember(_PHONES, (value, region), e164)
    _remember(_PHONES, (e164, None), e164)  # the model's validator checks it again (a fixed point)
    return e164


def _phone(value: str, field: str, region: str | None) -> str:
    """`phone` without the memory (tests compare the two)."""
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        hint = "" if region else " (a national number needs a region, e.g. 'FR')"
        raise ValidationError(field, value, f"is not a phone number: {exc}{hint}") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValidationError(field, value, "is not a possible phone number")
    e164 = phonenumbers.format_number(parsed, _E164)
    if e164 != value:
        # A number starting with "+" reads the same in any region, but the E.164 form of
        # a national number may read as another number once more (000501234567 in AE:
        # +97100501234567, then +9710501234567, a national prefix stripped again): such
        # a number is refused here, with the reason, not stored in a form that is not
        # its own canonical form (the model would refuse it, saying less)
        try:
            again = phonenumbers.format_number(phonenumbers.parse(e164, None), _E164)
        except phonenumbers.NumberParseException as exc:
            again = f"nothing ({exc})"
        if again != e164:
            raise ValidationError(field, value,
                                  f"is not a phone number: read as {e164}, which reads as {again}")
    return e164


_E164 = phonenumbers.PhoneNumberFormat.E164
NORMALISED = 1 << 16
"""Normalised e-mails and phones remembered (parsing a phone costs ~17 - 40 µs; imports and
the model's own validators see the same values again and again). Only what the functions
without memory (`_email`, `_phone`) return for the same arguments is remembered, so a
result never depends on what was normalised before (tests/unit/test_normalisers.py)."""
_EMAILS: dict[str, str] = {}
_PHONES: dict[tuple[str, str | None], str] = {}


def _remember(cache: dict[Any, str], key: Any, canonical: str) -> None:
    """Keep a good value's canonical form; the cache starts over when full (bounded memory;
    only good values are kept, so a refusal always says why)."""
    if len(cache) >= NORMALISED:
        cache.clear()
    cache[key] = canonical


def utc(value: object, field: str = "time") -> datetime:
    """A timezone-aware instant converted to UTC; naive times are refused, not guessed."""
    if value.__class__ is datetime and value.tzinfo is UTC:  # most instants: nothing to convert
        return limits.in_calendar(value, field)  # (`astimezone(UTC)` would give back `value` itself)
    if not isinstance(value, datetime):
        raise ValidationError(field, value, "must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, value, "must be timezone-aware")
    return limits.in_calendar(value, field).astimezone(UTC)


def name(value: object, field: str = "name") -> str:
    """A machine name (tier, tag, purpose, skill): lower-case, no spaces, at most 64 chars."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValidationError(field, value, "must match [a-z][a-z0-9_.-]{0,63}")
    return value


def text(value: object, field: str, *, max_length: int = 1000, empty: bool = False,
         one_line: bool = False) -> str:
    """`one_line`: a name or an id, refused with control characters or line breaks (it ends
    up in mail headers, CSV cells and log lines, where a break starts something new)."""
    if not isinstance(value, str):
        raise ValidationError(field, value, "must be a string")
    if not empty and not value.strip():
        raise ValidationError(field, value, "must not be empty")
    if len(value) > max_length:
        raise LimitExceeded("length", field, value, max_length, f"is longer than {max_length} characters")
    if "\x00" in value:
        raise ValidationError(field, value, "must not contain NUL characters")
    if one_line and _BREAKS.search(value):
        raise ValidationError(field, value, "must be one line, without control characters")
    if not _encodable(value):
        raise ValidationError(field, value, "must not contain lone surrogates (it is not valid Unicode)")
    return value


LINE_BREAKING = "\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029"
"""A regex character class body: control characters but tab (Unicode Cc: CR, LF, NEL...)
and the line and paragraph separators (Zl, Zp), what some reader takes for a line's end
or a hidden instruction. Header text may hold a tab; a one-line value may not."""
_BREAKS = re.compile(f"[\t{LINE_BREAKING}]")


def _encodable(value: str) -> bool:
    """True when the text is valid Unicode: a lone surrogate has no UTF-8 and no database stores it."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def decimal(value: object, field: str = "amount") -> Decimal:
    """An exact Decimal with at most MONEY_SCALE places; floats are refused (they are not exact)."""
    if isinstance(value, bool | float):
        raise ValidationError(field, value, "must be a Decimal, int or string, not a float")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ValidationError(field, value, "is not a number") from None
    if not amount.is_finite():
        raise ValidationError(field, value, "must be finite")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MONEY_SCALE:
        raise ValidationError(field, value, f"has more than {MONEY_SCALE} decimal places")
    if abs(amount) >= limits.MONEY:
        raise LimitExceeded("money", field, value, limits.MONEY, f"is out of range (below {limits.MONEY:,})")
    return amount


# ---- attrs validators built from the normalisers ----


def check(normalise: Callable[..., Any]) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator that runs a normaliser and insists the value is already canonical."""

    def validator(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if normalise(value, attribute.name) != value:
            raise ValidationError(attribute.name, value, "is not in canonical form")

    return validator


def optional(
    validator: Callable[[Any, attrs.Attribute[Any], Any], None],
) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check_optional(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            validator(instance, attribute, value)

    return check_optional


def each(
    normalise: Callable[..., Any],
) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """Validate every element of a collection field with a normaliser."""

    def validator(_instance: Any, attribute: attrs.Attribute[Any], values: Any) -> None:
        for index, value in enumerate(values):
            if normalise(value, f"{attribute.name}[{index}]") != value:
                raise ValidationError(f"{attribute.name}[{index}]", value, "is not canonical")

    return validator


def _refuse(cls: type[enum.Enum], value: object) -> None:
    allowed = ", ".join(str(m.value) for m in cls)
    field = getattr(cls, "__field__", cls.__name__.lower())
    raise ValidationError(field, value, f"must be one of: {allowed}")


class _ChoiceType(enum.EnumType):
    """Calling a choice with one of its values (or members) is a dict lookup: the first step
    `Enum.__new__` takes, without the generic call machinery around it (model converters and
    storage call these enums for every record). Anything else goes the usual way, so unknown
    values are still refused by `_missing_`."""

    def __call__(cls, value: Any, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs:
            try:
                return cls._value2member_map_[value]
            except (KeyError, TypeError):
                pass
        return super().__call__(value, *args, **kwargs)


class _Refusing:
    """An unknown value is a ValidationError naming the field (`__field__`) and listing the
    allowed values, wherever the enum is called."""

    @classmethod
    def _missing_(cls, value: object) -> None:
        _refuse(cls, value)  # type: ignore[arg-type]


class Choice(_Refusing, enum.StrEnum, metaclass=_ChoiceType):
    """Base of crmcore's text enums."""


class IntChoice(_Refusing, enum.IntEnum, metaclass=_ChoiceType):
    """Base of crmcore's numbered enums."""


def whole(value: object, field: str, low: int, high: int) -> int:
    """A whole number in [low, high]; floats and bools are refused (SQL would round them)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, value, "must be a whole number")
    if not low <= value <= high:
        raise ValidationError(field, value, f"must be between {low} and {high}")
    return value


def integer(low: int, high: int) -> Callable[..., None]:
    """`whole` as an attrs validator."""

    def validator(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        whole(value, attribute.name, low, high)

    return validator


def is_utc(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    utc(value, attribute.name)
    if value.tzinfo is not UTC and value.utcoffset() != timedelta(0):
        raise ValidationError(attribute.name, value, "must be in UTC")


def is_text(max_length: int = 1000, empty: bool = False, one_line: bool = False) -> Callable[..., None]:
    def validator(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        text(value, attribute.name, max_length=max_length, empty=empty, one_line=one_line)

    return validator


def in_range(low: float, high: float) -> Callable[..., None]:
    def validator(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise ValidationError(attribute.name, value, "must be a number")
        if not low <= value <= high:
            raise ValidationError(attribute.name, value, f"must be between {low} and {high}")

    return validator


def instance_of(*types: type) -> Callable[..., None]:
    def validator(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = " or ".join(t.__name__ for t in types)
            raise ValidationError(attribute.name, value, f"must be {wanted}")

    return validator


def as_tuple(values: Iterable[Any] | None) -> tuple[Any, ...]:
    return tuple(values or ())


def as_frozenset(values: Iterable[Any] | None) -> frozenset[Any]:
    return frozenset(values or ())


def as_utc(value: datetime | str) -> datetime:
    """attrs converter: ISO strings are parsed; naive values are left for the validator to refuse."""
    if isinstance(value, str):
        from dateutil.parser import isoparse

        try:
            value = isoparse(value)
        except (ValueError, OverflowError) as exc:
            raise ValidationError("time", value, f"is not an ISO 8601 instant: {exc}") from None
    if isinstance(value, datetime) and value.tzinfo is not None:
        return utc(value)
    return value


def _amount(value: object) -> Decimal:
    return decimal(value, "amount")


def _currency(_instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not _CURRENCY.match(value):
        raise ValidationError(attribute.name, value, "must be an ISO 4217 code such as 'EUR'")


@attrs.frozen
class Money:
    """An exact amount in one currency (ISO 4217 code)."""

    amount: Decimal = attrs.field(converter=_amount)
    currency: str = attrs.field(default="EUR", validator=_currency)

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValidationError("currency", other.currency, f"cannot add to {self.currency}")
        return Money(self.amount + other.amount, self.currency)

    def __mul__(self, factor: int) -> Money:
        return Money(self.amount * factor, self.currency)

    def __str__(self) -> str:
        return f"{self.amount:,.2f} {self.currency}"

    @classmethod
    def zero(cls, currency: str = "EUR") -> Money:
        return cls(Decimal(0), currency)


AttributeValue = str | int | float | bool | Decimal | date | datetime
"""What a custom attribute may hold; the type is kept through storage and JSON."""


def attribute_value(value: object, field: str) -> AttributeValue:
    """Check a custom attribute's value: a datetime must be aware (it is stored in UTC),
    numbers finite (JSON and SQL have no NaN or infinity)."""
    if isinstance(value, datetime):
        return utc(value, field)
    if isinstance(value, str):
        return text(value, field, max_length=10_000, empty=True)
    infinite = isinstance(value, float) and not math.isfinite(value)
    if infinite or (isinstance(value, Decimal) and not value.is_finite()):
        raise ValidationError(field, value, "must be a finite number")
    if isinstance(value, bool | int | float | Decimal | date):
        return value
    raise ValidationError(field, value, "must be str, int, float, bool, Decimal, date or datetime")
