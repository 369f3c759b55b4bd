"""The `crmcore` command through its real entry point: exit codes, messages, files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer

import crmcore
from crmcore import cli
from crmcore.plugins import get_plugin_manager
from crmcore.synthetic import SyntheticBase
from tests.io.test_import import COLUMNS, MESSY


def console_script() -> str:
    found = shutil.which("crmcore", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("the crmcore console script is not installed (pip install -e .)")
    return found


def crmcore_cli(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: x for k, x in os.environ.items() if k not in ("CRMCORE_URL", "CRMCORE_DEBUG")}
    if url is not None:
        env["CRMCORE_URL"] = url
    env.update(PYTHONIOENCODING="utf-8", COLUMNS="200")
    return subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=300,
                          env=env, check=False)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The error line; a rule error may add the rule and a caret under the fault, nothing else."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.rstrip().splitlines()
    assert lines[0].startswith("crmcore: error: "), done.stderr
    assert len(lines) == 1 or (len(lines) == 3 and lines[2].strip() == "^"), done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("base")
    base = SyntheticBase(size=150, seed=11)
    with crmcore.open(f"sqlite:///{folder / 'crm.db'}", clock=lambda: base.as_of) as crm:
        base.load(crm)
    return f"sqlite:///{folder / 'crm.db'}"


def test_import_reports_refused_rows_and_exits_3(tmp_path: Path) -> None:
    source = tmp_path / "old.csv"
    source.write_text(MESSY, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'new.db'}"
    args = ["import", "customers", str(source), "--region", "FR", "--date-format", "%d/%m/%Y", "--quiet"]
    for pair in COLUMNS:
        args += ["--column", pair]
    done = crmcore_cli(*args, url=url)  # the URL from CRMCORE_URL
    assert done.returncode == 3, done.stderr
    assert "refused" in done.stdout and "line 3: created_at" in done.stdout
    assert "ignored columns (map them with --column): notes" in done.stdout
    errors = tmp_path / "old.csv.errors.csv"
    assert errors.read_text().splitlines()[0] == "line,field,value,reason"
    assert len(errors.read_text().splitlines()) == 4
    with crmcore.open(url) as crm:
        assert crm.customers.count() == 2
    good = tmp_path / "good.jsonl"
    good.write_text('{"name": "Zed", "email": "zed@example.org"}\n')
    done = crmcore_cli("import", "customers", str(good), "--url", url)
    assert done.returncode == 0, done.stderr
    assert "inserted" in done.stdout and "import good.jsonl" in done.stderr  # the progress bar


def test_accounts_go_out_and_back_in_through_the_command(base_url: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'accounts.db'}"
    with crmcore.open(url) as crm:
        crm.customers.add(crmcore.Customer.new("Ada", id="ada"))
    source = tmp_path / "accounts.csv"
    source.write_text('id,name,members\nacme,Acme,"[{""customer_id"": ""ada""}]"\n'
                      'bad,Bad,"[{""customer_id"": ""x""}]"\n')
    done = crmcore_cli("import", "accounts", str(source), "--url", url, "--quiet")
    assert done.returncode == 3, done.stderr  # a refused row
    assert "line 3: members" in done.stdout
    out = tmp_path / "out.jsonl"
    done = crmcore_cli("export", "accounts", str(out), "--url", url)
    assert done.returncode == 0, done.stderr
    assert '"id": "acme"' in out.read_text() and '"customer_id": "ada"' in out.read_text()


def test_an_interrupted_import_asks_to_resume(tmp_path: Path) -> None:
    source = tmp_path / "c.csv"
    source.write_text("name,email\nAnn,ann@example.org\nBen,ben@example.org\n")
    url = f"sqlite:///{tmp_path / 'new.db'}"
    (tmp_path / "c.csv.checkpoint").write_text("{}")
    done = crmcore_cli("import", "customers", str(source), "--url", url, "-q")
    assert done.returncode == 2 and "older version" in one_line_error(done)
    (tmp_path / "c.csv.checkpoint").unlink()
    assert crmcore_cli("import", "customers", str(source), "--url", url, "--dry-run", "-q").returncode == 0
    with crmcore.open(url) as crm:
        assert crm.customers.count() == 0


@pytest.mark.parametrize(("args", "message"), [
    (["export", "customers", "-"], "Missing option '--url'"),
    (["export", "customers", "-", "--url", "nosuch://x"], "no storage adapter for scheme 'nosuch'"),
    (["export", "customers", "-", "--url", "sqlite:///does/not/exist.db"], "no SQLite base at"),
    (["export", "leads", "-", "--url", "memory://"], "kind: must be one of customers, accounts"),
    (["segments", "explain", "tier = ", "--url", "memory://"], "rule: line 1"),
    (["import", "customers", "missing.csv", "--url", "memory://"], "cannot be read"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["demo", "--customers", "many"], "Invalid value for '--customers'"),
])
def test_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = crmcore_cli(*args)
    assert done.returncode == 2
    assert message in one_line_error(done)


def test_debug_shows_the_traceback() -> None:
    done = crmcore_cli("--debug", "export", "customers", "-", "--url", "nosuch://x")
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr and "UnknownScheme" in done.stderr


def test_export_segments_scores_migrate_worker(base_url: str, tmp_path: Path) -> None:
    exported = crmcore_cli("export", "customers", "-", "--url", base_url)
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines()
    assert lines[0].startswith("id,name,kind,emails,phones") and len(lines) == 151
    saved = crmcore_cli("segments", "save", "gold", "Gold customers", 'tier = "gold"', "--url", base_url)
    assert saved.returncode == 0 and 'segment gold version 1: tier = "gold"' in saved.stdout
    ran = crmcore_cli("segments", "run", "gold", "--url", base_url)
    with crmcore.open(base_url) as crm:
        gold = len(crm.customers.ids_matching('tier = "gold"'))
    assert ran.returncode == 0 and f"segment gold: {gold} members, {gold} entered, 0 left" in ran.stdout
    listed = crmcore_cli("segments", "list", "--url", base_url)
    assert "Gold customers" in listed.stdout and str(gold) in listed.stdout
    explained = crmcore_cli("segments", "explain", "gold", "--url", base_url)
    assert "engine: sql" in explained.stdout and "SELECT" in explained.stdout
    members = tmp_path / "gold.jsonl"
    done = crmcore_cli("export", "customers", str(members), "--segment", "gold", "--url", base_url)
    assert done.returncode == 0
    assert len(members.read_text().splitlines()) == gold
    refreshed = crmcore_cli("scores", "refresh", "--url", base_url, "--scorer", "rfm")
    assert refreshed.returncode == 0 and "rfm" in refreshed.stdout
    fitted = crmcore_cli("scores", "fit", "--url", base_url)
    assert fitted.returncode == 0 and "BetaGeo: r=" in fitted.stdout and "GammaGamma: p=" in fitted.stdout
    migrated = crmcore_cli("migrate", "--url", f"sqlite:///{tmp_path / 'fresh.db'}")
    assert migrated.returncode == 0 and "schema at version" in migrated.stdout
    worked = crmcore_cli("worker", "--once", "--url", base_url)
    assert worked.returncode == 0 and "events settled" in worked.stdout


class Greeter:
    """A plugin that adds `crmcore hello`."""

    @crmcore.hookimpl
    def crmcore_register_commands(self) -> list[typer.Typer]:
        hello = typer.Typer(name="hello", help="Say hello.")

        @hello.command()
        def run(name: str = "world") -> None:
            print(f"hello {name}")

        return [hello]


@pytest.fixture
def greeter() -> Iterator[None]:
    pm = get_plugin_manager()
    plugin = Greeter()
    pm.register(plugin)
    yield
    pm.unregister(plugin)


def test_a_plugin_adds_a_command(greeter: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["hello", "run", "--name", "Ada"]) == 0
    assert capsys.readouterr().out == "hello Ada\n"
    assert cli.main(["--help"]) == 0
    assert "hello" in capsys.readouterr().out


def test_sweeps_lead_scores_and_retention(tmp_path: Path) -> None:
    """The operational sweeps, the lead-score refresh and the retention rule, through the
    real entry point: a breached case escalates once however often the sweep runs, and an
    inactive lead is erased."""
    import crmcore
    from crmcore import CaseKind, CasePriority, Customer

    url = f"sqlite:///{tmp_path}/ops.db"
    crm = crmcore.open(url)
    ada = crm.customers.add(Customer.new("Ada", emails=["ada@example.org"], lifecycle="customer"))
    old = Customer.new("Old lead", emails=["old@example.org"],
                       created_at=datetime(2020, 1, 1, tzinfo=UTC))
    crm.customers.add(old)
    crm.operational.cases.open(ada.id, CaseKind.COMPLAINT, "Broken", priority=CasePriority.URGENT)
    crm.close()
    later = "2099-01-01T00:00:00+00:00"
    first = crmcore_cli("cases", "sweep", "--as-of", later, "--url", url)
    assert first.returncode == 0, first.stderr
    again = crmcore_cli("cases", "sweep", "--as-of", later, "--url", url)
    assert again.returncode == 0 and "0 steps taken" in again.stdout, again.stdout
    assert "steps taken" in first.stdout and "0 steps taken" not in first.stdout, first.stdout
    assert crmcore_cli("tasks", "remind", "--url", url).returncode == 0
    leads = crmcore_cli("scores", "leads", "--url", url)  # nothing won or lost yet to learn from
    assert leads.returncode == 2 and "needs both won and lost" in one_line_error(leads)
    dry = crmcore_cli("retention", "erase-leads", "--months", "12", "--dry-run", "--url", url)
    assert dry.returncode == 0 and "1 leads would be erased" in dry.stdout, dry.stdout + dry.stderr
    erased = crmcore_cli("retention", "erase-leads", "--months", "12", "--url", url)
    assert erased.returncode == 0 and "1 leads erased" in erased.stdout, erased.stdout + erased.stderr
    bad = crmcore_cli("retention", "erase-leads", "--months", "0", "--url", url)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    crm = crmcore.open(url)
    assert crm.customers.by_email("old@example.org") is None
    assert crm.customers.by_email("ada@example.org") is not None
    crm.close()


def test_stored_sla_policies_and_automation_rules(tmp_path: Path) -> None:
    """Save, list and trace stored configuration through the real entry point; a faulty
    file is one error line and nothing saved."""
    import json

    import crmcore

    url = f"sqlite:///{tmp_path}/config.db"
    crmcore.open(url).close()
    hour = 3600
    policy = {"targets": {p: {"first_response": hour, "resolution": 4 * hour}
                          for p in ("urgent", "high", "normal", "low")}, "warn_at": 0.5}
    (tmp_path / "sla.json").write_text(json.dumps(policy), encoding="utf-8")
    policy["targets"]["low"]["first_response"] = -5  # type: ignore[index]
    (tmp_path / "bad.json").write_text(json.dumps(policy), encoding="utf-8")
    rule = {"name": "vip_tag", "on": "case.opened",
            "steps": [{"action": "add_tag", "params": {"tag": "vip"}}], "condition": 'tier = "platinum"'}
    (tmp_path / "rule.json").write_text(json.dumps(rule), encoding="utf-8")
    saved = crmcore_cli("sla", "save", "default", str(tmp_path / "sla.json"), "--actor", "ana", "--url", url)
    assert saved.returncode == 0 and "version 1 saved" in saved.stdout, saved.stderr
    bad = crmcore_cli("sla", "save", "default", str(tmp_path / "bad.json"), "--url", url)
    assert bad.returncode != 0 and "targets.low.first_response" in one_line_error(bad)
    listed = crmcore_cli("sla", "list", "--url", url)
    assert "default" in listed.stdout and "50%" in listed.stdout and "1/4" in listed.stdout, listed.stdout
    history = crmcore_cli("sla", "history", "default", "--url", url)
    assert history.stdout.count("saved") == 1 and "ana" in history.stdout, history.stdout
    assert crmcore_cli("automation", "save", str(tmp_path / "rule.json"), "--url", url).returncode == 0
    rules = crmcore_cli("automation", "list", "--url", url)
    assert "vip_tag" in rules.stdout and "add_tag" in rules.stdout, rules.stdout
    missing = crmcore_cli("automation", "save", str(tmp_path / "nope.json"), "--url", url)
    assert "not a readable JSON file" in one_line_error(missing)
