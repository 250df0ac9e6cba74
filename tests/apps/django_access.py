"""A one-file Django site instrumented by opentelemetry-instrumentation-django.

The server span comes from Django's OpenTelemetry middleware, not from us:
the access-log ids must still be the ones of that span.
"""

import django
from django.conf import settings
from django.http import HttpResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    SECRET_KEY="tests-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATABASES={},
)

from opentelemetry.instrumentation.django import DjangoInstrumentor  # noqa: E402 - after settings.configure

DjangoInstrumentor().instrument()
django.setup()


def hello(request, number=None):
    return HttpResponse(b"hello from django")


urlpatterns = [path("", hello), path("health", hello), path("item/<int:number>", hello)]

from django.core.wsgi import get_wsgi_application  # noqa: E402 - after django.setup

application = get_wsgi_application()
