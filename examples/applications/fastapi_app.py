"""crmcore inside a FastAPI application (see docs/applications.md).

One CRM per process, opened at start-up and closed at shutdown, with a background
dispatcher so subscribers never run on the request path. Endpoints that call
crmcore are plain `def`: FastAPI runs them on its thread pool, which is what it
advises for blocking libraries, and crmcore scopes each transaction to the
calling context, so concurrent requests never share one. An `async def` endpoint
hands the work to that pool with `run_in_threadpool`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import crmcore
from crmcore import Customer, serialization
from crmcore.errors import CRMError, http_status


class NewCustomer(BaseModel):
    name: str
    emails: list[str] = []
    tier: str | None = None


def create_app(url: str) -> FastAPI:
    state: dict[str, crmcore.CRM] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        crm = crmcore.open(url)
        crm.start_dispatcher()
        state["crm"] = crm
        yield
        crm.close()

    app = FastAPI(lifespan=lifespan)

    def crm() -> crmcore.CRM:
        return state["crm"]

    @app.exception_handler(CRMError)
    async def crm_error(request: Request, error: CRMError) -> JSONResponse:
        # one line maps the whole family: 404, 409, 422 are the request's outcome, 503 the backend's
        return JSONResponse({"error": type(error).__name__, "detail": str(error)[:500]},
                            status_code=http_status(error))

    @app.post("/customers", status_code=201)
    def add_customer(body: NewCustomer) -> dict[str, Any]:
        customer = crmcore.Customer.new(body.name, emails=body.emails, tier=body.tier)
        return serialization.unstructure(crm().customers.add(customer))  # type: ignore[no-any-return]

    @app.get("/customers/{customer_id}")
    def get_customer(customer_id: str) -> dict[str, Any]:
        return serialization.unstructure(crm().customers.get(customer_id))  # type: ignore[no-any-return]

    @app.get("/async/customers/{customer_id}")
    async def get_customer_async(customer_id: str) -> dict[str, Any]:
        found = await run_in_threadpool(crm().customers.get, customer_id)
        return serialization.unstructure(found)  # type: ignore[no-any-return]

    @app.post("/customers/{customer_id}/visits")
    def count_visit(customer_id: str) -> dict[str, Any]:
        """Read, change, write back under the customer's row lock: concurrent visits take
        turns, so none is lost and none needs a retry."""

        def one_more(current: Customer) -> Customer:
            visits = int(current.attributes.get("visits", 0)) + 1
            return attrs.evolve(current, attributes={**current.attributes, "visits": visits})

        return {"visits": crm().customers.edit(customer_id, one_more).attributes["visits"]}

    @app.get("/segments/count")
    def segment_size(rule: str) -> dict[str, int]:
        return {"size": len(crm().customers.ids_matching(rule))}

    @app.get("/customers")
    def list_customers(after: str | None = None, limit: int = 100) -> dict[str, Any]:
        page = crm().customers.list(after=after, limit=limit)
        return {"items": [c.id for c in page], "next": page[-1].id if len(page) == limit else None}

    return app
