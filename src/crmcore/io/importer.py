"""Importing a record file: good rows go in, refused rows are reported, a crash can resume.

Rows are read one at a time and written in batches, one transaction per batch, so
memory stays flat and a failure loses at most one batch. A batch looks its keys up in a
few queries (`lookups`) and writes its new records together (`add_many`, the path
`bulk_import` takes). Each refused row is written
to the error file with its line, field, value and reason, and the rest still go in;
`all_or_nothing` instead writes nothing unless every row is good, and `dry_run` does
all the work in a transaction that is rolled back. After every committed batch a
checkpoint records the last line written, so `resume=True` picks up after a crash.
A CSV of purchases or customers takes the columnar path where it can (`regions`;
`columnar` for purchases, `new_customers` for new customers): runs of plain lines are
checked column by column and written without a model object per row; any run with a
row that path cannot vouch for is read by the row path, so refusals, line numbers and
outcomes are the same either way.
Imports write no events (an import is not a business event per record), and, like
`bulk_import`, no history for new records; an update is written with its change.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import attrs

from crmcore import values as v
from crmcore.errors import CRMError, ValidationError
from crmcore.io import columnar, new_customers
from crmcore.io import records as r
from crmcore.io.lookups import UNKNOWN, Known
from crmcore.io.mapping import ColumnMapping, Target
from crmcore.io.regions import TRANSPARENT, Region, Regions
from crmcore.io.sources import Row, Source
from crmcore.lifecycle import history
from crmcore.model import Account, Case, Customer, Interaction, Purchase
from crmcore.ports import UnitOfWork
from crmcore.ports.storage import EncodedCustomers, EncodedPurchases
from crmcore.sql.dialect import dialect_of

if TYPE_CHECKING:
    from crmcore.crm import CRM

Progress = Callable[[int, int, int], None]
"""Called after each batch with (bytes read, file size, records done)."""
BATCH = 1000
"""Records per transaction on the row path, unless `batch` says otherwise."""
REGION = 40_000
"""Lines per region (one transaction each) on the columnar path, unless `batch` says
otherwise: a region's fixed costs (a commit and the index pages it writes, its lookups,
Arrow's set-up) are paid once for about 22,000 purchases (about 5 MB of text, still flat
in the file's size), and a crash redoes at most one region. Each commit writes again the
index and totals pages every region touches (purchases come in id order, not by
customer): 20,000 lines measured 0.3-0.4 s slower for 200,000 purchases once SQLite's
writers kept those pages cached (`sqlite.WRITER_CACHE_MB`), for 40 MB less peak RSS."""
CUSTOMERS_REGION = 10_000
"""`REGION` for customers: a customer's line is about six times a purchase line's, and
each of its cells becomes a Python value while the region is encoded. 40,000 lines held
610 MB at the peak, 10,000 hold 350 MB, for the same CPU time (100,000 customers)."""
KEPT_REFUSALS = 100
"""Refusals kept in the result for display (all of them go to the error file)."""
OUTCOMES = ("inserted", "updated", "unchanged")


@attrs.frozen
class Refusal:
    line: int
    field: str
    value: Any
    reason: str


@attrs.define
class ImportResult:
    """What an import did, by outcome; `written` is False after a dry run or a refused all-or-nothing."""

    kind: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0
    skipped: int = 0
    """Records before the checkpoint of a resumed import (written by the earlier run)."""
    columnar: int = 0
    """Records this run inserted through the columnar path (the others took the row path)."""
    ignored_columns: list[str] = attrs.field(factory=list)
    refusals: list[Refusal] = attrs.field(factory=list)
    """The first `KEPT_REFUSALS` refusals."""
    errors_file: Path | None = None
    dry_run: bool = False
    written: bool = True

    @property
    def read(self) -> int:
        return self.inserted + self.updated + self.unchanged + self.refused

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)


class _Rollback(Exception):
    """Leaves a dry run's (or a refused all-or-nothing's) transaction without committing."""


def import_file(
    crm: CRM, kind: str, path: Path | str, *, mapping: ColumnMapping | None = None, key: str | None = None,
    format: str | None = None, encoding: str | None = None, delimiter: str | None = None,
    dry_run: bool = False, all_or_nothing: bool = False, errors: Path | str | None = None,
    checkpoint: Path | str | None = None, resume: bool | None = None, batch: int | None = None,
    progress: Progress | None = None, columnar: bool = True,
) -> ImportResult:
    """Import a CSV or JSON Lines file of `kind` records (customers, accounts, purchases,
    interactions, cases).

    Customers are matched on `key` ("id", "email", "phone" or "external_id.SOURCE"; default
    "id" when the file has an id column, else "email") and updated when found. Purchases,
    interactions and cases name their customer by a `customer_*` column; a row without an
    id gets one derived from its content, so importing the same rows twice adds them once.
    Accounts are matched on id (an id-less row gets one from its name, kind and parent) and
    checked as `crm.operational.accounts` checks them; members come as JSON records.
    `checkpoint` (default: beside the file) is written after each batch unless `dry_run`
    or `all_or_nothing`; with a checkpoint present, `resume` must say whether to go on
    from it (True) or start over (False). `columnar=False` keeps a CSV of purchases or
    customers on the row path (the columnar path gives the same result, faster; see
    `docs/io.md`).
    `batch` is the records per transaction on the row path and the lines per region on
    the columnar path (default `BATCH`, and `REGION` or `CUSTOMERS_REGION`).
    """
    path = Path(path)
    mapping = mapping or ColumnMapping(kind)
    if mapping.kind != kind:
        raise ValidationError("mapping", mapping.kind, f"is a mapping for {mapping.kind}, not {kind}")
    if batch is not None and batch < 1:
        raise ValidationError("batch", batch, "must be at least 1")
    single = dry_run or all_or_nothing
    mark = None if single else Checkpoint(Path(checkpoint) if checkpoint else _beside(path, ".checkpoint"),
                                          path)
    result = ImportResult(kind, dry_run=dry_run)
    after = 0
    if mark is not None:
        saved = mark.read()
        if saved is not None:
            if resume is None:
                raise ValidationError("resume", None, f"an interrupted import of {path} stopped after line "
                                      f"{saved['line']}: go on from there with resume=True (--resume), "
                                      "or start over with resume=False (--restart)")
            if resume:
                after = int(saved["line"])
                for outcome in (*OUTCOMES, "refused"):
                    setattr(result, outcome, int(saved[outcome]))
    with ExitStack() as stack:
        source = stack.enter_context(Source(path, format=format, encoding=encoding, delimiter=delimiter))
        sink = _Errors(Path(errors) if errors else None, append=after > 0, result=result)
        stack.callback(sink.close)
        importer = _Importer(crm, mapping, key, result, sink, batch or BATCH,
                             batch or (CUSTOMERS_REGION if kind == "customers" else REGION))
        regions = importer.regions(source) if columnar else None
        units: Iterator[Unit]
        read: Source | Regions = source
        if regions is not None:
            read = stack.enter_context(regions[0])
            units = importer.units(regions[0], regions[1], after)
        else:
            units = _chunks(importer.records(source, after), importer.batch)
        if single:
            try:
                with crm.transaction() as uow:
                    for unit in units:
                        importer.apply_alone(uow, unit)
                        _report(progress, read, result)
                    if dry_run or result.refused:
                        raise _Rollback
            except _Rollback:
                result.written = False
        else:
            assert mark is not None
            for unit in units:
                importer.write(unit)
                mark.write(_last_line(unit), result)
                _report(progress, read, result)
            mark.clear()
    return result


def _report(progress: Progress | None, source: Source | Regions, result: ImportResult) -> None:
    if progress is not None:
        progress(source.position, source.size, result.read + result.skipped)


def _beside(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


Item = r.Parsed | tuple[int, r.Refused]
"""A record read from the file, or the refusal of a row that could not be read."""
Unit = list[Item] | Region
"""What one transaction of an import writes: a batch of records, or a region of plain lines."""


def _last_line(unit: Unit) -> int:
    if isinstance(unit, Region):
        return unit.last
    return unit[-1].end if isinstance(unit[-1], r.Parsed) else unit[-1][0]


STORED_AS = {"purchases": Purchase, "interactions": Interaction, "cases": Case}
HISTORY_KIND = {"customers": "customer", "cases": "case"}
"""The history's name of each kind an import updates (imports add without history, as
`bulk_import` does; an update is written with its change, so as-of reads stay true)."""


class _Importer:
    def __init__(self, crm: CRM, mapping: ColumnMapping, key: str | None, result: ImportResult,
                 sink: _Errors, batch: int, region: int) -> None:
        self.crm = crm
        self.batch = batch
        self.region = region
        self.mapping = mapping
        self.key = key
        self.result = result
        self.sink = sink
        self._plans: dict[tuple[str, ...], r.Plan] = {}
        self.fields: dict[str, str] = {}
        """The column of each field, on the columnar path (purchases)."""
        self.customer_columns: dict[str, Target] = {}
        """The target of each column, on the columnar path (customers)."""

    def records(self, source: Iterable[Row], after: int) -> Iterator[Item]:
        def parsed() -> Iterator[Item]:
            parse = r.parse
            for row in source:
                if row.line <= after:
                    self.result.skipped += 1
                    continue
                try:
                    yield parse(self._plan(row), row)
                except r.Refused as refused:
                    yield (row.line, refused)

        return r.grouped(parsed())

    def _plan(self, row: Row) -> r.Plan:
        columns = tuple(row.cells)
        plan = self._plans.get(columns)
        if plan is None:
            if "" in row.cells:  # an unreadable row: `parse` refuses it before using the plan
                return r.Plan(self.mapping.kind, ())
            planned, ignored = self.mapping.plan(columns)
            self.result.ignored_columns.extend(c for c in ignored if c not in self.result.ignored_columns)
            if self.key is None:
                self.key = "id" if "id" in {t.field for t in planned.values()} else "email"
            _check_key(self.mapping.kind, self.key)
            plan = self._plans[columns] = r.Plan.of(self.mapping, planned)
        return plan

    # ---- the columnar path ----

    def regions(self, source: Source) -> tuple[Regions, dict[str, str]] | None:
        """The file opened for the columnar path, with the column of each field, when the
        kind, the mapping, pyarrow and the storage all allow it."""
        if source.format != "csv" or not columnar.available() \
                or codecs.lookup(source.encoding).name not in TRANSPARENT:
            return None
        regions = Regions(source.path, encoding=source.encoding, delimiter=source.delimiter)
        planned, _ = self.mapping.plan(regions.columns)
        fields: dict[str, str] | None
        if self.mapping.kind == "customers":
            fields = {} if self._new_customers(planned) else None
        else:
            fields = columnar.layout(self.mapping.kind, list(planned.items()))
        if fields is None or not self._takes_encoded():
            regions.close()
            return None
        return regions, fields

    def _new_customers(self, planned: dict[str, Target]) -> bool:
        """Whether new customers can be written as rows (`new_customers`): matched on the id
        the file gives, and no plugin validates customers (a hook takes the object)."""
        has_id = "id" in {target.field for target in planned.values()}
        key = self.key or ("id" if has_id else "email")
        columns = new_customers.layout(self.mapping, planned)
        if key != "id" or columns is None or self.crm.plugins.hook.crmcore_validate_customer.get_hookimpls():
            return False
        self.customer_columns = columns
        return True

    def _takes_encoded(self) -> bool:
        with self.crm.reading() as uow:
            repo = getattr(uow, self.mapping.kind)
            return dialect_of(uow) is not None and callable(getattr(repo, "add_encoded", None))

    def units(self, regions: Regions, fields: dict[str, str], after: int) -> Iterator[Unit]:
        """Regions as they come, and the rows between them in batches of records."""
        self.fields = fields
        key: Callable[[Sequence[str]], object] | None = None
        if self.mapping.kind == "purchases":
            ident, owner = (regions.columns.index(fields[f]) for f in ("id", "customer_id"))

            def key(cells: Sequence[str]) -> object:
                """What makes consecutive rows one purchase (`records.grouped`)."""
                given = cells[ident].strip() if ident < len(cells) else ""
                return (given, cells[owner].strip() if owner < len(cells) else "") if given else object()

        pieces = regions.pieces(self.region, key, after)
        for is_region, group in itertools.groupby(pieces, key=lambda piece: isinstance(piece, Region)):
            if is_region:
                yield from cast(Iterator[Region], group)
            else:
                yield from _chunks(self.records(cast(Iterator[Row], group), after), self.batch)

    def _encoded(self, region: Region) -> EncodedPurchases | None:
        self._plan(Row(region.first, dict.fromkeys(region.columns, "")))  # reports ignored columns
        data = region.utf8()
        if data is None:
            return None
        return columnar.encode(data, region.columns, region.delimiter, self.fields,
                               region.last - region.first + 1)

    @staticmethod
    def _add_encoded(uow: UnitOfWork, encoded: EncodedPurchases) -> bool:
        """Write the region's purchases, if every customer is stored and no purchase is
        (else the row path decides: a refusal, or "unchanged")."""
        known = Known(uow)
        owners = list(dict.fromkeys(encoded.customer_ids))
        if known.count("customers", owners) != len(owners) or known.count("purchases", encoded.ids):
            return False
        uow.purchases.add_encoded(encoded)  # type: ignore[attr-defined]
        return True

    def _took(self, count: int) -> None:
        """Count a region's records written through the columnar path."""
        self.result.inserted += count
        self.result.columnar += count

    def _customers(self, region: Region) -> EncodedCustomers | None:
        """A region's new customers as rows (`new_customers`), or None for the row path."""
        self._plan(Row(region.first, dict.fromkeys(region.columns, "")))  # reports ignored columns
        data = region.utf8()
        if data is None:
            return None
        encoder = new_customers.Encoder(self.mapping, self.customer_columns, self.crm.clock)
        return encoder.encode(data, region.columns, region.delimiter, region.last - region.first + 1)

    @staticmethod
    def _add_customers(uow: UnitOfWork, encoded: EncodedCustomers) -> bool:
        """Write the region's customers, if none of their ids, e-mails and external ids is
        stored (else the row path decides: an update, or a refusal)."""
        known = Known(uow)
        if known.count("customers", encoded.ids):
            return False
        known.load_emails(email for email, _ in encoded.emails)
        known.load_externals((source, external) for source, external, _ in encoded.external_ids)
        if any(owner is not None for owner in (*known.emails.values(), *known.externals.values())):
            return False
        uow.customers.add_encoded(encoded)  # type: ignore[attr-defined]
        return True

    def _columns(self, region: Region) -> tuple[Any, Callable[[UnitOfWork, Any], bool]]:
        """A region's records as columns (None: the row path reads it) and what writes them."""
        if self.mapping.kind == "customers":
            return self._customers(region), self._add_customers
        return self._encoded(region), self._add_encoded

    def write(self, unit: Unit) -> None:
        """One unit in its own transaction(s)."""
        if isinstance(unit, Region):
            self._columnar_or_rows(unit)
        else:
            self.write_batch(unit)

    def _columnar_or_rows(self, region: Region) -> None:
        """The region's columns written in one transaction, or its rows read one by one
        where the columns could not be had or were refused (their reasons then)."""
        encoded, add = self._columns(region)
        if encoded is not None:
            try:
                with self.crm.transaction() as uow:
                    written = add(uow, encoded)
            except CRMError:
                written = False
            if written:
                self._took(len(encoded.ids))
                return
        for chunk in _chunks(self.records(region.rows(), 0), self.batch):
            self.write_batch(chunk)

    # ---- the row path ----

    def write_batch(self, chunk: list[Item]) -> None:
        """One transaction for the batch; if storage refuses it, one transaction per record."""
        refusals: list[Refusal] = []
        try:
            with self.crm.transaction() as uow:
                outcomes = self.apply(uow, chunk, refusals, single=False)
        except CRMError:
            refusals, outcomes = [], []
            for item in chunk:
                alone: list[Refusal] = []
                try:
                    with self.crm.transaction() as uow:
                        outcomes += self.apply(uow, [item], alone, single=False)
                except CRMError as exc:
                    line = item.line if isinstance(item, r.Parsed) else item[0]
                    alone = [Refusal(line, "row", None, str(exc))]
                refusals += alone
        self._count(outcomes)
        self._emit(refusals)

    def apply_alone(self, uow: UnitOfWork, chunk: Unit) -> None:
        """A batch of a single-transaction import (dry run, all or nothing): a storage failure
        refuses the whole import at the row it hit."""
        if isinstance(chunk, Region):
            encoded, add = self._columns(chunk)
            if encoded is not None and self._alone(chunk, lambda: add(uow, encoded)):
                self._took(len(encoded.ids))
                return
            for part in _chunks(self.records(chunk.rows(), 0), self.batch):
                self.apply_alone(uow, part)
            return
        refusals: list[Refusal] = []
        try:
            self._count(self.apply(uow, chunk, refusals, single=True))
        finally:
            self._emit(refusals)

    def _alone(self, region: Region, add: Callable[[], bool]) -> bool:
        """A region's write in a single-transaction import: a storage failure refuses the
        whole import at the region."""
        try:
            return add()
        except CRMError as exc:  # the transaction cannot go on: the import is refused here
            self._emit([Refusal(region.first, "row", None,
                                f"{exc} (a record of lines {region.first}-{region.last})")])
            raise _Rollback from None

    def apply(self, uow: UnitOfWork, chunk: list[Item], refusals: list[Refusal], *,
              single: bool) -> list[str]:
        """Apply a batch: the outcome of each good record, once its writes are done."""
        batch = _Batch(self, uow)
        batch.prepare([item for item in chunk if isinstance(item, r.Parsed)])
        outcomes: list[str] = []
        for item in chunk:
            if isinstance(item, tuple):
                line, refused = item
                refusals.append(Refusal(line, refused.field, refused.value, refused.reason))
                continue
            try:
                outcomes.append(self._apply(batch, item))
            except r.Refused as refused:
                refusals.append(Refusal(item.line, refused.field, refused.value, refused.reason))
            except ValidationError as exc:
                refusals.append(Refusal(item.line, exc.field, exc.value, exc.reason))
            except CRMError as exc:
                if single:  # the transaction cannot go on; the whole import is refused at this row
                    refusals.append(Refusal(item.line, "row", None, str(exc)))
                    raise _Rollback from None
                raise
        try:
            batch.flush()
        except CRMError as exc:
            if single:
                first, last = batch.lines
                refusals.append(Refusal(first, "row", None, f"{exc} (a record of lines {first}-{last})"))
                raise _Rollback from None
            raise
        return outcomes

    def _count(self, outcomes: list[str]) -> None:
        for outcome in outcomes:
            self.result.count(outcome)

    def _emit(self, refusals: list[Refusal]) -> None:
        for refusal in sorted(refusals, key=lambda refused: refused.line):
            self.result.refused += 1
            if len(self.result.refusals) < KEPT_REFUSALS:
                self.result.refusals.append(refusal)
            self.sink.write(refusal)

    def _apply(self, batch: _Batch, parsed: r.Parsed) -> str:
        """Apply one record; returns its outcome ("inserted", "updated" or "unchanged")."""
        now = self.crm.clock()
        region = self.mapping.region
        if parsed.kind == "customers":
            assert self.key is not None
            key = r.customer_key(parsed, self.key)
            found = batch.customer(key) if key else None
            if found is None:
                customer = r.new_customer(parsed, region=region, now=now)
                if "id" in parsed.fields and self.key != "id" and batch.customer_exists(customer.id):
                    raise r.Refused("id", customer.id, f"belongs to a customer with another {self.key}")
                self._check_owners(batch, customer, skip=key[1] if key and key[0] == "email" else None)
                self.crm.plugins.hook.crmcore_validate_customer(customer=customer)
                batch.add("customers", customer, parsed)
                return "inserted"
            changed = r.merge(found, parsed, region=region, now=now)
            if changed == found:
                return "unchanged"
            self._check_owners(batch, changed)
            self.crm.plugins.hook.crmcore_validate_customer(customer=changed)
            batch.update("customers", found, changed, now)
            return "updated"
        if parsed.kind == "accounts":
            return self._apply_account(batch, parsed, now)
        customer_id = batch.resolve(parsed)
        record = r.owned_record(parsed, customer_id, now=now, id=batch.record_ids.get(id(parsed)))
        stored = batch.record(parsed.kind, record.id)
        if stored is None:
            batch.add(parsed.kind, record, parsed)
            return "inserted"
        if parsed.kind != "cases":
            if stored == record:
                return "unchanged"
            raise r.Refused("id", record.id, f"a different {parsed.kind[:-1]} with this id is stored "
                                             "(purchases and interactions are append-only)")
        assert isinstance(record, Case)  # the file wins for the fields it gives; the rest stays
        case = attrs.evolve(stored, **{k: getattr(record, k) for k in parsed.fields if k != "id"})
        if case == stored:
            return "unchanged"
        batch.update("cases", stored, case, now)
        return "updated"

    def _apply_account(self, batch: _Batch, parsed: r.Parsed, now: Any) -> str:
        """Accounts are checked as `crm.operational.accounts` checks them (parent, members,
        owner, no loop), which reads the batch's earlier accounts: they are written first."""
        batch.flush()
        accounts = self.crm.operational.accounts
        stored = batch.record("accounts", r.account_id(parsed))
        if stored is None:
            account = r.new_account(parsed)
            accounts.check(batch.uow, account)
            batch.add("accounts", account, parsed)
            return "inserted"
        changed = r.merge_account(stored, parsed)
        if changed == stored:
            return "unchanged"
        accounts.check(batch.uow, changed)
        batch.update("accounts", stored, changed, now)
        return "updated"

    @staticmethod
    def _check_owners(batch: _Batch, customer: Customer, skip: str | None = None) -> None:
        for address in customer.emails:
            if address == skip:
                continue
            owner = batch.email_owner(address)
            if owner is not None and owner != customer.id:
                raise r.Refused("emails", address, f"belongs to another customer ({owner})")
        for source, external in customer.external_ids.items():
            owner = batch.external_owner(source, external)
            if owner is not None and owner != customer.id:
                raise r.Refused(f"external_id.{source}", external,
                                f"belongs to another customer ({owner})")


class _Batch:
    """One batch in one unit of work: its stored keys read together (`Known`), its new
    records written together (`add_many`, the path `bulk_import` takes) when it ends, or
    sooner when a lookup must see them. A key the batch wrote is forgotten, so the next
    row naming it reads storage after the pending records are written."""

    def __init__(self, importer: _Importer, uow: UnitOfWork) -> None:
        self.uow = uow
        self.region = importer.mapping.region
        self.known = Known(uow)
        self.new: dict[str, list[Any]] = {}
        self.record_ids: dict[int, str] = {}
        """Content ids computed while preparing, by the parsed record's identity."""
        self.lines = (0, 0)
        """First and last line of the records waiting to be written."""

    def prepare(self, items: list[r.Parsed]) -> None:
        """Ask storage, in a few queries, about every key the batch names."""
        if not items or not self.known.speaks_sql:
            return
        known = self.known
        if items[0].kind == "customers":
            emails: list[str] = []
            for parsed in items:
                for address in parsed.fields.get("emails") or ():
                    try:
                        emails.append(v.email(address, "emails").lower())
                    except ValidationError:
                        continue  # refused when its row is applied
            known.load_emails(emails)
            known.load_externals((s, e) for parsed in items for s, e in parsed.external_ids.items())
            owners = [o for o in (*known.emails.values(), *known.externals.values()) if o is not None]
            known.load_customers([*(str(p.fields["id"]) for p in items if "id" in p.fields), *owners])
            return
        if items[0].kind == "accounts":
            known.load_records("accounts", Account, (r.account_id(p) for p in items))
            return
        by_id = [p for p in items if p.customer is not None and p.customer[0] == "id"]
        known.load_customer_ids(p.customer[1] for p in by_id if p.customer is not None)
        for parsed in by_id:
            if "id" not in parsed.fields and parsed.customer is not None:
                self.record_ids[id(parsed)] = r.record_id(parsed, parsed.customer[1])
        ids = [str(p.fields["id"]) for p in items if "id" in p.fields]
        known.load_records(items[0].kind, STORED_AS[items[0].kind], [*ids, *self.record_ids.values()])

    def flush(self) -> None:
        """Write the pending new records, a statement per table."""
        for kind, items in self.new.items():
            repo = getattr(self.uow, kind)
            add_many = getattr(repo, "add_many", None)
            if add_many is None:  # a storage plugin without the batch path
                for item in items:
                    repo.add(item)
            else:
                add_many(items)
        self.new = {}

    def add(self, kind: str, record: Any, parsed: r.Parsed) -> None:
        first = self.lines[0] if any(self.new.values()) else parsed.line
        self.lines = (first, parsed.end)
        self.new.setdefault(kind, []).append(record)
        self._forget(record)

    def update(self, kind: str, before: Any, after: Any, now: Any) -> None:
        stored = getattr(self.uow, kind).update(after)
        if kind in HISTORY_KIND:  # as the facade does: accounts keep no history
            history.record(self.uow, HISTORY_KIND[kind], before, stored, now)
        self._forget(stored)

    def _forget(self, record: Any) -> None:
        if isinstance(record, Customer):
            self.known.forget_customer(record)
        else:
            self.known.forget_record(record.id)

    def customer(self, key: tuple[str, str]) -> Customer | None:
        """The customer a key names (see `records.find_customer`)."""
        how, value = key
        known = self.known
        owner: Any = UNKNOWN
        if how == "id":
            owner = value
        elif how == "email":
            try:
                owner = known.emails.get(v.email(value, "emails").lower(), UNKNOWN)
            except ValidationError as exc:
                raise r.Refused.of(exc) from None
        elif how.startswith("external_id."):
            owner = known.externals.get((how.removeprefix("external_id."), value), UNKNOWN)
        if owner is None:
            return None
        found = UNKNOWN if owner is UNKNOWN else known.customers.get(owner, UNKNOWN)
        if found is not UNKNOWN:
            return cast(Customer | None, found)
        self.flush()
        return r.find_customer(self.uow, key, region=self.region)

    def customer_exists(self, customer_id: str) -> bool:
        found = self.known.customer_ids.get(customer_id, UNKNOWN)
        if found is UNKNOWN:
            self.flush()
            return r.customer_exists(self.uow, customer_id)
        return bool(found)

    def resolve(self, parsed: r.Parsed) -> str:
        """The id of the customer a purchase, interaction or case names; `Refused` if nobody."""
        assert parsed.customer is not None
        how, value = parsed.customer
        if how == "id":
            if self.customer_exists(value):
                return value
            found = None
        else:
            found = self.customer(parsed.customer)
        if found is None:
            raise r.Refused(f"customer_{how}", value, f"no customer with {how} {value!r}")
        return found.id

    def record(self, kind: str, record_id: str) -> Any:
        found = self.known.records.get(record_id, UNKNOWN)
        if found is UNKNOWN:
            self.flush()
            return r.stored_record(self.uow, kind, record_id)
        return found

    def email_owner(self, address: str) -> str | None:
        found = self.known.emails.get(address.lower(), UNKNOWN)
        if found is UNKNOWN:
            self.flush()
            owner = self.uow.customers.by_email(address)
            return None if owner is None else owner.id
        return cast(str | None, found)

    def external_owner(self, source: str, external: str) -> str | None:
        found = self.known.externals.get((source, external), UNKNOWN)
        if found is UNKNOWN:
            self.flush()
            owner = self.uow.customers.by_external_id(source, external)
            return None if owner is None else owner.id
        return cast(str | None, found)


def _check_key(kind: str, key: str) -> None:
    if kind != "customers":
        return
    if key in ("id", "email", "phone") or key.startswith("external_id."):
        return
    raise ValidationError("key", key, 'must be "id", "email", "phone" or "external_id.SOURCE"')


class _Errors:
    """The error file: one CSV row per refused record (line, field, value, reason), opened on first use."""

    def __init__(self, path: Path | None, *, append: bool, result: ImportResult) -> None:
        self.path = path
        self.append = append
        self.result = result
        self._file: IO[str] | None = None
        self._writer: Any = None

    def write(self, refusal: Refusal) -> None:
        if self.path is None:
            return
        if self._file is None:
            exists = self.append and self.path.exists()
            try:
                self._file = self.path.open("a" if exists else "w", encoding="utf-8", newline="")
            except OSError as exc:
                reason = f"cannot be written: {exc.strerror}"
                raise ValidationError("errors", str(self.path), reason) from None
            self._writer = csv.writer(self._file, lineterminator="\n")
            if not exists:
                self._writer.writerow(("line", "field", "value", "reason"))
            self.result.errors_file = self.path
        value = "" if refusal.value is None else str(refusal.value)
        self._writer.writerow((refusal.line, refusal.field, value, refusal.reason))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class Checkpoint:
    """The last line written by an import, kept beside the file so a crashed run can resume."""

    def __init__(self, path: Path, source: Path) -> None:
        self.path = path
        self.source = source

    def _identity(self) -> dict[str, Any]:
        stat = self.source.stat()
        return {"file": str(self.source.resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns}

    def read(self) -> dict[str, Any] | None:
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValidationError("checkpoint", str(self.path), f"cannot be read: {exc}") from None
        if not isinstance(saved, dict) or saved.get("source") != self._identity():
            raise ValidationError("checkpoint", str(self.path), "belongs to another file or an older "
                                                                "version of it; delete it to start over")
        return saved

    def write(self, line: int, result: ImportResult) -> None:
        data = {"source": self._identity(), "line": line,
                **{name: getattr(result, name) for name in (*OUTCOMES, "refused")}}
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            temporary.write_text(json.dumps(data), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            reason = f"cannot be written: {exc.strerror}"
            raise ValidationError("checkpoint", str(self.path), reason) from None

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
