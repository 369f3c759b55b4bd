"""A hostile corpus and hypothesis strategies for every entry point that takes outside text.

An attacker writes the customer's name, the rule in the saved-segment form, the
mail that arrives, the webhook a "provider" posts. Whatever they write, crmcore
either accepts it and gives it back unchanged, or refuses it with a `CRMError`:
never a raw exception, never a header, SQL or HTML it did not mean to write,
never unbounded work. `outcome` states that law for one call; the strategies
below feed it, and a plugin author can run them against their own adapter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar

from hypothesis import strategies as st

from crmcore import limits
from crmcore.errors import CRMError
from crmcore.segments import ast as a

T = TypeVar("T")

LINE_BREAKS = ("\r\n", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
"""Everything some reader takes for the end of a line (str.splitlines does)."""

INJECTIONS = (
    "=?utf-8?q?Eve=0D=0AReply-To:_x@evil.example=0D=0A=0D=0APay?=",
    "=?utf-8?b?RXZlDQpCY2M6IGFsbEB2aWN0aW1zLmV4YW1wbGU=?=",
    "Eve\r\nBcc: all@victims.example",
    "Eve\nBcc: all@victims.example",
    "Eve\u2028Bcc: all@victims.example",
    "Eve\u2029\u2029body",
    "Eve\x85Bcc: x@y.z",
    '"; DROP TABLE customers; --',
    "' OR '1'='1",
    "$name ${name} $$ $",
    "%s%s%s%n %(x)s {0} {x!r}",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "../../../../etc/passwd",
    "\x00nul",
    "\ud800lone surrogate",
    "trail\udfff",
    "\u202eevil\u202c",
    "zero\u200bwidth\ufeff",
    "e\u0301\u0301\u0301\u0301\u0301",
    "🧨" * 10,
    " ",
    "",
    "a" * 201,
    "x" * 5_000,
)
"""Texts that broke, or could break, something once: headers, SQL, templates, HTML, paths, Unicode."""

HOSTILE_RULES = (
    'id != "" or id',
    'tier = "gold"; DROP TABLE customers; --',
    "count(purchases) in (" + ", ".join(str(i) for i in range(1500)) + ")",
    "lower(" * 300 + "name" + ")" * 300 + ' = "a"',
    "not " * 500 + 'tier = "a"',
    "(" * 500 + 'tier = "a"' + ")" * 500,
    "created_at > 100000 years ago",
    "count(purchases, last 100000 years) > 0",
    "created_at > 0001-01-01T00:00:00+05:00",
    "created_at < 9999-12-31T23:59:59-05:00",
    "birth_date > 0001-01-01",
    "birth_date < 9999-12-31",
    "sum(purchases.total) > 999999999999999",
    "sum(purchases.total) < -99999999999999999999",
    'name = "\\ud800"',
    'name = "\\u0000"',
    'attributes["\\ud800"] = 1',
    "tier = " + '"' + "x" * 20_000 + '"',
    "count(purchases where " * 30 + "total > 1" + ") > 0" * 30,
)
"""Rule texts that exhausted, crashed or fooled a backend before the limits."""


def outcome(call: Callable[[], T]) -> T | CRMError:
    """Run `call`: its result, or the CRMError it refused with. Anything else propagates (a bug)."""
    try:
        return call()
    except CRMError as refused:
        return refused


# ---- strategies ----

_ANY_CHAR = st.characters(codec=None, blacklist_categories=())
"""Every code point, lone surrogates and controls included."""

hostile_texts: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(_ANY_CHAR, max_size=30),
    st.builds(
        lambda head, brk, tail: head + brk + tail,
        st.text(max_size=10),
        st.sampled_from(LINE_BREAKS),
        st.sampled_from(INJECTIONS),
    ),
)
"""Outside text: known attacks, any code points, and line breaks of every kind mixed in."""

_ZONES = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=14)),
        timezone(timedelta(hours=-12)),
        timezone(timedelta(hours=5, minutes=30)),
    ]
)
hostile_instants: st.SearchStrategy[datetime] = st.one_of(
    st.datetimes(timezones=_ZONES),
    st.datetimes(),  # naive
    st.sampled_from(
        [
            datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),
            datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))),
            datetime.min.replace(tzinfo=UTC),
            datetime.max.replace(tzinfo=UTC),
        ]
    ),
)
"""Instants at and beyond the calendar's ends, in far time zones, and naive ones."""

hostile_numbers: st.SearchStrategy[Any] = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(min_value=-(10**20), max_value=10**20, places=4),
    st.sampled_from(
        [
            Decimal("1e400"),
            Decimal("-0"),
            Decimal("9" * 40),
            Decimal("0.00001"),
            limits.MONEY,
            -limits.MONEY,
            limits.MONEY - Decimal("0.0001"),
        ]
    ),
    st.floats(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.booleans(),
    hostile_texts,
)
"""Numbers a form or a file may send for an amount: huge, tiny, NaN, floats, text."""

hostile_urls: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(
        [
            "postgresql://u:secretpw@[::1/db",
            "postgresql://u:secretpw@host:notaport/db",
            "sqlite:///nonexistent-dir/x/y.db",
            "sqlite:///tmp?timeout=abc",
            "memory://?x=\x00",
            "nope",
            "://",
            "postgresql://u:secretpw@h/db?schema=Robert'); DROP TABLE x;--",
            "smtp://u:secretpw@127.0.0.1:bad",
            "pigeon://loft",
        ]
    ),
    st.builds(
        lambda scheme, rest: f"{scheme}://{rest}",
        st.sampled_from(["sqlite", "memory", "postgresql"]),
        hostile_texts,
    ),
)
"""Storage URLs, malformed on purpose; `secretpw` must never show in an error."""


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


_RULE_TEMPLATES = (
    "name = {s}",
    "tier in ({s}, {s})",
    "name contains {s}",
    "attributes[{s}] = 1",
    "tags contains {s}",
    "lower(name) = {s}",
    "count(purchases where channel = {s}) > 0",
    "created_at > {s}",
)
_RULE_PIECES = (
    "name",
    "tier",
    "created_at",
    "birth_date",
    "attributes.x",
    "score.rfm.label",
    "consent.news.email",
    "count(purchases)",
    "sum(purchases.total)",
    "lower(",
    "(",
    ")",
    "not",
    "and",
    "or",
    "in",
    "between",
    "=",
    "!=",
    ">",
    "<",
    ",",
    '"a"',
    "1",
    "-1.5",
    "2024-01-01",
    "2024-01-01T00:00:00Z",
    "3 months ago",
    "now",
    "today",
    "is null",
    "is empty",
    "where",
    "last 90 days",
    "999999999999999",
    "100000 years ago",
)


@st.composite
def hostile_rule_texts(draw: st.DrawFn) -> str:
    """Rule texts: templates with hostile literals, token soup, deep nesting, the known attacks."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.sampled_from(HOSTILE_RULES))
    if kind == 1:
        template = draw(st.sampled_from(_RULE_TEMPLATES))
        return template.replace("{s}", _literal(draw(hostile_texts)))
    if kind == 2:
        return " ".join(draw(st.lists(st.sampled_from(_RULE_PIECES), min_size=1, max_size=12)))
    depth = draw(st.integers(limits.RULE_DEPTH - 2, limits.RULE_DEPTH + 2))
    wrapper = draw(st.sampled_from([("lower(", ")"), ("not ", ""), ("(", ")")]))
    inner = 'name = "a"' if wrapper[0] != "lower(" else "name"
    text = wrapper[0] * depth + inner + wrapper[1] * depth
    return text if wrapper[0] != "lower(" else text + ' = "a"'


_NODE_NAMES = sorted(a._CLASSES)


_JSON_KEYS = st.sampled_from(
    [
        "node",
        "path",
        "value",
        "left",
        "op",
        "right",
        "items",
        "item",
        "term",
        "values",
        "name",
        "args",
        "func",
        "source",
        "field",
        "where",
        "window",
        "days",
    ]
)
_JSON_SCALARS = st.one_of(
    st.sampled_from(INJECTIONS),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.sampled_from(["=", "count", "purchases", "tier", "2024-01-01", "2024-01-01T00:00"]),
)


@st.composite
def hostile_json_rules(draw: st.DrawFn) -> Any:
    """Rules in their JSON form: smuggled names, naive instants, wrong shapes, deep nesting."""
    kind = draw(st.integers(0, 3))
    field = {
        "node": "Field",
        "path": [draw(st.one_of(st.sampled_from(['id != "" or id', "tier", "na me"]), hostile_texts))],
    }
    if kind == 0:
        return {
            "node": "Compare",
            "left": field,
            "op": "=",
            "right": {"node": "Text", "value": draw(hostile_texts)},
        }
    if kind == 1:
        moment = draw(hostile_instants).isoformat()
        return {
            "node": "Compare",
            "left": {"node": "Field", "path": ["created_at"]},
            "op": ">",
            "right": {"node": "Instant", "value": moment},
        }
    if kind == 2:  # deep, and (sharing each level twice) a tree of 2**depth nodes
        rule: Any = {"node": "Truth", "term": field}
        shared = draw(st.booleans())
        for _ in range(draw(st.integers(0, 3 * limits.JSON_DEPTH))):
            rule = {"node": "Not", "item": rule, **({"term": rule} if shared else {})}
        return rule
    leaf = st.one_of(st.sampled_from(_NODE_NAMES).map(lambda n: {"node": n}), _JSON_SCALARS)
    return {
        "node": draw(st.sampled_from(_NODE_NAMES)),
        **draw(st.dictionaries(_JSON_KEYS, st.one_of(leaf, st.lists(leaf, max_size=3)), max_size=4)),
    }


def hostile_webhook_params() -> st.SearchStrategy[dict[str, list[str]]]:
    """Form fields a forged or broken provider request may carry."""
    names = st.sampled_from(["CallSid", "CallStatus", "From", "To", "Direction", "CallerName", "Timestamp"])
    return st.dictionaries(names, st.lists(hostile_texts, min_size=1, max_size=2), max_size=7)


@st.composite
def hostile_mail(draw: st.DrawFn) -> bytes:
    """Raw inbound messages: hostile headers, encodings and bodies."""
    sender = draw(st.one_of(st.just("ada@example.org"), hostile_texts))
    subject = draw(hostile_texts)
    encoded = draw(st.sampled_from(["", "=?utf-8?q?", "=?x-unknown?b?", "=?utf-8?b?"]))
    lines = [
        f"From: {sender}",
        f"Subject: {encoded}{subject}",
        f"Message-ID: <{draw(hostile_texts)}@x>",
        f"In-Reply-To: {draw(hostile_texts)}",
        "Content-Type: "
        + draw(
            st.sampled_from(
                [
                    "text/plain; charset=utf-8",
                    "text/plain; charset=x-nonsense",
                    "multipart/report",
                    "multipart/mixed; boundary=",
                    "message/delivery-status",
                ]
            )
        ),
    ]
    body = draw(hostile_texts)
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8", "surrogatepass")


def calendar_days() -> st.SearchStrategy[date]:
    """Dates at and beyond the supported calendar's ends."""
    return st.one_of(st.dates(), st.sampled_from([date.min, date.max, limits.FIRST_DAY, limits.LAST_DAY]))


__all__ = [
    "HOSTILE_RULES",
    "INJECTIONS",
    "LINE_BREAKS",
    "calendar_days",
    "hostile_instants",
    "hostile_json_rules",
    "hostile_mail",
    "hostile_numbers",
    "hostile_rule_texts",
    "hostile_texts",
    "hostile_urls",
    "hostile_webhook_params",
    "outcome",
]
