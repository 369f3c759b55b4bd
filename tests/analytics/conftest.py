"""Backends for the analytics tests: every storage adapter, real servers included,
and the CDNOW sample loaded through crmcore."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import crmcore
from crmcore.crm import Clock
from crmcore.scoring.datasets import cdnow
from tests.support import open_crm, unavailable

BACKENDS = ("memory", "sqlite", "postgresql")


def cdnow_dir() -> Path:
    """The CDNOW files: next to the repository checkout (CI), else the shared data folder."""
    for candidate in (
        Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cdnow",
        Path("/work/shared/data/cdnow"),
    ):
        if (candidate / "CDNOW_sample.txt").is_file():
            return candidate.resolve()
    unavailable("the CDNOW sample (shared/data/cdnow) is not there")


def open_backend(name: str, tmp: Path, clock: Clock | None = None) -> Iterator[crmcore.CRM]:
    with open_crm(name, tmp, clock=clock) as crm:
        yield crm


@pytest.fixture(params=BACKENDS)
def crm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[crmcore.CRM]:
    yield from open_backend(request.param, tmp_path)


@pytest.fixture(scope="module", params=BACKENDS)
def cdnow_crm(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[crmcore.CRM]:
    """The CDNOW sample (2,357 customers, 6,919 purchases) imported on each backend."""
    folder = cdnow_dir()
    for crm in open_backend(request.param, tmp_path_factory.mktemp("cdnow")):
        crm.bulk_import(cdnow(folder / "CDNOW_sample.txt"))
        yield crm
