"""Per-worker ``process.*`` metrics, read by opentelemetry-instrumentation-system-metrics.

The library (psutil underneath) is the well-kept reader; we choose what it
reads and bind it to the worker's own ``MeterProvider``, so every point carries
that worker's resource (pid, slot, instance id).  It has no thread of its own:
its callbacks run when our metric reader collects, which under gevent is a
greenlet.

``SystemMetricsInstrumentor`` is a singleton (``BaseInstrumentor.__new__``) whose
``__init__`` takes ``psutil.Process(os.getpid())``; constructing it again in the
worker re-runs ``__init__``, so it reads this process and not the master it was
maybe first built in.  Its ``_uninstrument`` does nothing, so an instance
inherited as "instrumented" is only reset, and instruments it made on another
provider stay there.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

MODULE = "opentelemetry.instrumentation.system_metrics"

# The semantic-convention names; values are the attribute values the library reads.
PROCESS_METRICS: dict[str, list[str] | None] = {
    "process.cpu.time": ["user", "system"],
    "process.memory.usage": None,  # RSS
    "process.memory.virtual": None,
    "process.thread.count": None,
    "process.open_file_descriptor.count": None,
    "process.context_switches": ["involuntary", "voluntary"],
    "cpython.gc.collections": None,
}


def available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(MODULE) is not None
    except (ImportError, ValueError):
        return False


def start(meter_provider, *, everything: bool = False) -> bool:
    """Observe this process's metrics on ``meter_provider``; False when the library is missing.

    ``everything``: the library's own default set (``system.*`` too), used when
    opentelemetry-instrument had loaded it, so a zero-code user keeps what they had.
    """
    try:
        from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
    except ImportError:
        return False
    instrumentor = SystemMetricsInstrumentor(config=None if everything else dict(PROCESS_METRICS))
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(meter_provider=meter_provider, skip_dep_check=True)
    return True
