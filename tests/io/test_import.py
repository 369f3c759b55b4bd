"""Importing the files real exports are made of, on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import crmcore
from crmcore import CaseStatus, Channel
from crmcore.errors import ValidationError
from crmcore.io import ColumnMapping, import_file

MESSY = (
    "\ufeffFull name;E-mail;Phone;country;Points;Member since;notes\n"
    '"Ada; Countess";ada@example.org;01 23 45 67 89;FR;12;05/01/2024;first\n'
    '"Bob\nthe second line";bob@example.org;;FR;3;31/13/2024;bad date\n'
    "Carl;carl(at)example.org;;DE;1;;bad e-mail\n"
    '"Ada; Countess";ada@example.org;01 23 45 67 89;FR;12;05/01/2024;duplicate row\n'
    '"Dora\nOn two lines";dora@example.org;;FR;x;01/02/2024;bad number\n'
    "Eve;eve@example.org;+49 30 123456;DE;7;01/02/2024;\n"
)
COLUMNS = ["Full name=name", "E-mail=email", "Phone=phone", "Points=attributes.points:int",
           "Member since=created_at"]


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def errors_of(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def messy_mapping() -> ColumnMapping:
    return ColumnMapping.load("customers", columns=COLUMNS, region="FR", date_format="%d/%m/%Y")


def test_good_rows_go_in_and_refused_rows_are_reported_by_line(crm: crmcore.CRM, tmp_path: Path) -> None:
    source = write(tmp_path / "old-crm.csv", MESSY)
    errors = tmp_path / "refused.csv"
    result = import_file(crm, "customers", source, mapping=messy_mapping(), errors=errors)
    assert (result.inserted, result.unchanged, result.refused) == (2, 1, 3)
    assert result.ignored_columns == ["notes"]
    refused = errors_of(errors)
    # lines count physical lines: Bob's quoted name spans lines 3-4, so Carl is on line 5
    assert [(r["line"], r["field"]) for r in refused] == [
        ("3", "created_at"), ("5", "emails"), ("7", "attributes.points:int")]
    assert "31/13/2024" in refused[0]["value"] and "%d/%m/%Y" in refused[0]["reason"]
    assert "e-mail" in refused[1]["reason"] and "whole number" in refused[2]["reason"]
    ada = crm.customers.by_email("ada@example.org")
    assert ada is not None and ada.name == "Ada; Countess" and ada.phones == ("+33123456789",)
    assert ada.attributes == {"points": 12} and f"{ada.created_at:%Y-%m-%d}" == "2024-01-05"
    eve = crm.customers.by_email("eve@example.org")
    assert eve is not None and eve.phones == ("+4930123456",) and eve.country == "DE"
    assert crm.customers.count() == 2


def test_a_second_run_of_the_same_file_changes_nothing(crm: crmcore.CRM, tmp_path: Path) -> None:
    source = write(tmp_path / "c.csv", MESSY)
    import_file(crm, "customers", source, mapping=messy_mapping())
    again = import_file(crm, "customers", source, mapping=messy_mapping())
    assert (again.inserted, again.updated, again.unchanged, again.refused) == (0, 0, 3, 3)
    assert crm.customers.count() == 2


def test_latin1_is_detected_and_an_encoding_can_be_given(crm: crmcore.CRM, tmp_path: Path) -> None:
    text = "name,email,country,city\nDésirée Müller,des@example.org,FR,Besançon\n"
    import_file(crm, "customers", write(tmp_path / "latin.csv", text, "latin-1"))
    found = crm.customers.by_email("des@example.org")
    assert found is not None and found.name == "Désirée Müller" and found.addresses[0].city == "Besançon"
    cp = "name,email,country\nZoë “quoted”,zoe@example.org,FR\n"
    import_file(crm, "customers", write(tmp_path / "cp.csv", cp, "cp1252"), encoding="cp1252")
    zoe = crm.customers.by_email("zoe@example.org")
    assert zoe is not None and zoe.name == "Zoë “quoted”"


def test_a_file_that_lies_about_its_encoding_is_refused_clearly(tmp_path: Path) -> None:
    crm = crmcore.open("memory://")
    head = "name,email\n" + "".join(f"Person {i},p{i}@example.org\n" for i in range(5000))
    source = tmp_path / "late.csv"
    source.write_bytes(head.encode() + "Zoë,zoe@example.org\n".encode("latin-1"))
    with pytest.raises(ValidationError) as refused:
        import_file(crm, "customers", source, batch=100000, all_or_nothing=True)
    assert refused.value.field == "encoding" and "--encoding" in refused.value.reason
    assert crm.customers.count() == 0


def test_upsert_by_email_the_file_wins_where_it_has_a_value(crm: crmcore.CRM, tmp_path: Path) -> None:
    first = "name,email,phone,tier,tags,country,city,attributes.points:int\n" \
            "Ada,ada@example.org,+33 1 23 45 67 89,gold,vip,FR,Paris,10\n"
    import_file(crm, "customers", write(tmp_path / "a.csv", first))
    second = "email,name,tier,tags,phone,city,attributes.level\n" \
             "ADA@EXAMPLE.ORG,Ada Lovelace,platinum,early|vip,,Lyon,expert\n"
    result = import_file(crm, "customers", write(tmp_path / "b.csv", second))
    assert (result.inserted, result.updated) == (0, 1)
    ada = crm.customers.by_email("ada@example.org")
    assert ada is not None
    assert (ada.name, ada.tier, ada.tags) == ("Ada Lovelace", "platinum", frozenset({"vip", "early"}))
    assert ada.phones == ("+33123456789",)  # an empty cell keeps what is stored
    assert ada.addresses[0].city == "Lyon" and ada.addresses[0].country == "FR"
    assert ada.attributes == {"points": 10, "level": "expert"}
    assert ada.version == 2


def test_upsert_by_external_id_and_by_phone(crm: crmcore.CRM, tmp_path: Path) -> None:
    import_file(crm, "customers", write(tmp_path / "a.csv", "name,external_id.erp,phone,country\n"
                                        "Ann,E-1,+33 1 11 11 11 11,FR\nBen,E-2,+33 1 22 22 22 22,FR\n"
                                        "Cat,E-3,+33 1 22 22 22 22,FR\n"))
    by_erp = import_file(crm, "customers", write(tmp_path / "b.csv", "external_id.erp,tier\nE-1,gold\n"),
                         key="external_id.erp")
    assert by_erp.updated == 1
    taken = import_file(crm, "customers", write(tmp_path / "t.csv", "name,external_id.erp\nDan,E-2\n"))
    assert taken.refused == 1 and taken.refusals[0].field == "external_id.erp"
    assert "belongs to another customer" in taken.refusals[0].reason
    ann = crm.customers.by_external_id("erp", "E-1")
    assert ann is not None and ann.tier == "gold"
    by_phone = import_file(crm, "customers", write(tmp_path / "c.csv", "phone,tier\n01 11 11 11 11,silver\n"
                                                   "01 22 22 22 22,silver\n"),
                           key="phone", mapping=ColumnMapping("customers", region="FR"))
    assert (by_phone.updated, by_phone.refused) == (1, 1)
    assert "shared by 2 customers" in by_phone.refusals[0].reason


def test_an_email_owned_by_someone_else_is_refused_not_stolen(crm: crmcore.CRM, tmp_path: Path) -> None:
    import_file(crm, "customers", write(tmp_path / "a.csv", "id,name,email\nc1,Ann,ann@example.org\n"
                                                             "c2,Ben,ben@example.org\n"))
    both = "id,emails\nc1,ann@example.org|ben@example.org\n"
    result = import_file(crm, "customers", write(tmp_path / "b.csv", both))
    assert result.refused == 1 and "belongs to another customer (c2)" in result.refusals[0].reason
    assert crm.customers.get("c1").emails == ("ann@example.org",)


def test_dry_run_writes_nothing_and_counts_what_would_happen(crm: crmcore.CRM, tmp_path: Path) -> None:
    result = import_file(crm, "customers", write(tmp_path / "c.csv", MESSY), mapping=messy_mapping(),
                         dry_run=True)
    assert (result.inserted, result.unchanged, result.refused, result.written) == (2, 1, 3, False)
    assert crm.customers.count() == 0


def test_all_or_nothing(crm: crmcore.CRM, tmp_path: Path) -> None:
    refused = import_file(crm, "customers", write(tmp_path / "c.csv", MESSY), mapping=messy_mapping(),
                          all_or_nothing=True)
    assert refused.refused == 3 and not refused.written and crm.customers.count() == 0
    good = "name,email\nAnn,ann@example.org\nBen,ben@example.org\n"
    done = import_file(crm, "customers", write(tmp_path / "g.csv", good), all_or_nothing=True)
    assert done.written and done.inserted == 2 and crm.customers.count() == 2


PURCHASES = (
    "order,customer e-mail,date,product,price,qty,currency\n"
    "o-1,ann@example.org,2024-03-01T10:00:00+01:00,router,\"49,90\",1,EUR\n"
    "o-1,ann@example.org,2024-03-01T10:00:00+01:00,cable,5.00,3,EUR\n"
    "o-2,nobody@example.org,2024-03-02,router,49.90,1,EUR\n"
    ",ann@example.org,2024-03-05,fibre,29.99,1,EUR\n"
    ",ann@example.org,2024-03-05,fibre,29.99,1,EUR\n"
    "o-3,ann@example.org,2024-03-06,fibre,n/a,1,EUR\n"
)


def test_purchases_group_their_lines_and_name_customers_by_email(crm: crmcore.CRM, tmp_path: Path) -> None:
    crm.customers.add(crmcore.Customer.new("Ann", id="ann", emails=["ann@example.org"]))
    mapping = ColumnMapping.load("purchases", columns=["order=id", "customer e-mail=customer_email",
                                                 "date=ordered_at", "price=unit_price", "qty=quantity"])
    result = import_file(crm, "purchases", write(tmp_path / "p.csv", PURCHASES), mapping=mapping)
    assert (result.inserted, result.unchanged, result.refused) == (2, 1, 2)
    assert [(r.line, r.field) for r in result.refusals] == [(4, "customer_email"), (7, "unit_price")]
    bought = {p.id: p for p in crm.purchases.for_customer("ann")}
    assert bought["o-1"].amount == Decimal("64.90") and len(bought["o-1"].lines) == 2
    assert f"{bought['o-1'].ordered_at:%H:%M}" == "09:00"  # +01:00 read as such, stored in UTC
    again = import_file(crm, "purchases", write(tmp_path / "p.csv", PURCHASES), mapping=mapping)
    assert (again.inserted, again.unchanged) == (0, 3)


def test_interactions_and_cases(crm: crmcore.CRM, tmp_path: Path) -> None:
    crm.customers.add(crmcore.Customer.new("Ann", id="ann", emails=["ann@example.org"]))
    contacts = ("customer_id,channel,direction,occurred_at,subject,satisfaction,duration\n"
                "ann,phone,inbound,2024-03-01T10:00:00Z,Router,5,90\n"
                "ann,pigeon,inbound,2024-03-01T10:00:00Z,Coo,5,\n")
    result = import_file(crm, "interactions", write(tmp_path / "i.csv", contacts))
    assert (result.inserted, result.refused) == (1, 1) and result.refusals[0].field == "channel"
    [call] = crm.interactions.timeline("ann")
    assert call.channel is Channel.PHONE and call.satisfaction == 5 and call.duration.total_seconds() == 90
    cases = ("id,customer_email,kind,subject,opened_at,status\n"
             "k1,ann@example.org,complaint,Slow,2024-03-01,open\n")
    import_file(crm, "cases", write(tmp_path / "k.csv", cases))
    closed = import_file(crm, "cases", write(tmp_path / "k2.csv", cases.replace(",open", ",resolved")))
    assert closed.updated == 1 and crm.cases.get("k1").status is CaseStatus.RESOLVED


def test_json_lines_with_typed_values_and_a_broken_line(crm: crmcore.CRM, tmp_path: Path) -> None:
    lines = ('{"name": "Ann", "emails": ["ann@example.org"], "attributes.score:decimal": "1.50", '
             '"attributes.vip:bool": true, "tags": ["a", "b"]}\n'
             '{"name": "Ben", "emails": "not an address"}\n'
             "{broken\n"
             '{"name": "Cy", "email": "cy@example.org", "birth_date": "1990-02-03", "nickname": "C"}\n')
    result = import_file(crm, "customers", write(tmp_path / "c.jsonl", lines))
    assert (result.inserted, result.refused) == (2, 2)
    assert [(r.line, r.field) for r in result.refusals] == [(2, "emails"), (3, "row")]
    assert result.ignored_columns == ["nickname"]
    ann = crm.customers.by_email("ann@example.org")
    assert ann is not None and ann.attributes == {"score": Decimal("1.50"), "vip": True}
    assert ann.tags == frozenset({"a", "b"})


class Crash(Exception):
    pass


class CrashAt:
    """A company rule that takes the process down at one customer, like a power cut."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.armed = True

    @crmcore.hookimpl
    def crmcore_validate_customer(self, customer: Any) -> None:
        if self.armed and customer.name == self.name:
            raise Crash(customer.name)


def test_an_interrupted_import_resumes_from_its_checkpoint(sql_crm: crmcore.CRM, tmp_path: Path) -> None:
    rows = "".join(f"Person {i},p{i}@example.org,{'bad' if i % 7 == 0 else 'FR'}\n" for i in range(95))
    source = write(tmp_path / "c.csv", "name,email,country\n" + rows)
    errors = tmp_path / "errors.csv"
    crash = CrashAt("Person 43")
    sql_crm.plugins.register(crash)
    with pytest.raises(Crash):
        import_file(sql_crm, "customers", source, batch=10, errors=errors)
    assert sql_crm.customers.count() == 40 - 6  # four whole batches; rows 0, 7, ..., 35 refused
    with pytest.raises(ValidationError, match="interrupted import"):
        import_file(sql_crm, "customers", source, batch=10, errors=errors)
    crash.armed = False
    result = import_file(sql_crm, "customers", source, batch=10, errors=errors, resume=True)
    assert result.skipped == 40 and result.inserted == 95 - 14 and result.refused == 14
    assert sql_crm.customers.count() == 95 - 14
    assert [r["line"] for r in errors_of(errors)] == [str(i + 2) for i in range(0, 95, 7)]
    assert not (tmp_path / "c.csv.checkpoint").exists()


def test_unknown_kinds_keys_and_targets_are_refused(tmp_path: Path) -> None:
    crm = crmcore.open("memory://")
    source = write(tmp_path / "c.csv", "name\nAnn\n")
    with pytest.raises(ValidationError, match="kind"):
        import_file(crm, "leads", source)
    with pytest.raises(ValidationError, match="key"):
        import_file(crm, "customers", source, key="name")
    with pytest.raises(ValidationError, match="not a customers field"):
        ColumnMapping.load("customers", columns=["name=nmae"])
    with pytest.raises(ValidationError, match="cannot be read"):
        import_file(crm, "customers", tmp_path / "missing.csv")


def test_files_that_cannot_be_written_are_validation_errors(tmp_path: Path) -> None:
    from crmcore.io import export_file

    crm = crmcore.open("memory://")
    source = write(tmp_path / "c.csv", "name,email\nAnn,not-an-address\n")
    with pytest.raises(ValidationError, match="cannot be written"):
        import_file(crm, "customers", source, errors=tmp_path / "no" / "such" / "errors.csv")
    with pytest.raises(ValidationError, match="cannot be written"):
        export_file(crm, "customers", tmp_path / "no" / "such" / "out.csv")


def test_progress_reports_bytes_and_records_after_each_batch(tmp_path: Path) -> None:
    crm = crmcore.open("memory://")
    rows = "".join(f"P{i},p{i}@example.org\n" for i in range(25))
    source = write(tmp_path / "c.csv", "name,email\n" + rows)
    seen: list[tuple[int, int, int]] = []
    import_file(crm, "customers", source, batch=10, progress=lambda *figures: seen.append(figures))
    assert [records for _, _, records in seen] == [10, 20, 25]
    assert all(size == source.stat().st_size for _, size, _ in seen)
    done = [read for read, _, _ in seen]
    assert done == sorted(done) and done[-1] == source.stat().st_size


# ---- batches: one lookup per kind of key, new records written together ----


def test_rows_of_one_batch_see_the_records_written_before_them(crm: crmcore.CRM, tmp_path: Path) -> None:
    """A batch writes its new records at its end; a later row naming one of them (same
    e-mail, same external id, a purchase of a customer of the batch) still finds it."""
    customers = write(tmp_path / "c.csv", (
        "name,email,external_id.erp,tier\n"
        "Ada,ada@example.org,E1,\n"
        "Ada Again,ada@example.org,,gold\n"       # the same customer: an update of the pending one
        "Bob,bob@example.org,E1,\n"               # E1 is Ada's: refused, not stolen
        "Cy,cy@example.org,E3,\n"
    ))
    result = import_file(crm, "customers", customers, batch=100)
    assert (result.inserted, result.updated, result.refused) == (2, 1, 1)
    assert result.refusals[0].line == 4 and result.refusals[0].field == "external_id.erp"
    ada = crm.customers.by_email("ada@example.org")
    assert ada is not None and ada.name == "Ada Again" and ada.tier == "gold"
    purchases = write(tmp_path / "p.csv", (
        "customer_id,ordered_at,product,unit_price,currency\n"
        f"{ada.id},2024-01-02T10:00:00Z,Tea,3.50,EUR\n"
        f"{ada.id},2024-01-02T10:00:00Z,Tea,3.50,EUR\n"   # the same row again: one purchase
        "nobody,2024-01-02T10:00:00Z,Tea,3.50,EUR\n"
    ))
    bought = import_file(crm, "purchases", purchases, batch=100)
    assert (bought.inserted, bought.unchanged, bought.refused) == (1, 1, 1)
    assert [p.amount for p in crm.purchases.for_customer(ada.id)] == [Decimal("3.50")]


def test_an_import_update_is_in_the_history_and_an_insert_is_not(crm: crmcore.CRM, tmp_path: Path) -> None:
    """Like `bulk_import`, new records come in without history; an update is a change of a
    stored record, written with its diff so as-of reads see the value before it."""
    first = write(tmp_path / "a.csv", "name,email,tier\nAda,ada@example.org,silver\n")
    import_file(crm, "customers", first)
    ada = crm.customers.by_email("ada@example.org")
    assert ada is not None and crm.customers.history(ada.id) == []
    second = write(tmp_path / "b.csv", "name,email,tier\nAda,ada@example.org,gold\n")
    assert import_file(crm, "customers", second).updated == 1
    (change,) = crm.customers.history(ada.id)
    assert change.op.value == "updated" and change.diff["tier"] == ["silver", "gold"]


def test_a_batch_the_storage_refuses_is_retried_row_by_row(sql_crm: crmcore.CRM, tmp_path: Path) -> None:
    """A clash only the database sees (an e-mail claimed between lookup and write) fails
    the batch's insert; each record is then tried alone and the culprit is named by line."""
    import crmcore.io.importer as importer

    source = write(tmp_path / "c.csv", "name,email\nAda,ada@example.org\nBob,bob@example.org\n")
    original = importer._Batch.email_owner

    def blind(self: Any, address: str) -> str | None:  # the lookup misses Bob's e-mail owner
        return None if address == "bob@example.org" else original(self, address)

    sql_crm.customers.add(crmcore.Customer.new("Bob", emails=["bob@example.org"]))
    importer._Batch.email_owner = blind  # type: ignore[method-assign]
    try:
        result = import_file(sql_crm, "customers", source, key="id")
    finally:
        importer._Batch.email_owner = original  # type: ignore[method-assign]
    assert (result.inserted, result.refused) == (1, 1)
    assert result.refusals[0].line == 3 and result.refusals[0].field == "row"
    assert sql_crm.customers.count() == 2


# ---- accounts ----


def test_accounts_are_checked_like_the_facade_checks_them(sql_crm: crmcore.CRM, tmp_path: Path) -> None:
    """Parents before children, members and parents must exist, no loop; an id-less row gets
    an id from its name, so a second run changes nothing; members are added, never dropped."""
    crm = sql_crm
    ada = crm.customers.add(crmcore.Customer.new("Ada", id="ada"))
    bob = crm.customers.add(crmcore.Customer.new("Bob", id="bob"))
    source = write(tmp_path / "accounts.csv", (
        "id,name,kind,parent_id,tier,members\n"
        'group,Group,organisation,,key-account,"[{""customer_id"": ""ada"", ""role"": ""buyer""}]"\n'
        "site,Site,organisation,group,,\n"
        "lost,Lost,organisation,nowhere,,\n"                                   # unknown parent
        'ghost,Ghost,organisation,,,"[{""customer_id"": ""nobody""}]"\n'        # unknown member
        ",Smiths,household,,,\n"                                                # an id-less row
        "group,Group,organisation,site,,\n"                                     # would be a loop
    ))
    result = import_file(crm, "accounts", source)
    assert (result.inserted, result.refused) == (3, 3), result.refusals
    assert [(r.line, r.field) for r in result.refusals] == [
        (4, "parent_id"), (5, "members"), (7, "parent_id")]
    assert "loop" in result.refusals[2].reason
    assert [a.id for a in crm.operational.accounts.children("group")] == ["site"]
    assert crm.operational.accounts.of_customer(ada.id)[0].id == "group"
    again = import_file(crm, "accounts", source)
    assert (again.inserted, again.updated, again.unchanged, again.refused) == (0, 0, 3, 3)
    more = write(tmp_path / "more.csv", (
        'id,name,members\ngroup,Group plc,"[{""customer_id"": ""bob"", ""role"": ""billing""}]"\n'))
    assert import_file(crm, "accounts", more).updated == 1
    group = crm.operational.accounts.get("group")
    assert group.name == "Group plc" and group.tier == "key-account"
    assert {(m.customer_id, m.role) for m in group.members} == {(ada.id, "buyer"), (bob.id, "billing")}


def test_accounts_export_parents_first(sql_crm: crmcore.CRM, tmp_path: Path) -> None:
    from crmcore.io import export_file
    from crmcore.model import Account

    accounts = sql_crm.operational.accounts
    accounts.add(Account("z-top", "Top"))
    accounts.add(Account("a-child", "Child", parent_id="z-top"))
    accounts.add(Account("0-grandchild", "Grandchild", parent_id="a-child"))
    target = tmp_path / "accounts.jsonl"
    assert export_file(sql_crm, "accounts", target) == 3
    assert [line.split('"id": "')[1].split('"')[0] for line in target.read_text().splitlines()] == \
        ["z-top", "a-child", "0-grandchild"]
