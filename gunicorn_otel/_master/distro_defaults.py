"""What opentelemetry-distro set in this process, so errors and warnings can say so.

The distro's ``configure()`` (``opentelemetry/distro/__init__.py``) calls
``os.environ.setdefault`` for ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER=otlp`` and
``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` inside the Gunicorn process, before our
config loads: by then ``os.environ`` cannot tell a user's value from the
distro's.  ``/proc/<pid>/environ`` still holds the environment the process was
started with (``setenv`` never rewrites that block), so a variable present now
and absent there was set in-process.
"""

from __future__ import annotations

import os
import sys


def _exec_environ() -> dict[str, str] | None:
    """The environment this process was started with (Linux), before any setdefault."""
    try:
        with open(f"/proc/{os.getpid()}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def distro_defaults() -> dict[str, str]:
    """Variables opentelemetry-distro set in this process (not set by the user)."""
    if "opentelemetry.distro" not in sys.modules:
        return {}
    started_with = _exec_environ()
    names = ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER")
    if started_with is None:
        # Without /proc we cannot tell; the distro's known default is the likely cause.
        return {n: os.environ[n] for n in names[:1] if os.environ.get(n) == "grpc"}
    return {n: os.environ[n] for n in names if n in os.environ and n not in started_with}


def explain(message: str) -> str:
    """Extra words for a settings error that opentelemetry-distro's defaults caused."""
    chosen = distro_defaults()
    protocol = chosen.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and "grpc" in message:
        return (
            f". OTEL_EXPORTER_OTLP_PROTOCOL={protocol} was not set by you: opentelemetry-distro sets it by default "
            "(opentelemetry/distro/__init__.py). Set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf before "
            "opentelemetry-instrument, or install the gRPC exporter"
        )
    return ""


def distro_warnings() -> list[str]:
    """Start-up warnings for distro defaults that silently change where telemetry goes."""
    protocol = distro_defaults().get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if not protocol:
        return []
    return [
        f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} was set by opentelemetry-distro (its default), not by your "
        "environment; workers export with it. If your collector listens for OTLP/HTTP (port 4318), set "
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
    ]
