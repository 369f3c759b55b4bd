"""The FastAPI and Django examples of docs/applications.md, served for real on 127.0.0.1
and driven by real HTTP clients: the load test of "Ready for applications"."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest

import crmcore
from crmcore import Customer

from .servers import asgi_server, import_example, mixed_request, wsgi_server

CLIENTS = 16
SECONDS = 3.0


def _population(n: int) -> Any:
    for i in range(n):
        yield Customer.new(f"Bulk {i}", id=f"b{i:07d}", tier="gold" if i % 3 else "silver")


def test_sixteen_clients_with_an_import_and_a_long_segment(url: str) -> None:
    """16 clients read, add and increment for a few seconds while a bulk import and a long
    segment run: zero errors, zero lost updates (every acknowledged increment is counted)."""
    fastapi_app = import_example("fastapi_app")
    setup = crmcore.open(url)
    setup.customers.add(Customer.new("Counter", id="counter"))
    setup.close()
    statuses: Counter[int] = Counter()
    acknowledged = [0]
    problems: list[str] = []
    lock = threading.Lock()
    with asgi_server(fastapi_app.create_app(url)) as base:
        stop = threading.Event()

        def client(n: int) -> None:
            with httpx.Client(base_url=base, timeout=60) as http:
                i = 0
                while not stop.is_set():
                    i += 1
                    r = mixed_request(http, str(n), i)
                    if r.url.path.endswith("/visits") and r.status_code == 200:
                        with lock:
                            acknowledged[0] += 1
                    with lock:
                        statuses[r.status_code] += 1
                        if r.status_code >= 300:
                            problems.append(f"{r.request.method} {r.request.url.path}: {r.text[:200]}")

        def bulk() -> None:
            crm = crmcore.open(url)
            try:
                crm.bulk_import(_population(20_000))
            except crmcore.CRMError as exc:
                problems.append(f"bulk import: {exc}")
            finally:
                crm.close()

        def segment() -> None:
            with httpx.Client(base_url=base, timeout=60) as http:
                while not stop.is_set():
                    r = http.get("/segments/count", params={"rule": 'tier = "gold" and name != "x"'})
                    with lock:
                        statuses[r.status_code] += 1
                        if r.status_code != 200:
                            problems.append(f"segment: {r.text[:200]}")

        workers = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        workers += [threading.Thread(target=bulk), threading.Thread(target=segment)]
        for w in workers:
            w.start()
        time.sleep(SECONDS)
        workers[CLIENTS].join(120)  # the import ends, then the clients go on a moment more
        time.sleep(SECONDS / 3)
        stop.set()
        for w in workers:
            w.join(120)
        with httpx.Client(base_url=base) as http:
            final = http.get("/customers/counter").json()
    assert not problems, problems[:5]
    assert sum(statuses.values()) > CLIENTS * 4 and set(statuses) <= {200, 201}
    assert acknowledged[0] > 0
    assert final["attributes"]["visits"] == acknowledged[0]  # no lost update
    check = crmcore.open(url)
    assert check.customers.count() == 1 + 20_000 + statuses[201]
    check.close()


def test_errors_answer_with_their_http_status(url: str) -> None:
    fastapi_app = import_example("fastapi_app")
    with asgi_server(fastapi_app.create_app(url)) as base, httpx.Client(base_url=base) as http:
        assert http.post("/customers", json={"name": "Ada", "emails": ["ada@example.org"]}).status_code == 201
        missing = http.get("/customers/nobody")
        assert missing.status_code == 404 and missing.json()["error"] == "NotFound"
        bad = http.post("/customers", json={"name": "Bob", "emails": ["bob(at)example.org"]})
        assert bad.status_code == 422 and "emails[0]" in bad.json()["detail"]
        taken = http.post("/customers", json={"name": "Eve", "emails": ["ada@example.org"]})
        assert taken.status_code == 409 and taken.json()["error"] == "IntegrityError"
        rule = http.get("/segments/count", params={"rule": "tier = "})
        assert rule.status_code == 422
        page = http.get("/customers", params={"limit": 0})
        assert page.status_code == 422


@pytest.fixture(scope="module")
def django_app() -> Any:
    return import_example("django_app")


def test_the_django_example_serves_from_threads(tmp_path: Any, django_app: Any) -> None:
    """Django's WSGI application on a threaded server; the CRM URL is set once per process
    (Django settings are global), so this test uses one SQLite file."""
    url = f"sqlite:///{tmp_path}/django.db"
    app = django_app.application(url)
    with wsgi_server(app) as base:
        errors: list[str] = []

        def client(n: int) -> None:
            with httpx.Client(base_url=base, timeout=30) as http:
                for i in range(10):
                    body = {"name": f"D{n}-{i}", "emails": [f"d{n}.{i}@example.org"]}
                    r = http.post("/customers", json=body)
                    if r.status_code != 201:
                        errors.append(r.text)
                        continue
                    got = http.get(f"/customers/{r.json()['id']}")
                    if got.status_code != 200:
                        errors.append(got.text)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with httpx.Client(base_url=base) as http:
            assert http.get("/customers/nobody").status_code == 404
            assert len(http.get("/customers", params={"limit": 100}).json()["items"]) == 80
    assert not errors, errors[:3]
