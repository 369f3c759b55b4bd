"""Tracked links through a real HTTP server on 127.0.0.1 and a real client: a click is
recorded and redirected; forged, altered and expired links are refused."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import crmcore
from crmcore.marketing import LinkRefused, Links
from crmcore.marketing.tracking import serve
from crmcore.model import Direction, MemberGroup, MemberStatus
from crmcore.testing.pytest_plugin import EventLog
from tests.marketing.conftest import T0, Clock, open_crm, populate

SECRET = b"a-secret-of-enough-bytes"


@given(st.text(max_size=64), st.text(max_size=64), st.text(max_size=20))
def test_a_signed_link_verifies_and_any_change_to_it_is_refused(
    campaign: str, customer: str, link: str
) -> None:
    links = Links(SECRET, "https://t.example.org")
    url = links.url(campaign, customer, link, now=T0)
    token = url.rsplit("/", 1)[1]
    click = links.verify(token, now=T0)
    assert (click.campaign_id, click.customer_id, click.link) == (campaign, customer, link)
    payload, signature = token.split(".")
    for forged in (
        f"{payload}x.{signature}",
        f"{payload}.{signature[:-1]}A" if signature[-1] != "A" else f"{payload}.{signature[:-1]}B",
        payload,
        f".{signature}",
    ):
        with pytest.raises(LinkRefused):
            links.verify(forged, now=T0)
    with pytest.raises(LinkRefused):
        Links(b"another-secret-of-bytes!", "https://t.example.org").verify(token, now=T0)
    with pytest.raises(LinkRefused) as expired:
        links.verify(token, now=T0 + links.ttl + timedelta(seconds=1))
    assert expired.value.expired


@pytest.fixture(params=["sqlite", "postgresql"])
def crm(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock, events: EventLog
) -> Iterator[crmcore.CRM]:
    yield from open_crm(request.param, tmp_path, clock, events)


@pytest.fixture
def server(crm: crmcore.CRM) -> Iterator[tuple[Links, int]]:
    links = Links(SECRET, "http://127.0.0.1")
    httpd = serve(crm.marketing.click_app(links), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield links, httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def get(port: int, path: str, method: str = "GET") -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_clicks_through_a_real_server(
    crm: crmcore.CRM, clock: Clock, events: EventLog, server: tuple[Links, int]
) -> None:
    links, port = server
    populate(crm, 10)
    crm.marketing.create(
        "spring",
        "Spring",
        channel="email",
        rule='tier in ("gold", "silver")',
        subject="Hi",
        text="$link_shop",
        links={"shop": "https://shop.example.org/spring?a=1"},
        control_fraction=0.2,
        seed="x",
    )
    crm.marketing.launch("spring")
    member = next(m for m in crm.marketing.members("spring") if m.group is MemberGroup.TARGET)
    with crm.transaction() as uow:
        import attrs

        uow.campaign_members.put(attrs.evolve(member, status=MemberStatus.SENT, sent_at=clock.at))
    path = links.url("spring", member.customer_id, "shop", now=clock.at).removeprefix("http://127.0.0.1")
    clock.advance(hours=2)
    first = get(port, path)
    assert first.status == 302 and first.getheader("Location") == "https://shop.example.org/spring?a=1"
    assert get(port, path).status == 302
    assert get(port, path, "HEAD").status == 302
    clicks = [i for i in crm.interactions.timeline(member.customer_id) if i.outcome == "clicked"]
    assert len(clicks) == 2 and all(
        i.campaign_id == "spring" and i.direction is Direction.INBOUND for i in clicks
    )
    stored = next(m for m in crm.marketing.members("spring") if m.customer_id == member.customer_id)
    assert stored.status is MemberStatus.RESPONDED and stored.response == "clicked"
    assert len(events.of("campaign.responded")) == 1
    payload, signature = path.rsplit("/", 1)[1].split(".")
    assert get(port, f"/c/{payload}.{signature[:-2]}xy").status == 403
    other = links.url("spring", "nobody", "shop", now=clock.at).removeprefix("http://127.0.0.1")
    assert get(port, other).status == 404
    wrong_link = links.url("spring", member.customer_id, "nope", now=clock.at).removeprefix(
        "http://127.0.0.1"
    )
    assert get(port, wrong_link).status == 404
    assert get(port, "/elsewhere").status == 404
    assert get(port, path, "POST").status == 405
    clock.advance(days=100)
    assert get(port, path).status == 410
    assert len([i for i in crm.interactions.timeline(member.customer_id) if i.outcome == "clicked"]) == 2
