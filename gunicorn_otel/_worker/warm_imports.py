"""Import in the Gunicorn master what every thread or asyncio worker would import at start.

A worker forked from a master that already imported the SDK, the OTLP exporters
and ``requests`` finds them in ``sys.modules``: its ``Runtime.start()`` builds
objects instead of loading a few hundred modules (issue #13 measured
~260 ms per worker; docs/pipelines.md has the boot table), and the pages of those modules stay
shared with the master until written.

Only imports, never objects: a provider, exporter, session or thread made in
the master would be inherited by every worker (``runtime`` builds in the
worker, after fork).  None of these modules starts a thread or opens a socket
at import time.  Never for gevent workers: ``ssl``, ``urllib3`` and
``requests`` imported before ``monkey.patch_all()`` stay unpatched.  Never
``grpc``: its core is not fork-safe once initialised, and the gRPC exporters
initialise it; gRPC workers import it after fork as before.

Then, unless ``GUNICORN_OTEL_GC_FREEZE=false``, ``freeze()``: ``gc.collect()``
and ``gc.freeze()``, as the ``gc`` module's documentation advises for a
process that forks without exec.  Without it every collection in a worker,
and the interpreter's teardown when a worker exits, writes to the header of
every object inherited from the master, copying each page it touches (the
``GUNICORN_OTEL_GC_FREEZE=false`` row of ``bench/saturation.py``'s boot table,
docs/pipelines.md).  Objects alive in the master at that moment (its
modules, a ``--preload``-ed app) are then never collected; they live as long
as the master anyway.

Called from the master's ``on_starting`` hook (``_master/hooks``, through
``Model.warm_master`` of the thread and asyncio models), so importing
``gunicorn_otel.conf`` itself stays light.
"""

from __future__ import annotations

import importlib
import logging

from gunicorn_otel.settings import Settings

log = logging.getLogger(__name__)

_ALWAYS = (
    "opentelemetry.sdk.resources",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.trace.sampling",
    "gunicorn_otel._worker.stats",
    "gunicorn_otel._worker.counting",
    "gunicorn_otel._worker.exporters",
    "gunicorn_otel._worker.runtime",
    "gunicorn_otel._worker.sampling",
    "gunicorn_otel._worker.thread_batch",
    "gunicorn_otel._worker.batch_processors",
    "gunicorn_otel._worker.models.threads",
    "gunicorn_otel._worker.models.asyncio",
)
_HTTP_TRANSPORT = ("requests", "gunicorn_otel._worker.http_transport")
_HTTP = {
    "traces": (*_HTTP_TRANSPORT, "gunicorn_otel._worker.fast_span_exporter"),
    "metrics": (*_HTTP_TRANSPORT, "opentelemetry.exporter.otlp.proto.http.metric_exporter"),
    "logs": (*_HTTP_TRANSPORT, "opentelemetry.exporter.otlp.proto.http._log_exporter"),
}
_SIGNAL = {
    "traces": (),
    "metrics": ("opentelemetry.sdk.metrics", "opentelemetry.sdk.metrics.export", "gunicorn_otel._worker.self_metrics"),
    "logs": ("opentelemetry.sdk._logs", "opentelemetry.sdk._logs.export", "gunicorn_otel._worker.log_bridge"),
}


def modules_for(settings: Settings) -> list[str]:
    """What a thread or asyncio worker's runtime imports with these settings (gRPC left out)."""
    names = list(_ALWAYS)
    for signal in settings.enabled_signals():
        names += _SIGNAL[signal]
        options = settings.exporting(signal)
        if options.kind == "otlp" and options.protocol != "grpc":
            names += _HTTP[signal]
    if settings.wrap_app:
        names.append("gunicorn_otel._worker.app_wrapping")
    return list(dict.fromkeys(names))


def import_all(settings: Settings) -> None:
    """Import ``modules_for(settings)``; a failure is logged and left to the worker, which reports it."""
    for name in modules_for(settings):
        try:
            importlib.import_module(name)
        except Exception:  # the worker imports it again and says what is wrong
            log.debug("gunicorn-otel: could not import %s in the master", name, exc_info=True)


def freeze() -> None:
    """Move every object alive now out of the cyclic GC's reach (after collecting what is garbage)."""
    import gc

    gc.collect()
    gc.freeze()
