"""The master's own telemetry: boots, exits by reason and cause, timeouts, reloads, worker count.

Real Gunicorn, real OTLP; the master's items carry ``gunicorn.role=master``
and nothing of the master's leaks into workers.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import otel_env
from tests.support.gunicorn_process import pid_alive
from tests.support.receiver import attributes, blackhole

pytestmark = pytest.mark.slow  # real Gunicorn processes

MASTER = "master"
BOOT_CAUSE = "gunicorn.worker.boot.cause"
EXIT_CAUSE = "gunicorn.worker.exit.cause"
EXIT_REASON = "gunicorn.worker.exit.reason"


def fast_env(endpoint, **overrides):
    return otel_env(endpoint, OTEL_METRIC_EXPORT_INTERVAL="1000", **overrides)


def master_metric(receiver, name):
    """The latest export of a master metric (cumulative, so the latest is the total)."""
    found = [m for m in receiver.metrics() if m.name == name and m.resource.get("gunicorn.role") == MASTER]
    return found[-1] if found else None


def counts(receiver, name, attribute):
    """A master counter's current value by one attribute's value; {} before it is exported."""
    metric = master_metric(receiver, name)
    out = {}
    for point in metric.data_points() if metric else []:
        key = attributes(point.attributes).get(attribute)
        out[key] = out.get(key, 0) + point.as_int
    return out


def worker_count(receiver):
    metric = master_metric(receiver, "gunicorn.master.workers")
    return metric.data_points()[0].as_int if metric else None


def master_records(receiver):
    return [r for r in receiver.log_records() if r.resource.get("gunicorn.role") == MASTER]


def test_boots_exits_reloads_and_count(receiver, gunicorn):
    proc = gunicorn("wsgi_app:app", workers=2, env=fast_env(receiver.endpoint))
    assert receiver.wait_for(
        lambda: (
            worker_count(receiver) == 2
            and counts(receiver, "gunicorn.master.worker.boots", BOOT_CAUSE) == {"initial": 2}
        ),
        timeout=15,
    ), (worker_count(receiver), counts(receiver, "gunicorn.master.worker.boots", BOOT_CAUSE))

    victim = proc.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    assert receiver.wait_for(
        lambda: counts(receiver, "gunicorn.master.worker.boots", BOOT_CAUSE).get("replacement") == 1, timeout=15
    )
    killed = [r for r in master_records(receiver) if r.attributes.get("gunicorn.worker.pid") == victim]
    assert [(r.attributes[EXIT_REASON], r.attributes[EXIT_CAUSE]) for r in killed] == [("signal_SIGKILL", "crash")]
    assert killed[0].proto.severity_text == "WARN"

    proc.signal(signal.SIGHUP)

    def reloaded():
        return (
            counts(receiver, "gunicorn.master.reloads", None) == {None: 1}
            and counts(receiver, "gunicorn.master.worker.boots", BOOT_CAUSE).get("reload") == 2
            and counts(receiver, "gunicorn.master.worker.exits", EXIT_CAUSE).get("reload") == 2
            and worker_count(receiver) == 2
        )

    assert receiver.wait_for(reloaded, timeout=20), counts(receiver, "gunicorn.master.worker.exits", EXIT_CAUSE)
    proc.stop(signal.SIGTERM, timeout=30)

    # on_exit's final export carries the exits of the shutdown itself.
    assert counts(receiver, "gunicorn.master.worker.exits", EXIT_CAUSE) == {"crash": 1, "reload": 2, "shutdown": 2}
    assert counts(receiver, "gunicorn.master.worker.exits", EXIT_REASON) == {"signal_SIGKILL": 1, "exit_code_0": 4}
    master_resources = [m.resource for m in receiver.metrics() if m.name.startswith("gunicorn.master.")]
    master_resources += [r.resource for r in receiver.log_records() if r.scope == "gunicorn_otel.master"]
    assert master_resources and all(
        r.get("gunicorn.role") == MASTER
        and r.get("process.pid") == proc.master_pid
        and r.get("service.name") == "test-service"
        for r in master_resources
    ), "only the master exports master telemetry; no worker inherited and re-sent it"
    worker_items = [*receiver.spans(), *receiver.log_records(), *receiver.metrics()]
    worker_items = [i for i in worker_items if i.resource.get("process.pid") != proc.master_pid]
    assert worker_items and all(i.resource.get("gunicorn.role") != MASTER for i in worker_items)


def test_max_requests_recycling_is_counted(receiver, gunicorn):
    args = ("--max-requests", "3", "--max-requests-jitter", "0")
    proc = gunicorn("wsgi_app:app", workers=1, args=args, env=fast_env(receiver.endpoint))
    for _ in range(7):  # the readiness probe was request 1: recycles after requests 3 and 6
        assert proc.get("/")[0] == 200
    assert receiver.wait_for(
        lambda: (
            counts(receiver, "gunicorn.master.worker.exits", EXIT_CAUSE).get("max_requests") == 2
            and counts(receiver, "gunicorn.master.worker.boots", BOOT_CAUSE).get("replacement") == 2
        ),
        timeout=15,
    ), (counts(receiver, "gunicorn.master.worker.exits", EXIT_CAUSE), proc.log_tail())
    proc.stop(signal.SIGTERM, timeout=30)


def test_worker_timeout_is_counted(receiver, gunicorn):
    proc = gunicorn("wsgi_app:app", workers=1, args=("--timeout", "2"), env=fast_env(receiver.endpoint))
    try:
        proc.get("/sleep?s=6", timeout=10)
    except OSError:
        pass  # the worker may be killed before it answers
    assert receiver.wait_for(
        lambda: (
            counts(receiver, "gunicorn.master.worker.timeouts", None) == {None: 1}
            and counts(receiver, "gunicorn.master.worker.exits", EXIT_CAUSE).get("timeout") == 1
            and counts(receiver, "gunicorn.master.worker.boots", BOOT_CAUSE).get("replacement") == 1
        ),
        timeout=20,
    ), (counts(receiver, "gunicorn.master.worker.exits", EXIT_CAUSE), proc.log_tail())
    assert any(r.proto.event_name == "gunicorn.worker.timeout" for r in master_records(receiver))
    proc.stop(signal.SIGTERM, timeout=30)


def test_boot_failure_is_recorded_before_the_master_halts(receiver, gunicorn):
    proc = gunicorn("no_such_module:app", workers=1, env=fast_env(receiver.endpoint), start=False)
    returncode, _ = proc.run_to_exit(timeout=30)
    assert returncode == 3  # Gunicorn 27 reports an app that cannot be imported as a boot failure
    failed = [r for r in master_records(receiver) if r.attributes.get(EXIT_CAUSE) == "boot_failed"]
    assert len(failed) == 1 and failed[0].attributes["process.exit.code"] == 3


def wait_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if pid_alive(p)]}"
        time.sleep(0.02)


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_workers_inherit_no_threads_and_opt_out_works(receiver, gunicorn):
    threads, masters = {}, {}
    for enabled in ("true", "false"):
        env = fast_env(receiver.endpoint, GUNICORN_OTEL_MASTER_TELEMETRY=enabled)
        proc = gunicorn("wsgi_app:app", workers=1, env=env)
        threads[enabled] = _threads(proc.worker_pids()[0])
        masters[enabled] = proc.master_pid
        assert receiver.wait_for(  # the worker's own metrics arrive either way
            lambda proc=proc: any(m.resource.get("process.pid") == proc.worker_pids()[0] for m in receiver.metrics()),
            timeout=15,
        )
        proc.stop(signal.SIGTERM, timeout=30)
    assert threads["true"] == threads["false"], threads
    exporting_masters = {
        m.resource.get("process.pid") for m in receiver.metrics() if m.resource.get("gunicorn.role") == MASTER
    }
    assert exporting_masters == {masters["true"]}


def test_black_hole_collector_does_not_slow_the_master(gunicorn):
    with blackhole() as hole:
        env = fast_env(hole.endpoint, GUNICORN_OTEL_SHUTDOWN_TIMEOUT="2")
        proc = gunicorn("wsgi_app:app", workers=2, env=env)
        victim = proc.worker_pids()[0]
        started = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        proc.wait_for_new_worker(known=2, timeout=10)
        assert time.monotonic() - started < 2.0, "the arbiter must replace workers without waiting on exports"
        old = proc.live_worker_pids()
        proc.signal(signal.SIGHUP)
        wait_gone(old, timeout=10)  # a reload lasts as long as the old workers' (bounded) flush
        proc.wait_for_log(rf"gunicorn-otel: worker {proc.worker_pids()[-1]} ready", timeout=15)
        result = proc.stop(signal.SIGTERM, timeout=30)
    # Workers flush for at most 2 s each (in parallel), the master's last export waits 0.5 s.
    assert result.elapsed < 2.0 + 0.5 + 1.5, result.elapsed
