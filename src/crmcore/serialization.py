"""The one cattrs converter: JSON export, storage documents and plugin payloads all use it.

Built on first use, never at import. Every value keeps its type through a round
trip: Decimal stays exact (a string), datetimes stay aware, custom attributes of
type Decimal, date and datetime are tagged so they come back as what they were.
The model's enums are str (or int) subclasses, so they are written as their values.
"""

from __future__ import annotations

import functools
import json
import types
import typing
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import cattrs

from crmcore.errors import ValidationError
from crmcore.values import AttributeValue

T = TypeVar("T")

_TAGS: dict[str, Any] = {
    "$decimal": Decimal,
    "$date": date.fromisoformat,
    "$datetime": datetime.fromisoformat,
}


def _unstructure_attribute(value: AttributeValue) -> Any:
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    return value


def _structure_attribute(value: Any, _type: Any) -> AttributeValue:
    if isinstance(value, dict) and len(value) == 1:
        (tag, text), = value.items()
        if tag in _TAGS:
            return _TAGS[tag](text)  # type: ignore[no-any-return]
    if isinstance(value, str | int | float | bool):
        return value
    raise ValidationError("attributes", value, "is not a custom attribute value")


def _structure_datetime(value: Any, _type: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _structure_date(value: Any, _type: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _is_frozenset(cls: Any) -> bool:
    return cls is frozenset or typing.get_origin(cls) is frozenset


_SCALARS = (str, int, float, bool)


def _is_scalar_union(cls: Any) -> bool:
    args = typing.get_args(cls)
    return typing.get_origin(cls) in (typing.Union, types.UnionType) and bool(args) and all(
        a in _SCALARS for a in args
    )


def _structure_scalar(value: Any, cls: Any) -> Any:
    if isinstance(value, typing.get_args(cls)):
        return value
    raise ValidationError("value", value, f"must be one of {cls}")


@functools.cache
def converter() -> cattrs.Converter:
    """The converter for every model type (built once, on first call)."""
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_unstructure_hook(datetime, datetime.isoformat)
    conv.register_structure_hook(datetime, _structure_datetime)
    conv.register_unstructure_hook(date, date.isoformat)
    conv.register_structure_hook(date, _structure_date)
    conv.register_unstructure_hook(Decimal, str)
    conv.register_structure_hook(Decimal, lambda value, _t: Decimal(value))
    conv.register_unstructure_hook(timedelta, timedelta.total_seconds)
    conv.register_structure_hook(timedelta, lambda value, _t: timedelta(seconds=value))
    conv.register_unstructure_hook_func(_is_frozenset, lambda items: sorted(items))
    conv.register_unstructure_hook_func(lambda t: t == AttributeValue, _unstructure_attribute)
    conv.register_structure_hook_func(lambda t: t == AttributeValue, _structure_attribute)
    conv.register_structure_hook_func(_is_scalar_union, _structure_scalar)
    return conv


def unstructure(obj: Any) -> Any:
    """Plain data (dicts, lists, strings, numbers) for any model object."""
    return converter().unstructure(obj)


def structure(data: Any, cls: type[T]) -> T:
    """A model object from plain data; bad data raises `ValidationError` naming the path."""
    try:
        return converter().structure(data, cls)
    except ValidationError:
        raise
    except cattrs.BaseValidationError as exc:
        raise _first_error(exc, cls.__name__) from None
    except (TypeError, ValueError, KeyError) as exc:
        raise ValidationError(cls.__name__, data, str(exc)) from None


def _first_error(exc: BaseException, path: str) -> ValidationError:
    """The innermost cause of a cattrs error group, as one ValidationError with its path."""
    if isinstance(exc, cattrs.ClassValidationError | cattrs.IterableValidationError):
        located, unlocated = exc.group_exceptions()
        for inner, note in located:
            if isinstance(inner, ValidationError):  # it names its own field already
                return inner.within(path)
            name = getattr(note, "name", None)
            where = f"{path}.{name}" if name is not None else f"{path}[{getattr(note, 'index', '?')}]"
            return _first_error(inner, where)
        for inner in unlocated:
            return _first_error(inner, path)
    if isinstance(exc, ValidationError):
        return exc.within(path)
    return ValidationError(path, None, str(exc))


@functools.cache
def _encoder() -> json.JSONEncoder:
    """One compact encoder for every call (`json.dumps` with options builds one per call);
    model data is a tree, so the check for cycles is skipped."""
    return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)


def dumps(obj: Any) -> str:
    """Compact JSON of a model object."""
    return _encoder().encode(unstructure(obj))


def loads(text: str | bytes, cls: type[T]) -> T:
    return structure(json.loads(text), cls)
