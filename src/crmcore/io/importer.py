"""Importing a record file: good rows go in, refused rows are reported, a crash can resume.

Rows are read one at a time and written in batches, one transaction per batch, so
memory stays flat and a failure loses at most one batch. Each refused row is written
to the error file with its line, field, value and reason, and the rest still go in;
`all_or_nothing` instead writes nothing unless every row is good, and `dry_run` does
all the work in a transaction that is rolled back. After every committed batch a
checkpoint records the last line written, so `resume=True` picks up after a crash.
Imports write no events (an import is not a business event per record).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs

from crmcore.errors import CRMError, ValidationError
from crmcore.io import records as r
from crmcore.io.mapping import ColumnMapping, Target
from crmcore.io.sources import Row, Source
from crmcore.model import Case, Customer
from crmcore.ports import UnitOfWork

if TYPE_CHECKING:
    from crmcore.crm import CRM

Progress = Callable[[int, int, int], None]
"""Called after each batch with (bytes read, file size, records done)."""
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
    checkpoint: Path | str | None = None, resume: bool | None = None, batch: int = 1000,
    progress: Progress | None = None,
) -> ImportResult:
    """Import a CSV or JSON Lines file of `kind` records (customers, purchases, interactions, cases).

    Customers are matched on `key` ("id", "email", "phone" or "external_id.SOURCE"; default
    "id" when the file has an id column, else "email") and updated when found. Purchases,
    interactions and cases name their customer by a `customer_*` column; a row without an
    id gets one derived from its content, so importing the same rows twice adds them once.
    `checkpoint` (default: beside the file) is written after each batch unless `dry_run`
    or `all_or_nothing`; with a checkpoint present, `resume` must say whether to go on
    from it (True) or start over (False).
    """
    path = Path(path)
    mapping = mapping or ColumnMapping(kind)
    if mapping.kind != kind:
        raise ValidationError("mapping", mapping.kind, f"is a mapping for {mapping.kind}, not {kind}")
    if batch < 1:
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
        importer = _Importer(crm, mapping, key, result, sink)
        records = importer.records(source, after)
        if single:
            try:
                with crm.transaction() as uow:
                    for chunk in _chunks(records, batch):
                        for item in chunk:
                            importer.apply_or_refuse(uow, item, single=True)
                        _report(progress, source, result)
                    if dry_run or result.refused:
                        raise _Rollback
            except _Rollback:
                result.written = False
        else:
            assert mark is not None
            for chunk in _chunks(records, batch):
                importer.write_batch(chunk)
                mark.write(chunk[-1].end if isinstance(chunk[-1], r.Parsed) else chunk[-1][0], result)
                _report(progress, source, result)
            mark.clear()
    return result


def _report(progress: Progress | None, source: Source, result: ImportResult) -> None:
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


class _Importer:
    def __init__(self, crm: CRM, mapping: ColumnMapping, key: str | None, result: ImportResult,
                 sink: _Errors) -> None:
        self.crm = crm
        self.mapping = mapping
        self.key = key
        self.result = result
        self.sink = sink
        self._plans: dict[tuple[str, ...], dict[str, Target]] = {}

    def records(self, source: Source, after: int) -> Iterator[r.Parsed | tuple[int, r.Refused]]:
        def parsed() -> Iterator[r.Parsed | tuple[int, r.Refused]]:
            for row in source:
                if row.line <= after:
                    self.result.skipped += 1
                    continue
                try:
                    yield r.parse(self.mapping, {} if "" in row.cells else self._plan(row), row)
                except r.Refused as refused:
                    yield (row.line, refused)

        return r.grouped(parsed())

    def _plan(self, row: Row) -> dict[str, Target]:
        columns = tuple(row.cells)
        plan = self._plans.get(columns)
        if plan is None:
            plan, ignored = self.mapping.plan(columns)
            self.result.ignored_columns.extend(c for c in ignored if c not in self.result.ignored_columns)
            if self.key is None:
                self.key = "id" if "id" in {t.field for t in plan.values()} else "email"
            _check_key(self.mapping.kind, self.key)
            self._plans[columns] = plan
        return plan

    def write_batch(self, chunk: list[r.Parsed | tuple[int, r.Refused]]) -> None:
        """One transaction for the batch; if storage refuses it, one transaction per record."""
        before = attrs.evolve(self.result, refusals=list(self.result.refusals))
        pending: list[Refusal] = []
        try:
            with self.crm.transaction() as uow:
                for item in chunk:
                    self.apply_or_refuse(uow, item, single=False, pending=pending)
        except CRMError:
            for name in (*OUTCOMES, "refused"):
                setattr(self.result, name, getattr(before, name))
            self.result.refusals = before.refusals
            pending = []
            for item in chunk:
                try:
                    with self.crm.transaction() as uow:
                        self.apply_or_refuse(uow, item, single=False, pending=pending)
                except CRMError as exc:
                    line = item.line if isinstance(item, r.Parsed) else item[0]
                    self._refuse(Refusal(line, "row", None, str(exc)), pending)
        for refusal in pending:
            self.sink.write(refusal)

    def apply_or_refuse(self, uow: UnitOfWork, item: r.Parsed | tuple[int, r.Refused], *, single: bool,
                        pending: list[Refusal] | None = None) -> None:
        if isinstance(item, tuple):
            line, refused = item
            self._refuse(Refusal(line, refused.field, refused.value, refused.reason), pending)
            return
        try:
            self.result.count(self.apply(uow, item))
        except r.Refused as refused:
            self._refuse(Refusal(item.line, refused.field, refused.value, refused.reason), pending)
        except ValidationError as exc:
            self._refuse(Refusal(item.line, exc.field, exc.value, exc.reason), pending)
        except CRMError as exc:
            if single:  # the transaction cannot go on; the whole import is refused at this row
                self._refuse(Refusal(item.line, "row", None, str(exc)), pending)
                raise _Rollback from None
            raise

    def _refuse(self, refusal: Refusal, pending: list[Refusal] | None) -> None:
        self.result.refused += 1
        if len(self.result.refusals) < KEPT_REFUSALS:
            self.result.refusals.append(refusal)
        if pending is None:
            self.sink.write(refusal)
        else:
            pending.append(refusal)

    def apply(self, uow: UnitOfWork, parsed: r.Parsed) -> str:
        """Write one record; returns its outcome ("inserted", "updated" or "unchanged")."""
        now = self.crm.clock()
        region = self.mapping.region
        if parsed.kind == "customers":
            assert self.key is not None
            key = r.customer_key(parsed, self.key)
            found = r.find_customer(uow, key, region=region) if key else None
            if found is None:
                customer = r.new_customer(parsed, region=region, now=now)
                if "id" in parsed.fields and self.key != "id" and uow.customers.find(customer.id):
                    raise r.Refused("id", customer.id, f"belongs to a customer with another {self.key}")
                self._check_owners(uow, customer, skip=key[1] if key and key[0] == "email" else None)
                self.crm.plugins.hook.crmcore_validate_customer(customer=customer)
                uow.customers.add(customer)
                return "inserted"
            changed = r.merge(found, parsed, region=region, now=now)
            if changed == found:
                return "unchanged"
            self._check_owners(uow, changed)
            self.crm.plugins.hook.crmcore_validate_customer(customer=changed)
            uow.customers.update(changed)
            return "updated"
        customer_id = r.resolve(uow, parsed, region=region)
        record = r.owned_record(parsed, customer_id, now=now)
        stored = r.stored_record(uow, parsed.kind, record.id)
        if stored is None:
            getattr(uow, parsed.kind).add(record)
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
        uow.cases.update(case)
        return "updated"

    @staticmethod
    def _check_owners(uow: UnitOfWork, customer: Customer, skip: str | None = None) -> None:
        for address in customer.emails:
            if address == skip:
                continue
            owner = uow.customers.by_email(address)
            if owner is not None and owner.id != customer.id:
                raise r.Refused("emails", address, f"belongs to another customer ({owner.id})")
        for source, external in customer.external_ids.items():
            owner = uow.customers.by_external_id(source, external)
            if owner is not None and owner.id != customer.id:
                raise r.Refused(f"external_id.{source}", external,
                                f"belongs to another customer ({owner.id})")


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
