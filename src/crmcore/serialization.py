"""The one cattrs converter: JSON export, storage documents and plugin payloads all use it.

Built on first use, never at import. Every value keeps its type through a round
trip: Decimal stays exact (a string), datetimes stay aware, custom attributes of
type Decimal, date and datetime are tagged so they come back as what they were.
The model's enums are str (or int) subclasses, so they are written as their values.
"""

from __future__ import annotations

import enum
import functools
import json
import types
import typing
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import attrs
import cattrs

from crmcore.errors import ValidationError
from crmcore.values import AttributeValue

T = TypeVar("T")

_TAGS: dict[str, Any] = {
    "$decimal": Decimal,
    "$date": date.fromisoformat,
    "$datetime": datetime.fromisoformat,
}


def unstructure_attribute(value: AttributeValue) -> Any:
    """A custom attribute's value as stored (tagged where JSON has no such type)."""
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
    conv.register_unstructure_hook_func(lambda t: t == AttributeValue, unstructure_attribute)
    conv.register_structure_hook_func(lambda t: t == AttributeValue, _structure_attribute)
    conv.register_structure_hook_func(_is_scalar_union, _structure_scalar)
    return conv


_PLAIN = frozenset({str, int, float, bool})


def _is_plain(cls: Any) -> bool:
    """A JSON scalar type (or an optional one): stored data already has it, as is."""
    if cls in _PLAIN:
        return True
    args = typing.get_args(cls)
    return typing.get_origin(cls) in (typing.Union, types.UnionType) and all(
        a in _PLAIN or a is type(None) for a in args
    )


def _trusted_hook(conv: cattrs.Converter, kind: Any) -> Callable[[Any], Any] | None:
    """How to rebuild one stored field of this type: None when the JSON value is it."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if _is_plain(kind) or (origin is dict and all(_is_plain(a) for a in args)):
        return None
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind._value2member_map_.__getitem__
    if kind in _PARSERS:
        return _PARSERS[kind]
    if (origin is tuple and len(args) == 2 and args[1] is Ellipsis) or origin is frozenset:
        item = _trusted_hook(conv, args[0])
        if item is None:
            return origin
        return lambda values: origin(map(item, values))
    if attrs.has(kind):
        build = conv.get_structure_hook(kind)
        return lambda value: build(value, kind)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _trusted_hook(conv, inner[0])
    hook = conv.get_structure_hook(kind)
    return lambda value: hook(value, kind)


def _trusted_factory(conv: cattrs.Converter) -> Callable[[type], Callable[[Any, Any], Any]]:
    """Build, per attrs class, a function that sets the stored fields straight onto a new
    instance: no converter, no validator. Fields missing from an older document take
    their defaults, so a field added with a default needs no data migration."""

    def factory(cls: type) -> Callable[[Any, Any], Any]:
        attrs.resolve_types(cls)
        scope: dict[str, Any] = {"_new": object.__new__, "_set": object.__setattr__, "_cls": cls}
        lines = ["def build(data, _):", "    obj = _new(_cls)"]
        for index, field in enumerate(attrs.fields(cls)):
            hook = _trusted_hook(conv, field.type)
            if hook is None and field.converter is not None and _is_plain(field.type):
                # a plain declared type whose converter refines it (a known name becomes an
                # enum member): the one converter the stored value still needs
                hook = field.converter
            name = field.name
            if field.default is attrs.NOTHING:
                lines.append(f"    value = data[{name!r}]")
            else:
                default = field.default
                if isinstance(default, _FACTORY):
                    scope[f"_d{index}"] = getattr(default, "factory")  # noqa: B009
                    fallback = f"_d{index}()"
                else:
                    scope[f"_d{index}"] = default
                    fallback = f"_d{index}"
                lines.append(f"    value = data.get({name!r}, _MISSING)")
                lines.append(f"    if value is _MISSING: value = {fallback}")
            if hook is not None:
                scope[f"_h{index}"] = hook
                lines.append(f"    if value is not None and value is not _MISSING: value = _h{index}(value)")
            lines.append(f"    _set(obj, {name!r}, value)")
        lines.append("    return obj")
        scope["_MISSING"] = _MISSING
        exec("\n".join(lines), scope)  # built from the class's own field names only
        return scope["build"]  # type: ignore[no-any-return]

    return factory


_MISSING = object()
_PARSERS: dict[Any, Callable[[Any], Any]] = {
    datetime: datetime.fromisoformat, date: date.fromisoformat, Decimal: Decimal,
}
_FACTORY: type = type(attrs.Factory(list))


@functools.cache
def trusted_converter() -> cattrs.Converter:
    """The converter for data crmcore wrote itself (storage documents): it rebuilds
    records without running input validation again. Validation belongs at the edge,
    where data enters; what storage holds passed it when it was written."""
    conv = converter().copy()
    conv.register_structure_hook_factory(attrs.has, _trusted_factory(conv))
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
    if isinstance(exc, KeyError):  # cattrs: a required key absent (str() would be just its name)
        return ValidationError(path, None, f"{exc.args[0] if exc.args else path} is missing")
    return ValidationError(path, None, str(exc))


@functools.cache
def _encoder() -> json.JSONEncoder:
    """One compact encoder for every call (`json.dumps` with options builds one per call);
    model data is a tree, so the check for cycles is skipped."""
    return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)


def dumps(obj: Any) -> str:
    """Compact JSON of a model object."""
    return _encoder().encode(unstructure(obj))


def dumps_data(data: Any) -> str:
    """Compact JSON of plain data `unstructure` gave (what `dumps` writes, for a caller that
    keeps the plain data too)."""
    return _encoder().encode(data)


def loads(text: str | bytes, cls: type[T]) -> T:
    return structure(json.loads(text), cls)


def load_stored(doc: Any, cls: type[T]) -> T:
    """A record from a stored document (JSON text or already decoded), trusted: see
    `trusted_converter`. A document that does not fit the class is a storage fault."""
    data = json.loads(doc) if isinstance(doc, str | bytes) else doc
    try:
        return trusted_converter().structure(data, cls)
    except (KeyError, TypeError, ValueError, cattrs.BaseValidationError) as exc:
        raise ValidationError(cls.__name__, None, f"stored document does not fit: {exc!r}") from None
