"""The ProxyTracer shortcut (``_worker/proxy_tracers``) gives the same spans as the API's proxy.

The scenarios run in one fresh interpreter (the global provider can be set
once per process) through the API's ``ProxyTracer.start_as_current_span``,
through ours, and through the API's again (``uninstall``), against a real SDK
provider with an in-memory exporter, and the exported spans are compared.
``test_foundation`` checks that a ``--preload`` worker installs it and still
delivers every span.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import asyncio, json
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind
    from gunicorn_otel._worker import proxy_tracers

    early = trace.get_tracer("early")  # taken before any provider: a ProxyTracer

    @early.start_as_current_span("decorated-before-the-provider")
    def decorated_early():
        return trace.get_current_span().name

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    def scenarios(proxy, notes):
        notes.append(decorated_early())
        unresolved = trace.ProxyTracer("tests.unresolved")  # no real tracer yet: the fallback path

        @unresolved.start_as_current_span("decorated-unresolved")
        def decorated_unresolved():
            return trace.get_current_span().name

        notes.append(decorated_unresolved())
        notes.append(decorated_unresolved())
        with proxy.start_as_current_span("outer", kind=SpanKind.SERVER, attributes={"a": 1}) as outer:
            outer.set_attribute("b", 2)
            notes.append(trace.get_current_span() is outer)
            with proxy.start_as_current_span("inner") as inner:
                notes.append(inner.parent.span_id == outer.get_span_context().span_id)
        with proxy.start_as_current_span(
            "explicit-context",
            context=trace.set_span_in_context(outer),
            links=[trace.Link(inner.get_span_context(), {"l": 1})],
        ):
            pass
        try:
            with proxy.start_as_current_span("raises"):
                raise ValueError("boom")
        except ValueError as error:
            notes.append(str(error))
        try:
            with proxy.start_as_current_span("quiet", record_exception=False, set_status_on_exception=False):
                raise KeyError("k")
        except KeyError:
            notes.append("KeyError")
        try:
            with proxy.start_as_current_span("stop"):
                raise StopIteration
        except BaseException as error:
            notes.append(type(error).__name__)
        with proxy.start_as_current_span("left-open", end_on_exit=False) as left_open:
            pass
        notes.append(len(exporter.get_finished_spans()))
        left_open.end()
        with proxy.start_as_current_span("positional", None, SpanKind.CLIENT):
            pass

        @proxy.start_as_current_span("decorated")
        def decorated(x):
            return (x, trace.get_current_span().name)

        notes.append(decorated(1))
        notes.append(decorated(2))

        @proxy.start_as_current_span("decorated-async")
        async def decorated_async():
            await asyncio.sleep(0)
            return trace.get_current_span().name

        notes.append(asyncio.run(decorated_async()))

    def _frames(value):
        # The API's proxy adds its own frame to a recorded stack trace (the
        # shortcut has no such frame): compare the rest.
        if not isinstance(value, str) or "Traceback" not in value:
            return value
        lines = value.splitlines()
        kept, skip = [], False
        for line in lines:
            if skip:
                skip = False
                continue
            if 'opentelemetry/trace/__init__.py' in line and "in start_as_current_span" in line:
                skip = True  # and the source line under it
                continue
            kept.append(line)
        return chr(10).join(kept)

    def run(mode):
        if mode == "ours":
            assert proxy_tracers.install()
        else:
            proxy_tracers.uninstall()
        proxy = trace.ProxyTracer("tests.proxy")
        first = proxy.start_as_current_span("first")  # resolves the real tracer, as any first use does
        with first:
            pass
        made = proxy.start_as_current_span("probe")
        maker = made.func.__qualname__
        with made:
            pass

        class Subclass(trace.ProxyTracer):  # may resolve its tracer its own way: left on the API's path
            pass

        sub = Subclass("tests.subclass")
        with sub.start_as_current_span("subclass-first"):
            pass
        sub_made = sub.start_as_current_span("subclass")
        sub_maker = sub_made.func.__qualname__
        with sub_made:
            pass
        notes = []
        scenarios(proxy, notes)
        spans = exporter.get_finished_spans()
        exporter.clear()
        names = {s.context.span_id: s.name for s in spans}
        out = []
        for s in spans:
            out.append({
                "name": s.name,
                "kind": s.kind.name,
                "parent": names.get(s.parent.span_id) if s.parent else None,
                "status": [s.status.status_code.name, s.status.description],
                "attributes": dict(s.attributes),
                "events": [[e.name, {k: _frames(v) for k, v in e.attributes.items()}] for e in s.events],
                "links": [[names.get(l.context.span_id), dict(l.attributes)] for l in s.links],
                "scope": s.instrumentation_scope.name,
                "ended": s.end_time is not None and s.end_time >= s.start_time,
            })
        return {"maker": maker, "sub_maker": sub_maker, "notes": notes, "spans": out}

    print(json.dumps({"api": run("api"), "ours": run("ours"), "api_again": run("api")}))
    """
)


def _run() -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_same_spans_through_the_shortcut_as_through_the_api_proxy():
    result = _run()
    api, ours = result["api"], result["ours"]
    # The shortcut is taken: the context manager is the SDK tracer's, not the proxy's wrapper.
    assert api["maker"] == "ProxyTracer.start_as_current_span"
    assert ours["maker"] == "Tracer.start_as_current_span"
    assert ours["sub_maker"] == api["sub_maker"] == "ProxyTracer.start_as_current_span"
    # uninstall puts the API's method back.
    assert result["api_again"]["maker"] == "ProxyTracer.start_as_current_span"
    assert ours["notes"] == api["notes"]
    assert ours["spans"] == api["spans"]
    # The scenarios did what they say (so equal lists are not equal by being empty).
    names = [s["name"] for s in api["spans"]]
    assert names.count("decorated") == 2 and "decorated-before-the-provider" in names
    assert {s["name"]: s["parent"] for s in api["spans"]}["inner"] == "outer"
    raised = next(s for s in api["spans"] if s["name"] == "raises")
    assert raised["status"][0] == "ERROR" and raised["events"][0][0] == "exception"
    quiet = next(s for s in api["spans"] if s["name"] == "quiet")
    assert quiet["status"][0] == "UNSET" and quiet["events"] == []
    assert names.count("decorated-unresolved") == 2
    explicit = next(s for s in api["spans"] if s["name"] == "explicit-context")
    assert explicit["parent"] == "outer" and explicit["links"] == [["inner", {"l": 1}]]
    assert "ValueError: boom" in raised["events"][0][1]["exception.stacktrace"]


PATCHES = {
    # Patched after our module was imported: not the method it knew.
    "after-import": "",
    # A wrapper with the API's name and module (functools.wraps copies them), patched first.
    "functools.wraps": """
        import functools
        original = trace.ProxyTracer.start_as_current_span

        @functools.wraps(original)
        def someone_elses(self, *args, **kwargs):
            return original(self, *args, **kwargs)

        trace.ProxyTracer.start_as_current_span = someone_elses
    """,
    # wrapt's FunctionWrapper, as instrumentation libraries patch, patched first.
    "wrapt": """
        import wrapt

        def wrapper(wrapped, instance, args, kwargs):
            return wrapped(*args, **kwargs)

        wrapt.wrap_function_wrapper(trace.ProxyTracer, "start_as_current_span", wrapper)
    """,
}


@pytest.mark.parametrize("patch", sorted(PATCHES))
def test_install_leaves_a_method_it_does_not_know_alone(patch):
    script = "from opentelemetry import trace\n"
    if patch == "after-import":
        script += "from gunicorn_otel._worker import proxy_tracers\n"
        script += "trace.ProxyTracer.start_as_current_span = lambda self, *a, **k: None\n"
    else:
        script += textwrap.dedent(PATCHES[patch])
        script += "from gunicorn_otel._worker import proxy_tracers\n"
    script += textwrap.dedent(
        """
        theirs = trace.ProxyTracer.__dict__["start_as_current_span"]
        print(proxy_tracers.install(), trace.ProxyTracer.__dict__["start_as_current_span"] is theirs)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


def test_install_takes_the_api_method():
    script = textwrap.dedent(
        """
        from opentelemetry import trace
        from gunicorn_otel._worker import proxy_tracers
        print(proxy_tracers.install(), proxy_tracers.install(), trace.ProxyTracer.start_as_current_span.__module__)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "gunicorn_otel._worker.proxy_tracers"]
