"""Checks of the arguments the analytical calls take, so a wrong one is a ValidationError
naming it before anything is read or written (not an AttributeError deep in a fit, and not
a silently empty result such as the summary of currency "eur")."""

from __future__ import annotations

import math
import numbers as kinds
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from crmcore.errors import ValidationError

_CODE = re.compile(r"[A-Z]{3}")
T = TypeVar("T")


def currency(value: str | None, field: str = "currency") -> str | None:
    """None, or an ISO 4217 code such as "EUR" (the form purchases store)."""
    if value is not None and not (isinstance(value, str) and _CODE.fullmatch(value)):
        raise ValidationError(field, value, "must be an ISO 4217 code such as 'EUR', or None")
    return value


def rates(value: T, field: str = "rates") -> T:
    """None, or a source of dated rates (`crmcore.exchange.ExchangeRates`: a `rate` method)."""
    if value is not None and not callable(getattr(value, "rate", None)):
        raise ValidationError(field, type(value).__name__,
                              "must be exchange rates (an object with rate(base, quote, on))")
    return value


def instance(value: T, kind: type, field: str) -> T:
    """None, or an instance of `kind`."""
    if value is not None and not isinstance(value, kind):
        raise ValidationError(field, type(value).__name__, f"must be a {kind.__name__} or None")
    return value


def mapping(value: T, field: str) -> T:
    if not isinstance(value, Mapping):
        raise ValidationError(field, type(value).__name__, "must be a mapping")
    return value


def function(value: T, field: str) -> T:
    """None, or something callable."""
    if value is not None and not callable(value):
        raise ValidationError(field, type(value).__name__, "must be callable, or None")
    return value


def calling(function: Callable[..., T], field: str, subject: str, *args: Any) -> T:
    """A caller's function applied, its failure reported as a ValidationError naming the
    argument and the record it failed on (the original error chained)."""
    try:
        return function(*args)
    except Exception as exc:
        raise ValidationError(field, subject, f"raised {type(exc).__name__}: {exc}") from exc


def finite(value: float, field: str) -> float:
    """A finite real number (NaN would make every comparison false, and so select nobody)."""
    if isinstance(value, bool) or not isinstance(value, kinds.Real) or not math.isfinite(value):
        raise ValidationError(field, value, "must be a finite number")
    return float(value)


def number(value: float, field: str, *, low: float = 0.0, low_open: bool = False) -> float:
    """A finite real number >= low (> low when `low_open`)."""
    if isinstance(value, bool) or not isinstance(value, kinds.Real) or not math.isfinite(value) \
            or value < low or (low_open and value == low):
        raise ValidationError(field, value, f"must be a finite number {'>' if low_open else '>='} {low:g}")
    return float(value)


def numbers(values: float | Iterable[float], field: str, *, whole: bool = False) -> list[float]:
    """One or several finite numbers >= 0 (whole numbers with `whole`)."""
    single = isinstance(values, str) or not hasattr(values, "__iter__")
    items: list[Any] = [values] if single else list(values)  # type: ignore[arg-type]
    found = []
    for index, item in enumerate(items):
        name = field if single else f"{field}[{index}]"
        found.append(number(item, name))
        if whole and found[-1] != math.floor(found[-1]):
            raise ValidationError(name, item, "must be a whole number >= 0")
    return found
