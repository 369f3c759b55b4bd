"""`crmcore demo`: builds the base in a SQLite file and prints its summary."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

import crmcore
from crmcore import cli
from crmcore.synthetic import SyntheticBase

TITLES = ("Customers", "Service points", "Interactions by channel", "Purchases", "Cases",
          "Sales pipeline", "Segments (company rules, run as SQL)", "RFM segments, per currency",
          "Lifetime value and churn (BG/NBD + Gamma-Gamma), per currency",
          "Next best offers (mined from baskets)",
          "Service quality by channel", "A customer's timeline")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def without_timing(text: str) -> str:
    return re.sub(r"built .* in [0-9.]+ s", "built", text)


def test_demo_builds_the_base_and_prints_every_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "demo.db"
    code, out, err = run(capsys, "demo", "--db", str(db), "--customers", "60", "--seed", "4")
    assert (code, err) == (0, "")
    for title in TITLES:
        assert f"\n{title}\n" in out
    assert "60 stored" in out
    assert "operational family" in out and "collaborative family" in out
    base = SyntheticBase(size=60, seed=4)
    purchases = sum(1 for _ in base.purchases())
    assert f"{purchases:,} stored, by" in out
    with crmcore.open("memory://", clock=lambda: base.as_of) as reference:
        base.load(reference)
        for name, rule in cli.DEMO_RULES.items():
            members = len(reference.customers.ids_matching(rule))
            assert re.search(rf"\n  {re.escape(name)} +{members:,}\n", out), (name, members)
    with crmcore.open(f"sqlite:///{db}") as crm:
        assert crm.customers.count() == 60
        assert crm.cases.count() == sum(1 for _ in base.cases())
        assert {p.kind for p in crm.service_points.list()} == {p.kind for p in base.service_points()}


def test_same_seed_same_summary_and_the_file_is_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "demo.db"
    _, first, _ = run(capsys, "demo", "--db", str(db), "--customers", "30", "--seed", "2")
    _, again, _ = run(capsys, "demo", "--db", str(db), "--customers", "30", "--seed", "2")
    assert without_timing(first) == without_timing(again)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (30,)
    _, other, _ = run(capsys, "demo", "--db", str(db), "--customers", "30", "--seed", "3")
    assert without_timing(other) != without_timing(first)


def test_as_of_moves_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "--db", str(tmp_path / "d.db"), "--customers", "10",
                       "--as-of", "2030-06-01T12:00:00+02:00")
    assert code == 0 and "as of 2030-06-01 10:00 UTC" in out


def test_a_naive_as_of_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo", "--as-of", "2030-06-01T12:00:00")
    assert code == 2 and out == ""
    assert "--as-of" in err and "timezone-aware" in err and len(err.strip().splitlines()) == 1


def test_it_does_not_overwrite_a_file_that_is_not_sqlite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    code, out, err = run(capsys, "demo", "--db", str(precious), "--customers", "5")
    assert code == 2 and "not a SQLite file" in err and out == ""
    assert precious.read_text() == "keep me"


def test_bad_sizes_are_reported_not_raised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "demo", "--db", str(tmp_path / "d.db"), "--customers", "-4")
    assert code == 2 and "size" in err


def test_a_registered_section_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "SECTIONS", list(cli.SECTIONS))

    @cli.section("Extra figures")
    def extra(demo: cli.Demo) -> Iterable[str]:
        yield f"  {demo.crm.customers.count()} customers seen by a plugin section"

    code, out, _ = run(capsys, "demo", "--db", str(tmp_path / "d.db"), "--customers", "7")
    assert code == 0
    assert out.rstrip().endswith("Extra figures\n  7 customers seen by a plugin section")


def test_table_aligns_columns() -> None:
    assert cli.table([("a", 1_000), ("bbb", 5)], indent=0) == ["a    1,000", "bbb      5"]


def console_script() -> str:
    found = shutil.which("crmcore", path=str(Path(sys.executable).parent)) or shutil.which("crmcore")
    if found is None:
        pytest.fail("the crmcore console script is not installed (pip install -e .)")
    return found


def test_console_entry_point_builds_the_default_file_in_the_current_directory(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [console_script(), "demo", "--customers", "25", "--seed", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "25 stored" in done.stdout and "A customer's timeline" in done.stdout
    assert (tmp_path / "crmcore-demo.db").exists()
    version = subprocess.run([console_script(), "--version"], capture_output=True, text=True,
                             timeout=60, check=False)
    assert version.stdout.strip() == f"crmcore {crmcore.__version__}"


def test_python_dash_m_works_too(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crmcore.cli", "demo", "--db", str(tmp_path / "m.db"), "--customers", "5"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "5 stored" in done.stdout


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path) -> None:
    with subprocess.Popen(
        [console_script(), "demo", "--db", str(tmp_path / "p.db"), "--customers", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # like `| head` finishing before the demo has printed
        errors = proc.stderr.read()
        assert proc.wait(timeout=120) == 1
    assert b"Traceback" not in errors and b"Exception ignored" not in errors


def test_a_directory_as_the_demo_database_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "demo", "--db", str(tmp_path), "--customers", "5")
    assert code == 2 and out == ""
    assert "is a directory" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
