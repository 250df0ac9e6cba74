"""Thread and asyncio pipelines at saturation, with real Gunicorn: nothing lost while the
collector answers; requests answered and every drop counted while it does not.

The queue is made small (256 spans, batches of 64) and each request makes 40 spans
and one log record, so a pipeline that cannot keep up overflows within seconds;
``GUNICORN_OTEL_PROCESSOR=batch`` (the SDK's processors) fails the healthy test here.
"""

from __future__ import annotations

import re
import signal

import pytest

from tests.conftest import otel_env
from tests.support.gunicorn_process import load
from tests.support.receiver import blackhole

SPANS = 40
REQUESTS = 600

SUMMARY = re.compile(
    r"gunicorn-otel: pid (\d+) flushed in [\d.]+s[^:]*: "
    r"traces accepted=(\d+) exported=(\d+) dropped=(\d+)(?: \(([^)]*)\))?; "
    r"metrics exported=\d+ dropped=\d+(?: \([^)]*\))?; "
    r"logs accepted=(\d+) exported=(\d+) dropped=(\d+)(?: \(([^)]*)\))?"
)

WORKERS = [
    pytest.param("sync", "wsgi_app:app", (), id="sync"),
    pytest.param("gthread", "wsgi_app:app", ("--threads", "8"), id="gthread"),
    pytest.param("tornado", "wsgi_app:app", (), id="tornado"),
    pytest.param("asgi", "asgi_app:app", (), id="asgi"),
    pytest.param("uvicorn_worker.UvicornWorker", "asgi_app:app", (), id="uvicorn"),
    pytest.param("gevent", "wsgi_app:app", (), id="gevent"),
]


def _reasons(text: str) -> dict:
    return {k: int(v) for k, v in (r.split("=") for r in (text or "").split(", ") if r)}


def summaries(log: str) -> list[dict]:
    out = []
    for pid, t_acc, t_exp, t_drop, t_why, l_acc, l_exp, l_drop, l_why in SUMMARY.findall(log):
        out.append(
            {
                "pid": int(pid),
                "traces": (int(t_acc), int(t_exp), int(t_drop), _reasons(t_why)),
                "logs": (int(l_acc), int(l_exp), int(l_drop), _reasons(l_why)),
            }
        )
    return out


def saturation_env(endpoint: str, **extra: str) -> dict:
    return otel_env(
        endpoint,
        OTEL_BSP_MAX_QUEUE_SIZE="256",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="64",
        OTEL_BLRP_MAX_QUEUE_SIZE="512",
        OTEL_BLRP_MAX_EXPORT_BATCH_SIZE="128",
        OTEL_METRICS_EXPORTER="none",
        **extra,
    )


def drive(proc) -> None:
    """REQUESTS requests, each making SPANS spans, then REQUESTS more each logging once."""
    ok, errors = load(proc.base_url, f"/?spans={SPANS}", requests=REQUESTS, concurrency=8, timeout=60)
    assert (ok, errors) == (REQUESTS, 0)
    ok, errors = load(proc.base_url, "/log?msg=saturation", requests=REQUESTS, concurrency=8, timeout=60)
    assert (ok, errors) == (REQUESTS, 0)


@pytest.mark.parametrize("worker_class, app, args", WORKERS)
def test_nothing_dropped_at_saturation_with_a_healthy_collector(worker_class, app, args, receiver, gunicorn):
    proc = gunicorn(app, worker_class=worker_class, workers=2, args=args, env=saturation_env(receiver.endpoint))
    drive(proc)
    proc.stop(signal.SIGTERM, timeout=40)
    lines = summaries(proc.log_text())
    assert len(lines) == 2, proc.log_tail()
    for line in lines:
        accepted, exported, dropped, _ = line["traces"]
        assert (dropped, exported) == (0, accepted), line
        accepted, exported, dropped, _ = line["logs"]
        assert (dropped, exported) == (0, accepted), line
    work = [s for s in receiver.spans() if s.name == "work"]
    assert len(work) == SPANS * REQUESTS
    pids = {line["pid"] for line in lines}
    # The master exports log records of its own (worker boots and exits): count the workers'.
    spans = [s for s in receiver.spans() if s.resource.get("process.pid") in pids]
    records = [r for r in receiver.log_records() if r.resource.get("process.pid") in pids]
    assert sum(line["traces"][1] for line in lines) == len(spans)
    assert len([r for r in records if r.body == "saturation"]) == REQUESTS
    assert sum(line["logs"][1] for line in lines) == len(records)
    assert "export queue is full" not in proc.log_text()


@pytest.mark.parametrize("worker_class, app, args", WORKERS)
def test_black_hole_collector_costs_no_request_and_every_drop_is_counted(worker_class, app, args, gunicorn):
    with blackhole() as hole:
        env = saturation_env(hole.endpoint, GUNICORN_OTEL_SHUTDOWN_TIMEOUT="2")
        proc = gunicorn(app, worker_class=worker_class, workers=2, args=args, env=env)
        drive(proc)
        proc.stop(signal.SIGTERM, timeout=40)
    log = proc.log_text()
    lines = summaries(log)
    assert len(lines) == 2, proc.log_tail()
    assert sum(line["traces"][0] for line in lines) == SPANS * REQUESTS + REQUESTS  # + /log's span
    for line in lines:
        for signal_name in ("traces", "logs"):
            accepted, exported, dropped, reasons = line[signal_name]
            assert exported == 0 and dropped == accepted, line
            assert sum(reasons.values()) == dropped, line
    assert sum(line["traces"][3].get("queue_full", 0) for line in lines) > 0
    # Said while it happens, rate-limited: far fewer lines than drops.
    notices = log.count("export queue is full")
    assert 1 <= notices <= 16, log


@pytest.mark.parametrize("worker_class, app", [("sync", "wsgi_app:app"), ("asgi", "asgi_app:app")])
def test_spans_no_encoder_can_write_cost_only_themselves_and_one_log_line(worker_class, app, receiver, gunicorn):
    proc = gunicorn(app, worker_class=worker_class, workers=1, env=otel_env(receiver.endpoint))
    assert proc.get("/?spans=3") == (200, b"ok")
    for _ in range(20):
        assert proc.get("/unencodable") == (200, b"ok")
    assert proc.get("/?spans=3") == (200, b"ok")
    proc.stop(signal.SIGTERM, timeout=30)
    assert len([s for s in receiver.spans() if s.name == "work"]) == 6
    log = proc.log_text()
    assert log.count("no encoder could write them") == 1, log  # the first, with its traceback; the rest summed
    assert "traces accepted=26 exported=6 dropped=20 (export_failed=20)" in log, log


@pytest.mark.parametrize("worker_class, app, args", [WORKERS[1], WORKERS[3]])
def test_slow_collector_costs_no_request_and_every_span_is_accounted_for(worker_class, app, args, receiver, gunicorn):
    receiver.set_mode("slow", delay=1.0)
    env = saturation_env(receiver.endpoint, GUNICORN_OTEL_SHUTDOWN_TIMEOUT="2")
    proc = gunicorn(app, worker_class=worker_class, workers=2, args=args, env=env)
    drive(proc)
    proc.stop(signal.SIGTERM, timeout=40)
    lines = summaries(proc.log_text())
    assert len(lines) == 2, proc.log_tail()
    for line in lines:
        accepted, exported, dropped, reasons = line["traces"]
        assert exported + dropped == accepted and sum(reasons.values()) == dropped, line
        assert reasons.get("queue_full", 0) > 0, line  # the queue overflowed: back-pressure was off
    pids = {line["pid"] for line in lines}
    received = len([s for s in receiver.spans() if s.resource.get("process.pid") in pids])
    exported = sum(line["traces"][1] for line in lines)
    # An export still in flight at the exit deadline is abandoned and counted as
    # shutdown_deadline; the slow collector may still store it before the worker is gone.
    abandoned = sum(line["traces"][3].get("shutdown_deadline", 0) for line in lines)
    assert exported <= received <= exported + abandoned
