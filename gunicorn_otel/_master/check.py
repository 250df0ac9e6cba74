"""``gunicorn-otel check``: explain the configuration before Gunicorn runs it.

An on-call engineer's first questions are "what will it do, where does it send,
and is anything set up in a way known to fail?".  This answers them from the
same settings declarations the workers use, with secrets redacted, and exits
0 (fine), 1 (warnings) or 2 (errors) so it can gate a deploy.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import urllib.parse

from gunicorn_otel import settings as settings_module
from gunicorn_otel._master import check_probes, worker_kinds

OK, WARN, ERROR = 0, 1, 2


def _reachable(endpoint: str, timeout: float) -> tuple[bool, str]:
    parsed = urllib.parse.urlsplit(endpoint)
    host = parsed.hostname or "localhost"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"{host}:{port} accepts connections"
    except OSError as exc:
        return False, f"{host}:{port} does not accept connections ({exc.strerror or exc})"


def _gunicorn_option(args: list[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def _master_side_setup() -> list[str]:
    """Signs that something configures OpenTelemetry in the master, before fork."""
    found: list[str] = []
    if check_probes.zero_code_module_loaded():
        return found  # opentelemetry-instrument: gunicorn-otel takes it over (see the note)
    pythonpath = os.environ.get("PYTHONPATH", "")
    if "auto_instrumentation" in pythonpath:
        found.append(
            "PYTHONPATH contains opentelemetry-instrument's sitecustomize: it configures providers in the master"
        )
    spec = importlib.util.find_spec("sitecustomize")
    if spec and spec.origin and os.path.isfile(spec.origin):
        with open(spec.origin, encoding="utf-8", errors="replace") as f:
            if "opentelemetry" in f.read():
                found.append(
                    f"{spec.origin} mentions opentelemetry: providers set up there are inherited by every worker"
                )
    try:
        from opentelemetry import trace

        if type(trace.get_tracer_provider()).__name__ != "ProxyTracerProvider":
            found.append("a global TracerProvider is already set in this process before any worker forks")
    except ImportError:
        pass
    return found


PROBE_TIMEOUT = 60.0


def build_pipeline_in_child(timeout: float = PROBE_TIMEOUT) -> dict:
    """Build a worker's pipeline in a child process (``_worker/build_probe.py``); its report.

    A child, because building imports the SDK, exporters and their transports,
    and sets global providers: none of that may happen in this process, which
    may be a Gunicorn master's environment being checked, and the child leaves
    with ``os._exit`` so nothing is exported.
    """
    command = [sys.executable, "-m", "gunicorn_otel._worker.build_probe"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"building the pipeline took more than {timeout:g}s"}
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return {"ok": False, "error": f"the build probe exited with {done.returncode}: {tail or 'no output'}"}


def run(gunicorn_args: list[str], *, connect_timeout: float = 1.0, build: bool = True) -> dict:
    report: dict = {
        "status": OK,
        "errors": [],
        "warnings": [],
        "notes": [],
        "settings": {},
        "workers": {},
        "endpoints": {},
        "pipeline": {},
    }

    def warn(message: str) -> None:
        report["warnings"].append(message)
        report["status"] = max(report["status"], WARN)

    def error(message: str) -> None:
        report["errors"].append(message)
        report["status"] = ERROR

    try:
        s = settings_module.load()
    except settings_module.SettingsError as exc:
        report["errors"].append(str(exc))
        report["status"] = ERROR
        return report

    report["settings"] = {
        "disabled": s.disabled,
        "service_name": s.service_name_resolved(),
        "service_name_set": s.service_name_resolved() != settings_module.UNKNOWN_SERVICE,
        "shutdown_timeout": s.shutdown_timeout,
        "processor": s.processor,
        "signals": {sig: s.exporting(sig).redacted() for sig in settings_module.SIGNAL_NAMES},
        "prometheus": None
        if s.prometheus is None
        else {"host": s.prometheus.host, "port": s.prometheus.port, "interval": s.prometheus.interval},
    }
    if s.prometheus is not None and not s.disabled:
        problem = _prometheus_port_problem(s.prometheus.host, s.prometheus.port)
        if problem:
            report["errors"].append(problem)
            report["status"] = ERROR
    for name in settings_module.unknown_plugin_variables():
        warn(f"unknown variable {name} is ignored (a typo?)")

    for cls, kind in worker_kinds.table().items():
        report["workers"][kind.name] = {
            "class": cls,
            "built_in": kind.build_at,
            "processor": worker_kinds.describe(kind, s.processor),
        }

    if build and not s.disabled:
        report["pipeline"] = build_pipeline_in_child()
        if not report["pipeline"]["ok"]:
            error(f"telemetry cannot start in a worker: {report['pipeline']['error']}")

    for sig in s.enabled_signals():
        options = s.exporting(sig)
        if options.kind != "otlp" or options.endpoint is None:
            continue
        ok, detail = _reachable(options.endpoint, connect_timeout)
        report["endpoints"][sig] = {"endpoint": options.endpoint, "reachable": ok, "detail": detail}
        if not ok:
            warn(f"{sig}: collector {options.endpoint}: {detail}")

    env_args = os.environ.get("GUNICORN_CMD_ARGS", "").split()
    args = env_args + list(gunicorn_args)
    graceful = float(_gunicorn_option(args, "--graceful-timeout") or 30)
    if not s.disabled and s.shutdown_timeout >= graceful:
        warn(
            f"GUNICORN_OTEL_SHUTDOWN_TIMEOUT={s.shutdown_timeout:g}s is not below graceful_timeout={graceful:g}s: "
            "workers may be killed before telemetry is flushed"
        )
    uses_grpc = any(s.exporting(sig).protocol == "grpc" for sig in s.enabled_signals())
    if "--preload" in args and uses_grpc:
        warn(
            "--preload with OTLP over gRPC: an app that creates gRPC objects at import does so in the master before fork"
        )
    if os.environ.get("FASTAPI_OTEL_AUTO_CONFIGURE", "").strip().lower() == "true":
        warn(
            "FASTAPI_OTEL_AUTO_CONFIGURE=true makes FastAPI attach a second exporter; fastapi_otel disables it, unset it"
        )
    for finding in _master_side_setup():
        warn(finding)
    worker_class = _gunicorn_option(args, "-k", "--worker-class") or "sync"
    probes = (lambda: check_probes.wrapper(worker_class), lambda: check_probes.gunicorn_config(list(gunicorn_args)))
    for probe in probes:
        notes, warnings, errors = probe()
        report["notes"] += notes
        for message in warnings:
            warn(message)
        if errors:
            report["errors"] += errors
            report["status"] = ERROR
    return report


def _prometheus_port_problem(host: str, port: int) -> str | None:
    """What Gunicorn would stop with at start, found by binding the port the same way."""
    from gunicorn_otel._master import prometheus

    try:
        prometheus.bind(host, port).close()
    except SystemExit as exc:
        return str(exc)
    return None


def _print_human(report: dict) -> None:
    out = sys.stdout
    for error in report["errors"]:
        print(f"ERROR: {error}", file=out)
    if report["settings"]:
        s = report["settings"]
        print(f"service.name: {s['service_name']}{'' if s.get('service_name_set', True) else ' (not set)'}", file=out)
        print(
            f"telemetry: {'DISABLED' if s['disabled'] else 'enabled'}; shutdown bound {s['shutdown_timeout']:g}s",
            file=out,
        )
        for sig, options in s["signals"].items():
            if options["kind"] == "otlp":
                headers = ", ".join(options["headers"]) or "none"
                print(
                    f"  {sig}: otlp {options['protocol']} -> {options['endpoint']} "
                    f"(timeout {options['timeout']:g}s, compression {options['compression']}, headers: {headers})",
                    file=out,
                )
            else:
                print(f"  {sig}: {options['kind']}", file=out)
        if s.get("prometheus"):
            p = s["prometheus"]
            print(
                f"  prometheus: one endpoint per master on http://{p['host']}:{p['port']}/metrics "
                f"(workers write every {p['interval']:g}s)",
                file=out,
            )
        print("worker classes:", file=out)
        for name, info in report["workers"].items():
            print(f"  {name:8} built in {info['built_in']:16} processor: {info['processor']}", file=out)
        if report["pipeline"].get("ok"):
            print(f"pipeline: built in a child process ({', '.join(report['pipeline']['signals'])})", file=out)
            if "span_encoder" in report["pipeline"]:
                print(f"span encoder: {report['pipeline']['span_encoder']}", file=out)
        for sig, info in report["endpoints"].items():
            print(f"endpoint {sig}: {info['detail']}", file=out)
    for note in report.get("notes", []):
        print(f"note: {note}", file=out)
    for warning in report["warnings"]:
        print(f"WARNING: {warning}", file=out)
    print({OK: "OK", WARN: "WARNINGS", ERROR: "ERRORS"}[report["status"]], file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gunicorn-otel", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate settings, show the plan, probe collectors, warn about traps")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument("--connect-timeout", type=float, default=1.0)
    check.add_argument(
        "gunicorn_args", nargs=argparse.REMAINDER, help="the Gunicorn arguments you will run with (after --)"
    )
    ns = parser.parse_args(argv)
    gunicorn_args = [a for a in ns.gunicorn_args if a != "--"]
    report = run(gunicorn_args, connect_timeout=ns.connect_timeout)
    if ns.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_human(report)
    return report["status"]
