"""What each Gunicorn hook does, delegated to the process's ``Runtime`` and its model.

``conf.py`` holds one-line hooks that call these functions.  This module is
imported by ``conf.py`` in the master at config-load time, so it imports only
the standard library and our settings; the SDK is imported in the worker, at
the build point of its worker kind (after gevent patching for gevent, whose
tracer provider alone is set in ``post_fork``: ``runtime.claim_tracing``).
"""

from __future__ import annotations

import logging
import signal
import sys

from gunicorn_otel import settings as settings_module
from gunicorn_otel._master import (
    boot_signals,
    distro_defaults,
    forksafe,
    hook_audit,
    identity,
    slots,
    worker_kinds,
    zero_code,
)
from gunicorn_otel._master.deadline import Deadline
from gunicorn_otel.settings import Settings, SettingsError

log = logging.getLogger(__name__)

# Abort path: half of the ~1 s between the master's SIGABRT and its SIGKILL.
ABORT_FLUSH_SECONDS = 0.5


class _State:
    """Process-wide state set by the hooks; inherited by forked workers on purpose."""

    settings: Settings | None = None
    kind: worker_kinds.WorkerKind | None = None
    audited: bool = False
    start_error: str | None = None  # why telemetry could not start in this worker


state = _State()


def loaded_settings() -> Settings | None:
    """The settings ``gunicorn_otel.conf`` loaded in this process (or its master), if it was loaded."""
    return state.settings


def load_settings() -> Settings:
    """Validate in the master at config load; a bad value stops Gunicorn before any fork."""
    try:
        state.settings = settings_module.load()
    except SettingsError as exc:
        raise SystemExit(f"gunicorn-otel: invalid configuration: {exc}{distro_defaults.explain(str(exc))}") from None
    # Also when telemetry is off: the wrapper's providers would otherwise export from every worker.
    zero_code.take_over()
    for name in settings_module.unknown_plugin_variables():
        print(f"gunicorn-otel: warning: unknown variable {name} is ignored", file=sys.stderr)
    return state.settings


def _settings() -> Settings:
    return state.settings if state.settings is not None else load_settings()


def on_starting(server) -> None:
    s = _settings()
    _audit_master(server)
    from gunicorn_otel._master import prometheus

    prometheus.on_starting(server, s)
    graceful = server.cfg.graceful_timeout
    if not s.disabled and s.shutdown_timeout >= graceful:
        server.log.warning(
            "gunicorn-otel: GUNICORN_OTEL_SHUTDOWN_TIMEOUT=%ss is not below graceful_timeout=%ss; "
            "the master may SIGKILL workers before telemetry is flushed",
            s.shutdown_timeout,
            graceful,
        )
    _warm_master(server, s)


def _warm_master(server, s: Settings) -> None:
    """Let a thread or asyncio model import, once here, what each of its workers would (never gevent)."""
    if s.disabled:
        return
    worker_model = worker_kinds.classify(server.worker_class).model
    if worker_model not in worker_kinds.WARM_MASTER:
        return
    model = worker_kinds.pipeline_model(worker_model, s.processor)
    if model not in worker_kinds.WARM_MASTER:
        return
    try:
        from gunicorn_otel._worker import models

        models.get(model).warm_master(s)
    except Exception:  # each worker imports what it needs anyway, and reports failures
        log.debug("gunicorn-otel: warming the master failed", exc_info=True)


def _audit_master(server) -> None:
    """Start-up checks, once, from the first of our master hooks that runs."""
    if state.audited:
        return
    state.audited = True
    s = _settings()
    if s.disabled:
        return
    try:
        zero_code.check_startable(getattr(server.cfg, "worker_class_str", "") or "")
    except zero_code.ZeroCodeError as exc:
        raise SystemExit(f"gunicorn-otel: cannot run correctly: {exc}") from None
    line = zero_code.summary()
    if line:
        server.log.info("%s", line)
    messages = hook_audit.audit(server.cfg) + identity.warnings(s) + distro_defaults.distro_warnings()
    if (
        s.runtime_metrics
        and "metrics" in s.enabled_signals()
        and not settings_module.module_available("opentelemetry.instrumentation.system_metrics")
    ):
        messages.append(
            "GUNICORN_OTEL_RUNTIME_METRICS is on but opentelemetry-instrumentation-system-metrics is not installed: "
            "workers export no process.* metrics. pip install opentelemetry-instrumentation-system-metrics, "
            "or set GUNICORN_OTEL_RUNTIME_METRICS=false"
        )
    for message in messages:
        server.log.warning("gunicorn-otel: %s", message)


def when_ready(server) -> None:
    from gunicorn_otel._master import master_telemetry

    _audit_master(server)
    master_telemetry.when_ready(server, _settings())


def child_exit(server, worker) -> None:
    from gunicorn_otel._master import master_telemetry

    master_telemetry.worker_exited(server, worker)
    from gunicorn_otel._master import prometheus

    prometheus.check()


def on_reload(server) -> None:
    slots.retire_all(server)  # before Arbiter.reload spawns the new workers
    from gunicorn_otel._master import master_telemetry

    master_telemetry.reloading(server)


def on_exit(server) -> None:
    from gunicorn_otel._master import master_telemetry

    # Best effort after the workers are gone: it adds to the time Gunicorn takes to stop.
    master_telemetry.on_exit(min(0.5, _settings().shutdown_timeout))
    from gunicorn_otel._master import prometheus

    prometheus.on_exit()


def pre_fork(server, worker) -> None:
    """Give the worker a stable slot 1..N (``slots``), then count the spawn."""
    slots.assign(server, worker)
    from gunicorn_otel._master import master_telemetry

    master_telemetry.worker_spawning(server, worker)


def post_fork(server, worker) -> None:
    boot_signals.install()
    _adopt_gunicorn_log_handlers(server.log)
    kind = state.kind = worker_kinds.classify(type(worker))
    if kind.model is not None and not _settings().disabled:
        try:
            from gunicorn_otel._worker import models

            models.get(kind.model).prepare(_settings())
        except Exception:  # costs telemetry, never the worker
            logging.getLogger("gunicorn.error").exception(
                "gunicorn-otel: %s set-up failed in worker %s", kind.model, forksafe.pid()
            )
    if kind.build_at == worker_kinds.POST_FORK:
        _start(kind.model or worker_kinds.THREADS, worker)
    elif kind.model is not None:
        _claim_tracing()


def post_worker_init(worker) -> None:
    stop = boot_signals.pending()
    if stop is not None:
        log.info(
            "gunicorn-otel: worker %s got %s while booting; exiting before serving",
            forksafe.pid(),
            signal.Signals(stop).name,
        )
        raise SystemExit(0)
    kind = state.kind or worker_kinds.classify(type(worker))
    if kind.build_at == worker_kinds.POST_WORKER_INIT:
        _start(worker_kinds.model_at_post_worker_init(kind), worker)
    if kind.uvicorn_signals:
        _restore_worker_exit_on_sigterm()
    from gunicorn_otel._worker import runtime

    current = runtime.current()
    running = current is not None and current.started and state.start_error is None
    if running and _settings().wrap_app:
        from gunicorn_otel._worker.app_wrapping import wrap_loaded_app

        wrap_loaded_app(worker)
    if running:
        from gunicorn_otel._worker import wiring

        wiring.install(worker)
    if state.start_error is not None:
        telemetry = f"telemetry failed to start: {state.start_error}"
    elif current is not None and running:
        telemetry = f"{current.processor} processor"
        if current.span_encoder:
            telemetry += f", {current.span_encoder} span encoder"
    else:
        telemetry = "telemetry off"
    log.info("gunicorn-otel: worker %s ready (%s worker, %s)", forksafe.pid(), kind.name, telemetry)


def worker_exit(server, worker) -> None:
    # Arbiter.kill_worker calls this hook in the master when the worker is
    # already gone (ESRCH); only the worker's own process may flush.
    if forksafe.pid() != worker.pid:
        return
    from gunicorn_otel._worker import runtime

    current = runtime.current()
    if current is not None:
        current.shutdown(Deadline.after(_settings().shutdown_timeout))


def worker_abort(worker) -> None:
    """Timeout (SIGABRT): log the stuck stack, end the open request spans, flush (``_worker/timeout.py``)."""
    from gunicorn_otel._worker import timeout

    timeout.record(Deadline.after(min(ABORT_FLUSH_SECONDS, _settings().shutdown_timeout)))


def _start(worker_model: str, worker) -> None:
    """Build this worker's runtime; a failure costs telemetry, never the worker.

    ``worker_model`` does its set-up (gevent: gRPC's ``init_gevent``);
    ``GUNICORN_OTEL_PROCESSOR`` picks whose pipelines are built
    (``worker_kinds.pipeline_model``), by default the same model's.
    """
    s = _settings()
    if s.disabled:
        return
    attributes = {"gunicorn.worker.slot": slots.of(worker) or 0}
    try:
        from gunicorn_otel._worker import models, runtime

        models.get(worker_model).setup(s)
        model = worker_kinds.pipeline_model(worker_model, s.processor)
        runtime.get_or_create(s, model=model, resource_attributes=attributes).start()
    except Exception as exc:
        claimed_by = sys.modules.get("gunicorn_otel._worker.runtime")  # only it can have claimed a provider
        if claimed_by is not None:
            claimed_by.release_claim()
        state.start_error = f"{type(exc).__name__}: {exc}"
        logging.getLogger("gunicorn.error").exception(
            "gunicorn-otel: telemetry could not start in worker %s; serving without it", forksafe.pid()
        )


def _claim_tracing() -> None:
    """A worker that builds after its app is loaded: set its tracer provider now (``runtime.claim_tracing``)."""
    if _settings().disabled:
        return
    try:
        from gunicorn_otel._worker import runtime

        runtime.claim_tracing(_settings())
    except Exception:  # ``_start`` builds one as usual, and reports
        log.debug("gunicorn-otel: early tracer provider failed in worker %s", forksafe.pid(), exc_info=True)


def _adopt_gunicorn_log_handlers(glogger) -> None:
    """Route our messages and the SDK's export warnings to Gunicorn's error log.

    Ours (exit summary, warnings) would otherwise go nowhere: workers configure
    no root handler.  The SDK's ("Failed to export ...") used to reach stderr
    through logging's last-resort handler, but once the log bridge puts a
    handler on the root logger that fallback is gone, and the bridge itself
    must not forward them (a failing export would feed itself).
    """
    error_log = getattr(glogger, "error_log", None)
    if error_log is None:
        return
    for name, level in (
        ("gunicorn_otel", logging.INFO),
        ("fastapi_otel", logging.INFO),
        ("opentelemetry", logging.WARNING),
    ):
        target = logging.getLogger(name)
        if target.handlers:
            continue
        for handler in error_log.handlers:
            target.addHandler(handler)
        target.setLevel(level)
        target.propagate = False


def _restore_worker_exit_on_sigterm() -> None:
    """Make uvicorn's worker return normally on SIGTERM, so ``worker_exit`` runs.

    ``UvicornWorker.init_signals`` leaves SIGTERM at SIG_DFL; uvicorn saves the
    handler it finds, serves, then re-raises the captured signal with that
    handler.  With SIG_DFL the process dies by the signal and neither
    ``worker_exit`` nor atexit runs.  A handler that returns lets ``run()``
    return and Gunicorn's normal exit path (``sys.exit(0)``, ``worker_exit``)
    run.  This must run in ``post_worker_init``, after ``init_signals``.
    """
    signal.signal(signal.SIGTERM, _ignore_signal)


def _ignore_signal(signum, frame) -> None:
    """Pass-through: uvicorn has already handled the shutdown this signal asked for."""
