"""The one converter round-trips every model type, through plain data and through JSON."""

from __future__ import annotations

from typing import Any

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
