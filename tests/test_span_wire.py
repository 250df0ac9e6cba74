"""The C span encoder (``gunicorn_otel._worker._span_wire``): which spans it writes, and that they are right.

``tests/test_otlp_wire.py`` runs every encoder comparison through the C encoder
and through the Python one.  Here: the spans the C encoder must write itself
(not hand to the Python fallback), the spans it must hand over, random usual
spans against both other encoders, the switch, and a real worker per
concurrency model that says which encoder it uses and delivers what it made.
"""

from __future__ import annotations

import collections
import math
import re
import signal

import hypothesis
import pytest
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as official_encode
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from gunicorn_otel._worker import otlp_wire
from tests.conftest import otel_env

# Also at the dependency floors and on every Python .ci/run tests: the extension is built for each.
pytestmark = pytest.mark.matrix


@pytest.fixture
def native():
    """The C encoder with a fallback that records the spans handed to it; the real one again after."""
    if otlp_wire.NATIVE is None:
        pytest.fail(
            "the C extension gunicorn_otel._worker._span_wire is not built (pip install -e . needs a C compiler)"
        )
    handed: list = []

    def fallback(span):
        handed.append(span)
        return otlp_wire._encode_span_python(span)

    encode = otlp_wire._native_encoder(fallback=fallback)
    assert encode is otlp_wire.NATIVE
    yield encode, handed
    otlp_wire._native_encoder()


def _tracer(limits=None):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "wire"}), span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("wire", "1.0"), exporter


def _same_everywhere(encode, spans) -> None:
    """The C encoder's items == the Python encoder's, and their batch == the official bytes."""
    ours = [encode(span) for span in spans]
    python = [otlp_wire._encode_span_python(span) for span in spans]
    assert ours == python
    assert otlp_wire.encode_spans(ours) == official_encode(spans).SerializeToString()


def usual_spans() -> list:
    """What requests end: SDK spans with scalar attributes, any kind and plain status, local or remote parents."""
    tracer, exporter = _tracer()
    scalars = {
        "s": "GET /items/{id}",
        "empty": "",
        "ü": "non-ASCII ✓",
        "": "the empty key is not written",
        "t": True,
        "f": False,
        "zero": 0,
        "int": 200,
        "neg": -1,
        "min": -(2**63),
        "max": 2**63 - 1,
        "big": 2**40 + 3,
        "x": 0.5,
        "nzero": -0.0,
        "inf": math.inf,
        "ninf": -math.inf,
        "long": "x" * 300,  # a length past one varint byte
    }
    for kind in SpanKind:
        with tracer.start_as_current_span(f"parent-{kind.name}", kind=kind, attributes=scalars):
            with tracer.start_as_current_span("child", attributes={"i": 1}) as child:
                child.set_status(StatusCode.OK)
            with tracer.start_as_current_span("failed") as failed:
                failed.set_status(Status(StatusCode.ERROR))
    remote = set_span_in_context(
        NonRecordingSpan(SpanContext(trace_id=2**128 - 1, span_id=2**64 - 1, is_remote=True, trace_flags=TraceFlags(1)))
    )
    with tracer.start_as_current_span("remote-child", context=remote):
        pass
    with tracer.start_as_current_span("", start_time=0, end_on_exit=False) as span:  # no name, no start time
        span.end(end_time=2**64 - 1)
    fresh = set_span_in_context(NonRecordingSpan(SpanContext(5, 6, True, TraceFlags(1), TraceState())))
    with tracer.start_as_current_span("fresh-empty-trace-state", context=fresh):
        pass
    limited, limited_exporter = _tracer(SpanLimits(max_attributes=2))
    with limited.start_as_current_span("dropped-attributes", attributes={"a": 1, "b": 2, "c": 3, "d": 4}):
        pass
    return list(exporter.get_finished_spans()) + list(limited_exporter.get_finished_spans())


def test_the_extension_is_built_and_encodes_by_default():
    assert otlp_wire.NATIVE is not None, "gunicorn_otel._worker._span_wire is not built"
    assert otlp_wire.encode_span is otlp_wire.NATIVE


def test_usual_spans_are_written_in_c(native):
    encode, handed = native
    spans = usual_spans()
    # Empty trace states of both kinds: the shared one, and one of their own (the SDK's or a fresh TraceState()).
    assert {span.context.trace_state is DEFAULT_TRACE_STATE for span in spans} == {True, False}
    _same_everywhere(encode, spans)
    assert handed == []
    # The live SDK span (what an ending span is), not only its ReadableSpan copy.
    tracer, _ = _tracer()
    live = tracer.start_span("live", attributes={"k": "v"})
    live.end()
    _same_everywhere(encode, [live])
    assert handed == []


def test_nan_is_written_bit_for_bit(native):
    encode, handed = native
    tracer, exporter = _tracer()
    with tracer.start_as_current_span("nan", attributes={"nan": math.nan}):
        pass
    (span,) = exporter.get_finished_spans()
    assert encode(span) == otlp_wire._encode_span_python(span)
    assert encode(span)[2] == official_encode([span]).resource_spans[0].scope_spans[0].spans[0].SerializeToString()
    assert handed == []


class _Subclass(ReadableSpan):
    pass


class _IntLike(int):
    pass


class _StrLike(str):
    pass


class _FloatLike(float):
    pass


class _StatusLike(Status):
    pass


class _TraceStateLike(TraceState):
    pass


class _ContextLike(SpanContext):
    pass


def other_spans() -> dict:
    """One span per reason the C encoder hands a span to the Python encoder."""
    tracer, exporter = _tracer()
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    with tracer.start_as_current_span("events") as span:
        span.add_event("e", {"k": "v"})
    with tracer.start_as_current_span("links", links=[Link(context)]):
        pass
    with tracer.start_as_current_span("described") as span:
        span.set_status(Status(StatusCode.ERROR, "it broke"))
    with tracer.start_as_current_span("sequence", attributes={"list": [1, 2]}):
        pass
    stated = set_span_in_context(NonRecordingSpan(SpanContext(3, 4, True, TraceFlags(1), TraceState([("k", "v")]))))
    with tracer.start_as_current_span("trace-state", context=stated):
        pass
    sdk = {span.name: span for span in exporter.get_finished_spans()}

    def raw(name="raw", attributes=None, **fields):
        bounded = BoundedAttributes(attributes=attributes or {}, immutable=False)
        fields.setdefault("context", context)
        return ReadableSpan(
            name,
            resource=Resource({}),
            attributes=bounded,
            events=BoundedList(None),
            links=BoundedList(None),
            **fields,
        )

    def attributes_set(**pairs):
        span = raw()
        span._attributes._dict.update(pairs)  # values the SDK's cleaning would refuse
        return span

    ordered = raw("ordered")
    ordered._attributes._dict = collections.OrderedDict(k="v")
    # A dropped event count with no events left: only the count to write.
    dropped_events = raw("dropped-events")
    dropped_events._events.dropped = 1
    return {
        **sdk,
        "bytes value": attributes_set(b=b"\x00"),
        "None value": attributes_set(n=None),
        "int out of int64": attributes_set(huge=2**63),
        "int subclass": attributes_set(i=_IntLike(3)),
        "lone surrogate value": attributes_set(s="\ud800"),
        "lone surrogate key": attributes_set(**{"\udfff": "v"}),
        "lone surrogate name": raw("\ud800"),
        "body over 4 KiB": attributes_set(big="x" * 5000),
        "plain dict attributes": ReadableSpan("dict", context=context, resource=Resource({}), attributes={"k": "v"}),
        "tuple events": ReadableSpan("tuple", context=context, resource=Resource({}), events=(Event("e"),)),
        "dropped events": dropped_events,
        "str subclass value": attributes_set(s=_StrLike("v")),
        "float subclass value": attributes_set(f=_FloatLike(0.5)),
        "ordered dict of attributes": ordered,
        "status subclass": raw("status-like", status=_StatusLike(StatusCode.OK)),
        "bool start time": raw("bool-time", start_time=True),
        "trace state subclass": raw("state-like", context=SpanContext(1, 2, False, TraceFlags(1), _TraceStateLike())),
        "span context subclass": raw("context-like", context=_ContextLike(1, 2, False)),
        "parent context subclass": raw("parent-like", parent=_ContextLike(1, 3, True)),
        "subclass": _Subclass("sub", context=context, resource=Resource({})),
        "negative start time": raw("negative", start_time=-1),
        "no status": raw("no-status", status=None),
        "no attributes object": ReadableSpan("bare", context=context, resource=Resource({})),
    }


@pytest.mark.parametrize("reason", sorted(other_spans()))
def test_other_spans_go_to_the_python_encoder(native, reason):
    encode, handed = native
    span = other_spans()[reason]
    try:
        expected = otlp_wire._encode_span_python(span)
    except Exception as error:  # noqa: BLE001 - no encoder can write it (a lone surrogate name, a negative time)
        with pytest.raises(type(error)):
            encode(span)
        assert handed == [span]
        return
    assert encode(span) == expected
    assert handed == [span]
    try:
        official = official_encode([span]).SerializeToString()
    except Exception:  # noqa: BLE001 - a value the SDK never sets (a bool start time): not this test's subject
        return
    assert otlp_wire.encode_spans([encode(span)]) == official


class _Interrupting:
    def __bool__(self):
        raise KeyboardInterrupt


def test_what_the_python_path_would_not_catch_propagates(native):
    # A KeyboardInterrupt (Gunicorn's SIGINT handler) raised while a span is
    # read is not turned into "try the Python encoder"; an Exception would be.
    encode, handed = native
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    span = ReadableSpan(
        "interrupted",
        context=context,
        parent=SpanContext(1, 3, _Interrupting()),
        resource=Resource({}),
        attributes=BoundedAttributes(attributes={}),
        events=BoundedList(None),
        links=BoundedList(None),
    )
    with pytest.raises(KeyboardInterrupt):
        otlp_wire._encode_span_python(span)
    with pytest.raises(KeyboardInterrupt):
        encode(span)
    assert handed == []


def test_a_body_at_the_limit_is_written_in_c_and_one_past_it_is_not(native):
    encode, handed = native
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)

    def span_with(attributes):
        return ReadableSpan(
            "n",
            context=context,
            resource=Resource({}),
            attributes=BoundedAttributes(attributes=attributes),
            events=BoundedList(None),
            links=BoundedList(None),
        )

    fixed = len(otlp_wire._encode_span_python(span_with({}))[2])
    # One attribute {"v": "x" * n}: 1 tag + 2 length + 3 key + 1 tag + 2 length + 1 tag + 2 length + n bytes.
    room = 4096 - fixed - 12
    for size, in_c in ((room, True), (room + 1, False)):
        handed.clear()
        span = span_with({"v": "x" * size})
        assert encode(span) == otlp_wire._encode_span_python(span)
        assert (len(encode(span)[2]) == 4096) is in_c
        assert (handed == []) is in_c


def test_random_usual_spans_match_both_encoders(native):
    encode, _ = native
    st = hypothesis.strategies
    keys = st.text(max_size=6) | st.sampled_from(["http.route", "i", ""])
    values = st.one_of(
        st.text(max_size=40),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False),
        st.integers(),  # may be out of int64: handed over
        st.integers(0xD800, 0xDFFF).map(chr),  # lone surrogates: handed over
    )
    u64 = st.integers(0, 2**64 - 1)
    contexts = st.builds(
        SpanContext,
        trace_id=st.integers(0, 2**128 - 1),
        span_id=u64,
        is_remote=st.booleans(),
        trace_flags=st.sampled_from([TraceFlags(0), TraceFlags(1)]),
    )

    def span(name, context, parent, attributes, limit, kind, code, start, end):
        bounded = BoundedAttributes(maxlen=limit, immutable=False)
        for key, value in attributes:
            bounded._dict[key] = value  # unchecked, as a span's cleaning would not let surrogates through
        if limit is not None:
            bounded.dropped = max(0, len(attributes) - limit)
        return ReadableSpan(
            name,
            context=context,
            parent=parent,
            resource=Resource({"service.name": "r"}),
            attributes=bounded,
            events=BoundedList(None),
            links=BoundedList(None),
            kind=kind,
            status=Status(code),
            start_time=start,
            end_time=end,
            instrumentation_scope=InstrumentationScope("s", "1"),
        )

    spans = st.builds(
        span,
        st.text(max_size=12),
        contexts,
        st.none() | contexts,
        st.lists(st.tuples(keys, values), max_size=6),
        st.none() | st.integers(0, 8),
        st.sampled_from(SpanKind),
        st.sampled_from(StatusCode),
        st.none() | u64,
        st.none() | u64,
    )

    @hypothesis.settings(max_examples=400, deadline=None, database=None)
    @hypothesis.given(st.lists(spans, min_size=1, max_size=6))
    def check(batch):
        ours = [encode(s) for s in batch]
        assert ours == [otlp_wire._encode_span_python(s) for s in batch]
        try:
            official = official_encode(batch).SerializeToString()
        except Exception:  # noqa: BLE001 - a lone surrogate: the official encoder refuses the batch
            return
        assert otlp_wire.encode_spans(ours) == official

    check()


def test_an_extension_that_does_not_match_leaves_the_python_encoder(monkeypatch, caplog):
    # A .so left from another version (a pull without a reinstall): Python encodes, telemetry goes on.
    from gunicorn_otel._worker import _span_wire  # type: ignore[attr-defined]

    def configure(**_):
        raise TypeError("configure() takes at most 8 keyword arguments (9 given)")

    monkeypatch.setattr(_span_wire, "configure", configure)
    try:
        assert otlp_wire._native_encoder() is None
        assert "reinstall gunicorn-otel" in otlp_wire.NATIVE_PROBLEM
        assert "C span encoder not used" in caplog.text
    finally:
        monkeypatch.undo()
        assert otlp_wire._native_encoder() is otlp_wire.NATIVE
        assert otlp_wire.NATIVE_PROBLEM == ""


def test_use_native_switches_every_caller(native):
    from gunicorn_otel._worker.fast_span_exporter import FastOTLPSpanExporter

    exporter = FastOTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")
    try:
        assert otlp_wire.use_native(False) is False
        assert otlp_wire.encode_span is otlp_wire._encode_span_python
        assert exporter.prepare_span is otlp_wire._encode_span_python
        assert otlp_wire.use_native(True) is True
        assert exporter.prepare_span is otlp_wire.NATIVE
    finally:
        otlp_wire.use_native(True)


# -- a real worker per concurrency model -------------------------------------------

_READY = re.compile(r"gunicorn-otel: worker \d+ ready \((.*)\)")


@pytest.mark.slow
@pytest.mark.parametrize(
    "worker_class, native_setting, encoder",
    [("sync", None, "C"), ("gevent", None, "C"), ("asgi", None, "C"), ("gthread", "false", "Python")],
)
def test_a_worker_names_its_encoder_and_delivers_every_span(worker_class, native_setting, encoder, receiver, gunicorn):
    env = otel_env(receiver.endpoint)
    if native_setting is not None:
        env["GUNICORN_OTEL_NATIVE_ENCODER"] = native_setting
    app = "asgi_app:app" if worker_class == "asgi" else "wsgi_app:app"
    proc = gunicorn(app, worker_class=worker_class, workers=1, env=env)
    for _ in range(20):
        assert proc.get("/?spans=3")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    ready = _READY.findall(proc.log_text())
    assert len(ready) == 1 and ready[0].endswith(f", {encoder} span encoder"), ready
    work = [span.attributes["i"] for span in receiver.spans() if span.name == "work"]
    assert sorted(work) == [0] * 20 + [1] * 20 + [2] * 20
