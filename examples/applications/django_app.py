"""crmcore inside a Django project, in one file (see docs/applications.md).

Django's views here are synchronous, as most Django code is; crmcore's
transactions are scoped to the calling context, so Django's threaded servers
(and `sync_to_async` from an async view) give each request its own. One CRM per
process, opened lazily and shared; a middleware-free `CRMError` mapping turns
the error family into HTTP statuses.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path

import crmcore
from crmcore import serialization
from crmcore.errors import CRMError, http_status


def configure(url: str) -> None:
    """Settings for this one-file project (a real project keeps them in settings.py)."""
    if not settings.configured:
        settings.configure(
            DEBUG=False, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["127.0.0.1", "localhost"],
            CRMCORE_URL=url, SECRET_KEY="example-only", MIDDLEWARE=[],
        )
        import django

        django.setup()


@functools.cache
def crm() -> crmcore.CRM:
    opened = crmcore.open(settings.CRMCORE_URL)
    opened.start_dispatcher()
    return opened


def answers_errors(view: Any) -> Any:
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        try:
            return view(request, *args, **kwargs)  # type: ignore[no-any-return]
        except CRMError as error:
            return JsonResponse({"error": type(error).__name__, "detail": str(error)[:500]},
                                status=http_status(error))

    return wrapped


@answers_errors
def customers(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        body = json.loads(request.body or b"{}")
        added = crm().customers.add(crmcore.Customer.new(str(body.get("name", "")),
                                                         emails=body.get("emails", [])))
        return JsonResponse(serialization.unstructure(added), status=201)
    page = crm().customers.list(after=request.GET.get("after"), limit=int(request.GET.get("limit", 100)))
    return JsonResponse({"items": [c.id for c in page]})


@answers_errors
def customer(request: HttpRequest, customer_id: str) -> JsonResponse:
    return JsonResponse(serialization.unstructure(crm().customers.get(customer_id)))


urlpatterns = [
    path("customers", customers),
    path("customers/<str:customer_id>", customer),
]


def application(url: str) -> Any:
    """The WSGI application for a CRM at `url`."""
    configure(url)
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()
