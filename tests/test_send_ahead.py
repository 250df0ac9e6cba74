"""``send_ahead``: a full span batch posted by the thread that filled it, on real sockets.

The thread model's batcher lets the producing thread send a full batch itself,
without waiting for the answer (``gunicorn_otel/_worker/send_ahead.py``).  These
tests hold it to the export thread's behaviour: the same request on the wire,
every span counted once, a refused or lost attempt left to the SDK's exporter
(which sends it again), no answer within the exporter's timeout counted as
failed, and a shutdown that says when it left a send unanswered.
"""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from gunicorn_otel import settings
from gunicorn_otel._master.deadline import Deadline
from gunicorn_otel._worker import exporters
from gunicorn_otel._worker.counting import CountingExporter
from gunicorn_otel._worker.models.threads import MODEL
from gunicorn_otel._worker.send_ahead import BodyCutShort, SendAhead, _parse, render
from gunicorn_otel._worker.stats import EXPORT_FAILED, TRACES, ExportStats
from gunicorn_otel.settings import BatchOptions
from tests.test_http_transport import _no_proxy_or_netrc, recorder  # noqa: F401 - fixtures

pytestmark = pytest.mark.matrix

BATCH = 5


class _Pipeline:
    """A real thread-model span pipeline (encoder, batcher, send-ahead, SDK exporter) to ``url``."""

    def __init__(self, url: str, *, send_ahead: bool = True, **env: str) -> None:
        values = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": url, "OTEL_EXPORTER_OTLP_TIMEOUT": "2", **env}
        self.stats = ExportStats()
        self.exporter = CountingExporter(
            exporters.build("traces", settings.load(values).exporting("traces")), TRACES, self.stats
        )
        options = BatchOptions(
            schedule_delay=30.0, max_queue_size=100, max_export_batch_size=BATCH, send_ahead=send_ahead
        )
        self.processor = MODEL.span_processor(self.exporter, self.stats, options)
        self.batcher = self.processor.batcher
        self.ahead: SendAhead = self.batcher.send_ahead
        self.provider = TracerProvider(resource=Resource.create({"service.name": "t"}), shutdown_on_exit=False)
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("test.send_ahead")

    def spans(self, count: int) -> None:
        for i in range(count):
            with self.tracer.start_as_current_span(f"span-{i}") as span:
                span.set_attribute("i", i)

    def counts(self) -> dict:
        return self.stats.snapshot()[TRACES]

    def close(self) -> None:
        self.batcher.shutdown(Deadline.after(5))


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def _first_batch_by_the_export_thread(pipeline: _Pipeline, server) -> None:
    """No connection is ready before the export thread's first wake: the first batch is its, then it opens them."""
    pipeline.spans(BATCH)
    ahead = pipeline.ahead
    assert _wait_for(lambda: len(server.requests) == 1 and len(ahead._idle) == ahead.max_in_flight)
    assert ahead.sent == 0


def test_a_batch_sent_ahead_is_the_request_the_sdk_exporter_sends(recorder):  # noqa: F811
    server = recorder("ok")
    pipeline = _Pipeline(server.url, OTEL_EXPORTER_OTLP_HEADERS="x-tenant=a%20b,Authorization=Bearer%20t")
    sent_ahead: list = []
    lane_body = pipeline.exporter.inner.lane_body
    pipeline.exporter.inner.lane_body = lambda batch: (sent_ahead.append(list(batch)), lane_body(batch))[1]
    try:
        _first_batch_by_the_export_thread(pipeline, server)
        pipeline.spans(BATCH)
        assert pipeline.ahead.sent == 1
        # The same batch again, through the SDK exporter and ExportTransport.
        assert pipeline.exporter.inner.export(sent_ahead[0]).name == "SUCCESS"
        assert _wait_for(lambda: len(server.requests) == 3)
        ahead, by_sdk = server.requests[1:]
        assert (ahead["method"], ahead["target"]) == (by_sdk["method"], by_sdk["target"]) == ("POST", "/v1/traces")
        assert ahead["headers"] == by_sdk["headers"]  # every header, in the same order
        assert ("x-tenant", "a b") in ahead["headers"]
        assert ahead["body"] == by_sdk["body"]
        assert pipeline.batcher.force_flush(5)
        assert pipeline.counts()["exported"] == 2 * BATCH
    finally:
        pipeline.close()


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"},  # milliseconds per batch: not on a request
        {"OTEL_EXPORTER_OTLP_HEADERS": "x-team=%C5%81"},  # http.client refuses it: the SDK exporter reports it
    ],
)
def test_where_send_ahead_stays_off(recorder, env):  # noqa: F811
    server = recorder("ok")
    pipeline = _Pipeline(server.url, **env)
    try:
        assert pipeline.ahead is None
    finally:
        pipeline.close()


def test_render_is_what_http_client_sends(recorder):  # noqa: F811
    """The bytes are rendered by ``http.client`` itself: the request line, Host and Content-Length included."""
    server = recorder("ok")
    pipeline = _Pipeline(server.url)
    try:
        client = pipeline.exporter.inner._client
        rendered = render(pipeline.ahead.route, client._headers, b"body")
        head, _, body = rendered.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0] == "POST /v1/traces HTTP/1.1"
        assert lines[1] == f"Host: 127.0.0.1:{server.server_address[1]}"
        assert "Content-Length: 4" in lines
        assert body == b"body"
    finally:
        pipeline.close()


def test_every_span_is_counted_once_when_answers_are_read_by_the_producer(recorder):  # noqa: F811
    server = recorder("ok")
    pipeline = _Pipeline(server.url)
    try:
        _first_batch_by_the_export_thread(pipeline, server)
        for sent in range(1, 21):  # as under load: the last batch is answered before the next is full
            pipeline.spans(BATCH)
            assert _wait_for(lambda sent=sent: server.answers == 1 + sent)
        assert pipeline.ahead.sent == 20  # every one by the producer, its answer read at the next
        assert pipeline.batcher.force_flush(5)
        counts = pipeline.counts()
        assert counts["accepted"] == counts["exported"] == 21 * BATCH
        assert sum(counts["dropped"].values()) == 0
        assert sum(len(r["body"]) > 0 for r in server.requests) == 21
    finally:
        pipeline.close()


def test_a_refused_send_is_sent_again_by_the_sdk_exporter(recorder):  # noqa: F811
    # The export thread's batch, then the one sent ahead is answered 503; the SDK exporter sends it again.
    server = recorder("ok", "retry-after", "ok")
    pipeline = _Pipeline(server.url)
    try:
        _first_batch_by_the_export_thread(pipeline, server)
        pipeline.spans(BATCH)
        assert pipeline.ahead.sent == 1
        assert pipeline.batcher.force_flush(10)
        assert len(server.requests) == 3
        assert server.requests[1]["body"] == server.requests[2]["body"]
        counts = pipeline.counts()
        assert counts["exported"] == 2 * BATCH
        assert sum(counts["dropped"].values()) == 0
    finally:
        pipeline.close()


def test_a_connection_closed_before_the_answer_is_sent_again_by_the_sdk_exporter(recorder):  # noqa: F811
    server = recorder("ok", "drop", "ok")  # the batch sent ahead is read, then its connection closed unanswered
    pipeline = _Pipeline(server.url)
    try:
        _first_batch_by_the_export_thread(pipeline, server)
        pipeline.spans(BATCH)
        assert pipeline.ahead.sent == 1
        assert pipeline.batcher.force_flush(10)
        assert len(server.requests) == 3
        assert server.requests[1]["body"] == server.requests[2]["body"]  # the SDK exporter sent it again
        counts = pipeline.counts()
        assert counts["accepted"] == counts["exported"] == 2 * BATCH
        assert sum(counts["dropped"].values()) == 0
    finally:
        pipeline.close()


def test_an_idle_connection_the_collector_closed_is_not_used(recorder):  # noqa: F811
    server = recorder("ok", "ok-then-close", "ok")
    pipeline = _Pipeline(server.url)
    try:
        _first_batch_by_the_export_thread(pipeline, server)
        pipeline.spans(BATCH)  # answered; the collector then closes that kept-alive connection
        assert pipeline.batcher.force_flush(5)
        assert _wait_for(server.closed.is_set)
        pipeline.spans(BATCH)  # the closed connection is seen (poll) and skipped: the other one takes it
        assert pipeline.ahead.sent == 2
        assert pipeline.batcher.force_flush(5)
        assert len(server.requests) == 3  # nothing sent twice
        counts = pipeline.counts()
        assert counts["accepted"] == counts["exported"] == 3 * BATCH
    finally:
        pipeline.close()


def test_an_answer_read_after_the_deadline_still_counts(recorder):  # noqa: F811
    """The export thread reads late (nobody else filled a batch): what arrived in time is a success."""
    server = recorder("ok")
    pipeline = _Pipeline(server.url, OTEL_EXPORTER_OTLP_TIMEOUT="1")
    try:
        _first_batch_by_the_export_thread(pipeline, server)
        pipeline.spans(BATCH)
        assert pipeline.ahead.sent == 1
        assert _wait_for(lambda: server.answers == 2)
        deadline = pipeline.ahead._in_flight[0].deadline
        assert _wait_for(lambda: time.monotonic() > deadline + 0.1)  # the send's deadline passes unread
        assert pipeline.batcher.force_flush(5)
        counts = pipeline.counts()
        assert counts["exported"] == 2 * BATCH
        assert sum(counts["dropped"].values()) == 0
    finally:
        pipeline.close()


def test_no_answer_within_the_timeout_is_counted_as_failed(recorder):  # noqa: F811
    server = recorder("ok", "hang")
    pipeline = _Pipeline(server.url)
    try:
        _first_batch_by_the_export_thread(pipeline, server)
        pipeline.spans(BATCH)
        assert pipeline.ahead.sent == 1
        started = time.monotonic()
        assert pipeline.batcher.force_flush(10)
        assert 1.5 < time.monotonic() - started < 8  # OTEL_EXPORTER_OTLP_TIMEOUT=2, not the flush's 10
        counts = pipeline.counts()
        assert counts["exported"] == BATCH
        assert counts["dropped"][EXPORT_FAILED] == BATCH
        assert len(server.requests) == 2  # not sent again: the SDK would not retry with no time left
    finally:
        server.release.set()
        pipeline.close()


def test_a_shutdown_that_leaves_a_send_unanswered_says_so(recorder):  # noqa: F811
    server = recorder("ok", "hang")
    pipeline = _Pipeline(server.url, OTEL_EXPORTER_OTLP_TIMEOUT="10")
    try:
        _first_batch_by_the_export_thread(pipeline, server)
        pipeline.spans(BATCH)
        assert pipeline.ahead.sent == 1
        assert pipeline.batcher.shutdown(Deadline.after(0.5)) is False
        # What the runtime then counts as shutdown_deadline (Runtime._abandon): the unanswered batch.
        counts = pipeline.counts()
        assert counts["accepted"] - counts["exported"] - sum(counts["dropped"].values()) == BATCH
    finally:
        server.release.set()


def test_a_producer_never_waits_on_a_black_hole(recorder):  # noqa: F811
    """With sends unanswered, producers leave batches to the export thread and to the queue; nobody blocks."""
    server = recorder("ok", "hang")
    pipeline = _Pipeline(server.url, OTEL_EXPORTER_OTLP_TIMEOUT="10")
    try:
        _first_batch_by_the_export_thread(pipeline, server)
        started = time.monotonic()
        pipeline.spans(200 * BATCH)
        assert time.monotonic() - started < 5
        assert pipeline.ahead.sent <= pipeline.ahead.max_in_flight
        counts = pipeline.counts()
        assert counts["accepted"] == 201 * BATCH
        assert counts["dropped"]["queue_full"] > 0
    finally:
        server.release.set()
        pipeline.close()


def test_send_ahead_off_leaves_every_batch_to_the_export_thread(recorder):  # noqa: F811
    server = recorder("ok")
    pipeline = _Pipeline(server.url, send_ahead=False)
    try:
        assert pipeline.ahead is None
        pipeline.spans(3 * BATCH)
        assert pipeline.batcher.force_flush(5)
        assert pipeline.counts()["exported"] == 3 * BATCH
    finally:
        pipeline.close()


@pytest.mark.parametrize(
    ("received", "eof", "expected"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False, (200, True)),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no", False, None),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", False, (200, False)),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False, (200, False)),
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", False, (503, True)),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", False, (200, False)),
        (b"HTTP/1.1 200 OK\r\n\r\nto the close", False, None),
        (b"HTTP/1.1 200 OK\r\n\r\nto the close", True, (200, False)),
        (b"HTTP/1.1 200 OK\r\nContent-", False, None),
        (b"HTTP/1.1 204 No Content\r\n\r\n", False, (204, True)),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False, (200, True)),
        (b"HTTP/1.1 100 Continue\r\n\r\n", False, None),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xc2\xb2\r\n\r\n", True, (200, False)),
    ],
)
def test_parse(received, eof, expected):
    answer = _parse(bytearray(received), eof)
    assert (answer if answer is None else (answer.status, answer.reusable)) == expected


@pytest.mark.parametrize(
    ("received", "error"),
    [
        (b"", ConnectionError),
        (b"HTTP/1.1 200 OK\r\nContent-", ConnectionError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", BodyCutShort),
        (b"SSH-2.0-OpenSSH\r\n\r\n", ConnectionError),
    ],
)
def test_parse_at_the_close_of_the_connection(received, error):
    with pytest.raises(error):
        _parse(bytearray(received), eof=True)
