"""OTLP/HTTP span exporter with a cheaper encoder.

The official encoder builds a protobuf message object per span, attribute and
value, then serialises them: per span about as much as making the span.
Under gevent all of that runs on the hub between requests, so it caps
throughput.  ``otlp_wire.encode_spans`` writes the same bytes directly, several
times cheaper (``bench/encode_bench.py``, figures in docs/gevent.md);
``tests/test_otlp_wire.py`` proves the bytes equal to the official encoder's.

Everything except the encoding is the SDK exporter's: constructor, endpoint,
headers, TLS, compression, retries, ``max_request_size``, the exporter's own
metrics, shutdown.  ``export`` below mirrors ``OTLPSpanExporter.export`` of
``opentelemetry-exporter-otlp-proto-http`` 1.45 line for line, with the encoder
swapped.  It relies on the parent's private attributes ``_shutdown``,
``_max_request_size``, ``_metrics`` and ``_client`` (whose ``export(bytes)``
posts the body and retries); ``tests/test_otlp_wire.py`` checks they exist and
sends a batch through a real HTTP server, so an SDK upgrade that renames them
fails the tests instead of silently dropping spans.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE

from gunicorn_otel._worker import otlp_wire

try:  # same exception type the parent records for an oversized batch
    from opentelemetry.exporter.otlp.proto.http._common import RequestPayloadTooLargeError
except ImportError:  # pragma: no cover - only if the SDK moves it

    class RequestPayloadTooLargeError(Exception):  # type: ignore[no-redef]
        pass


log = logging.getLogger(__name__)

# The parent's attributes ``export`` uses; the tests assert each one exists.
PARENT_ATTRIBUTES = ("_shutdown", "_max_request_size", "_metrics", "_client")


class FastOTLPSpanExporter(OTLPSpanExporter):
    """``OTLPSpanExporter`` (OTLP/HTTP protobuf) encoding with ``otlp_wire``.

    Same constructor, same behaviour, same bytes on the wire; only cheaper.
    ``export`` also takes, in place of spans, what ``prepare_span`` made of
    them: the gevent processor encodes each span as it ends, so its queue
    holds bytes rather than span objects.
    """

    @property
    def prepare_span(self):
        """``otlp_wire.encode_span`` as it is when a pipeline asks (``otlp_wire.use_native``)."""
        return otlp_wire.encode_span

    def lane_body(self, spans: Sequence) -> bytes | None:
        """The body ``export`` would POST for ``spans`` (compressed as configured), or None.

        None where ``export`` would not post it as is: the exporter is shut
        down, the batch can't be encoded, or it is over ``max_request_size``.
        ``send_ahead.SendAhead`` posts this body itself and leaves anything else to ``export``.
        """
        if self._shutdown:
            return None
        try:
            body = otlp_wire.encode_spans(spans)
        except Exception:  # noqa: BLE001 - export() encodes again, and logs it
            return None
        limit = self._max_request_size
        if 0 < limit < len(body):
            return None
        return self._client._compress(body)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            log.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE

        with self._metrics.export_operation(len(spans)) as result:
            try:
                body = otlp_wire.encode_spans(spans)
            except Exception as error:  # noqa: BLE001 - a bad batch must cost one batch, not the worker
                log.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE

            limit = self._max_request_size
            if 0 < limit < len(body):
                log.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                    len(body),
                    limit,
                )
                result.error = RequestPayloadTooLargeError(
                    f"Serialized span request size {len(body)} bytes exceeds max_request_size {limit} bytes."
                )
                return SpanExportResult.FAILURE

            sent = self._client.export(body)
            if not sent.success:
                result.error = sent.error
                result.error_attrs = (
                    {HTTP_RESPONSE_STATUS_CODE: sent.status_code} if sent.status_code is not None else None
                )
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
