"""One service identity for the master and every worker.

``service.name``: both sides use ``settings.service_name()`` (``OTEL_SERVICE_NAME``,
else ``service.name`` from ``OTEL_RESOURCE_ATTRIBUTES``, else
``unknown_service:gunicorn``).  Left to the SDK, workers reported
``unknown_service:python3`` (its process detector) and the master
``unknown_service``: one deployment looked like two services.

``service.instance.id``: replaced, with a warning.  Each worker is its own SDK
instance with its own cumulative metric series; a shared id makes those series
indistinguishable wherever a backend keys on it (Prometheus maps it to the
``instance`` label, and the other resource attributes, the slot among them, are
not labels there).  The SDK itself replaces a user-set id in every forked child
(its ``ServiceInstanceIdResourceDetector``, opentelemetry-sdk 1.44).
"""

from __future__ import annotations

from gunicorn_otel.settings import UNKNOWN_SERVICE, Settings


def warnings(settings: Settings) -> list[str]:
    out = []
    if settings.service_name_resolved() == UNKNOWN_SERVICE:
        out.append(
            f"service.name is not set: the master and every worker export as {UNKNOWN_SERVICE!r}. "
            "Set OTEL_SERVICE_NAME=<your service>"
        )
    configured = settings.resource_attributes.get("service.instance.id")
    if configured:
        out.append(
            f"OTEL_RESOURCE_ATTRIBUTES sets service.instance.id={configured!r}; each Gunicorn worker (and the master) "
            "is a separate instance with its own metric series, so gunicorn-otel replaces it with a per-process id. "
            "Use another attribute (host.name, k8s.pod.name) to group them"
        )
    return out
