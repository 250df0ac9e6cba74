"""The OTLP/HTTP protobuf request bodies the master sends: cumulative counters, a gauge, log records.

Built with ``opentelemetry-proto`` (no SDK object in the master).  ``load()``
imports the protobuf modules; it is called in the arbiter's thread before the
export thread starts (see ``sender.prepare``), and only when master
telemetry is on, so a master with it off never imports protobuf.
"""

from __future__ import annotations

import time
from typing import Any

from gunicorn_otel import __version__

_pb: Any = None  # a namespace of the protobuf classes, set by load()

METRIC_NAMES = {
    "boot": ("gunicorn.master.worker.boots", "Workers the master forked, by why it forked them"),
    "exit": ("gunicorn.master.worker.exits", "Workers the master reaped, by exit status and cause"),
    "timeout": ("gunicorn.master.worker.timeouts", "Workers the master aborted for missing their heartbeat"),
    "reload": ("gunicorn.master.reloads", "Configuration reloads (HUP)"),
}
WARNING_CAUSES = {"crash", "timeout", "boot_failed", "app_load_failed"}


def load() -> None:
    global _pb
    import types

    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.logs.v1 import logs_pb2
    from opentelemetry.proto.metrics.v1 import metrics_pb2
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    _pb = types.SimpleNamespace(
        ExportLogsServiceRequest=ExportLogsServiceRequest,
        ExportMetricsServiceRequest=ExportMetricsServiceRequest,
        AnyValue=common_pb2.AnyValue,
        KeyValue=common_pb2.KeyValue,
        InstrumentationScope=common_pb2.InstrumentationScope,
        Resource=Resource,
        LogRecord=logs_pb2.LogRecord,
        ResourceLogs=logs_pb2.ResourceLogs,
        ScopeLogs=logs_pb2.ScopeLogs,
        SEVERITY_NUMBER_WARN=logs_pb2.SEVERITY_NUMBER_WARN,
        SEVERITY_NUMBER_INFO=logs_pb2.SEVERITY_NUMBER_INFO,
        Metric=metrics_pb2.Metric,
        Sum=metrics_pb2.Sum,
        Gauge=metrics_pb2.Gauge,
        NumberDataPoint=metrics_pb2.NumberDataPoint,
        ResourceMetrics=metrics_pb2.ResourceMetrics,
        ScopeMetrics=metrics_pb2.ScopeMetrics,
        AGGREGATION_TEMPORALITY_CUMULATIVE=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
    )


def _kv(key: str, value: object) -> Any:
    pb = _pb
    if isinstance(value, bool):
        any_value = pb.AnyValue(bool_value=value)
    elif isinstance(value, int):
        any_value = pb.AnyValue(int_value=value)
    else:
        any_value = pb.AnyValue(string_value=str(value))
    return pb.KeyValue(key=key, value=any_value)


def _resource(telemetry: Any) -> Any:
    settings = telemetry.settings
    attributes = dict(settings.resource_attributes)
    attributes["service.name"] = settings.service_name_resolved()
    attributes["service.instance.id"] = telemetry.instance_id
    attributes["gunicorn.role"] = "master"
    attributes["process.pid"] = telemetry.pid
    return _pb.Resource(attributes=[_kv(k, v) for k, v in attributes.items()])


def _scope() -> Any:
    return _pb.InstrumentationScope(name="gunicorn_otel.master", version=__version__)


def metrics_body(telemetry: Any, counters: dict) -> bytes:
    """``telemetry``: a ``recording.MasterTelemetry``; ``counters``: (event, attributes) -> count."""
    pb = _pb
    now = time.time_ns()

    def counter(name: str, description: str, unit: str, points) -> object:
        data_points = [
            pb.NumberDataPoint(
                start_time_unix_nano=telemetry.start_ns,
                time_unix_nano=now,
                as_int=value,
                attributes=[_kv(k, v) for k, v in attributes],
            )
            for attributes, value in points
        ]
        return pb.Metric(
            name=name,
            description=description,
            unit=unit,
            sum=pb.Sum(
                data_points=data_points,
                is_monotonic=True,
                aggregation_temporality=pb.AGGREGATION_TEMPORALITY_CUMULATIVE,
            ),
        )

    metrics = []
    for event, (name, description) in METRIC_NAMES.items():
        points = [(attributes, count) for (e, attributes), count in counters.items() if e == event]
        if points:
            metrics.append(counter(name, description, "{event}" if event == "reload" else "{worker}", points))
    metrics.append(
        pb.Metric(
            name="gunicorn.master.workers",
            unit="{worker}",
            description="Worker processes the master has now",
            gauge=pb.Gauge(data_points=[pb.NumberDataPoint(time_unix_nano=now, as_int=len(telemetry.arbiter.WORKERS))]),
        )
    )
    request = pb.ExportMetricsServiceRequest(
        resource_metrics=[
            pb.ResourceMetrics(
                resource=_resource(telemetry),
                scope_metrics=[pb.ScopeMetrics(scope=_scope(), metrics=metrics)],
            )
        ]
    )
    return request.SerializeToString()


def logs_body(telemetry: Any, records: list) -> bytes:
    """``records``: (time ns, event name, attributes, body text) tuples."""
    pb = _pb
    items = []
    for stamp, name, attributes, body in records:
        warn = name == "timeout" or attributes.get("gunicorn.worker.exit.cause") in WARNING_CAUSES
        items.append(
            pb.LogRecord(
                time_unix_nano=stamp,
                observed_time_unix_nano=stamp,
                severity_number=pb.SEVERITY_NUMBER_WARN if warn else pb.SEVERITY_NUMBER_INFO,
                severity_text="WARN" if warn else "INFO",
                body=pb.AnyValue(string_value=body),
                event_name="gunicorn.master.reload" if name == "reload" else f"gunicorn.worker.{name}",
                attributes=[_kv(k, v) for k, v in attributes.items()],
            )
        )
    request = pb.ExportLogsServiceRequest(
        resource_logs=[
            pb.ResourceLogs(
                resource=_resource(telemetry),
                scope_logs=[pb.ScopeLogs(scope=_scope(), log_records=items)],
            )
        ]
    )
    return request.SerializeToString()
