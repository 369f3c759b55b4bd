"""The one converter round-trips every model type, through plain data and through JSON."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmcore import serialization
from crmcore.errors import ValidationError
from crmcore.model import Customer
from crmcore.testing.strategies import MODEL_STRATEGIES, customers


@pytest.mark.parametrize("cls", list(MODEL_STRATEGIES), ids=lambda c: c.__name__)
@given(data=st.data())
def test_round_trip(cls: type, data: st.DataObject) -> None:
    item = data.draw(MODEL_STRATEGIES[cls])
    assert serialization.structure(serialization.unstructure(item), cls) == item
    assert serialization.loads(serialization.dumps(item), cls) == item


@given(customers())
def test_custom_attributes_keep_their_type(customer: Customer) -> None:
    back = serialization.loads(serialization.dumps(customer), Customer)
    assert {k: type(v) for k, v in back.attributes.items()} == {
        k: type(v) for k, v in customer.attributes.items()}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"emails": ["nope"]}, "Customer.emails[0]"),
        ({"addresses": [{"country": "ZZ"}]}, "Customer.addresses[0].country"),
        ({"version": -1}, "Customer.version"),
        ({"unknown": 1}, "Customer"),
    ],
)
def test_bad_data_names_its_path(change: dict[str, Any], field: str) -> None:
    data = serialization.unstructure(Customer.new("Ada"))
    with pytest.raises(ValidationError) as caught:
        serialization.structure({**data, **change}, Customer)
    assert caught.value.field.startswith(field)


@pytest.mark.parametrize("cls", list(MODEL_STRATEGIES), ids=lambda c: c.__name__)
@given(data=st.data())
def test_trusted_load_equals_validated_load(cls: type, data: st.DataObject) -> None:
    """Storage rebuilds records without validating them again; the result is the same record,
    with every nested value of the same type (an enum stays an enum, a tuple a tuple)."""
    item = data.draw(MODEL_STRATEGIES[cls])
    stored = serialization.dumps(item)
    trusted = serialization.load_stored(stored, cls)
    assert trusted == item
    assert serialization.unstructure(trusted) == serialization.unstructure(item)
    assert _types(trusted) == _types(item)


def _types(value: Any) -> Any:
    """The shape of a value's types, all the way down (an enum and its string are equal,
    their types are not)."""
    if attrs.has(type(value)):
        return (type(value), tuple(_types(getattr(value, f.name)) for f in attrs.fields(type(value))))
    if isinstance(value, tuple | list):
        return (type(value), tuple(_types(v) for v in value))
    if isinstance(value, dict):
        return (type(value), tuple(sorted((k, repr(_types(v))) for k, v in value.items())))
    if isinstance(value, frozenset):
        return (type(value), tuple(sorted(repr(_types(v)) for v in value)))
    return type(value)


def test_trusted_load_fills_fields_an_older_document_lacks() -> None:
    data = serialization.unstructure(Customer.new("Ada"))
    del data["tags"], data["attributes"]
    back = serialization.load_stored(data, Customer)
    assert back.tags == frozenset() and back.attributes == {}


def test_a_stored_document_that_does_not_fit_is_a_typed_error() -> None:
    with pytest.raises(ValidationError) as caught:
        serialization.load_stored('{"name": "no id"}', Customer)
    assert caught.value.field == "Customer"
