"""A one-file Django site, served the way Django projects are: ``django_site:application``.

Settings are the ones ``django-admin startproject`` would write that matter
here (DEBUG off, Django's default LOGGING, CommonMiddleware), so Django logs
its own 4xx/5xx records with ``extra={"request": ..., "status_code": ...}``
through the ``django.request`` logger, which propagates to the root logger.

Routes: ``/health``, ``/items/<int:item_id>/`` (one app span), ``/log`` (an
app warning carrying an object in ``extra``), ``/error/`` (raises: Django
turns it into a 500 and logs it), anything else 404.
"""

import logging

import django
from django.conf import settings
from django.http import HttpResponse
from django.urls import path

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only-not-secret",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()

# After the settings, as a project's wsgi.py does.
from django.core.wsgi import get_wsgi_application
from opentelemetry import trace

tracer = trace.get_tracer("tests.django")
log = logging.getLogger("tests.django")


class Opaque:
    """Something apps put in ``extra`` that no OTel attribute can hold."""

    def __repr__(self) -> str:
        return "<Opaque thing>"


def health(request):
    return HttpResponse("ok")


def item(request, item_id: int):
    with tracer.start_as_current_span("load-item") as span:
        span.set_attribute("item.id", item_id)
    return HttpResponse(f"item {item_id}")


def log_view(request):
    log.warning("app-warning %s", request.path, extra={"thing": Opaque(), "request": request, "count": 3})
    return HttpResponse("ok")


def error(request):
    raise RuntimeError("boom from a Django view")


urlpatterns = [
    path("health", health),
    path("items/<int:item_id>/", item),
    path("log", log_view),
    path("error/", error),
]

application = get_wsgi_application()
