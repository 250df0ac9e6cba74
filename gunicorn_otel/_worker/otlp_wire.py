"""Encode SDK spans straight to the bytes of an OTLP ``ExportTraceServiceRequest``.

Why this exists: the official encoder
(``opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans``)
builds a protobuf object per span, attribute and value, then serialises them:
per span about as much as making the span.  In a gevent worker that cost is
paid on the hub between requests and decides throughput.  Writing the protobuf
wire format directly, and reusing the bytes of what repeats (resources, scopes,
span names, attribute pairs), is several times cheaper (``bench/encode_bench.py``;
figures in docs/gevent.md).

Contract: ``encode_spans(spans)`` returns exactly the bytes of
``official_encode_spans(spans).SerializeToString()`` for
opentelemetry-exporter-otlp-proto-common 1.45: same grouping (by ``Resource``
equality, then by ``InstrumentationScope`` equality, in first-seen order), same
fields, same omissions, fields in field-number order as protobuf writes them.
``tests/test_otlp_wire.py`` checks it byte for byte on spans exercising every
field.  A span may also be encoded on its own when it ends (``encode_span``)
and handed to ``encode_spans`` later in its place: the batch bytes are the same,
and the queue in between holds bytes instead of span objects (``EncodedSpan``).
Fields written (``opentelemetry/proto``, field numbers):

* ExportTraceServiceRequest: resource_spans=1
* ResourceSpans: resource=1 (always, even empty), scope_spans=2, schema_url=3
* Resource: attributes=1 (the official encoder writes no dropped count)
* ScopeSpans: scope=1 (always, empty without a scope), spans=2, schema_url=3
* InstrumentationScope: name=1, version=2, attributes=3
* Span: trace_id=1, span_id=2, trace_state=3 ("k=v,k2=v2"), parent_span_id=4,
  name=5, kind=6 (SDK kind + 1), start_time_unix_nano=7, end_time_unix_nano=8,
  attributes=9, dropped_attributes_count=10, events=11,
  dropped_events_count=12, links=13, dropped_links_count=14, status=15 (always:
  an UNSET status is an empty message), flags=16 (0x100 "has is-remote", plus
  0x200 when the parent is remote; the official encoder leaves the low byte,
  the W3C trace flags, at 0 even for sampled spans, so we do too)
* Span.Event: time_unix_nano=1, name=2, attributes=3, dropped_attributes_count=4
* Span.Link: trace_id=1, span_id=2, attributes=4, dropped_attributes_count=5,
  flags=6 (as Span.flags, for the linked context).  The official encoder
  writes no link trace_state (field 3), so neither do we.
* Status: message=2, code=3
* KeyValue: key=1 (not for ""), value=2 (always, empty for None).
  AnyValue: string=1, bool=2, int=3 (int64: negatives as 10-byte varints, out
  of range is an error), double=4, array=5 (ArrayValue.values=1), kvlist=6
  (KeyValueList.values=1), bytes=7.  An attribute whose value cannot be
  encoded is logged and left out, as the official encoder does.

Proto3 default values (0, "", empty bytes, None) are not written, except
inside AnyValue, whose ``oneof`` records presence (so ``0``, ``""``, ``False``
and ``0.0`` are written there).  String fields take what protobuf takes: str,
or bytes holding UTF-8 (``_str_field``).

Speed: the hot path reads the SDK's private fields (``ReadableSpan._context``,
``._attributes``, ``._events``..., ``BoundedAttributes._dict``,
``BoundedList._dq``, ``Status._status_code``, SpanContext's tuple slots)
because the public properties copy events and links into tuples, wrap
attributes in a proxy, and cost a Python call each; together that was a third
of the time.  It does so only for span classes that do not override those
properties (``_is_fast``); any other span object, and any span ``encode_span``
fails on, is encoded by the official encoder's per-span function, so the
output is still right, just not faster.  The tests
compare bytes on real SDK spans, so an SDK change that breaks a private field
fails them.

Where the C extension ``_worker/_span_wire`` is built, ``encode_span`` is
its ``encode_span``: it writes the usual span (the shared empty trace state,
no events or links, no status description, attributes of exactly str, bool,
int or float) itself, 2-3 times cheaper again, and hands every other span
to the Python encoder below, unchanged.  ``use_native(False)``
(``GUNICORN_OTEL_NATIVE_ENCODER=false``) keeps the Python encoder.
``tests/test_otlp_wire.py`` runs every comparison through both.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan, Span
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.span import DEFAULT_TRACE_STATE
from opentelemetry.trace.status import Status, StatusCode

__all__ = ["EncodedSpan", "encode_span", "encode_spans", "use_native"]

log = logging.getLogger(__name__)

# -- wire primitives -------------------------------------------------------------

_SMALL = [bytes((i,)) for i in range(128)]
_U64 = (1 << 64) - 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

# trace_id (16 bytes) and span_id (8 bytes) fields in one call; protobuf bytes
# fields hold the ids big-endian, as ``int.to_bytes(..., "big")`` would.
_pack_ids = struct.Struct(">BBQQBBQ").pack
_pack_parent = struct.Struct(">BBQ").pack
# Both ids and the parent span id (field 4) together, for the usual child span.
_pack_ids_parent = struct.Struct(">BBQQBBQBBQ").pack
# start_time_unix_nano and end_time_unix_nano (fixed64, little-endian).
_pack_times = struct.Struct("<BQBQ").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_double = struct.Struct("<d").pack


def _build_varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Varints of the lengths most fields have (a span body is typically 100-500
# bytes), by index: one list lookup instead of building bytes (~75 KiB).
_VARINTS = [_build_varint(n) for n in range(2048)]
# ScopeSpans.spans (field 2) tag and length, for span bodies of those lengths.
_SPANS_FIELD = [b"\x12" + varint for varint in _VARINTS]


def _varint(n: int) -> bytes:
    """Unsigned varint; ``n`` must be in 0 .. 2**64-1."""
    if n < 2048:
        return _VARINTS[n]
    return _build_varint(n)


def _len_field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return tag + _varint(len(payload)) + payload


def _str_field(tag: bytes, text) -> bytes:
    """A proto3 ``string`` field, or b"" for "" and None (the default, not written).

    Takes what protobuf's ``string`` fields take: a str, or bytes holding UTF-8
    (``KeyValue(key=b"k")`` is accepted and sent as "k"); anything else raises,
    as protobuf does, so the caller's error handling matches the official one.
    """
    if text.__class__ is not str:
        text = _text(text)
    return _len_field(tag, text.encode("utf-8")) if text else b""


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8")  # invalid UTF-8 raises, as in protobuf
    raise TypeError(f"bad argument type for a string field: {type(value).__name__}")


def _flags(tag: bytes, is_remote: bool) -> bytes:
    """Span.flags / Link.flags (fixed32): the context has an is-remote bit, and its value."""
    return tag + (0x300 if is_remote else 0x100).to_bytes(4, "little")


_SPAN_FLAGS = (_flags(b"\x85\x01", False), _flags(b"\x85\x01", True))  # field 16, wire type 5
_LINK_FLAGS = (_flags(b"\x35", False), _flags(b"\x35", True))  # field 6, wire type 5

# Span.kind (field 6): the OTLP enum is the SDK's value + 1 (0 is UNSPECIFIED).
# Keyed by id(): Enum.__hash__ is a Python-level call.
_KIND = {id(kind): b"\x30" + _SMALL[kind.value + 1] for kind in SpanKind}
# Status.code (field 3); UNSET (0) is the default and is not written.
_STATUS_CODE = {id(code): (b"\x18" + _SMALL[code.value] if code.value else b"") for code in StatusCode}
# Span.status (field 15) without a description: the code only.
_STATUS_FIELD = {key: b"\x7a" + _SMALL[len(code)] + code for key, code in _STATUS_CODE.items()}
# A span's last two fields when its status has no description: status (15) and
# flags (16), for a local parent or none, and for a remote parent.
_TAIL_LOCAL = {key: field + _SPAN_FLAGS[0] for key, field in _STATUS_FIELD.items()}
_TAIL_REMOTE = {key: field + _SPAN_FLAGS[1] for key, field in _STATUS_FIELD.items()}

# -- attributes --------------------------------------------------------------------


def _any_value(value) -> bytes:
    """The body of an AnyValue: the official ``_encode_value``'s type checks, in its order."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):  # written even when "": a oneof member records presence
        return _len_field(b"\x0a", value.encode("utf-8"))
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"Value out of range: {value}")
        return b"\x18" + _varint(value & _U64)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _len_field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _len_field(b"\x2a", b"".join([_len_field(b"\x0a", _any_value(v)) for v in value]))
    if isinstance(value, Mapping):
        pairs = [_len_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()]
        return _len_field(b"\x32", b"".join(pairs))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value) -> bytes:
    """The body of a KeyValue: no key field for "" (or None); the value field even when empty."""
    return _str_field(b"\x0a", key) + _len_field(b"\x12", _any_value(value))


# Caches of encoded fields for what repeats from span to span (attribute
# pairs, keys, names).  Each is bounded in entries and in entry size, and is
# cleared when full: cheap, and high-cardinality values (ids, counters) cycle
# through without pinning memory.  Encoded resources and scopes are cached
# separately, further down.
_CACHE_ENTRIES = 4096
_CACHE_MAX_BYTES = 256


def _remember(cache: dict, key, encoded: bytes) -> bytes:
    if len(encoded) <= _CACHE_MAX_BYTES:
        if len(cache) >= _CACHE_ENTRIES:
            cache.clear()
        cache[key] = encoded
    return encoded


# Encoded KeyValues (length prefix + body, no tag: the tag depends on the parent
# message) for pairs whose key is exactly a str and whose value is exactly a
# str, an int or a bool, keyed by (key, value, type of value): the type keeps
# 1 and True (equal, same hash) apart.  Float (0.0 == -0.0, NaN != NaN), bytes
# keys (b"k" and "k" encode alike but are distinct) and keys of other types
# (maybe unhashable, from a custom Mapping) are kept out.
_kv_cache: dict = {}


def _encoded_pair(key, value):
    """Length-prefixed KeyValue, or None (logged) if the official encoder would skip it too."""
    try:
        body = _key_value(key, value)
    except Exception as error:  # mirrors the official _encode_attributes
        log.exception("Failed to encode key %s: %s", key, error)
        return None
    return _varint(len(body)) + body


def _attributes(tag: bytes, attributes, out: list) -> None:
    """Append one ``tag``-tagged KeyValue field per attribute to ``out``."""
    _pairs(tag, attributes._dict.items() if attributes.__class__ is BoundedAttributes else attributes.items(), out)


def _pairs(tag: bytes, items, out: list) -> None:
    """Append one ``tag``-tagged KeyValue field per (key, value) to ``out``."""
    cache = _kv_cache
    for key, value in items:
        cls = value.__class__
        if (cls is str or cls is int or cls is bool) and key.__class__ is str:
            pair = (key, value, cls)
            encoded = cache.get(pair)
            if encoded is None:
                encoded = _encoded_pair(key, value)
                if encoded is None:
                    continue
                _remember(cache, pair, encoded)
        elif cls is float and key.__class__ is str:  # KeyValue{key, value: AnyValue{double}}
            key_field = _key_cache.get(key) or _key_field(key)
            encoded = _varint(len(key_field) + 11) + key_field + b"\x12\x09\x21" + _pack_double(value)
        else:
            encoded = _encoded_pair(key, value)
            if encoded is None:
                continue
        out.append(tag)
        out.append(encoded)


# Span.attributes fields (tag 9 included), keyed as ``_kv_cache``: the span's
# own attributes are the hottest pairs.
_span_kv_cache: dict = {}


def _span_field(key, value) -> bytes | None:
    """The Span.attributes field of a pair not in ``_span_kv_cache``; None (logged) to leave it out.

    Remembered only for a str key with a value of exactly str, int or bool
    (see ``_kv_cache``): a lookup keyed by ``(key, value, type(value))`` then
    hits only for a value of that type, equal to the cached one, which
    encodes alike.  Any other pair is encoded each time.
    """
    cls = value.__class__
    if (cls is str or cls is int or cls is bool) and key.__class__ is str:
        encoded = _encoded_pair(key, value)
        if encoded is None:
            return None
        return _remember(_span_kv_cache, (key, value, cls), b"\x4a" + encoded)
    out: list = []
    _pairs(b"\x4a", ((key, value),), out)
    return b"".join(out) if out else None


_key_cache: dict = {}


def _key_field(key: str) -> bytes:
    """KeyValue.key (field 1), cached: keys repeat on every span."""
    encoded = _key_cache.get(key)
    if encoded is None:
        encoded = _remember(_key_cache, key, _str_field(b"\x0a", key))
    return encoded


def _dropped(attributes) -> int:
    """``dropped_attributes`` as the SDK computes it (only BoundedAttributes count drops)."""
    return attributes.dropped if isinstance(attributes, BoundedAttributes) else 0


# -- resources and scopes (immutable; cached by identity, they repeat every batch) --

_OBJ_CACHE_ENTRIES = 64
_resource_cache: dict = {}  # id(resource) -> (resource, (prefix, suffix))
_scope_cache: dict = {}  # id(scope) -> (scope, (prefix, suffix))


def _cached(cache: dict, obj, build):
    entry = cache.get(id(obj))
    if entry is not None and entry[0] is obj:
        return entry[1]
    encoded = build(obj)
    if len(cache) >= _OBJ_CACHE_ENTRIES:
        cache.clear()
    cache[id(obj)] = (obj, encoded)  # holding obj keeps its id from being reused
    return encoded


def _resource_parts(resource) -> tuple[bytes, bytes]:
    """ResourceSpans' resource field (1), and its schema_url field (3) or b""."""
    body: list = []
    if resource.attributes:
        _attributes(b"\x0a", resource.attributes, body)
    prefix = _len_field(b"\x0a", b"".join(body))
    suffix = _str_field(b"\x1a", resource.schema_url)
    return prefix, suffix


def _scope_parts(scope) -> tuple[bytes, bytes]:
    """ScopeSpans' scope field (1), and its schema_url field (3) or b""."""
    if scope is None:
        return b"\x0a\x00", b""
    body: list = []
    body.append(_str_field(b"\x0a", scope.name))
    body.append(_str_field(b"\x12", scope.version))
    if scope.attributes:
        _attributes(b"\x1a", scope.attributes, body)
    prefix = _len_field(b"\x0a", b"".join(body))
    suffix = _str_field(b"\x1a", scope.schema_url)
    return prefix, suffix


# -- spans ---------------------------------------------------------------------------

# Span name (5) + kind (6) fields, per kind, per name: names repeat.
_name_kind_cache: dict = {id(kind): {} for kind in SpanKind}


def _name_kind(name: str, kind) -> bytes:
    names = _name_kind_cache.get(id(kind))
    if names is None:
        raise KeyError(f"unknown span kind {kind!r}")
    encoded = names.get(name)
    if encoded is None:
        encoded = _remember(names, name, _str_field(b"\x2a", name) + _KIND[id(kind)])
    return encoded


def _trace_state(trace_state) -> bytes:
    text = ",".join([f"{key}={value}" for key, value in trace_state.items()])
    return _str_field(b"\x1a", text)


def _encode_span_python(span) -> tuple:
    """One ended span encoded: ``(resource, scope, Span message body)``, an ``EncodedSpan``.

    Fields in number order.  A span class ``_is_fast`` rejects, or
    a span this fails on, is encoded by the official encoder's per-span
    function.  ``encode_spans`` takes the result in place of the span and
    writes exactly the bytes it would have written for the span itself.

    This runs once per span on the request's thread or event loop, so the
    common span (empty trace state, attributes already in the cache, no
    events, links or status description) takes the fewest bytecodes: its ids,
    parent id, name and kind, and status and flags are three pieces.
    """
    if _fast_classes.get(span.__class__) or _is_fast(span.__class__):
        try:
            # SpanContext is a tuple (trace_id, span_id, is_remote, trace_flags,
            # trace_state, is_valid); indexing it skips five property calls
            # (``_is_fast`` checks the layout).
            context = span._context
            trace_id = context[0]
            parent = span._parent
            trace_state = context[4]
            # TraceState's truth is a Python-level __len__: skip it for the SDK's shared empty one.
            if trace_state is DEFAULT_TRACE_STATE and parent is not None:
                parts = [
                    _pack_ids_parent(0x0A, 16, trace_id >> 64, trace_id & _U64, 0x12, 8, context[1], 0x22, 8, parent[1])
                ]
            else:
                parts = [_pack_ids(0x0A, 16, trace_id >> 64, trace_id & _U64, 0x12, 8, context[1])]
                if trace_state is not DEFAULT_TRACE_STATE and trace_state:
                    parts.append(_trace_state(trace_state))
                if parent is not None:
                    parts.append(_pack_parent(0x22, 8, parent[1]))
            name, kind = span._name, span._kind
            encoded = _name_kind_cache[id(kind)].get(name)  # an unknown kind raises: the official encoder's
            parts.append(encoded if encoded is not None else _name_kind(name, kind))
            start, end = span._start_time, span._end_time
            if start and end:
                parts.append(_pack_times(0x39, start, 0x41, end))
            else:
                if start:
                    parts.append(b"\x39" + _pack_fixed64(start))
                if end:
                    parts.append(b"\x41" + _pack_fixed64(end))

            attributes = span._attributes
            if attributes.__class__ is BoundedAttributes:  # skip its Python-level __len__
                # One lookup per pair, type checks only on a miss: only str, int
                # and bool values are cached, under a key holding the value's
                # exact type, so nothing else can hit (``_span_field``).
                cached = _span_kv_cache.get
                for key, value in attributes._dict.items():
                    try:
                        encoded = cached((key, value, value.__class__))
                    except TypeError:  # an unhashable value
                        encoded = None
                    if encoded is None:
                        encoded = _span_field(key, value)
                        if encoded is None:
                            continue
                    parts.append(encoded)
                if attributes.dropped:
                    parts.append(b"\x50" + _varint(attributes.dropped))
            else:
                if attributes:
                    _attributes(b"\x4a", attributes, parts)
                if _dropped(attributes):
                    parts.append(b"\x50" + _varint(_dropped(attributes)))

            events, links = span._events, span._links
            # BoundedList's __len__ and __iter__ are Python-level and take a lock; the
            # span has ended, so its deques no longer change: test them directly.
            if (
                events.__class__ is not BoundedList
                or links.__class__ is not BoundedList
                or events._dq  # type: ignore[attr-defined]  # BoundedList's private deque
                or events.dropped
                or links._dq  # type: ignore[attr-defined]
                or links.dropped
            ):
                _events_and_links(events, links, parts)

            status = span._status
            remote = parent is not None and parent[2]
            if status.__class__ is Status and not status._description:  # skip two property calls
                parts.append((_TAIL_REMOTE if remote else _TAIL_LOCAL)[id(status._status_code)])
            else:
                if status is not None:
                    status_code, description = status.status_code, status.description
                    if description:
                        parts.append(
                            _len_field(b"\x7a", _str_field(b"\x12", description) + _STATUS_CODE[id(status_code)])
                        )
                    else:
                        parts.append(_STATUS_FIELD[id(status_code)])
                parts.append(_SPAN_FLAGS[1] if remote else _SPAN_FLAGS[0])
            return span._resource, span._instrumentation_scope or None, b"".join(parts)
        except Exception:  # whatever the official encoder makes of it, it makes here
            log.debug("gunicorn-otel: span %r left to the official encoder", span._name, exc_info=True)
    return span.resource, span.instrumentation_scope or None, _official_span(span)


def _events_and_links(events, links, parts: list) -> None:
    """Span fields 11 to 14."""
    for event in events or ():
        parts.append(_len_field(b"\x5a", _event(event)))
    if _dropped_items(events):
        parts.append(b"\x60" + _varint(events.dropped))
    for link in links or ():
        parts.append(_len_field(b"\x6a", _link(link)))
    if _dropped_items(links):
        parts.append(b"\x70" + _varint(links.dropped))


def _dropped_items(items) -> int:
    """``dropped_events`` / ``dropped_links`` as the SDK computes them."""
    return items.dropped if isinstance(items, BoundedList) else 0


def _event(event) -> bytes:
    parts = []
    if event.timestamp:
        parts.append(b"\x09" + _pack_fixed64(event.timestamp))
    parts.append(_str_field(b"\x12", event.name))
    attributes = event.attributes
    if attributes:
        _attributes(b"\x1a", attributes, parts)
    if event.dropped_attributes:
        parts.append(b"\x20" + _varint(event.dropped_attributes))
    return b"".join(parts)


def _link(link) -> bytes:
    context = link.context
    trace_id = context.trace_id
    parts = [_pack_ids(0x0A, 16, trace_id >> 64, trace_id & _U64, 0x12, 8, context.span_id)]
    attributes = link.attributes
    if attributes:
        _attributes(b"\x22", attributes, parts)
    if link.dropped_attributes:
        parts.append(b"\x28" + _varint(link.dropped_attributes))
    parts.append(_LINK_FLAGS[1] if context.is_remote else _LINK_FLAGS[0])
    return b"".join(parts)


# -- batches -------------------------------------------------------------------------

# ReadableSpan properties whose private fields the hot path reads directly.
_BYPASSED = (
    "name", "context", "get_span_context", "kind", "parent", "start_time", "end_time", "attributes",
    "dropped_attributes", "events", "dropped_events", "links", "dropped_links", "status", "resource",
    "instrumentation_scope",
)  # fmt: skip


def _context_layout_ok() -> bool:
    """Whether SpanContext is still the tuple ``encode_span`` indexes."""
    trace_state = TraceState([("k", "v")])
    flags = TraceFlags(1)
    context = SpanContext(1, 2, True, flags, trace_state)
    return (
        context[0] == 1 and context[1] == 2 and context[2] is True and context[3] is flags and context[4] is trace_state
    )


_CONTEXT_LAYOUT_OK = _context_layout_ok()


def reads_span_fields() -> bool:
    """Whether hot paths may read the SDK span's ``_context`` and ``_parent`` as the tuples ``encode_span`` reads.

    ``inflight`` and ``batch_processors`` check each span once per start and end;
    ``tests/test_otlp_wire.py`` proves the layout on the installed SDK.
    """
    return _CONTEXT_LAYOUT_OK and _is_fast(ReadableSpan) and _is_fast(Span)


# Overrides known to return the same private field (the SDK's live Span
# returns ``self._context`` from get_span_context too).
_EQUIVALENT_OVERRIDES = (Span.get_span_context,)
_fast_classes: dict = {}


def _is_fast(cls) -> bool:
    """Whether ``encode_span`` may read this span class's private fields."""
    fast = _fast_classes.get(cls)
    if fast is None:
        fast = (
            _CONTEXT_LAYOUT_OK
            and issubclass(cls, ReadableSpan)
            and all(
                getattr(cls, name) is getattr(ReadableSpan, name) or getattr(cls, name) in _EQUIVALENT_OVERRIDES
                for name in _BYPASSED
            )
        )
        _fast_classes[cls] = fast
    return fast


def _official_span(span) -> bytes:
    """One Span message from the official encoder, for span objects ``encode_span`` must not read."""
    from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import _encode_span

    return _encode_span(span).SerializeToString()


def _native_encoder(fallback: Callable[[Any], tuple] | None = None) -> Callable[[Any], tuple] | None:
    """The C extension's ``encode_span``, configured; None where it isn't built or may not read spans.

    It hands every span it does not write itself to ``fallback`` (the Python
    encoder; the tests pass one that records its calls).
    """
    global NATIVE_PROBLEM
    try:
        from gunicorn_otel._worker import _span_wire  # type: ignore[attr-defined]  # a C extension, no stubs
    except ImportError:
        NATIVE_PROBLEM = "the C extension is not built (no C compiler when gunicorn-otel was installed?)"
        return None
    kinds = sorted(SpanKind, key=lambda kind: kind.value)
    codes = sorted(StatusCode, key=lambda code: code.value)
    # The extension writes kind + 1 and codes 0-2 by position.
    if [kind.value for kind in kinds] != list(range(5)) or [code.value for code in codes] != list(range(3)):
        NATIVE_PROBLEM = "this OpenTelemetry SDK's SpanKind or StatusCode values are not the ones it writes"
        return None
    if not reads_span_fields():
        NATIVE_PROBLEM = "this OpenTelemetry SDK's span layout is not the one it reads"
        return None
    try:
        _span_wire.configure(
            fallback=fallback or _encode_span_python,
            is_fast=_is_fast,
            span_context=SpanContext,
            empty_trace_state=DEFAULT_TRACE_STATE,
            bounded_attributes=BoundedAttributes,
            bounded_list=BoundedList,
            status=Status,
            kinds=tuple(kinds),
            status_codes=tuple(codes),
        )
    except Exception as error:  # noqa: BLE001 - e.g. a .so left from another version: Python encodes, telemetry goes on
        NATIVE_PROBLEM = f"the C extension does not match this source ({error}); reinstall gunicorn-otel"
        log.warning("gunicorn-otel: C span encoder not used: %s", NATIVE_PROBLEM)
        return None
    NATIVE_PROBLEM = ""
    return _span_wire.encode_span


# Why ``NATIVE`` is None ("" when it is not).
NATIVE_PROBLEM = ""
NATIVE: Callable[[Any], tuple] | None = _native_encoder()

# What every caller uses (through this module's attribute, so ``use_native`` reaches them).
encode_span: Callable[[Any], tuple] = NATIVE or _encode_span_python


def use_native(enabled: bool) -> bool:
    """Encode with the C extension (where built) or with Python; True if the C one is now in use."""
    global encode_span
    encode_span = NATIVE if enabled and NATIVE is not None else _encode_span_python
    return encode_span is NATIVE


# One ended span, already encoded: what a batch queue holds instead of the span,
# as a plain tuple (resource, scope, Span message body): a tuple display is
# the cheapest object Python builds, with no ``__init__`` call per span.
#
# A queued ``ReadableSpan`` keeps a dozen garbage-collected objects alive
# (attributes, events, links, context, status, locks) until its batch is
# exported; thousands of them in a queue kept the cyclic GC running, which
# cost more than encoding itself (``bench/queue_gc_bench.py``, docs/gevent.md).
# This holds one bytes object, which the GC never scans, plus the resource and
# scope it is grouped by, which every span shares.
EncodedSpan = tuple


_NOTHING = object()  # no resource or scope is this


def encode_spans(spans: Sequence) -> bytes:
    """Serialized ``ExportTraceServiceRequest`` for ``spans`` (same bytes as the official encoder).

    Each item is a ``ReadableSpan`` or the ``EncodedSpan`` tuple that
    ``encode_span`` made of one.
    """
    # {Resource: {scope: [span fields]}}: a dict keyed by the objects themselves,
    # as the official encoder groups (equal resources or scopes merge, first-seen
    # order).  Resource.__hash__ dumps its attributes to JSON, so each (resource,
    # scope) pair of objects is looked up once per batch, then by identity.
    groups: dict = {}
    by_identity: dict = {}
    last_resource = last_scope = _NOTHING
    last_list: list = []
    fields = _SPANS_FIELD
    for item in spans:
        if item.__class__ is tuple:  # EncodedSpan
            resource, scope, body = item
        else:
            resource, scope, body = encode_span(item)
        if resource is not last_resource or scope is not last_scope:
            key = (id(resource), id(scope))
            found = by_identity.get(key)
            if found is None:
                scopes = groups.setdefault(resource, {})
                found = by_identity[key] = scopes.setdefault(scope, [])
            last_list, last_resource, last_scope = found, resource, scope
        size = len(body)
        last_list.append(fields[size] if size < 2048 else b"\x12" + _varint(size))  # ScopeSpans.spans (2)
        last_list.append(body)

    out: list[bytes] = []
    for resource, scopes in groups.items():
        resource_prefix, resource_suffix = _cached(_resource_cache, resource, _resource_parts)
        resource_size = len(resource_prefix) + len(resource_suffix)
        resource_index = len(out)
        out.append(b"")  # ResourceSpans header, once its size is known
        out.append(resource_prefix)
        for scope, encoded_spans in scopes.items():
            scope_prefix, scope_suffix = _cached(_scope_cache, scope, _scope_parts)
            size = len(scope_prefix) + sum(map(len, encoded_spans)) + len(scope_suffix)
            header = b"\x12" + _varint(size)
            out.append(header)
            out.append(scope_prefix)
            out += encoded_spans
            out.append(scope_suffix)
            resource_size += len(header) + size
        out.append(resource_suffix)
        out[resource_index] = b"\x0a" + _varint(resource_size)
    return b"".join(out)
