"""The CSV import's two paths (columnar regions, and row by row) run on one file into two
like bases: they must agree in every way, counts, refusals, error file and stored rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

import crmcore
from crmcore.io import import_file
from crmcore.io.importer import ImportResult
from tests.support import open_crm


def render(header: Sequence[str], rows: Sequence[Sequence[str]], *, delimiter: str = ",",
           newline: str = "\n") -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def paired(stack: ExitStack, backend: str, folder: Path, seed: Callable[[crmcore.CRM], None],
           **options: Any) -> tuple[crmcore.CRM, crmcore.CRM]:
    """Two fresh bases (for the columnar path, then the rows), each `seed`ed alike."""
    pair = []
    for side in ("columnar", "rows"):
        (folder / side).mkdir()
        crm = stack.enter_context(open_crm(backend, folder / side, **options))
        seed(crm)
        pair.append(crm)
    return pair[0], pair[1]


def outcome(result: ImportResult) -> tuple[Any, ...]:
    return (result.inserted, result.updated, result.unchanged, result.refused, result.skipped,
            result.ignored_columns, result.refusals, result.written)


def both(pair: tuple[crmcore.CRM, crmcore.CRM], folder: Path, kind: str, data: bytes,
         stored: Callable[[crmcore.CRM], Any], **options: Any) -> tuple[ImportResult, ImportResult]:
    """The file imported by each path into its own base; asserts they agree in every way
    (`stored`: what each base holds, compared by repr: amounts to their decimal places)."""
    source = folder / f"{kind}.csv"
    source.write_bytes(data)
    results = []
    for crm, columnar in zip(pair, (True, False), strict=True):
        errors = folder / f"errors-{columnar}.csv"
        errors.unlink(missing_ok=True)
        results.append(import_file(crm, kind, source, errors=errors, columnar=columnar, **options))
    fast, slow = results
    assert outcome(fast) == outcome(slow)
    assert slow.columnar == 0
    fast_errors, slow_errors = ((folder / f"errors-{c}.csv") for c in (True, False))
    assert fast_errors.exists() == slow_errors.exists()
    assert not fast_errors.exists() or fast_errors.read_bytes() == slow_errors.read_bytes()
    assert repr(stored(pair[0])) == repr(stored(pair[1]))
    return fast, slow


class Stop(Exception):
    """The power cut of `interrupted`."""


def interrupted(pair: tuple[crmcore.CRM, crmcore.CRM], source: Path, kind: str,
                stored: Callable[[crmcore.CRM], Any]) -> ImportResult:
    """`source` imported into the first base with a power cut at the third progress report,
    then resumed; the second base imports it whole by rows and must hold the same. Returns
    the resumed run's result."""
    seen = []

    def power_cut(position: int, size: int, done: int) -> None:
        seen.append(done)
        if len(seen) == 3:
            raise Stop

    crm, reference = pair
    with pytest.raises(Stop):
        import_file(crm, kind, source, batch=10, progress=power_cut)
    result = import_file(crm, kind, source, batch=10, resume=True)
    import_file(reference, kind, source, batch=10, columnar=False)
    assert stored(crm) == stored(reference)
    assert not source.with_name(f"{source.name}.checkpoint").exists()
    return result
