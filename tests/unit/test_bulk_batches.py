"""Bulk import batching: every record once, one type a batch, bounded size, any interleaving."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crmcore.testing import strategies as s
from crmcore_adapters.storage import sql

records = st.lists(st.one_of(s.customers(), s.purchases(), s.interactions()), max_size=40)


@given(records, st.integers(min_value=1, max_value=7))
def test_batches_keep_every_record_once(items: list[object], size: int) -> None:
    batches = list(sql.bulk_batches(items, size))
    assert all(0 < len(batch) <= size for _, batch in batches)
    assert all(sql.BULK_TABLES[type(item)] is table for table, batch in batches for item in batch)
    flattened = [item for _, batch in batches for item in batch]
    assert sorted(map(id, flattened)) == sorted(map(id, items))
    for table, _ in batches:
        own = [item for item in items if sql.BULK_TABLES[type(item)] is table]
        assert [i for t, batch in batches if t is table for i in batch] == own
