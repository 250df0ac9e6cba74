"""The developer console: ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER=pretty``.

The SDK's console exporters print JSON (about 30 lines per span, every metric
in full at each interval), which nobody reads at a glance.  These print one
line per item, in the habit of OpenTelemetry's and Logfire's terminal views:

* a span: start time, name (indented under its parent when the parent is in
  the same batch), duration, status and the first 8 hex digits of its trace id;
* a log record: time, level, the first line of its message, the trace id
  (Gunicorn's own records are exported as usual but not printed again here:
  Gunicorn's log already shows them on the same terminal);
* metrics: one line per metric whose values changed since the last export,
  with each changed point's attributes and value (a histogram as count and
  mean).  Unchanged metrics, and points first seen at zero, print nothing,
  so an idle worker is quiet.

Each batch is written with one ``write`` call on stdout, so lines from two
workers do not interleave inside a batch.  Colour only when stdout is a
terminal, never in a file or pipe.  ``console`` stays the SDK's JSON, for
anyone who parses it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import IO

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    MetricExporter,
    MetricExportResult,
)
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

_RESET = "\033[0m"
_DIM = "\033[2m"
_BOLD = "\033[1m"
_RED = "\033[31m"
_YELLOW = "\033[33m"
_CYAN = "\033[36m"
_LEVEL_COLOURS = {"WARN": _YELLOW, "WARNING": _YELLOW, "ERROR": _RED, "FATAL": _RED, "CRITICAL": _RED}
NAME_WIDTH = 34


class _Style:
    def __init__(self, out: IO) -> None:
        isatty = getattr(out, "isatty", None)
        try:
            self.colour = bool(isatty and isatty())
        except ValueError:  # a closed stream
            self.colour = False
        encoding = (getattr(out, "encoding", None) or "").lower().replace("-", "")
        self.unicode = encoding in ("utf8", "utf16", "utf32")
        self.child = "└ " if self.unicode else "` "
        self.micro = "µs" if self.unicode else "us"

    def __call__(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self.colour and code else text


def clock(ns: int | None) -> str:
    """Local wall time of an epoch-nanoseconds timestamp, to the millisecond."""
    if not ns:
        return " " * 12
    seconds, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{rest // 1_000_000:03d}"


def duration(ns: int, micro: str = "µs") -> str:
    if ns < 1_000_000:
        return f"{ns / 1000:.0f} {micro}"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.1f} ms"
    return f"{ns / 1_000_000_000:.2f} s"


def short_trace(trace_id: int | None) -> str:
    return format(trace_id, "032x")[:8] if trace_id else "-"


def _write(out: IO, lines: list[str]) -> None:
    if lines:
        out.write("\n".join(lines) + "\n")
        out.flush()


class PrettySpanExporter(SpanExporter):
    def __init__(self, out: IO | None = None) -> None:
        self.out = out or sys.stdout
        self.style = _Style(self.out)

    def format_batch(self, spans: Sequence) -> list[str]:
        by_id = {span.context.span_id: span for span in spans}
        children: dict[int, list] = {}
        roots = []
        for span in spans:
            parent = span.parent.span_id if span.parent is not None else None
            if parent is not None and parent in by_id and parent != span.context.span_id:
                children.setdefault(parent, []).append(span)
            else:
                roots.append(span)
        lines: list[str] = []

        def visit(span, depth: int) -> None:
            lines.append(self.format_span(span, depth))
            for child in sorted(children.get(span.context.span_id, ()), key=_start):
                visit(child, depth + 1)

        for root in sorted(roots, key=_start):
            visit(root, 0)
        return lines

    def format_span(self, span, depth: int = 0) -> str:
        s = self.style
        prefix = "  " * (depth - 1) + s.child if depth else ""
        name = (prefix + str(span.name))[:NAME_WIDTH].ljust(NAME_WIDTH)
        took = duration(max(0, (span.end_time or 0) - (span.start_time or 0)), s.micro).rjust(9)
        status = span.status
        if status.status_code is StatusCode.ERROR:
            error_type = (span.attributes or {}).get("error.type")
            detail = str(error_type or status.description or "")
            shown = s(("ERROR " + detail).strip(), _RED)
        else:
            shown = "ok   "
        return (
            f"{s(clock(span.start_time), _DIM)}  {s(name, _BOLD if not depth else '')} {took}  "
            f"{shown}  {s('trace ' + short_trace(span.context.trace_id), _DIM)}"
        )

    def export(self, spans: Sequence) -> SpanExportResult:
        _write(self.out, self.format_batch(spans))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _start(span) -> int:
    return span.start_time or 0


class PrettyLogExporter(LogRecordExporter):
    def __init__(self, out: IO | None = None) -> None:
        self.out = out or sys.stdout
        self.style = _Style(self.out)

    def format_record(self, item) -> str:
        s = self.style
        record = getattr(item, "log_record", item)
        level = str(record.severity_text or "").upper() or "-"
        body = record.body if isinstance(record.body, str) else repr(record.body)
        first, *rest = body.splitlines() or [""]
        more = s(f"  (+{len(rest)} lines)", _DIM) if rest else ""
        trace = f"  {s('trace ' + short_trace(record.trace_id), _DIM)}" if record.trace_id else ""
        stamp = record.timestamp or record.observed_timestamp
        return f"{s(clock(stamp), _DIM)}  {s(level.ljust(7), _LEVEL_COLOURS.get(level, ''))}  {first}{more}{trace}"

    def export(self, batch: Sequence) -> LogRecordExportResult:
        _write(self.out, [self.format_record(item) for item in batch if not _printed_by_gunicorn(item)])
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _printed_by_gunicorn(item) -> bool:
    """Gunicorn's own records (``gunicorn.error``) are already on this terminal, from its log."""
    scope = getattr(item, "instrumentation_scope", None)
    return bool(scope is not None and (scope.name or "").startswith("gunicorn."))


class PrettyMetricExporter(MetricExporter):
    """Cumulative points; prints a metric only when one of its points changed."""

    def __init__(self, out: IO | None = None) -> None:
        super().__init__(
            preferred_temporality={cls: AggregationTemporality.CUMULATIVE for cls in _instrument_classes()}
        )
        self.out = out or sys.stdout
        self.style = _Style(self.out)
        self._last: dict[tuple, object] = {}

    def format_metrics(self, metrics_data) -> list[str]:
        s = self.style
        lines = []
        now = clock(time.time_ns())
        for resource_metrics in metrics_data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    changed = []
                    for point in metric.data.data_points:
                        attributes = tuple(sorted((point.attributes or {}).items()))
                        value = _value(metric.data, point)
                        key = (metric.name, attributes)
                        last = self._last[key] if key in self._last else (value if _is_zero(value) else None)
                        self._last[key] = value
                        if last == value:
                            continue
                        labels = ",".join(f"{k}={v}" for k, v in attributes)
                        changed.append(f"{labels + ' ' if labels else ''}{_show(value, metric.unit)}")
                    if changed:
                        lines.append(f"{s(now, _DIM)}  {s('metric', _CYAN)}   {metric.name}  " + "  ".join(changed))
        return lines

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        _write(self.out, self.format_metrics(metrics_data))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


def _is_zero(value) -> bool:
    """A point first seen at zero (a counter nothing moved yet) is not worth a line."""
    return value == 0 or value == (0, 0)


def _instrument_classes():
    from opentelemetry.sdk.metrics import (
        Counter,
        ObservableCounter,
        ObservableGauge,
        ObservableUpDownCounter,
        UpDownCounter,
    )
    from opentelemetry.sdk.metrics import (
        Histogram as HistogramInstrument,
    )

    return (Counter, UpDownCounter, HistogramInstrument, ObservableCounter, ObservableUpDownCounter, ObservableGauge)


def _value(data, point):
    if isinstance(data, Histogram) or hasattr(point, "count"):
        return (point.count, point.sum)
    return point.value


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _show(value, unit: str | None) -> str:
    unit = f" {unit}" if unit and unit != "1" and not unit.startswith("{") else ""
    if isinstance(value, tuple):
        count, total = value
        mean = total / count if count else 0
        return f"n={count} mean={_number(mean)}{unit}"
    return f"{_number(value)}{unit}"


def exporter(signal: str):
    """The pretty exporter for ``signal`` ("traces", "metrics", "logs")."""
    if signal == "traces":
        return PrettySpanExporter()
    if signal == "metrics":
        return PrettyMetricExporter()
    return PrettyLogExporter()
