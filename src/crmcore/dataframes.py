"""Analytical results as pandas or polars DataFrames (the `dataframes` extra).

    from crmcore.dataframes import to_pandas, to_polars
    rfm = to_pandas(crm.analytical.rfm())                  # one row per buyer
    value = to_polars(crm.analytical.clv())                # columns straight from the arrays
    offers = to_pandas(crm.analytical.next_offers())       # a dict of results: its values
    quality = to_polars(crm.analytical.service_quality())

A result is either columnar (`Summary`, `Valuation`: one array per column, handed to
the library as is, so numeric columns are not copied row by row; polars reads them
through Arrow; the result's `currency` and `measure` repeated on every row, so money
columns of two frames in two currencies are never taken for one), or a list (or dict)
of attrs records (`RFM`, `Repurchase`, `ChurnAlert`,
`Offer`, `Quality`, `LeadScore`, `Rule`, model records), one row each; nested records
become `outer_inner` columns and dicts stay one column of dicts.
"""

from __future__ import annotations

import array
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

import attrs

from crmcore.errors import MissingExtra, ValidationError


def columns(result: Any) -> dict[str, Any]:
    """The result as named columns (lists, arrays or numpy arrays), in a stable order."""
    if attrs.has(type(result)) and "customer_ids" in attrs.fields_dict(type(result)):
        found: dict[str, Any] = {"customer_id": list(result.customer_ids)}
        for field in attrs.fields(type(result)):
            value = getattr(result, field.name)
            if field.name != "customer_ids" and _is_column(value, len(result.customer_ids)):
                found[field.name] = value
        for name in ("currency", "measure"):  # what the money columns are in: on every row
            if name in attrs.fields_dict(type(result)):
                found[name] = [getattr(result, name)] * len(result.customer_ids)
        return found
    rows = list(result.values()) if isinstance(result, Mapping) else list(result)
    if not rows:
        return {}
    if not all(attrs.has(type(row)) or hasattr(row, "_asdict") for row in rows):
        raise ValidationError("result", type(rows[0]).__name__, "is not a list of crmcore records")
    flat = [_flatten(row) for row in rows]
    names = list(flat[0])
    return {name: [row.get(name) for row in flat] for name in names}


def _is_column(value: Any, length: int) -> bool:
    return isinstance(value, list | array.array) or (hasattr(value, "shape") and len(value) == length)


def _flatten(record: Any, prefix: str = "") -> dict[str, Any]:
    """One row: an attrs record's fields (nested ones prefixed), or a named tuple's."""
    names = record._fields if hasattr(record, "_asdict") else [f.name for f in attrs.fields(type(record))]
    row: dict[str, Any] = {}
    for name in names:
        value = getattr(record, name)
        if attrs.has(type(value)):
            row.update(_flatten(value, f"{prefix}{name}_"))
        else:
            row[prefix + name] = value.value if isinstance(value, Enum) else value
    return row


def _arrays(data: dict[str, Any]) -> dict[str, Any]:
    import numpy

    return {k: numpy.frombuffer(v, dtype=v.typecode) if isinstance(v, array.array) else v
            for k, v in data.items()}


def to_pandas(result: Any | Iterable[Any]) -> Any:
    """A pandas DataFrame of an analytical result (needs the `dataframes` extra)."""
    try:
        import pandas
    except ImportError:
        raise MissingExtra("DataFrames", "dataframes") from None
    return pandas.DataFrame(_arrays(columns(result)))


def to_polars(result: Any | Iterable[Any]) -> Any:
    """A polars DataFrame of an analytical result (needs the `dataframes` extra)."""
    try:
        import polars
    except ImportError:
        raise MissingExtra("DataFrames", "dataframes") from None
    return polars.DataFrame(_arrays(columns(result)))
