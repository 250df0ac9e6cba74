"""Every environment variable gunicorn-otel reads, declared once, validated once.

Why this module exists: the SDK reacts to bad values in four different ways
(silently ignores, logs and falls back, raises at construction, or breaks an
import), and it would do so in each worker after fork, where a crash becomes a
crash loop.  We parse everything in the master when the Gunicorn config loads,
so a bad value stops Gunicorn before any worker forks, with one message naming
the variable, the value and what is accepted.  Workers receive the resolved
``Settings`` and never read the environment again (uvicorn's Config/Server
split).

Each variable is one ``Var`` declaration (gunicorn's ``Setting`` habit): name,
parser, default and description.  The README's table is checked against this
list by a test, so docs and behaviour cannot drift apart.

This module imports nothing outside the standard library (and the stdlib-only
worker-kind table): the Gunicorn config module imports it in the master, where
heavy imports would break gevent's monkey-patching later.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gunicorn_otel._master.worker_kinds import PROCESSORS as _PROCESSOR_MODELS

PREFIX = "GUNICORN_OTEL_"
# The master and the workers agree on this name when none is configured.
UNKNOWN_SERVICE = "unknown_service:gunicorn"


class SettingsError(ValueError):
    """A variable has a value we refuse; the message is safe to print."""


# -- parsers ---------------------------------------------------------------
# Each takes the raw string and returns the parsed value or raises ValueError
# whose text says what is accepted.  ``Var.parse`` adds the name and value.


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError("expected one of: " + ", ".join(choices))
        return value

    return parse


def _exporter(raw: str) -> str:
    """``otlp``, ``console``, ``pretty`` or ``none``; the spec allows a comma list, we take one.

    ``pretty`` is ours: the one-line-per-item developer console
    (``_worker/console.py``); ``console`` stays the SDK's JSON.
    """
    return _choice("otlp", "console", "pretty", "none")(raw)


def _metrics_exporters(raw: str) -> str:
    """``OTEL_METRICS_EXPORTER``: one exporter, or ``prometheus`` with one other (the spec's comma list).

    Returned normalised (``"otlp,prometheus"``); ``load`` splits it into the
    push exporter (``otlp``, ``console``, ``pretty`` or ``none``) and the Prometheus endpoint.
    """
    names = [item.strip().lower() for item in raw.split(",") if item.strip()]
    expected = (
        "expected otlp, console, pretty, prometheus or none, or prometheus with one of otlp/console/pretty "
        "(e.g. otlp,prometheus)"
    )
    if not names or any(n not in ("otlp", "console", "pretty", "prometheus", "none") for n in names):
        raise ValueError(expected)
    unique = list(dict.fromkeys(names))
    push = [n for n in unique if n in ("otlp", "console", "pretty")]
    if len(push) > 1 or ("none" in unique and len(unique) > 1):
        raise ValueError(expected)
    return ",".join(unique)


def _host(raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() or c in "/@?#" for c in value):
        raise ValueError("expected a host name or IP address to listen on, e.g. localhost or 0.0.0.0")
    return value.strip("[]")  # [::1] is accepted as ::1


def _port(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError("expected a TCP port number from 1 to 65535") from None
    if not 1 <= value <= 65535:
        raise ValueError("expected a TCP port number from 1 to 65535")
    return value


def _positive(unit: str, *, whole: bool = False) -> Callable[[str], Any]:
    """The one positive-number parser: finite and > 0; ``whole`` for a count or milliseconds."""
    expected = f"expected a positive {'whole ' if whole else ''}number ({unit})"

    def parse(raw: str) -> float | int:
        try:
            value: float | int = int(raw.strip()) if whole else float(raw.strip())
        except ValueError:
            raise ValueError(expected) from None
        if not value > 0 or value == float("inf"):
            raise ValueError(expected)
        return value

    return parse


def _ratio(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number from 0 to 1") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a number from 0 to 1")
    return value


def _limit(raw: str) -> int | None:
    """SDK attribute limits: empty means unlimited; a bad one breaks SDK import."""
    if not raw.strip():
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError("expected a non-negative whole number, or empty for no limit") from None
    if value < 0:
        raise ValueError("expected a non-negative whole number, or empty for no limit")
    return value


def _url(raw: str) -> str:
    value = raw.strip()
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("expected an http:// or https:// URL with a host, e.g. http://collector:4318")
    try:
        parsed.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise ValueError("expected an http:// or https:// URL with a valid port") from None
    return value


def _headers(raw: str) -> dict[str, str]:
    """W3C-baggage-like ``k=v,k2=v2`` with URL-encoded values.

    Error messages never quote the value: headers carry API keys.
    """
    headers: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = urllib.parse.unquote(key).strip().lower()
        if not sep or not key:
            raise ValueError("expected comma-separated key=value pairs")
        headers[key] = urllib.parse.unquote(value).strip()
    return headers


def _resource_attributes(raw: str) -> dict[str, str]:
    """Parsed exactly as the SDK's ``OTELResourceDetector`` parses it, or refused.

    Each worker's SDK reads the variable again (``Resource.create``) and warns
    "Invalid key value resource attribute pair" for every item without ``=``,
    empty items too (``a=1,,b=2``, a trailing comma).  So those are refused
    here, and an accepted value means the same to both: keys are stripped,
    not URL-decoded; values are stripped, then URL-decoded.
    """
    attributes: dict[str, str] = {}
    for position, item in enumerate(raw.split(","), start=1):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            what = "is empty" if not item.strip() else f"{item.strip()!r} has " + ("an empty key" if sep else "no '='")
            raise ValueError(f"expected comma-separated key=value pairs, but item {position} {what}")
        attributes[key.strip()] = urllib.parse.unquote(value.strip())
    return attributes


def _existing_file(raw: str) -> str:
    value = raw.strip()
    if not os.path.isfile(value):
        raise ValueError("expected the path of a readable file")
    return value


def _text(raw: str) -> str:
    return raw.strip()


# -- declarations ----------------------------------------------------------


@dataclass(frozen=True)
class Var:
    """One environment variable: how to parse it and what it defaults to."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    doc: str
    accepted: str = ""
    secret: bool = False

    def read(self, environ: Mapping[str, str]) -> Any:
        raw = environ.get(self.name)
        if raw is None or (raw.strip() == "" and self.parse is not _limit):
            return self.default
        try:
            return self.parse(raw)
        except ValueError as exc:
            shown = "<redacted>" if self.secret else repr(raw)
            raise SettingsError(f"{self.name}={shown} is invalid: {exc}") from None


SIGNAL_NAMES = ("traces", "metrics", "logs")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
# The values of GUNICORN_OTEL_PROCESSOR come from the worker-kind table, the one place they resolve.
PROCESSORS = tuple(_PROCESSOR_MODELS)


def _otlp_vars() -> list[Var]:
    """The OTLP exporter variables: a general one and one per signal."""
    out = []
    for scope in ("", *[s.upper() + "_" for s in SIGNAL_NAMES]):
        target = scope.rstrip("_").lower() or "all signals"
        base = f"OTEL_EXPORTER_OTLP_{scope}"
        out += [
            Var(
                base + "PROTOCOL",
                _choice("http/protobuf", "grpc"),
                None,
                f"OTLP protocol for {target} (default http/protobuf)",
                "http/protobuf, grpc",
            ),
            Var(
                base + "ENDPOINT",
                _url,
                None,
                f"OTLP endpoint for {target}"
                + (
                    " (base URL, default http://localhost:4318, or :4317 for gRPC; /v1/<signal> is appended for HTTP)"
                    if not scope
                    else " (used as-is)"
                ),
                "http(s) URL",
            ),
            Var(
                base + "HEADERS", _headers, None, f"export headers for {target}; never logged", "k=v,k2=v2", secret=True
            ),
            Var(
                base + "TIMEOUT",
                _positive("seconds"),
                None,
                f"per-export timeout for {target}, in seconds (the Python SDK's unit; default 10)",
                "positive number",
            ),
            Var(
                base + "COMPRESSION",
                _choice("gzip", "deflate", "none"),
                None,
                f"export compression for {target} (default none)",
                "gzip, deflate (HTTP only), none",
            ),
            Var(
                base + "CERTIFICATE",
                _existing_file,
                None,
                f"CA bundle to verify the collector for {target}",
                "file path",
            ),
            Var(base + "CLIENT_KEY", _existing_file, None, f"client TLS key for {target}", "file path"),
            Var(base + "CLIENT_CERTIFICATE", _existing_file, None, f"client TLS certificate for {target}", "file path"),
            Var(
                base + "INSECURE",
                _bool,
                None,
                f"gRPC only: plaintext when the endpoint has no scheme, for {target}",
                "true, false",
            ),
        ]
    return out


def _batch_vars(prefix: str, what: str, delay: int) -> list[Var]:
    return [
        Var(
            f"{prefix}_SCHEDULE_DELAY",
            _positive("milliseconds", whole=True),
            delay,
            f"delay between {what} exports, ms",
            "positive integer",
        ),
        Var(
            f"{prefix}_MAX_QUEUE_SIZE",
            _positive("items", whole=True),
            2048,
            f"{what} queued per worker before dropping",
            "positive integer",
        ),
        Var(
            f"{prefix}_MAX_EXPORT_BATCH_SIZE",
            _positive("items", whole=True),
            512,
            f"{what} per export request",
            "positive integer <= queue size",
        ),
        Var(
            f"{prefix}_EXPORT_TIMEOUT",
            _positive("milliseconds", whole=True),
            30000,
            f"accepted for compatibility; the SDK ignores it ({what})",
            "positive integer",
        ),
    ]


VARS: tuple[Var, ...] = (
    Var("OTEL_SDK_DISABLED", _bool, False, "turn all telemetry off (no providers, no threads)", "true, false"),
    Var("OTEL_SERVICE_NAME", _text, None, "service.name resource attribute", "text"),
    Var("OTEL_RESOURCE_ATTRIBUTES", _resource_attributes, {}, "extra resource attributes", "k=v,k2=v2"),
    Var(
        "OTEL_TRACES_EXPORTER",
        _exporter,
        "otlp",
        "where spans go (pretty: one line each on stdout; console: the SDK's JSON)",
        "otlp, console, pretty, none",
    ),
    Var(
        "OTEL_METRICS_EXPORTER",
        _metrics_exporters,
        "otlp",
        "where metrics go (pretty: changed values, one line per metric); `prometheus` serves one /metrics "
        "endpoint for all workers (alone or with otlp/console/pretty)",
        "otlp, console, pretty, prometheus, none, or e.g. otlp,prometheus",
    ),
    Var(
        "OTEL_LOGS_EXPORTER",
        _exporter,
        "otlp",
        "where log records go (standard logging is bridged; pretty: one line each)",
        "otlp, console, pretty, none",
    ),
    *_otlp_vars(),
    *_batch_vars("OTEL_BSP", "spans", 5000),
    *_batch_vars("OTEL_BLRP", "log records", 1000),
    Var(
        "OTEL_EXPORTER_PROMETHEUS_HOST",
        _host,
        "localhost",
        "address the Prometheus endpoint listens on (one per Gunicorn master)",
        "host name or IP address",
    ),
    Var(
        "OTEL_EXPORTER_PROMETHEUS_PORT",
        _port,
        9464,
        "port of the Prometheus endpoint; in use at start means Gunicorn stops with an error",
        "1 to 65535",
    ),
    Var(
        PREFIX + "PROMETHEUS_INTERVAL",
        _positive("milliseconds", whole=True),
        1000,
        "how often each worker hands its metrics to the Prometheus endpoint, ms "
        "(what a scrape may lag, and what a SIGKILLed worker loses)",
        "positive integer",
    ),
    Var(
        "OTEL_METRIC_EXPORT_INTERVAL",
        _positive("milliseconds", whole=True),
        60000,
        "metric export interval, ms",
        "positive integer",
    ),
    Var(
        "OTEL_METRIC_EXPORT_TIMEOUT",
        _positive("milliseconds", whole=True),
        30000,
        "metric export timeout, ms",
        "positive integer",
    ),
    Var("OTEL_TRACES_SAMPLER", _choice(*SAMPLERS), "parentbased_always_on", "sampler", ", ".join(SAMPLERS)),
    Var("OTEL_TRACES_SAMPLER_ARG", _ratio, 1.0, "ratio for the traceidratio samplers", "0 to 1"),
    *[
        Var(
            name,
            _limit,
            None,
            "SDK limit; validated because a bad value breaks the SDK import",
            "non-negative integer or empty",
        )
        for name in (
            "OTEL_ATTRIBUTE_COUNT_LIMIT",
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
            "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
            "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
            "OTEL_SPAN_EVENT_COUNT_LIMIT",
            "OTEL_SPAN_LINK_COUNT_LIMIT",
            "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
            "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
            "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT",
            "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        )
    ],
    Var(
        PREFIX + "SHUTDOWN_TIMEOUT",
        _positive("seconds"),
        5.0,
        "total time a worker may spend flushing all signals at exit",
        "positive number of seconds",
    ),
    Var(
        PREFIX + "PROCESSOR",
        _choice(*PROCESSORS),
        "auto",
        "batching: auto (by worker class), threads or asyncio (ours, one export thread per signal), gevent "
        "(greenlets), batch (the SDK's BatchSpanProcessor), simple (export inline; debugging)",
        ", ".join(PROCESSORS),
    ),
    Var(
        PREFIX + "LOG_LEVEL",
        _choice("debug", "info", "warning", "error", "critical"),
        "info",
        "lowest standard-logging level bridged to OTel logs",
        "debug, info, warning, error, critical",
    ),
    Var(
        PREFIX + "SELF_METRICS",
        _bool,
        True,
        "export gunicorn_otel.* metrics: items exported and dropped by reason",
        "true, false",
    ),
    Var(
        PREFIX + "RUNTIME_METRICS",
        _bool,
        True,
        "export each worker's process.* metrics (CPU time, memory, threads, open fds, GC, context switches)",
        "true, false",
    ),
    Var(
        PREFIX + "MASTER_TELEMETRY",
        _bool,
        True,
        "export the master's own metrics and log records: worker boots, exits by reason, timeouts, reloads, count",
        "true, false",
    ),
    Var(
        PREFIX + "WRAP_APP",
        _bool,
        False,
        "wrap the loaded WSGI/ASGI app in OpenTelemetry's middleware (server span per request)",
        "true, false",
    ),
    Var(
        PREFIX + "GC_FREEZE",
        _bool,
        True,
        "thread and asyncio worker classes: gc.freeze() in the master before the first fork, so workers "
        "boot, exit and share memory cheaper (docs/pipelines.md)",
        "true, false",
    ),
    Var(
        PREFIX + "SEND_AHEAD",
        _bool,
        True,
        "thread and asyncio worker classes, OTLP/HTTP to plain http://: the thread that fills a span batch "
        "sends it without waiting for the answer, so the export thread stays asleep (docs/pipelines.md)",
        "true, false",
    ),
    Var(
        PREFIX + "NATIVE_ENCODER",
        _bool,
        True,
        "encode the usual ended span with the C extension where it was built at install (same bytes as the "
        "Python encoder, 2-3 times cheaper); false: the Python encoder (docs/pipelines.md)",
        "true, false",
    ),
)

BY_NAME = {var.name: var for var in VARS}


# -- resolved settings -----------------------------------------------------


@dataclass(frozen=True)
class Exporting:
    """Resolved exporter options for one signal; what the exporter factory needs."""

    kind: str  # otlp | console | pretty | none
    protocol: str = "http/protobuf"
    endpoint: str | None = None
    headers: dict = field(default_factory=dict, repr=False)
    timeout: float = 10.0
    compression: str = "none"
    certificate: str | None = None
    client_key: str | None = None
    client_certificate: str | None = None
    insecure: bool | None = None

    def redacted(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "headers"}
        out["headers"] = {k: "<redacted>" for k in self.headers}
        return out


@dataclass(frozen=True)
class BatchOptions:
    """One signal's batching: ``OTEL_BSP_*`` for spans, ``OTEL_BLRP_*`` for log records."""

    schedule_delay: float  # seconds
    max_queue_size: int
    max_export_batch_size: int
    send_ahead: bool = False  # GUNICORN_OTEL_SEND_AHEAD, for spans (``_worker/send_ahead``)


@dataclass(frozen=True)
class MetricOptions:
    """``OTEL_METRIC_EXPORT_INTERVAL`` and ``_TIMEOUT``, in seconds."""

    interval: float
    timeout: float


@dataclass(frozen=True)
class PrometheusOptions:
    """Where the master's one Prometheus endpoint listens, and how often workers feed it."""

    host: str = "localhost"
    port: int = 9464
    interval: float = 1.0  # seconds


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs, resolved from the environment in the master."""

    disabled: bool
    service_name: str | None
    resource_attributes: dict
    traces: Exporting
    metrics: Exporting
    logs: Exporting
    bsp: BatchOptions
    blrp: BatchOptions
    metric: MetricOptions
    sampler: str
    sampler_arg: float
    shutdown_timeout: float
    processor: str
    log_level: str
    self_metrics: bool
    master_telemetry: bool
    wrap_app: bool
    runtime_metrics: bool = True
    gc_freeze: bool = True
    native_encoder: bool = True
    prometheus: PrometheusOptions | None = None  # None: OTEL_METRICS_EXPORTER does not name prometheus

    def service_name_resolved(self) -> str:
        """OTEL_SERVICE_NAME, else service.name in OTEL_RESOURCE_ATTRIBUTES, else one shared default."""
        return self.service_name or self.resource_attributes.get("service.name") or UNKNOWN_SERVICE

    def exporting(self, signal: str) -> Exporting:
        return getattr(self, signal)

    def enabled_signals(self) -> list[str]:
        if self.disabled:
            return []
        return [s for s in SIGNAL_NAMES if self.exporting(s).kind != "none"]


_HTTP_PATHS = {"traces": "v1/traces", "metrics": "v1/metrics", "logs": "v1/logs"}


def _resolve_exporting(values: dict, signal: str, kind: str) -> Exporting:
    """Per-signal value if set, else the general one, else the default."""

    def pick(suffix: str, default: Any = None) -> Any:
        specific = values[f"OTEL_EXPORTER_OTLP_{signal.upper()}_{suffix}"]
        if specific is not None:
            return specific
        general = values[f"OTEL_EXPORTER_OTLP_{suffix}"]
        return general if general is not None else default

    if kind != "otlp":
        return Exporting(kind=kind)
    protocol = pick("PROTOCOL", "http/protobuf")
    specific_endpoint = values[f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"]
    general_endpoint = values["OTEL_EXPORTER_OTLP_ENDPOINT"]
    if specific_endpoint:
        endpoint = specific_endpoint
    elif protocol == "grpc":
        endpoint = general_endpoint or "http://localhost:4317"
    else:
        endpoint = (general_endpoint or "http://localhost:4318").rstrip("/") + "/" + _HTTP_PATHS[signal]
    headers = values[f"OTEL_EXPORTER_OTLP_{signal.upper()}_HEADERS"]
    if headers is None:
        headers = values["OTEL_EXPORTER_OTLP_HEADERS"] or {}
    compression = pick("COMPRESSION", "none")
    if protocol == "grpc" and compression == "deflate":
        raise SettingsError(
            f"OTEL_EXPORTER_OTLP_{signal.upper()}_COMPRESSION / OTEL_EXPORTER_OTLP_COMPRESSION='deflate' "
            "is invalid with protocol grpc: expected gzip or none"
        )
    return Exporting(
        kind=kind,
        protocol=protocol,
        endpoint=endpoint,
        headers=headers,
        timeout=pick("TIMEOUT", 10.0),
        compression=compression,
        certificate=pick("CERTIFICATE"),
        client_key=pick("CLIENT_KEY"),
        client_certificate=pick("CLIENT_CERTIFICATE"),
        insecure=pick("INSECURE"),
    )


def _batch(values: dict, prefix: str) -> BatchOptions:
    queue = values[f"{prefix}_MAX_QUEUE_SIZE"]
    batch = values[f"{prefix}_MAX_EXPORT_BATCH_SIZE"]
    if batch > queue:
        raise SettingsError(
            f"{prefix}_MAX_EXPORT_BATCH_SIZE={batch} is invalid: expected at most {prefix}_MAX_QUEUE_SIZE ({queue})"
        )
    return BatchOptions(
        schedule_delay=values[f"{prefix}_SCHEDULE_DELAY"] / 1000.0, max_queue_size=queue, max_export_batch_size=batch
    )


def module_available(name: str) -> bool:
    """Whether a module could be imported, without importing it (or its parents' heavy deps)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate every variable; raise ``SettingsError`` on the first bad one."""
    env = os.environ if environ is None else environ
    values = {var.name: var.read(env) for var in VARS}
    metrics_exporters = values["OTEL_METRICS_EXPORTER"].split(",")
    push = [n for n in metrics_exporters if n != "prometheus"]
    values["OTEL_METRICS_EXPORTER"] = push[0] if push else "none"
    prometheus = None
    if "prometheus" in metrics_exporters:
        prometheus = PrometheusOptions(
            host=values["OTEL_EXPORTER_PROMETHEUS_HOST"],
            port=values["OTEL_EXPORTER_PROMETHEUS_PORT"],
            interval=values[PREFIX + "PROMETHEUS_INTERVAL"] / 1000.0,
        )
    exporting = {
        signal: _resolve_exporting(values, signal, values[f"OTEL_{signal.upper()}_EXPORTER"]) for signal in SIGNAL_NAMES
    }
    if not values["OTEL_SDK_DISABLED"]:
        for signal, options in exporting.items():
            if options.protocol == "grpc" and not module_available("opentelemetry.exporter.otlp.proto.grpc"):
                raise SettingsError(
                    f"OTLP protocol 'grpc' for {signal} needs the gRPC exporter: "
                    "pip install 'gunicorn-otel[grpc]', or set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
                )
        if prometheus is not None:
            for module in ("prometheus_client", "opentelemetry.exporter.prometheus"):
                if not module_available(module):
                    raise SettingsError(
                        f"OTEL_METRICS_EXPORTER names prometheus, which needs {module}: "
                        "pip install 'gunicorn-otel[prometheus]'"
                    )
    return Settings(
        disabled=values["OTEL_SDK_DISABLED"],
        service_name=values["OTEL_SERVICE_NAME"] or None,
        resource_attributes=values["OTEL_RESOURCE_ATTRIBUTES"],
        traces=exporting["traces"],
        metrics=exporting["metrics"],
        logs=exporting["logs"],
        bsp=dataclasses.replace(_batch(values, "OTEL_BSP"), send_ahead=values[PREFIX + "SEND_AHEAD"]),
        blrp=_batch(values, "OTEL_BLRP"),
        metric=MetricOptions(
            interval=values["OTEL_METRIC_EXPORT_INTERVAL"] / 1000.0,
            timeout=values["OTEL_METRIC_EXPORT_TIMEOUT"] / 1000.0,
        ),
        sampler=values["OTEL_TRACES_SAMPLER"],
        sampler_arg=values["OTEL_TRACES_SAMPLER_ARG"],
        shutdown_timeout=values[PREFIX + "SHUTDOWN_TIMEOUT"],
        processor=values[PREFIX + "PROCESSOR"],
        log_level=values[PREFIX + "LOG_LEVEL"],
        self_metrics=values[PREFIX + "SELF_METRICS"],
        master_telemetry=values[PREFIX + "MASTER_TELEMETRY"],
        wrap_app=values[PREFIX + "WRAP_APP"],
        runtime_metrics=values[PREFIX + "RUNTIME_METRICS"],
        prometheus=prometheus,
        gc_freeze=values[PREFIX + "GC_FREEZE"],
        native_encoder=values[PREFIX + "NATIVE_ENCODER"],
    )


def unknown_plugin_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """``GUNICORN_OTEL_*`` names we don't know: almost always a typo worth a warning."""
    env = os.environ if environ is None else environ
    return sorted(n for n in env if n.startswith(PREFIX) and n not in BY_NAME)


def markdown_table() -> str:
    """The README's variable table, generated from ``VARS`` (a test keeps them equal).

    Per-signal OTLP variables share their general variable's row.
    """

    def default(var: Var) -> str:
        if var.default is None or isinstance(var.default, dict):
            return "—"
        if isinstance(var.default, bool):
            return str(var.default).lower()
        return f"`{var.default}`"

    rows = ["| variable | default | accepted | meaning |", "|---|---|---|---|"]
    for var in VARS:
        per_signal = var.name.startswith("OTEL_EXPORTER_OTLP_") and any(
            f"_{s.upper()}_" in var.name for s in SIGNAL_NAMES
        )
        if per_signal:
            continue
        name = f"`{var.name}`"
        if var.name.startswith("OTEL_EXPORTER_OTLP_"):
            suffix = var.name[len("OTEL_EXPORTER_OTLP_") :]
            name += f" and `OTEL_EXPORTER_OTLP_{{TRACES,METRICS,LOGS}}_{suffix}`"
        rows.append(f"| {name} | {default(var)} | {var.accepted} | {var.doc} |")
    return "\n".join(rows)
