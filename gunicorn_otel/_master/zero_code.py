"""``opentelemetry-instrument gunicorn -c python:gunicorn_otel.conf ...``: take over in the master.

What the wrapper does before Gunicorn reads its config (the order in
``opentelemetry/instrumentation/auto_instrumentation/__init__.py``
``_initialize``, run from its ``sitecustomize.py``):

1. the distro's ``configure()``: opentelemetry-distro sets ``OTEL_*_EXPORTER=otlp``
   and ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` with ``os.environ.setdefault``;
2. the ``opentelemetry_configurator`` entry point (the SDK's
   ``_OTelSDKConfigurator``): builds a ``TracerProvider``, ``MeterProvider`` and
   ``LoggerProvider`` with batch processors and a periodic reader, each with a
   thread, and sets them as the API's set-once globals, in the master;
3. every ``opentelemetry_instrumentor`` entry point's ``instrument()``: most take
   a tracer or meter from the global provider at that moment.

Left alone, every worker inherits those globals (ours are then refused with
"Overriding of current TracerProvider is not allowed"), the batch processors'
at-fork hooks start their threads again in every worker (a native thread that
gevent later breaks: the ``KeyError`` in ``threading._delete``), and the
logging instrumentor's handler sends every record a second time.

So at config load, still in the master and before any fork or app import,
``take_over()``:

* shuts down the providers the configurator built (their threads end; the
  reader's final collection is skipped so the master exports nothing);
* resets the API's set-once globals (private names, read from
  ``opentelemetry/trace/__init__.py``, ``opentelemetry/metrics/_internal`` and
  ``opentelemetry/_logs/_internal``), so no SDK provider is left in the master
  and each worker's own provider is the global one;
* re-instruments each active instrumentor (``BaseInstrumentor`` is a singleton
  per class) against the API's proxies: its tracer or meter then delegates to
  whichever provider the worker sets, so nothing needs redoing per worker.
  Two are per process instead and are redone in each worker after our providers
  are set (``worker_rebind``): the logging instrumentor (its handler would
  duplicate our log bridge) and system metrics (it reads ``psutil.Process`` of
  the pid it was built in).

This module runs in the master: it imports nothing from OpenTelemetry itself
and touches only modules the wrapper has already imported.
"""

from __future__ import annotations

import gc
import logging
import sys
import weakref
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

AUTO_MODULE = "opentelemetry.instrumentation.auto_instrumentation"
LOGGING_INSTRUMENTOR = "opentelemetry.instrumentation.logging.LoggingInstrumentor"
SYSTEM_METRICS_INSTRUMENTOR = "opentelemetry.instrumentation.system_metrics.SystemMetricsInstrumentor"
# Instrumentors whose state belongs to one process: redone in each worker.
PER_PROCESS = (LOGGING_INSTRUMENTOR, SYSTEM_METRICS_INSTRUMENTOR)

# (API module, provider global, set-once global, proxy global, proxy class)
_GLOBALS = (
    ("opentelemetry.trace", "_TRACER_PROVIDER", "_TRACER_PROVIDER_SET_ONCE", None, None),
    (
        "opentelemetry.metrics._internal",
        "_METER_PROVIDER",
        "_METER_PROVIDER_SET_ONCE",
        "_PROXY_METER_PROVIDER",
        "_ProxyMeterProvider",
    ),
    ("opentelemetry._logs._internal", "_LOGGER_PROVIDER", "_LOGGER_PROVIDER_SET_ONCE", None, None),
)


class ZeroCodeError(Exception):
    """A combination we cannot make correct; the message says what to change."""


@dataclass
class TakeOver:
    """What ``take_over`` found and did in the master; inherited by every worker."""

    wrapper: bool = False  # opentelemetry-instrument's sitecustomize ran in this process
    distro: str | None = None
    providers: list[str] = field(default_factory=list)  # "TracerProvider", ...
    reinstrumented: list[str] = field(default_factory=list)
    per_process: list[str] = field(default_factory=list)  # qualified class names, redone per worker
    failed: list[str] = field(default_factory=list)
    survivors: int = 0  # SDK pipeline objects still alive after the shutdown

    @property
    def active(self) -> bool:
        return self.wrapper or bool(self.providers)


state = TakeOver()


def wrapper_loaded() -> bool:
    """True when opentelemetry-instrument (or its sitecustomize) initialised this process."""
    return AUTO_MODULE in sys.modules and "opentelemetry.sdk" in sys.modules


def _is_sdk(obj) -> bool:
    return type(obj).__module__.startswith("opentelemetry.sdk.")


def take_over() -> TakeOver:
    """Undo, in the master, what opentelemetry-instrument's configurator built.

    Idempotent; does nothing when no SDK provider is set and the wrapper did not run.
    """
    if "opentelemetry.sdk" not in sys.modules or state.providers or state.reinstrumented:
        state.wrapper = state.wrapper or wrapper_loaded()
        return state
    state.wrapper = wrapper_loaded()
    distro = sys.modules.get("opentelemetry.distro")
    state.distro = "opentelemetry-distro" if distro is not None else None
    refs = _pipelines_of(_global_providers())
    state.providers = _shut_down_all()
    if not state.providers and not state.wrapper:
        return state
    _reset_globals()
    _remove_sdk_logging_handlers()
    _rebind_instrumentors()
    _unwrap_logging_config()
    gc.collect()
    state.survivors = sum(1 for ref in refs if ref() is not None)
    if state.survivors:
        log.debug("gunicorn-otel: %d SDK pipeline objects from the master are still referenced", state.survivors)
    return state


def _shut_down_all() -> list[str]:
    names = []
    for _, provider in _global_providers():
        if _is_sdk(provider):
            names.append(type(provider).__name__)
            _shut_down(provider)
    return names


def _global_providers() -> list[tuple[str, object]]:
    found = []
    for module_name, attr, *_ in _GLOBALS:
        module = sys.modules.get(module_name)
        provider = getattr(module, attr, None) if module is not None else None
        if provider is not None:
            found.append((attr, provider))
    return found


def _pipelines_of(providers) -> list[weakref.ref]:
    """Weak references to each provider's processors and readers, to see they are gone."""
    refs: list[weakref.ref] = []
    for _, provider in providers:
        if not _is_sdk(provider):
            continue
        objects = _processors(provider) + _readers(provider)
        for obj in objects:
            try:
                refs.append(weakref.ref(obj))
            except TypeError:
                pass
    return refs


def _processors(provider) -> list:
    """A tracer or logger provider's processors (their multi-processor's tuple)."""
    multi = getattr(provider, "_active_span_processor", None) or getattr(provider, "_multi_log_record_processor", None)
    return list(getattr(multi, "_span_processors", ()) or getattr(multi, "_log_record_processors", ()) or ())


def _readers(provider) -> list:
    """A MeterProvider's readers (``sdk/metrics/_internal/__init__.py``: ``_metric_readers``)."""
    return list(getattr(provider, "_metric_readers", ()) or ())


def _shut_down(provider) -> None:
    """Stop a master-side SDK provider without exporting anything from the master."""
    for processor in _processors(provider):
        # What the master queued before Gunicorn started (sitecustomize, config import)
        # would be exported by the final drain, against a collector that may not answer.
        queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
        if queue is not None:
            queue.clear()
    for reader in _readers(provider):
        # PeriodicExportingMetricReader collects once more when it stops, and its
        # at-fork hook (sdk/metrics/_internal/export) would start its ticker in
        # each child if it were still referenced: neither may send anything.
        reader._receive_metrics = _discard
    try:
        if type(provider).__name__ == "MeterProvider":
            provider.shutdown(timeout_millis=1000)
        else:
            provider.shutdown()
    except Exception:  # a provider that fails to stop must not stop Gunicorn
        log.debug("gunicorn-otel: shutting down the master's %s failed", type(provider).__name__, exc_info=True)


def _discard(*args, **kwargs) -> None:
    """A metric reader's export step that sends nothing."""


def _reset_globals() -> None:
    for module_name, attr, once_attr, proxy_attr, proxy_class in _GLOBALS:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        once = getattr(module, once_attr, None)
        setattr(module, attr, None)
        if once is not None:
            setattr(module, once_attr, type(once)())
        if proxy_attr and proxy_class and hasattr(module, proxy_class):
            # The metrics proxy remembers the provider it was given; a fresh one
            # hands out meters that follow the worker's provider instead.
            setattr(module, proxy_attr, getattr(module, proxy_class)())


def _remove_sdk_logging_handlers() -> None:
    """The SDK's deprecated root handler (OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler).__module__.startswith("opentelemetry.sdk._logs"):
            root.removeHandler(handler)


def _unwrap_logging_config() -> None:
    """Undo the logging handler's config wrappers, which keep the master's LoggerProvider alive.

    ``_overwrite_logging_config_fns`` (opentelemetry-instrumentation-logging's
    ``handler.py`` and the SDK's ``_configuration``) wraps ``basicConfig``,
    ``dictConfig`` and ``fileConfig`` in closures over its handler; the handler
    holds the provider, whose batch processor's at-fork hook would start a
    thread in every worker.  ``uninstrument()`` removes the handler, not these.
    """
    import logging.config

    for module, name in ((logging, "basicConfig"), (logging.config, "dictConfig"), (logging.config, "fileConfig")):
        fn = getattr(module, name)
        while getattr(fn, "__name__", "") == "overwritten_config_fn" and "config_fn" in fn.__code__.co_freevars:
            fn = fn.__closure__[fn.__code__.co_freevars.index("config_fn")].cell_contents
        setattr(module, name, fn)


def _active_instrumentors() -> list:
    base_module = sys.modules.get("opentelemetry.instrumentation.instrumentor")
    base = getattr(base_module, "BaseInstrumentor", None)
    if base is None:
        return []
    found, stack, seen = [], list(base.__subclasses__()), set()
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        stack.extend(cls.__subclasses__())
        instance = cls.__dict__.get("_instance")
        if instance is not None and getattr(instance, "_is_instrumented_by_opentelemetry", False):
            found.append(instance)
    return found


def _class_name(instance) -> str:
    cls = type(instance)
    module = cls.__module__
    # opentelemetry.instrumentation.requests.__init__ and the like: the package is the name users know
    return f"{module}.{cls.__qualname__}"


def _rebind_instrumentors() -> None:
    for instrumentor in _active_instrumentors():
        name = _class_name(instrumentor)
        try:
            instrumentor.uninstrument()
            if name in PER_PROCESS:
                if name == SYSTEM_METRICS_INSTRUMENTOR:
                    # Its _uninstrument does nothing: re-running __init__ drops the
                    # meter (and so the master's MeterProvider) it still holds.
                    instrumentor.__init__()
                state.per_process.append(name)
                continue
            instrumentor.instrument(skip_dep_check=True)
            state.reinstrumented.append(name)
        except Exception as exc:  # noqa: BLE001 - reported at start, with what to change
            state.failed.append(f"{name}: {type(exc).__name__}: {exc}")


def check_startable(worker_class: str) -> None:
    """Raise ``ZeroCodeError`` for a combination that would run half-instrumented."""
    if not state.active:
        return
    if state.failed:
        names = ", ".join(f.split(":", 1)[0].rsplit(".", 2)[-2] for f in state.failed)
        raise ZeroCodeError(
            "opentelemetry-instrument loaded instrumentations that could not be moved to the workers' providers ("
            + "; ".join(state.failed)
            + f"). Exclude them with OTEL_PYTHON_DISABLED_INSTRUMENTATIONS={names}"
        )
    problem = gevent_problem(worker_class)
    if problem:
        raise ZeroCodeError(problem)


def gevent_problem(worker_class: str) -> str | None:
    """gevent workers patch ``ssl`` late; modules holding the unpatched ``SSLContext`` stay blocking.

    gevent's own test (``gevent/monkey/__init__.py`` ``patch_ssl``): a warning when
    modules other than ``ssl`` hold a direct reference to the original
    ``SSLContext``.  Gunicorn importing ``ssl`` is harmless; the wrapper's
    instrumentations importing ``urllib3`` or ``requests`` in the master is not.
    """
    if "gevent" not in worker_class.lower() or _gevent_patched():
        return None
    holders = _ssl_context_holders()
    if not holders:
        return None
    return (
        f"-k {worker_class} under opentelemetry-instrument: modules it imported in the master hold ssl.SSLContext "
        f"before gevent can patch it ({', '.join(holders[:5])}{', ...' if len(holders) > 5 else ''}; gevent's "
        "MonkeyPatchWarning, TLS that blocks the hub). Set OTEL_PYTHON_AUTO_INSTRUMENTATION_EXPERIMENTAL_GEVENT_PATCH"
        "=patch_all so opentelemetry-instrument patches first, or run without opentelemetry-instrument"
    )


def _ssl_context_holders() -> list[str]:
    ssl = sys.modules.get("ssl")
    original = getattr(ssl, "SSLContext", None)
    if original is None:
        return []
    holders = []
    for name, module in list(sys.modules.items()):
        if name == "ssl" or name.startswith("gevent") or module is None:
            continue
        try:
            values = list(vars(module).values())
        except TypeError:
            continue
        if any(value is original for value in values):
            holders.append(name)
    return sorted(holders)


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("socket"))


def summary() -> str | None:
    """One line for the master's log, or None when there was nothing to take over."""
    if not state.active:
        return None
    parts = []
    if state.providers:
        parts.append("shut down its " + ", ".join(state.providers) + " in the master")
    if state.reinstrumented or state.per_process:
        names = sorted(n.rsplit(".", 2)[-2] for n in state.reinstrumented + state.per_process)
        parts.append("instrumentations moved to the workers' providers: " + ", ".join(names))
    who = (
        "opentelemetry-instrument detected"
        if state.wrapper
        else ("OpenTelemetry was set up in the master before Gunicorn loaded this config (a sitecustomize?)")
    )
    return f"gunicorn-otel: {who}; " + ("; ".join(parts) or "nothing to take over")
