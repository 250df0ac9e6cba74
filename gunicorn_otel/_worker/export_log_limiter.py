"""Export failures without a flood: the first at once, then one line a minute per signal.

With the collector down, the SDK logs every retry ("Transient error ...
retrying in 1.00s") and every failed batch ("Failed to export span batch
..."), for every signal, in every worker: 2 sync workers wrote 35 lines in
20 s against an unresolvable endpoint.  The exporters themselves only know
that one export failed, so the limit lives here, between them and the log:

* the counting exporters run each export inside ``limiter.exporting(signal)``;
  while it runs, records of level WARNING and above from ``opentelemetry.*``
  loggers are held back and the first one is kept as that export's reason;
* when the export has failed, ``failed()`` logs the first failure of a signal at
  once, with its reason; after that at most one line per signal every
  ``interval`` seconds (60), with the number of failed exports and dropped
  items since the last line and the latest reason;
* the first success after failures logs one line saying export recovered.

Only records made during one of our exports are held back; anything else the
SDK logs passes untouched.  The filter is added to every ``opentelemetry.*``
logger that exists when the limiter is installed (the exporters' modules are
imported by then): a logger-level filter sees only its own logger's records,
not its children's.

``_GUNICORN_OTEL_EXPORT_LOG_INTERVAL`` (seconds) overrides the interval.  It is
private, for tests that must see the summary line within seconds; it is not a
setting and may go away.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

from gunicorn_otel._worker.log_attributes import short_text

log = logging.getLogger(__name__)

INTERVAL = 60.0
INTERVAL_VARIABLE = "_GUNICORN_OTEL_EXPORT_LOG_INTERVAL"
MAX_REASON = 400
_UNKNOWN = "no reason given by the exporter"


class _Export:
    """One export in progress: its signal and the first message it produced."""

    __slots__ = ("signal", "reason")

    def __init__(self, signal: str) -> None:
        self.signal = signal
        self.reason: str | None = None


class _SignalState:
    __slots__ = ("failing", "failures", "items", "total_failures", "total_items", "last_line", "reason")

    def __init__(self) -> None:
        self.failing = False
        self.failures = 0  # since the last line
        self.items = 0
        self.total_failures = 0  # since export started failing
        self.total_items = 0
        self.last_line = 0.0
        self.reason = _UNKNOWN


_current: contextvars.ContextVar[_Export | None] = contextvars.ContextVar("gunicorn_otel_export", default=None)


def reason_text(message: str) -> str:
    """One line of at most ``MAX_REASON`` characters, keeping both ends.

    The SDK's messages name the operation first and the cause last
    ("Transient error HTTPConnectionPool(...): Max retries exceeded ...
    [Errno 111] Connection refused ... retrying in 0.90s.").
    """
    text = " ".join(str(message).split())
    if len(text) <= MAX_REASON:
        return text
    keep = (MAX_REASON - 5) // 2
    return f"{text[:keep]} ... {text[-keep:]}"


def _interval_from_environment() -> float:
    raw = os.environ.get(INTERVAL_VARIABLE, "")
    try:
        value = float(raw)
    except ValueError:
        return INTERVAL
    return value if value > 0 else INTERVAL


class ExportLogLimiter(logging.Filter):
    """Per-process owner of export-failure logging (one per runtime)."""

    def __init__(self, *, interval: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval if interval is not None else _interval_from_environment()
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, _SignalState] = {}
        self._loggers: list[logging.Logger] = []

    # -- wiring ------------------------------------------------------------

    def install(self) -> None:
        """Hold back SDK records made during our exports (see the module docstring)."""
        names = ["opentelemetry", *(n for n in logging.Logger.manager.loggerDict if n.startswith("opentelemetry."))]
        for name in names:
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)
                self._loggers.append(logger)

    def uninstall(self) -> None:
        for logger in self._loggers:
            logger.removeFilter(self)
        self._loggers.clear()

    @contextlib.contextmanager
    def exporting(self, signal: str) -> Iterator[_Export]:
        """Mark the code inside as one export of ``signal``."""
        export = _Export(signal)
        token = _current.set(export)
        try:
            yield export
        finally:
            _current.reset(token)

    def filter(self, record: logging.LogRecord) -> bool:
        export = _current.get()
        if export is None or record.levelno < logging.WARNING:
            return True
        if export.reason is None:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format string is still a reason
                message = short_text(record.msg)
            export.reason = reason_text(message)
        return False

    # -- outcomes ----------------------------------------------------------

    def failed(self, export: _Export, items: int, reason: str | None = None) -> None:
        """One export of ``export.signal`` failed; ``items`` are lost."""
        now = self._clock()
        with self._lock:
            state = self._states.setdefault(export.signal, _SignalState())
            state.reason = reason or export.reason or state.reason
            state.failures += 1
            state.items += items
            state.total_failures += 1
            state.total_items += items
            if not state.failing:
                state.failing = True
                line = (
                    "gunicorn-otel: pid %s: %s export failed (%d items dropped): %s; "
                    "until it recovers, one line every %gs"
                )
                args: tuple = (os.getpid(), export.signal, items, state.reason, self.interval)
            elif now - state.last_line >= self.interval:
                line = (
                    "gunicorn-otel: pid %s: %s export still failing: "
                    "%d failed exports, %d items dropped in %.1fs; last reason: %s"
                )
                args = (os.getpid(), export.signal, state.failures, state.items, now - state.last_line, state.reason)
            else:
                return
            state.last_line = now
            state.failures = state.items = 0
        log.warning(line, *args)

    def succeeded(self, export: _Export) -> None:
        """One export of ``export.signal`` succeeded: say so once if it had been failing."""
        with self._lock:
            state = self._states.get(export.signal)
            if state is None or not state.failing:
                return
            failures, items = state.total_failures, state.total_items
            self._states[export.signal] = _SignalState()
        log.warning(
            "gunicorn-otel: pid %s: %s export recovered after %d failed exports (%d items dropped)",
            os.getpid(),
            export.signal,
            failures,
            items,
        )
