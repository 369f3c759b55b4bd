"""Issue 13 (7): passwords stay out of repr and errors; the IMAP cursor file follows no link."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import crmcore
from crmcore.errors import CRMError, ValidationError
from crmcore.operational.mail import FileCursor
from crmcore.ports.email import Cursor
from crmcore.testing.hostile import hostile_urls, outcome
from crmcore.urls import redact
from tests.support import postgres_url


def test_repr_of_a_crm_hides_the_password() -> None:
    server = postgres_url()
    with_password = server.replace("postgresql://postgres@", "postgresql://postgres:secretpw@", 1)
    if with_password == server:
        pytest.skip("the test server URL is not in the postgresql://postgres@host form")
    try:
        crm = crmcore.open(with_password)  # trust auth: the password is ignored by the server
    except CRMError as refused:
        assert "secretpw" not in str(refused)
        return
    with crm:
        assert "secretpw" not in repr(crm) and "***" in repr(crm)
        assert "secretpw" not in repr(crm.storage)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A working directory for the URL corpus: `sqlite://name` makes a file relative to it."""
    here = Path.cwd()
    os.chdir(tmp_path_factory.mktemp("urls"))
    try:
        yield Path.cwd()
    finally:
        os.chdir(here)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(url=hostile_urls)
def test_a_malformed_url_is_a_validation_error_without_the_password(scratch: Path, url: str) -> None:
    assert Path.cwd() == scratch
    opened = outcome(
        lambda: crmcore.open(
            url.replace("postgresql://u:secretpw@h/", "postgresql://u:secretpw@127.0.0.1:1/")
        )
    )
    if isinstance(opened, crmcore.CRM):
        opened.close()
        return
    assert "secretpw" not in str(opened)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p4ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:p4ss@[::1/db", "postgresql://u:***@[::1/db"),
        ("postgresql://h/db?password=p4ss&sslmode=require", "postgresql://h/db?password=***&sslmode=require"),
        ("smtp://user:p@ss:w0rd@mail.example:587", "smtp://user:***@mail.example:587"),
        ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_the_cursor_is_not_written_through_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    state = tmp_path / "state" / "cursor.json"
    state.parent.mkdir()
    os.symlink(victim, state.parent / "cursor.json.tmp")  # the name the old code wrote through
    cursor = FileCursor(state)

    cursor.save(Cursor(7, 42))

    assert victim.read_text() == "precious"
    assert cursor.load() == Cursor(7, 42)
    assert not state.is_symlink()


def test_a_cursor_that_is_a_link_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text('{"uidvalidity": 1, "uid": 2}')
    state = tmp_path / "cursor.json"
    os.symlink(target, state)
    with pytest.raises(ValidationError):
        FileCursor(state).load()
    FileCursor(state).save(Cursor(3, 4))  # the link itself is replaced, the target left alone
    assert target.read_text() == '{"uidvalidity": 1, "uid": 2}'
    assert FileCursor(state).load() == Cursor(3, 4)


def test_a_directory_as_a_database_is_a_clean_error(tmp_path: Path) -> None:
    """`crmcore demo --db <a directory>` ended in IsADirectoryError."""
    with pytest.raises(ValidationError) as refused:
        crmcore.open(f"sqlite:///{tmp_path}")
    assert str(tmp_path) in str(refused.value)
