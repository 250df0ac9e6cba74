"""Tracers taken before the worker's provider existed: one context manager per span, not two.

A tracer taken before any ``TracerProvider`` is set is the API's
``ProxyTracer`` (``opentelemetry/trace/__init__.py``), and stays one: a
``--preload`` app's module-level ``trace.get_tracer(__name__)``, and an
instrumentor's that takes its tracer when ``opentelemetry-instrument`` loads
it in the master (the requests instrumentor's ``_instrument``), are proxies in
every worker.  (FastAPI's native telemetry asks the global provider for its
tracer at the first request, so it is not one.)  Once a provider is set, a
proxy forwards to its real tracer, but its
``start_as_current_span`` is a generator context manager of its own wrapped
around the real tracer's: two generators, and a ``_tracer`` property call, per
span.  That costs a request of 4 spans about +50k machine instructions
(``bench/span_instructions.py``'s ``floor_proxy`` row), more than half of
what our whole span path adds.

``install`` replaces ``ProxyTracer.start_as_current_span`` in the process
with a function that returns the real tracer's context manager itself once
the proxy has one (``_real_tracer``, which the API's ``_tracer`` property sets
the first time the proxy is used after a provider is set), and calls the
API's own method before that.  The span, its parent, its end and its status
are the real tracer's either way.  What differs:

* the first ``with`` through each proxy, and a decorator
  (``@tracer.start_as_current_span(...)``) applied before the proxy had its
  real tracer (at import in a ``--preload`` master), keep the API's wrapper:
  the decorator's context manager is rebuilt from the API's method on every
  call (``_recreate_cm`` in ``contextlib``, through
  ``opentelemetry/util/_decorator.py``), which is what lets it find the
  real tracer later;
* an exception's recorded ``exception.stacktrace`` has one frame fewer (the
  proxy's ``start_as_current_span``);
* arguments the real tracer's method does not take fail when it is called
  rather than when the ``with`` block is entered.

``tests/test_proxy_tracers.py`` runs the same scenarios through both and
compares the spans.  Nothing is replaced unless the method is the API's own:
its code, and the ``_tracer`` property's, must come from the API's modules
(``_is_api_method``); a wrapper put there by another library, or a later API
version that moved them, is left alone.
"""

from __future__ import annotations

import logging
import types

from opentelemetry import trace
from opentelemetry.util import _decorator

log = logging.getLogger(__name__)

_API_METHOD = trace.ProxyTracer.__dict__.get("start_as_current_span")


def _is_api_method(method) -> bool:
    """Whether ``method`` is the API's ``ProxyTracer.start_as_current_span``, by its code, not its name.

    A wrapper copies the name (``functools.wraps``) but not the code: the
    method must be ``_agnosticcontextmanager``'s plain function around the
    generator function written in ``opentelemetry/trace/__init__.py``, and
    the proxy's ``_tracer`` property, whose ``_real_tracer`` we read, must be
    that module's too.
    """
    wrapped = getattr(method, "__wrapped__", None)
    resolver = getattr(trace.ProxyTracer.__dict__.get("_tracer"), "fget", None)
    return (
        type(method) is types.FunctionType
        and method.__code__.co_filename == _decorator.__file__
        and type(wrapped) is types.FunctionType
        and wrapped.__code__.co_filename == trace.__file__
        and wrapped.__qualname__ == "ProxyTracer.start_as_current_span"
        and type(resolver) is types.FunctionType
        and resolver.__code__.co_filename == trace.__file__
        and "_real_tracer" in resolver.__code__.co_names
    )


def start_as_current_span(self, *args, **kwargs):
    """``ProxyTracer.start_as_current_span``: the real tracer's context manager once there is one."""
    # A subclass may resolve its tracer its own way (``_tracer``): it keeps the API's path.
    real = self._real_tracer if self.__class__ is trace.ProxyTracer else None
    if real:  # truthiness, as the API's ``_tracer`` property tests it
        return real.start_as_current_span(*args, **kwargs)
    return _API_METHOD(self, *args, **kwargs)  # type: ignore[misc]  # checked by ``install``


def install() -> bool:
    """Replace ``ProxyTracer.start_as_current_span`` in this process; False if it is not the API's own."""
    current = trace.ProxyTracer.__dict__.get("start_as_current_span")
    if current is start_as_current_span:
        return True
    if current is not _API_METHOD or not _is_api_method(current):
        log.debug("gunicorn-otel: ProxyTracer.start_as_current_span is not the API's; left alone")
        return False
    trace.ProxyTracer.start_as_current_span = start_as_current_span  # type: ignore[method-assign]
    return True


def uninstall() -> None:
    """Put the API's method back (tests)."""
    if trace.ProxyTracer.__dict__.get("start_as_current_span") is start_as_current_span:
        trace.ProxyTracer.start_as_current_span = _API_METHOD  # type: ignore[method-assign,assignment]
