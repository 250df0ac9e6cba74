"""Why a worker booted or exited, with a plain object standing in for the arbiter.

The cause logic reads only a few of ``Arbiter``'s attributes, so each cause is
set up here by giving those attributes the values Gunicorn gives them at that
moment (gunicorn/arbiter.py); the real-process cases are in
tests/test_master_telemetry.py.
"""

from __future__ import annotations

import logging
import types

import pytest

from gunicorn_otel._master.master_telemetry import exit_causes
from gunicorn_otel._master.master_telemetry.recording import MasterTelemetry


def arbiter(*, workers=(), num_workers=2, listening=True, max_requests=0):
    """The arbiter as ``child_exit`` sees it: the exited worker is already out of ``WORKERS``."""
    return types.SimpleNamespace(
        LISTENERS=["a socket"] if listening else [],
        WORKERS={pid: object() for pid in workers},
        num_workers=num_workers,
        cfg=types.SimpleNamespace(max_requests=max_requests),
    )


CASES = [
    # (arbiter, reason, timed_out, retiring, cause)
    pytest.param(arbiter(listening=False), "exit_code_0", False, False, "shutdown", id="shutdown"),
    pytest.param(arbiter(listening=False), "signal_SIGKILL", True, True, "shutdown", id="shutdown-wins"),
    pytest.param(arbiter(workers=[11]), "signal_SIGABRT", True, False, "timeout", id="timeout"),
    pytest.param(arbiter(workers=[11, 12]), "exit_code_0", False, True, "reload", id="reload"),
    # TTOU: num_workers went 2 -> 1, the one left is still there.
    pytest.param(arbiter(workers=[11], num_workers=1), "exit_code_0", False, False, "scale_down", id="scale_down"),
    pytest.param(arbiter(workers=[11], max_requests=3), "exit_code_0", False, False, "max_requests", id="max_requests"),
    pytest.param(arbiter(workers=[11]), "exit_code_0", False, False, "voluntary", id="voluntary"),
    pytest.param(arbiter(workers=[11]), "signal_SIGKILL", False, False, "crash", id="crash-signal"),
    pytest.param(arbiter(workers=[11]), "exit_code_1", False, False, "crash", id="crash-code"),
    pytest.param(arbiter(workers=[11], max_requests=3), "exit_code_1", False, False, "crash", id="crash-max-requests"),
]


@pytest.mark.parametrize(("state", "reason", "timed_out", "retiring", "cause"), CASES)
def test_exit_cause(state, reason, timed_out, retiring, cause):
    assert exit_causes.exit_cause(state, reason=reason, timed_out=timed_out, retiring=retiring) == cause


def test_halting_causes():
    assert exit_causes.halting_cause(3) == "boot_failed"
    assert exit_causes.halting_cause(4) == "app_load_failed"
    assert [exit_causes.halting_cause(c) for c in (0, 1, 2, None, "4")] == [None] * 5


def test_boot_cause():
    assert exit_causes.boot_cause("initial", 5) == "initial"
    assert exit_causes.boot_cause("reload", 0) == "reload"
    assert exit_causes.boot_cause(None, 1) == "replacement"
    assert exit_causes.boot_cause(None, 0) == "scale_up"


def test_parse_record_reads_the_arbiters_own_messages():
    # The format strings gunicorn/arbiter.py logs (reap_workers, murder_workers).
    assert exit_causes.parse_record("Worker (pid:%s) exited with code %s.", (41, 4)) == (
        "status",
        41,
        "exit_code_4",
        4,
    )
    assert exit_causes.parse_record("Worker (pid:%s) was sent %s!", (41, "SIGKILL")) == (
        "status",
        41,
        "signal_SIGKILL",
        None,
    )
    assert exit_causes.parse_record("WORKER TIMEOUT (pid:%s)", (41,)) == ("timeout", 41, None, None)
    assert exit_causes.parse_record("Booting worker with pid: %s", (41,)) is None
    assert exit_causes.parse_record("Worker (pid:%s) exited with code %s.", ()) is None
    assert exit_causes.parse_record("Worker (pid:%s) exited with code %s.", None) is None


class _NoThread:
    """Stands in for the export thread, which these tests do not start: counts wake-ups."""

    def __init__(self, targets, interval, batches):
        self.wakes = 0

    def wake(self):
        self.wakes += 1


def recorder(state):
    settings = types.SimpleNamespace(metric=types.SimpleNamespace(interval=60.0))
    return MasterTelemetry(settings, state, {"logs": object(), "metrics": object()}, sender=_NoThread)


def exits(telemetry):
    _, counters = telemetry.take()
    return {
        dict(attributes)["gunicorn.worker.exit.cause"]: count
        for (event, attributes), count in counters.items()
        if event == "exit"
    }


def boots(telemetry):
    _, counters = telemetry.take()
    return {
        dict(attributes)["gunicorn.worker.boot.cause"]: count
        for (event, attributes), count in counters.items()
        if event == "boot"
    }


def test_recorder_sequence_of_boots_and_exits():
    """Initial boots, a crash and its replacement, a scale-up, a scale-down, a voluntary exit, a reload."""
    state = arbiter(num_workers=2)
    telemetry = recorder(state)
    telemetry.spawning(1)
    telemetry.spawning(2)
    state.WORKERS = {11: 1, 12: 2}

    # A crash: the arbiter logs the status, then calls child_exit; the exit is owed a replacement.
    del state.WORKERS[11]
    telemetry.exit_status(11, "signal_SIGKILL")
    telemetry.exited(11, 1)
    telemetry.spawning(1)
    state.WORKERS[13] = 1

    # TTIN: num_workers 2 -> 3, nothing owed.
    state.num_workers = 3
    telemetry.spawning(3)
    state.WORKERS[14] = 3

    # TTOU: num_workers 3 -> 2; the arbiter kills the oldest, not replaced.
    state.num_workers = 2
    del state.WORKERS[12]
    telemetry.exited(12, 2)

    # A clean exit without max_requests: voluntary, replaced.
    del state.WORKERS[13]
    telemetry.exited(13, 1)
    telemetry.spawning(1)
    state.WORKERS[15] = 1

    # A HUP: both running workers retire, two reload boots.
    telemetry.reloading()
    telemetry.spawning(1)
    telemetry.spawning(2)
    state.WORKERS.update({16: 1, 17: 2})
    for pid in (14, 15):
        del state.WORKERS[pid]
        telemetry.exited(pid, 1)

    assert boots(telemetry) == {"initial": 2, "replacement": 2, "scale_up": 1, "reload": 2}
    assert exits(telemetry) == {"crash": 1, "scale_down": 1, "voluntary": 1, "reload": 2}


def test_recorder_boot_failure_and_app_load_failure_without_child_exit():
    for code, cause in ((3, "boot_failed"), (4, "app_load_failed")):
        telemetry = recorder(arbiter(workers=[11]))
        telemetry.exit_status(21, f"exit_code_{code}", exit_code=code)
        records, _ = telemetry.take()
        assert exits(telemetry) == {cause: 1}
        assert [(r[1], r[2]["gunicorn.worker.exit.cause"], r[2]["process.exit.code"]) for r in records] == [
            ("exit", cause, code)
        ]
        assert telemetry.sender.wakes == 1  # an exit goes out at once


def test_recorder_timeout_from_the_log_then_child_exit():
    state = arbiter(workers=[11])
    telemetry = recorder(state)
    handler = telemetry.arbiter_records
    handler.handle(
        logging.LogRecord("gunicorn.error", logging.CRITICAL, __file__, 1, "WORKER TIMEOUT (pid:%s)", (12,), None)
    )
    handler.handle(
        logging.LogRecord(
            "gunicorn.error", logging.ERROR, __file__, 1, "Worker (pid:%s) was sent %s!", (12, "SIGABRT"), None
        )
    )
    telemetry.exited(12, 2)
    records, counters = telemetry.take()
    assert exits(telemetry) == {"timeout": 1}
    assert counters[("timeout", ())] == 1
    assert [r[2].get("gunicorn.worker.exit.reason") for r in records if r[1] == "exit"] == ["signal_SIGABRT"]
