"""gevent-specific preparation, run from ``post_fork`` before gevent patches.

gRPC must be told about gevent after the standard library is patched and
before any gRPC object exists (``grpc/experimental/gevent.py``), or a
black-hole collector freezes the hub for the whole export timeout.  ``post_fork``
is too early (it runs before ``patch_all``), so we subscribe to gevent's own
"patched" event, which fires inside ``patch_all`` before the app is imported.
``gevent.events`` is already loaded in the master by ``-k gevent`` and pulls
in neither ``ssl`` nor ``grpc``.
"""

from __future__ import annotations

import logging

from gunicorn_otel.settings import Settings

log = logging.getLogger("gunicorn_otel")

_grpc_ready = False


def uses_grpc(settings: Settings) -> bool:
    return any(settings.exporting(s).protocol == "grpc" for s in settings.enabled_signals())


def prepare(settings: Settings) -> None:
    if not uses_grpc(settings):
        return
    from gevent import events

    def on_patched(event) -> None:
        if isinstance(event, events.GeventDidPatchAllEvent):
            init_grpc_for_gevent()

    events.subscribers.append(on_patched)


def init_grpc_for_gevent() -> None:
    """Idempotent; also called at build time in case the event never fired."""
    global _grpc_ready
    if _grpc_ready:
        return
    import grpc.experimental.gevent as grpc_gevent

    grpc_gevent.init_gevent()
    _grpc_ready = True
