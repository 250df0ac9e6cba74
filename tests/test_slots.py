"""gunicorn.worker.slot stays within 1..N, through a HUP reload too."""

from __future__ import annotations

import signal
import time

import pytest

from tests.conftest import otel_env
from tests.support.gunicorn_process import pid_alive

pytestmark = pytest.mark.slow  # real Gunicorn processes


def test_hup_reload_keeps_slots_within_1_to_n(receiver, gunicorn):
    proc = gunicorn("wsgi_app:app", worker_class="sync", workers=2, env=otel_env(receiver.endpoint))
    old = set(proc.worker_pids())
    proc.signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (any(pid_alive(p) for p in old) or len(proc.live_worker_pids()) < 2):
        time.sleep(0.05)
    assert not any(pid_alive(p) for p in old) and len(proc.live_worker_pids()) == 2, proc.log_tail()
    new = set(proc.live_worker_pids())
    for pid in new:
        proc.wait_for_log(rf"gunicorn-otel: worker {pid} ready", timeout=15)
    assert proc.get("/")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    # Every worker's last metric export (at its exit) carries its resource.
    slots = {
        m.resource["process.pid"]: m.resource["gunicorn.worker.slot"]
        for m in receiver.metrics()
        if "gunicorn.worker.slot" in m.resource  # not the master's own metrics
    }
    assert set(slots) == old | new, (slots, old, new)
    assert sorted(slots[pid] for pid in old) == [1, 2], slots
    assert sorted(slots[pid] for pid in new) == [1, 2], slots
