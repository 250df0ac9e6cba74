"""Standard ``logging`` records into the OTel logger provider.

We attach OpenTelemetry's own ``LoggingHandler`` (opentelemetry-instrumentation-
logging; the SDK's copy is deprecated) to the root logger and to Gunicorn's
``gunicorn.error`` logger, which does not propagate.  The handler stamps each
record with the active trace and span ids.

Two changes to its behaviour, and why:

* Records from the telemetry stack itself (``opentelemetry.*``, ``urllib3``,
  ``gunicorn_otel``...) are not bridged: a failing export logs a warning, and
  bridging that warning would queue another record to the failing exporter.
* Logger levels are left alone: the app's own logging configuration decides
  what is emitted (root defaults to WARNING), the handler level only filters.
* Attribute values the SDK would reject with an "Invalid type" warning per
  record (Django logs its request object) are made valid first, quietly.
* ``flush()`` does nothing.  The handler's flush starts a thread that calls an
  unbounded ``force_flush``, and ``logging.shutdown()`` calls it at exit; the
  runtime owns flushing and bounds it.
"""

from __future__ import annotations

import logging

from opentelemetry.instrumentation.logging.handler import LoggingHandler

from gunicorn_otel._worker.log_attributes import clean_attributes

_QUIET_PREFIXES = ("opentelemetry", "gunicorn_otel", "fastapi_otel", "urllib3", "requests", "grpc")


class _BridgeHandler(LoggingHandler):
    def flush(self) -> None:
        """Flushing is the runtime's job, with a deadline."""

    def filter(self, record: logging.LogRecord):
        if record.name.startswith(_QUIET_PREFIXES):
            return False
        return super().filter(record)

    def _get_attributes(self, record: logging.LogRecord):
        """The handler's attributes, with values no OTel attribute can hold made valid.

        Frameworks log objects in ``extra`` (Django: the request); see
        ``gunicorn_otel._worker.log_attributes`` for what they become.
        """
        result = super()._get_attributes(record)
        if isinstance(result, tuple):  # (attributes, event name) in 0.66
            return (clean_attributes(result[0]), *result[1:])
        return clean_attributes(result)


class LogBridge:
    """Attaches one handler to the loggers that carry app and Gunicorn records."""

    LOGGER_NAMES = ("", "gunicorn.error")

    def __init__(self, logger_provider, level: str) -> None:
        self.handler: _BridgeHandler | None = _BridgeHandler(
            level=logging.getLevelName(level.upper()), logger_provider=logger_provider
        )
        self._attached: list[logging.Logger] = []

    def attach(self) -> None:
        if self.handler is None:
            return
        for name in self.LOGGER_NAMES:
            logger = logging.getLogger(name)
            if self.handler not in logger.handlers:
                logger.addHandler(self.handler)
                self._attached.append(logger)

    def detach(self) -> None:
        """Remove and close the handler, and let it be freed here and now.

        ``logging`` keeps a weak reference to every handler whose callback
        takes logging's module lock when the handler is freed.  Left to
        interpreter teardown, that happens after greenlet is finalized, and
        gevent 25.4's patched lock then prints "Exception ignored in
        _removeHandlerRef ... RuntimeError: greenlet is being finalized" at
        every worker exit (fixed in gevent's ``thread.get_ident`` since).
        Dropping our last reference now runs the callback while it can.
        """
        handler, self.handler = self.handler, None
        if handler is None:
            return
        for logger in self._attached:
            logger.removeHandler(handler)
        self._attached.clear()
        handler.close()
