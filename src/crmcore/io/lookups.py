"""What the stored base holds for one batch of imported rows, asked in a few queries.

Before a batch is applied, the importer asks here which of its customer ids, e-mails,
external ids and record ids are stored (and by whom): one query per kind of key and
`CHUNK` values, where the storage speaks SQL, instead of one lookup per row. A key that
was not asked for, or was forgotten because the batch itself wrote it, answers
`UNKNOWN`, and so does every key on a storage without SQL: the importer then asks the
repository, as it would row by row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, cast

from crmcore import serialization
from crmcore.model import Customer
from crmcore.ports import UnitOfWork
from crmcore.ports.storage import SqlUnitOfWork
from crmcore.sql.dialect import Dialect, dialect_of

UNKNOWN: Final[Any] = object()
"""The answer for a key nobody asked the storage about."""
CHUNK = 500
"""Values per `IN (...)` list (well under every driver's parameter limit)."""
TABLES = ("customers", "purchases", "interactions", "cases", "accounts")
"""Tables a batch reads records from (names are these constants, never file text)."""


class Known:
    """Stored records and key owners for one batch; empty (all `UNKNOWN`) without SQL."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = cast(SqlUnitOfWork, uow)
        self._dialect: Dialect | None = dialect_of(uow) if callable(getattr(uow, "select", None)) else None
        self.customers: dict[str, Customer | None] = {}
        self.emails: dict[str, str | None] = {}
        """Lower-cased e-mail -> the id of the customer it belongs to (None: nobody)."""
        self.externals: dict[tuple[str, str], str | None] = {}
        self.records: dict[str, Any] = {}
        """Record id -> the stored purchase, interaction, case or account (None: not stored)."""
        self.customer_ids: dict[str, bool] = {}

    @property
    def speaks_sql(self) -> bool:
        return self._dialect is not None

    def _select_in(
        self, sql: str, values: Sequence[Any], before: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Rows of `sql` (ending in `IN ({})`) for the values, CHUNK at a time."""
        assert self._dialect is not None
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(values), CHUNK):
            part = values[start:start + CHUNK]
            marks = ", ".join("?" * len(part))
            rows += self._uow.select(self._dialect.sql(sql.format(marks)), (*before, *part))
        return rows

    def count(self, table: str, ids: Sequence[str]) -> int:
        """How many of these ids `table` holds (each counted once): a count per `CHUNK`, no
        row fetched (a region of purchases asks it of some 20,000 customers)."""
        if table not in TABLES:
            raise ValueError(table)
        sql = f"SELECT COUNT(*) FROM {table} WHERE id IN ({{}})"  # noqa: S608 (a constant table name)
        return sum(int(found) for (found,) in self._select_in(sql, list(dict.fromkeys(ids))))

    def load_customers(self, ids: Iterable[str]) -> None:
        wanted = [i for i in dict.fromkeys(ids) if i not in self.customers]
        if self._dialect is None or not wanted:
            return
        self.customers.update(dict.fromkeys(wanted))
        for key, doc in self._select_in("SELECT id, doc FROM customers WHERE id IN ({})", wanted):
            self.customers[key] = serialization.load_stored(doc, Customer)
        self.customer_ids.update({key: found is not None for key, found in self.customers.items()})

    def load_customer_ids(self, ids: Iterable[str]) -> None:
        wanted = [i for i in dict.fromkeys(ids) if i not in self.customer_ids]
        if self._dialect is None or not wanted:
            return
        self.customer_ids.update(dict.fromkeys(wanted, False))
        for (key,) in self._select_in("SELECT id FROM customers WHERE id IN ({})", wanted):
            self.customer_ids[key] = True

    def load_emails(self, emails: Iterable[str]) -> None:
        """Owners of these e-mails (lower-cased, as the lookup table keeps them)."""
        wanted = [e for e in dict.fromkeys(emails) if e not in self.emails]
        if self._dialect is None or not wanted:
            return
        self.emails.update(dict.fromkeys(wanted))
        sql = "SELECT email, customer_id FROM customer_emails WHERE email IN ({})"
        self.emails.update({str(e): str(owner) for e, owner in self._select_in(sql, wanted)})

    def load_externals(self, pairs: Iterable[tuple[str, str]]) -> None:
        wanted = [p for p in dict.fromkeys(pairs) if p not in self.externals]
        if self._dialect is None or not wanted:
            return
        self.externals.update(dict.fromkeys(wanted))
        sql = ("SELECT external_id, customer_id FROM customer_external_ids "
               "WHERE source = ? AND external_id IN ({})")
        for source in dict.fromkeys(s for s, _ in wanted):
            values = [e for s, e in wanted if s == source]
            self.externals.update({(source, str(e)): str(owner)
                                   for e, owner in self._select_in(sql, values, (source,))})

    def load_records(self, table: str, cls: type[Any], ids: Iterable[str]) -> None:
        if table not in TABLES:
            raise ValueError(table)
        wanted = [i for i in dict.fromkeys(ids) if i not in self.records]
        if self._dialect is None or not wanted:
            return
        self.records.update(dict.fromkeys(wanted))
        sql = f"SELECT id, doc FROM {table} WHERE id IN ({{}})"  # noqa: S608 (a constant table name)
        for key, doc in self._select_in(sql, wanted):
            self.records[key] = serialization.load_stored(doc, cls)

    def forget_customer(self, customer: Customer) -> None:
        """The batch wrote this customer: its keys must be read from storage again."""
        self.customers.pop(customer.id, None)
        self.customer_ids.pop(customer.id, None)
        for address in customer.emails:
            self.emails.pop(address.lower(), None)
        for pair in customer.external_ids.items():
            self.externals.pop(pair, None)

    def forget_record(self, record_id: str) -> None:
        self.records.pop(record_id, None)
