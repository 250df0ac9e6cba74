"""What ``gunicorn-otel check`` learns beyond the environment.

* ``wrapper()``: opentelemetry-instrument.  Under the wrapper
  (``opentelemetry-instrument gunicorn-otel check``) the probe sees what its
  sitecustomize built; a plain ``gunicorn-otel check`` sees only what is
  installed (the distro and its defaults, the instrumentations it would load)
  and says what the wrapper would change.
* ``gunicorn_config(args)``: with ``check -- -c myconf.py app:app``, Gunicorn's
  own config loading (hook audit: replaced hooks), then the app's import with
  the foreign-pipeline watch on (providers built at import time).

Each returns ``(notes, warnings, errors)``: lists of sentences.
"""

from __future__ import annotations

import os
import sys

from gunicorn_otel._master import distro_defaults, hook_audit, zero_code
from gunicorn_otel.settings import module_available

Findings = tuple[list[str], list[str], list[str]]


def _entry_point_names(group: str) -> list[str]:
    from importlib.metadata import entry_points

    try:
        return sorted({ep.name for ep in entry_points(group=group)})
    except Exception:  # noqa: BLE001 - broken metadata must not break check
        return []


def wrapper(worker_class: str = "sync") -> Findings:
    notes: list[str] = []
    warnings: list[str] = []
    errors: list[str] = []
    distros = _entry_point_names("opentelemetry_distro")
    instrumentors = _entry_point_names("opentelemetry_instrumentor")
    if zero_code_module_loaded():
        state = _preview()
        notes.append(
            "running under opentelemetry-instrument: at config load gunicorn-otel shuts down the providers its "
            f"configurator built in the master ({', '.join(state['providers']) or 'none'}) and moves its "
            f"instrumentations to each worker's providers ({', '.join(state['instrumentors']) or 'none'})"
        )
        warnings.extend(distro_defaults.distro_warnings())
        problem = zero_code.gevent_problem(worker_class)
        if problem:
            errors.append(problem + "; Gunicorn will refuse to start")
    elif distros:
        notes.append(
            f"opentelemetry-instrument is usable here (distro: {', '.join(distros)}; it would load: "
            f"{', '.join(instrumentors) or 'no instrumentations'}); gunicorn-otel takes over what it sets up. "
            "Run `opentelemetry-instrument gunicorn-otel check` to see it as Gunicorn will"
        )
        if "distro" in distros and not os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL"):
            line = (
                "under opentelemetry-instrument, opentelemetry-distro sets OTEL_EXPORTER_OTLP_PROTOCOL=grpc "
                "(its default)"
            )
            if not module_available("opentelemetry.exporter.otlp.proto.grpc"):
                warnings.append(
                    line + " and the gRPC exporter is not installed, so Gunicorn would stop at start: "
                    "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
                )
            else:
                notes.append(line + "; set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf for an OTLP/HTTP collector")
    return notes, warnings, errors


def zero_code_module_loaded() -> bool:
    return zero_code.wrapper_loaded()


def _preview() -> dict:
    providers = [type(p).__name__ for _, p in zero_code._global_providers() if zero_code._is_sdk(p)]
    names = sorted(zero_code._class_name(i).rsplit(".", 2)[-2] for i in zero_code._active_instrumentors())
    return {"providers": providers, "instrumentors": names}


def gunicorn_config(args: list[str]) -> Findings:
    """Load the config as Gunicorn would; audit hooks; import the app watching for providers."""
    notes: list[str] = []
    warnings: list[str] = []
    errors: list[str] = []
    if not args:
        return notes, warnings, errors
    try:
        app = _load(args)
    except SystemExit as exc:
        errors.append(f"Gunicorn could not load this configuration (exit {exc.code})")
        return notes, warnings, errors
    except Exception as exc:  # noqa: BLE001
        errors.append(f"Gunicorn could not load this configuration: {type(exc).__name__}: {exc}")
        return notes, warnings, errors
    cfg = app.cfg
    if sys.modules.get("gunicorn_otel.conf") is None:
        warnings.append("the Gunicorn config does not load gunicorn_otel.conf: no gunicorn-otel hook will run")
    else:
        warnings.extend(hook_audit.audit(cfg))
    uri = getattr(app, "app_uri", None)
    if uri:
        warnings.extend(_import_app(uri, cfg))
    return notes, warnings, errors


def _load(args: list[str]):
    """Gunicorn's own config loading (``Application.load_config``) for ``args``; an app is optional."""
    from gunicorn.app.base import Application

    class Probe(Application):
        app_uri: str | None = None

        def init(self, parser, opts, args):
            self.app_uri = args[0] if args else None

        def load(self):
            return None

    saved = sys.argv
    sys.argv = ["gunicorn", *args]
    try:
        return Probe("%(prog)s [OPTIONS] [APP_MODULE]", prog="gunicorn")
    finally:
        sys.argv = saved


def _import_app(uri: str, cfg) -> list[str]:
    from gunicorn import util

    from gunicorn_otel._worker import foreign

    found: list[str] = []

    def record(kind: str, cost: str, site: str) -> None:
        found.append(
            f"{uri} builds an OpenTelemetry {kind} at import time ({site}): in each worker (or the master with "
            f"--preload) it competes with gunicorn-otel's and costs {cost}. Reuse the worker's: {foreign._REUSE[kind]}"
        )

    for path in [cfg.chdir, *(cfg.pythonpath.split(",") if cfg.pythonpath else [])]:
        if path and path not in sys.path:
            sys.path.insert(0, path)
    watcher = foreign.Watcher(on_first=record)
    watcher.install()
    try:
        util.import_app(uri)
    except BaseException as exc:  # noqa: BLE001 - an app that fails to import is a finding, not a crash
        return [f"importing {uri} failed: {type(exc).__name__}: {exc}"]
    finally:
        watcher.uninstall()
    return found
