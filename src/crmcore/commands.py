"""The `crmcore` subcommands that work on a base: data in and out, segments, scores,
the report, migrations and the event worker.

Each opens the base named by `--url` (or `CRMCORE_URL`), does one thing through the
library's public API and prints a short rich summary; errors are raised as
`CRMError`s and turned into one line by `crmcore.cli.main`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from crmcore import values as v
from crmcore.crm import CRM
from crmcore.errors import ValidationError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

Url = Annotated[str, typer.Option("--url", envvar="CRMCORE_URL", show_envvar=True, metavar="URL",
                                  help="The base: sqlite:///crm.db, postgresql://user@host/db, memory://")]


def _instant(text: str) -> datetime:
    try:
        return v.utc(v.as_utc(text), "--as-of")
    except (ValidationError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--as-of") from None


AsOf = Annotated[datetime | None, typer.Option("--as-of", parser=_instant, metavar="ISO-8601",
                                               help="The instant to compute as of, with its UTC offset.")]


@contextmanager
def opened(url: str, *, create: bool = False) -> Iterator[CRM]:
    """The base at `url`; a SQLite file that does not exist is refused unless `create`."""
    import crmcore

    parts = urlsplit(url)
    if parts.scheme == "sqlite" and not create and parts.path not in ("", "/", "/:memory:"):
        path = Path(parts.path[1:] if parts.path.startswith("//") else parts.path)
        if not path.exists():
            raise ValidationError("url", url, f"no SQLite base at {path}")
    with crmcore.open(url) as crm:
        yield crm


def register(app: typer.Typer) -> None:
    """Add the subcommands to the `crmcore` app (once)."""
    if getattr(app, "_crmcore_commands", False):
        return
    app.command("import")(import_command)
    app.command("export")(export_command)
    app.command("report")(report_command)
    app.command("migrate")(migrate_command)
    app.command("worker")(worker_command)
    groups: dict[str, tuple[str, dict[str, Callable[..., Any]]]] = {
        "segments": ("Saved segments: list, save, run, explain.", {
            "list": segments_list, "save": segments_save, "run": segments_run,
            "explain": segments_explain}),
        "scores": ("Scores: fit the lifetime-value model, refresh stored scores, score leads.", {
            "fit": scores_fit, "refresh": scores_refresh, "leads": scores_leads}),
        "cases": ("Cases: escalate what is due.", {"sweep": cases_sweep}),
        "sla": ("Stored SLA policies: list, save (a JSON file), history.", {
            "list": sla_list, "save": sla_save, "history": sla_history}),
        "automation": ("Stored automation rules and mail templates: list, save.", {
            "list": automation_list, "save": automation_save, "template": automation_template}),
        "tasks": ("Tasks: send the reminders that are due.", {"remind": tasks_remind}),
        "retention": ("Retention rules: erase what is kept too long.", {
            "erase-leads": retention_erase_leads}),
    }
    for name, (summary, commands) in groups.items():
        group = typer.Typer(help=summary, no_args_is_help=True)
        for command, function in commands.items():
            group.command(command)(function)
        app.add_typer(group, name=name)
    app._crmcore_commands = True  # type: ignore[attr-defined]


# ---- import / export ----

Kind = Annotated[str, typer.Argument(
    metavar="KIND", help="customers, accounts, purchases, interactions or cases")]


def import_command(
    kind: Kind,
    file: Annotated[Path, typer.Argument(help="A CSV or JSON Lines file (.jsonl).")],
    url: Url,
    format: Annotated[str | None, typer.Option(help="csv or jsonl (default: from the file name).")] = None,
    map: Annotated[Path | None, typer.Option("--map", help="A TOML column mapping (see docs/io.md).")] = None,
    column: Annotated[list[str] | None, typer.Option(
        "--column", "-c", help='One mapping: "column name=target", e.g. "E-mail=email". Repeatable.')] = None,
    key: Annotated[str | None, typer.Option(
        help="Match customers on id, email, phone or external_id.SOURCE (default: id if the file "
             "has one, else email).")] = None,
    region: Annotated[str | None, typer.Option(help="Country for national phone numbers, e.g. FR.")] = None,
    date_format: Annotated[str | None, typer.Option(help="strptime format of dates (default ISO 8601).")]
    = None,
    timezone: Annotated[str | None, typer.Option(help="Zone of times without an offset (default UTC).")]
    = None,
    encoding: Annotated[str | None, typer.Option(help="Text encoding (default: UTF-8, else Windows-1252).")]
    = None,
    delimiter: Annotated[str | None, typer.Option(help="CSV separator (default: sniffed).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check everything, write nothing.")] = False,
    all_or_nothing: Annotated[bool, typer.Option(
        "--all-or-nothing", help="Write nothing unless every row is good.")] = False,
    errors: Annotated[Path | None, typer.Option(
        help="Where refused rows are listed (default: FILE.errors.csv, only if some are refused).")] = None,
    resume: Annotated[bool | None, typer.Option(
        "--resume/--restart", help="After an interrupted import: go on from its checkpoint, or start over.")]
    = None,
    batch: Annotated[int | None, typer.Option(
        help="Records per transaction (default 1000); lines per region on the columnar path "
             "(default 20000).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Import customers, accounts, purchases, interactions or cases from CSV or JSON Lines.

    Good rows go in; each refused row is listed with its line, field and reason.
    Exit code 0 when every row went in, 3 when some were refused, 2 on an error.
    """
    from crmcore.io import ColumnMapping, import_file

    mapping = ColumnMapping.load(kind, map, column or (), region=region, date_format=date_format,
                                 timezone=timezone)
    errors = errors or file.with_name(file.name + ".errors.csv")
    with opened(url, create=True) as crm, _progress(quiet, f"import {file.name}") as advance:
        result = import_file(crm, kind, file, mapping=mapping, key=key, format=format, encoding=encoding,
                             delimiter=delimiter, dry_run=dry_run, all_or_nothing=all_or_nothing,
                             errors=errors, resume=resume, batch=batch, progress=advance)
    table = Table(title=f"{kind} from {file}" + (" (dry run: nothing written)" if dry_run else ""),
                  show_header=False)
    for name in ("inserted", "updated", "unchanged", "refused", "skipped"):
        if getattr(result, name) or name in ("inserted", "refused"):
            table.add_row(name, f"{getattr(result, name):,}")
    out.print(table)
    if result.ignored_columns:
        out.print("ignored columns (map them with --column): " + ", ".join(result.ignored_columns),
                  markup=False)
    for refusal in result.refusals[:5]:
        out.print(f"line {refusal.line}: {refusal.field}: {refusal.reason}", markup=False)
    if result.refused:
        out.print(f"all {result.refused:,} refused rows are listed in {result.errors_file}", markup=False)
        if not result.written and not dry_run:
            out.print("nothing was written (--all-or-nothing)")
        raise typer.Exit(3)


@contextmanager
def _progress(quiet: bool, title: str) -> Iterator[Any]:
    """A rich progress bar (bytes, rate, time left) fed by the importer's callback; it appears
    with the first batch, so an import refused before it starts prints only its error."""
    if quiet:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[records]:,} records, {task.fields[rate]:,.0f}/s"),
               TransferSpeedColumn(), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
    bar = Progress(*columns, console=err)
    task = bar.add_task(title, total=None, records=0, rate=0.0)
    started = time.perf_counter()

    def advance(done: int, size: int, records: int) -> None:
        if not bar.live.is_started:
            bar.start()
        rate = records / max(time.perf_counter() - started, 1e-6)
        bar.update(task, completed=done, total=size, records=records, rate=rate)

    try:
        yield advance
    finally:
        if bar.live.is_started:
            bar.stop()


def export_command(
    kind: Annotated[str, typer.Argument(
        metavar="KIND", help="customers, accounts, purchases, interactions, cases or campaign_members")],
    file: Annotated[str, typer.Argument(help="A .csv or .jsonl file, or - for standard output.")],
    url: Url,
    format: Annotated[str | None, typer.Option(help="csv or jsonl (default: from the file name).")] = None,
    map: Annotated[Path | None, typer.Option("--map", help="Write only these columns, renamed.")] = None,
    column: Annotated[list[str] | None, typer.Option("--column", "-c", help='"column name=field"')] = None,
    segment: Annotated[str | None, typer.Option(help="Only the members of this saved segment.")] = None,
    rule: Annotated[str | None, typer.Option(help="Only the customers this rule matches.")] = None,
    customer: Annotated[str | None, typer.Option(
        help="Only this customer's records (interactions: the timeline).")] = None,
    campaign: Annotated[str | None, typer.Option(
        help="With KIND campaign_members: this campaign's results.")] = None,
) -> None:
    """Export records to CSV or JSON Lines, in the columns `crmcore import` reads back."""
    from crmcore.io import ColumnMapping, export_file

    mapping = ColumnMapping.load(kind, map, column or ()) if (map or column) else None
    with opened(url) as crm:
        count = export_file(crm, kind, file, format=format, mapping=mapping, segment=segment, rule=rule,
                            customer=customer, campaign=campaign)
    if file != "-":
        err.print(f"{count:,} {kind} written to {file}", markup=False)


# ---- segments ----


def segments_list(url: Url) -> None:
    """Saved segments with their rule, version and last run."""
    with opened(url) as crm:
        table = Table("id", "name", "version", "members", "last run", "rule")
        for segment in crm.segments.list():
            runs = crm.segments.runs(segment.id)
            last = runs[-1] if runs else None
            table.add_row(segment.id, segment.name, str(segment.version),
                          f"{last.size:,}" if last else "-", f"{last.at:%Y-%m-%d %H:%M}" if last else "never",
                          segment.rule)
    out.print(table)


def segments_save(
    id: Annotated[str, typer.Argument()], name: Annotated[str, typer.Argument()],
    rule: Annotated[str, typer.Argument()], url: Url,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Save a segment (a new version when the rule changed)."""
    with opened(url) as crm:
        stored = crm.segments.save(id, name, rule, description)
    out.print(f"segment {stored.id} version {stored.version}: {stored.rule}", markup=False)


def segments_run(id: Annotated[str, typer.Argument()], url: Url, as_of: AsOf = None) -> None:
    """Run a saved segment: who is in it now, who entered and who left."""
    with opened(url) as crm:
        found = crm.segments.run(id, as_of=as_of)
    out.print(f"segment {id}: {len(found.members):,} members, {len(found.entered):,} entered, "
              f"{len(found.left):,} left", markup=False)


def segments_explain(
    rule: Annotated[str, typer.Argument(help="A rule, or the id of a saved segment.")], url: Url,
    as_of: AsOf = None,
) -> None:
    """How a rule runs: in SQL, in Python, or both, and why."""
    from crmcore.segments import explain, registry

    with opened(url) as crm:
        saved = {s.id: s.rule for s in crm.segments.list()}
        text = saved.get(rule, rule)
        with crm.reading() as uow:
            found = explain(uow, text, as_of=as_of or crm.clock(), functions=registry(crm.plugins))
    out.print(f"rule: {text}\nengine: {found.engine}", markup=False)
    for reason in found.reasons:
        out.print(f"  because {reason}", markup=False)
    if found.sql:
        out.print(found.sql, markup=False)
        out.print(f"parameters: {list(found.params)}", markup=False)


# ---- scores ----


def scores_fit(
    url: Url, as_of: AsOf = None,
    counts: Annotated[str, typer.Option(help="bg/nbd or pareto/nbd")] = "bg/nbd",
    currency: Annotated[str | None, typer.Option(help="Fit this currency only (default: each one).")]
    = None,
) -> None:
    """Fit the lifetime-value models (purchases and spend), one per currency, and print them."""
    import attrs

    with opened(url) as crm:
        codes = [currency] if currency else crm.analytical.currencies(as_of)
        models = {code: crm.analytical.fit_clv(as_of, counts=counts, currency=code) for code in codes}
    for code, model in models.items():
        for part in (model.purchases, model.spend):
            fitted = attrs.asdict(part)
            values = ", ".join(f"{k}={x:.4g}" for k, x in fitted.items() if isinstance(x, float))
            out.print(f"{code} {type(part).__name__}: {values}", markup=False)


def scores_refresh(
    url: Url, as_of: AsOf = None,
    scorer: Annotated[list[str] | None, typer.Option(help="Only this scorer (repeatable).")] = None,
) -> None:
    """Run the scorers and store their dated snapshots."""
    with opened(url) as crm:
        written = crm.analytical.score(as_of, names=scorer or None)
    table = Table("scorer", "snapshots")
    for name, count in sorted(written.items()):
        table.add_row(name, f"{count:,}")
    out.print(table)


def scores_leads(url: Url, as_of: AsOf = None) -> None:
    """Refresh the lead scores (win probability of each customer's best open opportunity)."""
    with opened(url) as crm:
        written = crm.sales.leads.refresh_scores(as_of)
    out.print(f"{written:,} lead scores stored", markup=False)


# ---- operational sweeps and retention (safe to run as often as you like) ----


def cases_sweep(url: Url, as_of: AsOf = None) -> None:
    """Take every escalation step that is due (warn, breach, escalate), each exactly once."""
    with opened(url) as crm:
        report = crm.operational.cases.sweep(as_of)
    out.print(f"{report.examined:,} cases examined, {report.steps:,} steps taken, "
              f"{report.escalated:,} escalated", markup=False)


# ---- stored configuration (SLA policies, automation rules, templates) ----

JsonFile = Annotated[Path, typer.Argument(help="A JSON file: the configuration's stored form.")]
Actor = Annotated[str | None, typer.Option(help="Who is saving it (kept with the version).")]


def _json(file: Path) -> Any:
    import json

    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError("file", str(file), f"is not a readable JSON file: {exc}") from None


def _saved(what: str, entry: Any) -> None:
    out.print(f"{what} {entry.name} version {entry.version} saved", markup=False)


def sla_list(url: Url) -> None:
    """The stored SLA policies in force (`default`, or named after a service point)."""
    from crmcore.operational.sla import policy_data

    with opened(url) as crm:
        policies = crm.operational.cases.policies.all()
    table = Table("name", "warn at", "escalation team", "targets (first response / resolution, hours)")
    for name, policy in policies.items():
        targets = ", ".join(f"{p}: {t['first_response'] / 3600:g}/{t['resolution'] / 3600:g}"
                            for p, t in policy_data(policy)["targets"].items())
        table.add_row(name, f"{policy.warn_at:.0%}", policy.escalation_team or "-", targets)
    out.print(table)


def sla_save(name: Annotated[str, typer.Argument()], file: JsonFile, url: Url, actor: Actor = None) -> None:
    """Save an SLA policy (checked first: nothing is written if it is wrong)."""
    with opened(url) as crm:
        _saved("sla policy", crm.operational.cases.policies.save(name, _json(file), actor=actor))


def sla_history(name: Annotated[str, typer.Argument()], url: Url) -> None:
    """Every version of one SLA policy, oldest first."""
    with opened(url) as crm:
        versions = crm.operational.cases.policies.history(name)
    table = Table("version", "at", "by", "state")
    for entry in versions:
        table.add_row(str(entry.version), f"{entry.at:%Y-%m-%d %H:%M}", entry.actor or "-",
                      "retired" if entry.retired else "saved")
    out.print(table)


def automation_list(url: Url) -> None:
    """The stored automation rules in force."""
    with opened(url) as crm:
        rules = crm.operational.automation.stored.all()
    table = Table("name", "on", "actions", "condition")
    for name, rule in rules.items():
        table.add_row(name, rule.on, ", ".join(s.action for s in rule.steps), rule.condition or "-")
    out.print(table)


def automation_save(file: JsonFile, url: Url, actor: Actor = None) -> None:
    """Save an automation rule: {"name", "on", "steps": [{"action", "params"}], "condition"}."""
    data = _json(file)
    with opened(url) as crm:
        name = data.get("name") if isinstance(data, dict) else None
        _saved("automation rule", crm.operational.automation.stored.save(str(name), data, actor=actor))


def automation_template(name: Annotated[str, typer.Argument()], file: JsonFile, url: Url,
                        actor: Actor = None) -> None:
    """Save a mail template for `send_template`: {"subject", "text", "html", "translations"}."""
    with opened(url) as crm:
        _saved("mail template", crm.operational.mail.templates.save(name, _json(file), actor=actor))


def tasks_remind(url: Url, as_of: AsOf = None) -> None:
    """Emit the task reminders that have come, each exactly once."""
    with opened(url) as crm:
        sent = crm.operational.tasks.remind(as_of)
    out.print(f"{sent:,} reminders sent", markup=False)


def retention_erase_leads(
    url: Url,
    months: Annotated[int, typer.Option(help="Erase leads inactive for this many months.", min=1)],
    as_of: AsOf = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List them, erase nothing.")] = False,
) -> None:
    """Erase every lead inactive for MONTHS months (a tombstone records only that it happened)."""
    from crmcore.lifecycle import retention

    with opened(url) as crm:
        if dry_run:
            found = retention.inactive_leads(crm, months, as_of)
            out.print(f"{len(found):,} leads would be erased", markup=False)
            return
        erased = retention.erase_inactive_leads(crm, months, as_of)
    out.print(f"{len(erased):,} leads erased", markup=False)


# ---- report, migrate, worker ----


def report_command(
    url: Url,
    out_file: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")]
    = Path("report.html"),
    as_of: AsOf = None,
    title: Annotated[str, typer.Option(help="The report's title.")] = "Customer report",
) -> None:
    """Write one self-contained HTML report (charts inlined; opens without a network)."""
    from crmcore.report import write_report

    with opened(url) as crm:
        started = time.perf_counter()
        write_report(crm, out_file, as_of=as_of, title=title)
    err.print(f"report written to {out_file} in {time.perf_counter() - started:.1f} s", markup=False)


def migrate_command(url: Url) -> None:
    """Bring the base's schema up to date (opening a base migrates it; this says to which version)."""
    with opened(url, create=True) as crm:
        migrate = getattr(crm.storage, "migrate", None)
        if migrate is None:
            out.print(f"{crm.storage.url}: this storage has no schema to migrate", markup=False)
            return
        version = migrate()
    out.print(f"schema at version {version}", markup=False)


def worker_command(
    url: Url,
    interval: Annotated[float, typer.Option(help="Seconds to wait when the outbox is empty.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Deliver what is pending, then stop.")] = False,
    batch: Annotated[int, typer.Option(help="Events per round.")] = 500,
    retention_days: Annotated[
        float, typer.Option(help="Prune delivered events older than this (0 keeps them).")
    ] = 7.0,
) -> None:
    """Deliver outbox events to subscribers (`crmcore_on_event`) until stopped (Ctrl-C).

    Several workers may share one outbox: entries are leased, never delivered twice at once.
    """
    from crmcore.dispatcher import Dispatcher

    for field, value, least in (("interval", interval, 0), ("batch", batch, 1),
                                ("retention_days", retention_days, 0)):
        if value < least:
            raise ValidationError(field, value, f"must be at least {least}")
    with opened(url) as crm:
        dispatcher = Dispatcher(crm, interval=interval, batch=batch,
                                retention=timedelta(days=retention_days) if retention_days else None)
        if once:
            dispatcher.drain()
            dispatcher.prune()
        else:
            with contextlib.suppress(KeyboardInterrupt):
                dispatcher.run(threading.Event())
    delivered = dispatcher.delivered
    out.print(f"{delivered:,} events settled", markup=False)
