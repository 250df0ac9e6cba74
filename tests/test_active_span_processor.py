"""``ActiveSpanProcessor``: the SDK's multi-processor loop, done directly, with the same outcome.

Every scenario runs twice on real SDK spans: once with our active processor
(its direct path while the batch and inflight processors are its only ones),
once with the SDK's own ``SynchronousMultiSpanProcessor`` over the same two
processors.  What is exported and which spans are tracked as open local roots
must match.
"""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

from gunicorn_otel._master.deadline import Deadline
from gunicorn_otel._worker.active_span_processor import ActiveSpanProcessor
from gunicorn_otel._worker.inflight import InflightSpans
from gunicorn_otel._worker.models.threads import MODEL
from gunicorn_otel._worker.stats import ExportStats
from gunicorn_otel.settings import BatchOptions


class _RecordOnly(Sampler):
    """Spans that record (processors see them) but are not sampled (not exported)."""

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
        return SamplingResult(Decision.RECORD_ONLY)

    def get_description(self) -> str:
        return "RecordOnly"


class _Setup:
    """``attached=False``: our active processor without our processors yet (``runtime.claim_tracing``)."""

    def __init__(self, active: bool, sampler=None, attached: bool = True) -> None:
        self.exporter = InMemorySpanExporter()
        options = BatchOptions(schedule_delay=30.0, max_queue_size=100, max_export_batch_size=50)
        self.batch = MODEL.span_processor(self.exporter, ExportStats(), options)
        self.inflight = InflightSpans()
        if active:
            self.processor = ActiveSpanProcessor(self.batch, self.inflight) if attached else ActiveSpanProcessor()
        else:
            self.processor = SynchronousMultiSpanProcessor()
            self.processor.add_span_processor(self.batch)
            self.processor.add_span_processor(self.inflight)
        kwargs = {"sampler": sampler} if sampler is not None else {}
        self.provider = TracerProvider(active_span_processor=self.processor, shutdown_on_exit=False, **kwargs)
        self.tracer = self.provider.get_tracer("test.active")

    def tracked(self) -> list[str]:
        return [span.name for span in self.inflight.open_spans()]

    def exported(self) -> list[str]:
        assert self.batch.force_flush(5000)
        return [span.name for span in self.exporter.get_finished_spans()]

    def close(self) -> None:
        self.batch.shutdown(Deadline.after(5))


@pytest.fixture(params=["active", "sdk loop"])
def setup(request):
    made = []

    def make(sampler=None) -> _Setup:
        made.append(_Setup(request.param == "active", sampler))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_direct_path_is_taken_while_ours_are_the_only_processors():
    s = _Setup(active=True)
    try:
        assert s.processor._span_processors is s.processor._ours
        assert s.processor._span_processors == (s.batch, s.inflight)
    finally:
        s.close()


def test_sampled_spans_are_exported_and_local_roots_tracked_while_open(setup):
    s = setup()
    with s.tracer.start_as_current_span("root"):
        with s.tracer.start_as_current_span("child"):
            assert s.tracked() == ["root"]
        assert s.tracked() == ["root"]
    assert s.tracked() == []
    assert s.exported() == ["child", "root"]


def test_a_span_with_a_remote_parent_is_a_local_root(setup):
    s = setup()
    remote = trace.SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=trace.TraceFlags(1))
    parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    with s.tracer.start_as_current_span("server", context=parent):
        with s.tracer.start_as_current_span("inner"):
            assert s.tracked() == ["server"]
    assert s.tracked() == []
    assert s.exported() == ["inner", "server"]


def test_recorded_but_unsampled_spans_are_tracked_but_never_exported(setup):
    s = setup(_RecordOnly())
    with s.tracer.start_as_current_span("root") as root:
        assert root.is_recording()
        assert s.tracked() == ["root"]
    assert s.tracked() == []
    assert s.exported() == []


class _Calls(SpanProcessor):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def on_start(self, span, parent_context=None) -> None:
        self.calls.append(("on_start", span.name))

    def _on_ending(self, span) -> None:
        self.calls.append(("_on_ending", span.name))

    def on_end(self, span) -> None:
        self.calls.append(("on_end", span.name))


def test_a_processor_added_later_sees_every_event_and_ours_keep_working(setup):
    s = setup()
    extra = _Calls()
    s.provider.add_span_processor(extra)
    with s.tracer.start_as_current_span("root"):
        with s.tracer.start_as_current_span("child"):
            assert s.tracked() == ["root"]
    assert extra.calls == [
        ("on_start", "root"),
        ("on_start", "child"),
        ("_on_ending", "child"),
        ("on_end", "child"),
        ("_on_ending", "root"),
        ("on_end", "root"),
    ]
    assert s.tracked() == []
    assert s.exported() == ["child", "root"]


def test_a_batch_processor_not_ours_goes_through_the_sdk_loop():
    exporter = InMemorySpanExporter()
    inflight = InflightSpans()
    processor = ActiveSpanProcessor(SimpleSpanProcessor(exporter), inflight)
    assert processor._ours is None
    tracer = TracerProvider(active_span_processor=processor, shutdown_on_exit=False).get_tracer("test.active")
    with tracer.start_as_current_span("root"):
        assert [span.name for span in inflight.open_spans()] == ["root"]
    assert [span.name for span in exporter.get_finished_spans()] == ["root"]
    assert inflight.open_spans() == []


def test_a_processor_added_before_attach_keeps_the_sdk_loop_and_ours_see_every_later_span():
    # A provider set before its pipeline exists (gevent: runtime.claim_tracing):
    # a span may start and end before attach (nothing to call, nothing fails);
    # a library's processor added in between is called first.
    s = _Setup(active=True, attached=False)
    try:
        with s.tracer.start_as_current_span("before"):
            pass
        early = _Calls()
        s.provider.add_span_processor(early)
        s.processor.attach(s.batch, s.inflight)
        assert s.processor._span_processors == (early, s.batch, s.inflight)
        assert s.processor._ours is None  # the SDK's loop, which calls ``early`` too
        with s.tracer.start_as_current_span("root"):
            with s.tracer.start_as_current_span("child"):
                assert s.tracked() == ["root"]
        assert s.exported() == ["child", "root"]
        assert ("on_end", "child") in early.calls
    finally:
        s.close()


def test_attach_takes_the_direct_path_when_ours_are_the_only_processors():
    s = _Setup(active=True, attached=False)
    try:
        with s.tracer.start_as_current_span("before"):
            pass
        s.processor.attach(s.batch, s.inflight)
        assert s.processor._span_processors is s.processor._ours
        with s.tracer.start_as_current_span("after"):
            pass
        assert s.exported() == ["after"]
    finally:
        s.close()
