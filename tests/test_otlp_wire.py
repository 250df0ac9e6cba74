"""``otlp_wire.encode_spans`` against the official OTLP encoder, byte for byte.

Every comparison encodes the same spans both ways and asserts
(a) our bytes decode to a message equal to the official one, and
(b) our bytes equal the official ``SerializeToString()``.  Protobuf writes
known fields in field-number order and we do too, so (b) holds everywhere; the
only place a comparison differs is NaN, where (a) cannot hold (NaN != NaN), so
that test compares bytes and then checks the decoded value is NaN.

Real SDK spans cover every field; hand-built ``ReadableSpan``s cover what the
SDK's attribute cleaning would refuse but the official encoder still handles;
random batches (hypothesis) cover the combinations.
"""

from __future__ import annotations

import gzip
import http.server
import logging
import math
import threading
from http import HTTPStatus
from unittest import mock

import hypothesis
import pytest
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as official_encode
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
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

from gunicorn_otel._worker import fast_span_exporter, otlp_wire
from gunicorn_otel._worker.fast_span_exporter import FastOTLPSpanExporter

# Every attribute type the SDK accepts, with the edge values of each.
VALUES = {
    "str": "hello",
    "empty_str": "",
    "unicode": "héllo ✓ 日本 🚀",
    "true": True,
    "false": False,
    "zero": 0,
    "one": 1,
    "neg": -42,
    "big": 2**63 - 1,
    "min": -(2**63),
    "float": -1.5,
    "float_zero": 0.0,
    "neg_zero": -0.0,
    "inf": math.inf,
    "neg_inf": -math.inf,
    "tiny": 5e-324,
    "str_list": ("a", "", "ü"),
    "int_list": [1, -2, 0, 2**63 - 1],
    "bool_list": [True, False],
    "float_list": [0.5, -0.25, 0.0],
    "with_none": ["a", None, "c"],
    "empty_list": [],
    "bytes": b"\x00\x01binary\xff",
    "empty_bytes": b"",
    "ключ": "значение",
}

# Values only a hand-built ReadableSpan can carry (the SDK's attribute cleaning
# refuses them); the official encoder still has a rule for each.
RAW_VALUES = {
    "none": None,
    "nested": [[1, 2], ["a"], []],
    "mapping": {"a": 1, 2: "b", "inner": {"x": [True]}},
    "bytearray": bytearray(b"ab"),  # a Sequence of ints, not bytes
    "int_enum": HTTPStatus.NOT_FOUND,
    "str_subclass": type("S", (str,), {})("sub"),
    "too_big": 2**63,  # out of int64: logged and left out
    "too_small": -(2**63) - 1,
    "bad_type": object(),  # logged and left out
    "bad_in_list": [1, object()],
    "surrogate": "\ud800",  # not UTF-8 encodable: logged and left out
    "after_errors": "still here",
}

REMOTE_PARENT = SpanContext(
    trace_id=0x1234,
    span_id=0x5678,
    is_remote=True,
    trace_flags=TraceFlags(1),
    trace_state=TraceState([("vendor", "value"), ("other", "x")]),
)
LINK_REMOTE = SpanContext(trace_id=2**128 - 1, span_id=2**64 - 1, is_remote=True, trace_state=TraceState([("ls", "1")]))
LINK_LOCAL = SpanContext(trace_id=99, span_id=98, is_remote=False)


@pytest.fixture(autouse=True, params=["native", "python"])
def encoder(request):
    """Every test here runs with the C encoder (``_worker/_span_wire``) and with the Python one."""
    native = request.param == "native"
    if native and otlp_wire.NATIVE is None:
        pytest.fail(
            "the C extension gunicorn_otel._worker._span_wire is not built (pip install -e . needs a C compiler)"
        )
    assert otlp_wire.use_native(native) is native
    yield request.param
    otlp_wire.use_native(True)


def _provider(resource, limits=None):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource, span_limits=limits, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def make_spans() -> list:
    """Real SDK spans covering every field, from three resources and several scopes, interleaved."""
    limits = SpanLimits(
        max_span_attributes=len(VALUES) + 2,
        max_events=2,
        max_links=2,
        max_event_attributes=2,
        max_link_attributes=1,
    )
    resource_a = Resource.create({"service.name": "a", "k": 1, "list": ("x", "y")}, schema_url="https://schema/a")
    # Equal to resource_b but a distinct object: the official encoder merges them.
    resource_b1 = Resource({"service.name": "b", "ü": 1.5})
    resource_b2 = Resource({"service.name": "b", "ü": 1.5})
    provider_a, exporter_a = _provider(resource_a, limits)
    provider_b1, exporter_b1 = _provider(resource_b1)
    provider_b2, exporter_b2 = _provider(resource_b2)
    tracers = [
        provider_a.get_tracer("scope.plain"),
        provider_a.get_tracer("scope.full", "1.2.3", schema_url="https://schema/scope", attributes={"sa": "v", "n": 3}),
        provider_a.get_tracer("scope.version-only", "0.1"),
        provider_a.get_tracer("", attributes={"only": "attributes"}),  # the SDK logs an error, and keeps it
        provider_b1.get_tracer("shared"),
        provider_b2.get_tracer("shared"),  # equal scope under an equal resource: merged
    ]
    remote_parent = set_span_in_context(NonRecordingSpan(REMOTE_PARENT))
    for i, tracer in enumerate(tracers):
        for kind in SpanKind:
            with tracer.start_as_current_span(f"span-{i}-{kind.name}", kind=kind, attributes=VALUES) as outer:
                outer.add_event("")  # dropped on provider a (max_events=2)
                outer.add_event("evt", {"e": 1, "f": [1.5], "dropped": "x"}, timestamp=1)
                outer.add_event("third ✓", {"g": True}, timestamp=2**63)
                links = [Link(LINK_LOCAL), Link(LINK_REMOTE, {"l": "v", "m": 2}), Link(LINK_LOCAL, {"x": 1})]
                with tracer.start_as_current_span("child", links=links):  # local parent
                    pass
        with tracer.start_as_current_span("remote-child", context=remote_parent) as span:  # has trace_state
            span.set_status(Status(StatusCode.ERROR, "it broke: ✗"))
        with tracer.start_as_current_span("ok-span") as span:
            span.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("error-no-message") as span:
            span.set_status(StatusCode.ERROR)
        with tracer.start_as_current_span("", start_time=0, end_on_exit=False) as span:
            span.end(end_time=2**64 - 1)
        with tracer.start_as_current_span("too-many-attributes") as span:
            for n in range(40):
                span.set_attribute(f"a{n}", n)
    spans = exporter_a.get_finished_spans() + exporter_b1.get_finished_spans() + exporter_b2.get_finished_spans()
    return list(spans[::3] + spans[1::3] + spans[2::3])


def raw_spans() -> list:
    """Hand-built ReadableSpans: plain dict attributes, tuple events/links, no scope, missing times."""
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    common = dict(context=context, resource=Resource({}), instrumentation_scope=None)
    return [
        ReadableSpan("raw", attributes=RAW_VALUES, **common),
        ReadableSpan(
            "raw-events",
            parent=REMOTE_PARENT,
            events=(Event("e", {"k": None}, timestamp=5), Event("", timestamp=0)),
            links=(Link(LINK_REMOTE, {"nested": [[1]]}),),
            kind=SpanKind.CONSUMER,
            status=Status(StatusCode.ERROR, ""),
            start_time=10,
            **common,
        ),
        ReadableSpan("", end_time=3, status=None, **common),
        ReadableSpan("scoped", context=context, resource=Resource({}), instrumentation_scope=InstrumentationScope("s")),
    ]


def assert_same_as_official(spans, *, fast=True) -> bytes:
    """Our bytes == the official bytes; with ``fast``, also that we did not just call the official encoder.

    Three ways in, one answer: the spans themselves; each span encoded alone
    as it would be when it ends (``encode_span``, what the gevent processor
    queues); and a mix of both.
    """

    def ours_from(items):
        if fast:
            with mock.patch.object(
                otlp_wire, "_official_span", side_effect=AssertionError("used the official encoder")
            ):
                return otlp_wire.encode_spans(items)
        return otlp_wire.encode_spans(items)

    ours = ours_from(spans)
    official = official_encode(spans)
    assert ExportTraceServiceRequest.FromString(ours) == official
    assert ours == official.SerializeToString()
    prepared = [otlp_wire.encode_span(span) for span in spans]
    assert all(type(item) is otlp_wire.EncodedSpan for item in prepared)
    assert ours_from(prepared) == ours
    assert (
        ours_from([item if i % 2 else span for i, (span, item) in enumerate(zip(spans, prepared, strict=True))]) == ours
    )
    return ours


def all_spans(message):
    return [s for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans]


def test_real_spans_encode_to_the_official_bytes():
    spans = make_spans()
    decoded = ExportTraceServiceRequest.FromString(assert_same_as_official(spans))
    # The batch really exercises what it claims to.
    assert len(decoded.resource_spans) == 2  # resource_b1 and resource_b2 merged
    assert [len(rs.scope_spans) for rs in decoded.resource_spans] == [4, 1]
    encoded = all_spans(decoded)
    assert {s.flags for s in encoded} == {0x100, 0x300}
    assert {link.flags for s in encoded for link in s.links} == {0x100, 0x300}
    assert any(s.trace_state for s in encoded)
    assert any(s.dropped_attributes_count for s in encoded)
    assert any(s.dropped_events_count for s in encoded)
    assert any(s.dropped_links_count for s in encoded)
    assert any(e.dropped_attributes_count for s in encoded for e in s.events)
    assert any(link.dropped_attributes_count for s in encoded for link in s.links)
    assert {s.status.code for s in encoded} == {0, 1, 2}


def test_each_span_alone_and_every_scope_grouping():
    spans = make_spans()
    for span in spans:
        assert_same_as_official([span])
    assert_same_as_official(spans[::-1])
    assert_same_as_official(sorted(spans, key=lambda s: s.name))


def test_hand_built_spans_and_unencodable_values(caplog):
    assert_same_as_official(raw_spans())
    caplog.clear()
    with caplog.at_level(logging.ERROR):  # each encoder once, to count what each logs
        otlp_wire.encode_spans(raw_spans())
        official_encode(raw_spans())
    ours = [r.getMessage() for r in caplog.records if r.name == "gunicorn_otel._worker.otlp_wire"]
    theirs = [r.getMessage() for r in caplog.records if r.name.startswith("opentelemetry.exporter")]
    assert len(ours) == len(theirs) == 5
    for key in ("too_big", "too_small", "bad_type", "bad_in_list", "surrogate"):
        assert any(message.startswith(f"Failed to encode key {key}:") for message in ours), key


def test_string_fields_take_what_protobuf_takes(caplog):
    # A proto3 string field set to "" (or None) is not written at all, and
    # protobuf also takes bytes holding UTF-8 for one.  Found by the property test.
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    attributes = {"": "empty key", b"k": "bytes key", None: 1, b"": 1.5, "m": {"": 0}, b"\xff": "dropped", 3: "dropped"}
    spans = [
        ReadableSpan(
            b"bytes name",
            context,
            attributes=attributes,
            events=(Event(b"bytes event", {"": 2.5}, timestamp=1),),
            instrumentation_scope=InstrumentationScope("s", b"1.0"),
            resource=Resource({}, schema_url=b"https://schema/bytes"),
        ),
        ReadableSpan(None, context, resource=Resource({})),
    ]
    decoded = ExportTraceServiceRequest.FromString(assert_same_as_official(spans))
    assert [kv.key for kv in all_spans(decoded)[0].attributes] == ["", "k", "", "", "m"]
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        otlp_wire.encode_spans(spans)
    assert len([r for r in caplog.records if r.name == "gunicorn_otel._worker.otlp_wire"]) == 2  # b"\xff" and 3


def test_resources_equal_but_hashed_apart_stay_apart():
    # {"x": True} == {"x": 1}, but Resource.__hash__ (JSON) differs: the
    # official encoder's dict keeps them apart, and so must we.
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    spans = [ReadableSpan("a", context, resource=Resource({"x": True})),
             ReadableSpan("b", context, resource=Resource({"x": 1}))]  # fmt: skip
    assert_same_as_official(spans)


def test_nan_is_encoded_bit_for_bit():
    # NaN != NaN, so only the bytes can be compared, then the decoded value checked.
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    spans = [ReadableSpan("nan", context, attributes={"nan": math.nan, "list": [math.nan]})]
    ours = otlp_wire.encode_spans(spans)
    assert ours == official_encode(spans).SerializeToString()
    decoded = all_spans(ExportTraceServiceRequest.FromString(ours))[0]
    assert math.isnan(decoded.attributes[0].value.double_value)


def test_lengths_past_the_varint_table():
    # Lengths under 2048 come from a table (``_VARINTS``); longer ones are built.
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    spans = [ReadableSpan(f"s{n}", context, attributes={"v": "x" * n}) for n in (2030, 2047, 2048, 20000, 3_000_000)]
    assert_same_as_official(spans)
    assert otlp_wire.encode_spans([otlp_wire.encode_span(span) for span in spans]) == otlp_wire.encode_spans(spans)
    for n in (0, 127, 128, 2047, 2048, 16383, 16384, 2**35, 2**64 - 1):
        assert otlp_wire._varint(n) == otlp_wire._build_varint(n)
        assert otlp_wire._varint(n) == _official_varint(n)


def _official_varint(n: int) -> bytes:
    # AnyValue.int_value is int64: its varint is the value's own for 0 <= n < 2**63; past that,
    # the two's complement of the wrapped negative, which is n itself as unsigned.
    encoded = AnyValue(int_value=n if n < 2**63 else n - 2**64).SerializeToString()
    return encoded[1:]  # after the field tag (3 << 3 | 0)


def test_empty_batch():
    assert otlp_wire.encode_spans([]) == official_encode([]).SerializeToString() == b""


def test_caches_stay_correct_across_calls_and_when_full(monkeypatch):
    spans = make_spans()
    first = assert_same_as_official(spans)
    assert otlp_wire.encode_spans(spans) == first  # now from warm caches
    caches = (otlp_wire._kv_cache, otlp_wire._span_kv_cache, otlp_wire._key_cache)
    for cache in (*caches, otlp_wire._resource_cache, otlp_wire._scope_cache):
        cache.clear()
    monkeypatch.setattr(otlp_wire, "_CACHE_ENTRIES", 3)
    monkeypatch.setattr(otlp_wire, "_OBJ_CACHE_ENTRIES", 1)
    assert otlp_wire.encode_spans(spans) == first
    assert otlp_wire.encode_spans(spans) == first
    assert len(otlp_wire._kv_cache) <= 3 and len(otlp_wire._span_kv_cache) <= 3
    assert len(otlp_wire._resource_cache) <= 1
    # Long values are not cached at all.
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    long = [ReadableSpan("x" * 300, context, attributes={"k" * 300: "v" * 300, "f" * 300: 1.0})]
    assert_same_as_official(long)
    assert ("k" * 300, "v" * 300, str) not in otlp_wire._kv_cache
    assert ("k" * 300, "v" * 300, str) not in otlp_wire._span_kv_cache
    assert otlp_wire._kv_cache and otlp_wire._span_kv_cache  # the short pairs above were cached


def test_cached_pairs_keep_equal_values_of_different_types_apart():
    # 1 == True and hash(1) == hash(True): a cache keyed by (key, value) alone
    # would send one as the other.
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    for order in ([True, 1, False, 0, "1"], [0, False, 1, True, "1"]):
        otlp_wire._kv_cache.clear()
        otlp_wire._span_kv_cache.clear()
        spans = [ReadableSpan(f"s{i}", context, attributes={"x": v}) for i, v in enumerate(order)]
        decoded = ExportTraceServiceRequest.FromString(assert_same_as_official(spans + spans))
        values = [s.attributes[0].value.WhichOneof("value") for s in all_spans(decoded)]
        assert values == [{bool: "bool_value", int: "int_value", str: "string_value"}[type(v)] for v in order] * 2


def test_unhashable_attribute_values_take_the_fast_path():
    # The span attribute cache is keyed by (key, value, type): a value that
    # cannot be hashed is encoded each time, and the span stays on our encoder.
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    attributes = BoundedAttributes(attributes={"before": 1, "after": "x"})
    attributes._dict["list"] = [1, 2]  # the SDK keeps tuples; an older or patched one may not
    attributes._dict["dict"] = {"k": "v"}
    attributes._dict["after"] = attributes._dict.pop("after")  # last again
    span = ReadableSpan("unhashable", context, parent=REMOTE_PARENT, attributes=attributes)
    decoded = ExportTraceServiceRequest.FromString(assert_same_as_official([span, span]))
    keys = [[kv.key for kv in s.attributes] for s in all_spans(decoded)]
    assert keys == [["before", "list", "dict", "after"]] * 2


def test_live_sdk_spans_take_the_fast_path_too():
    provider, _ = _provider(Resource({"service.name": "live"}))
    tracer = provider.get_tracer("live", "2")
    spans = []
    for i in range(3):
        span = tracer.start_span(f"live-{i}", attributes={"i": i, "f": 0.5})
        span.add_event("e", {"x": "y"})
        span.end()
        spans.append(span)  # the SDK's _Span itself, not its ReadableSpan copy
    assert_same_as_official(spans)


def test_span_classes_overriding_properties_use_the_official_encoder(monkeypatch):
    class Renamed(ReadableSpan):
        @property
        def name(self):
            return "renamed"

    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    spans = [ReadableSpan("plain", context), Renamed("original", context)]
    calls = []
    official = otlp_wire._official_span
    monkeypatch.setattr(otlp_wire, "_official_span", lambda span: calls.append(span) or official(span))
    ours = assert_same_as_official(spans, fast=False)
    assert calls and all(type(span) is Renamed for span in calls) and b"renamed" in ours
    assert otlp_wire._is_fast(ReadableSpan) and not otlp_wire._is_fast(Renamed)


def test_a_span_our_encoder_fails_on_is_encoded_by_the_official_one(monkeypatch):
    # Whatever encode_span cannot handle (a bug of ours, a new SDK field) costs speed, not data.
    spans = make_spans()
    expected = official_encode(spans).SerializeToString()
    monkeypatch.setattr(otlp_wire, "_pack_ids", lambda *fields: 1 / 0)  # the first step of every span
    assert otlp_wire.encode_spans(spans) == expected
    assert otlp_wire.encode_spans([otlp_wire.encode_span(span) for span in spans]) == expected


# -- random spans (hypothesis, a test dependency) -----------------------------------

# Small pools, so that random batches repeat resources and scopes, including
# distinct objects that are equal (merged) or equal but hashed apart ({"x": True}
# vs {"x": 1}, kept apart).
RESOURCES = [
    Resource({}),
    Resource({"service.name": "a", "n": 1}, schema_url="https://schema/a"),
    Resource({"service.name": "a", "n": 1}, schema_url="https://schema/a"),
    Resource({"x": True}),
    Resource({"x": 1}),
]
SCOPES = [
    None,
    InstrumentationScope("a"),
    InstrumentationScope("a"),
    InstrumentationScope("a", "1.0", "https://schema/s", {"k": "v", "b": [True]}),
    InstrumentationScope("", None, None, {"only": 1}),
]
TRACE_STATES = [None, TraceState(), TraceState([("k", "v")]), TraceState([("vendor@t", "a b"), ("z", "1")])]


def _bounded_list(items, maxlen):
    bounded = BoundedList(maxlen)
    bounded.extend(items)
    return bounded


def span_batches(st):
    """Hypothesis strategy: lists of ReadableSpans with every field random.

    Attribute mappings come either raw (any value the official encoder has a
    rule for, nested lists and mappings, out-of-range ints) or through
    ``BoundedAttributes`` (the SDK's cleaning and dropping, as on real spans).
    NaN is left out because NaN != NaN defeats the message comparison; its
    bytes are checked in ``test_nan_is_encoded_bit_for_bit``.
    """
    int64 = st.integers(-(2**63), 2**63 - 1)
    floats = st.floats(allow_nan=False)
    scalars = st.one_of(st.text(), st.booleans(), int64, floats, st.binary())
    homogeneous = st.one_of(*(st.lists(s, max_size=4) for s in (st.text(), st.booleans(), int64, floats)))
    nested = st.recursive(
        scalars | st.none(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=6,
    )
    values = st.one_of(scalars, homogeneous, nested, st.integers())  # st.integers(): may be out of int64
    mappings = st.dictionaries(st.text(max_size=8), values, max_size=5)
    attributes = st.one_of(
        st.none(),
        mappings,
        st.builds(lambda d, n: BoundedAttributes(maxlen=n, attributes=d), mappings, st.none() | st.integers(0, 4)),
    )
    small_mappings = st.dictionaries(st.text(max_size=5), scalars | homogeneous, max_size=3)
    optional_text = st.none() | st.text(max_size=6)
    resources = st.builds(Resource, small_mappings, optional_text)
    scopes = st.builds(
        InstrumentationScope, st.text(max_size=6), optional_text, optional_text, st.none() | small_mappings
    )
    u64 = st.integers(0, 2**64 - 1)
    contexts = st.builds(
        SpanContext,
        trace_id=st.integers(0, 2**128 - 1),
        span_id=u64,
        is_remote=st.booleans(),
        trace_flags=st.sampled_from([TraceFlags(0), TraceFlags(1)]),
        trace_state=st.sampled_from(TRACE_STATES),
    )
    events = st.lists(st.builds(Event, st.text(max_size=8), attributes, u64), max_size=3)
    links = st.lists(st.builds(Link, contexts, attributes), max_size=3)

    def maybe_bounded(items):
        return st.one_of(items, st.builds(_bounded_list, items, st.integers(0, 3)))

    spans = st.builds(
        ReadableSpan,
        name=st.text(max_size=12),
        context=contexts,
        parent=st.none() | contexts,
        resource=st.sampled_from(RESOURCES) | resources,
        attributes=attributes,
        events=maybe_bounded(events),
        links=maybe_bounded(links),
        kind=st.sampled_from(SpanKind),
        status=st.none() | st.builds(Status, st.sampled_from(StatusCode), st.none() | st.text(max_size=8)),
        start_time=st.none() | u64,
        end_time=st.none() | u64,
        instrumentation_scope=st.sampled_from(SCOPES) | scopes,
    )
    return st.lists(spans, max_size=8)


def test_random_spans_encode_to_the_official_bytes():
    @hypothesis.settings(
        max_examples=300, deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow], database=None
    )
    @hypothesis.given(span_batches(hypothesis.strategies))
    def check(spans):
        logging.disable(logging.CRITICAL)  # unencodable values are logged by both encoders
        try:
            assert_same_as_official(spans)
        finally:
            logging.disable(logging.NOTSET)

    check()


# -- the exporter, end to end over HTTP ---------------------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    """Decodes every POST with opentelemetry-proto, as a collector would."""

    requests: list = []  # (path, content type, raw body, decoded request)
    status = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        decoded = ExportTraceServiceRequest.FromString(body)
        _Receiver.requests.append((self.path, self.headers["Content-Type"], body, decoded))
        self.send_response(_Receiver.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    _Receiver.requests = []
    _Receiver.status = 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize("compression", [None, Compression.Gzip])
def test_exporter_sends_what_the_official_exporter_sends(endpoint, compression):
    spans = make_spans()
    assert OTLPSpanExporter(endpoint=endpoint, compression=compression).export(spans) is SpanExportResult.SUCCESS
    assert FastOTLPSpanExporter(endpoint=endpoint, compression=compression).export(spans) is SpanExportResult.SUCCESS
    (path_1, type_1, body_1, decoded_1), (path_2, type_2, body_2, decoded_2) = _Receiver.requests
    assert (path_2, type_2) == (path_1, type_1) == ("/v1/traces", "application/x-protobuf")
    assert decoded_2 == decoded_1
    assert body_2 == body_1
    assert len(all_spans(decoded_2)) == len(spans)


def test_exporter_relies_on_these_parent_attributes(endpoint):
    # FastOTLPSpanExporter.export reads these private attributes of the SDK's
    # exporter; if an SDK upgrade renames one, this fails rather than the export.
    exporter = FastOTLPSpanExporter(endpoint=endpoint)
    for name in fast_span_exporter.PARENT_ATTRIBUTES:
        assert hasattr(exporter, name), name
    assert callable(exporter._client.export)


def test_exporter_failures_match_the_parent(endpoint, monkeypatch):
    spans = make_spans()[:3]
    _Receiver.status = 400  # not retryable: one attempt
    assert FastOTLPSpanExporter(endpoint=endpoint).export(spans) is SpanExportResult.FAILURE
    assert len(_Receiver.requests) == 1

    too_small = FastOTLPSpanExporter(endpoint=endpoint, max_request_size=10)
    assert too_small.export(spans) is SpanExportResult.FAILURE
    assert len(_Receiver.requests) == 1  # dropped before sending

    monkeypatch.setattr(otlp_wire, "encode_spans", lambda batch: 1 / 0)
    assert FastOTLPSpanExporter(endpoint=endpoint).export(spans) is SpanExportResult.FAILURE

    exporter = FastOTLPSpanExporter(endpoint=endpoint)
    exporter.shutdown()
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert len(_Receiver.requests) == 1


def test_exporter_records_the_same_self_metrics_as_the_parent(endpoint, monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    spans = make_spans()[:5]

    def exported_points(exporter_class, **kwargs):
        reader = InMemoryMetricReader()
        exporter = exporter_class(endpoint=endpoint, meter_provider=MeterProvider(metric_readers=[reader]), **kwargs)
        exporter.export(spans)
        return {
            # otel.component.name numbers exporter instances, so it differs
            (
                metric.name,
                tuple(sorted((k, v) for k, v in point.attributes.items() if k != "otel.component.name")),
                point.value,
            )
            for rm in reader.get_metrics_data().resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if "duration" not in metric.name
            for point in metric.data.data_points
        }

    for kwargs in ({}, {"max_request_size": 10}):
        points = exported_points(FastOTLPSpanExporter, **kwargs)
        assert points and points == exported_points(OTLPSpanExporter, **kwargs)


def test_gevent_pipeline_queues_encoded_spans_and_sends_the_official_bytes(endpoint):
    # The gevent processor asks the exporter (through the counting wrapper)
    # to encode each span as it ends; the batch it later posts must be the
    # official encoding of those spans.
    from gunicorn_otel._master.deadline import Deadline
    from gunicorn_otel._worker import models
    from gunicorn_otel._worker.counting import CountingExporter
    from gunicorn_otel._worker.stats import TRACES, ExportStats
    from gunicorn_otel.settings import BatchOptions

    stats = ExportStats()
    exporter = CountingExporter(FastOTLPSpanExporter(endpoint=endpoint), TRACES, stats)
    options = BatchOptions(schedule_delay=60.0, max_queue_size=100, max_export_batch_size=50)
    processor = models.get("gevent").span_processor(exporter, stats, options)
    ended = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "pipeline"}), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(ended))
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("pipeline", "1")
    for i in range(7):
        with tracer.start_as_current_span(f"span-{i}", attributes={"i": i, "ok": i % 2 == 0}) as span:
            span.add_event("e", {"x": 1.5})
    queued = list(processor.batcher._queue)
    assert len(queued) == 7 and all(type(item) is otlp_wire.EncodedSpan for item in queued)
    assert processor.force_flush(5000)
    ((_, _, body, _),) = _Receiver.requests
    assert body == official_encode(ended.get_finished_spans()).SerializeToString()
    assert stats.snapshot()[TRACES]["exported"] == 7
    processor.shutdown(Deadline.after(5.0))
