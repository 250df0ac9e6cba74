"""The after-fork registry and the deadline, with a real ``os.fork``."""

from __future__ import annotations

import json
import os
import time

from gunicorn_otel._master import forksafe
from gunicorn_otel._master.deadline import Deadline, run_all


def _in_child(report) -> dict:
    """Fork, run ``report()`` in the child, return what it wrote."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            os.write(write, json.dumps(report()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(data)


def test_child_gets_a_new_generation_its_own_pid_and_the_callbacks():
    calls = []

    def callback():
        calls.append(os.getpid())

    forksafe.register(callback)
    try:
        parent = (forksafe.generation, forksafe.pid())
        seen = _in_child(
            lambda: {"generation": forksafe.generation, "pid": forksafe.pid(), "real_pid": os.getpid(), "calls": calls}
        )
    finally:
        forksafe.unregister(callback)
    assert parent == (forksafe.generation, os.getpid()), "the parent is untouched"
    assert seen["generation"] == parent[0] + 1
    assert seen["pid"] == seen["real_pid"] != parent[1]
    assert seen["calls"] == [seen["real_pid"]], "the callback ran once, in the child"
    assert calls == []


def test_a_failing_callback_costs_neither_the_fork_nor_the_others():
    ran = []

    def broken():
        raise RuntimeError("boom")

    def after():
        ran.append(True)

    forksafe.register(broken)
    forksafe.register(after)
    try:
        seen = _in_child(lambda: {"ran": ran})
    finally:
        forksafe.unregister(broken)
        forksafe.unregister(after)
    assert seen["ran"] == [True]


def test_a_runtime_is_not_inherited_by_a_forked_child():
    from gunicorn_otel._worker import runtime
    from gunicorn_otel.settings import load

    before = runtime._current
    runtime._current = None
    try:
        created = runtime.get_or_create(load({"OTEL_SDK_DISABLED": "true"}))
        assert runtime.current() is created and created._here()
        seen = _in_child(lambda: {"current": runtime.current() is None, "here": created._here()})
        assert seen == {"current": True, "here": False}
        assert runtime.current() is created and created._here()
    finally:
        runtime._current = before


def test_deadline_is_shared_and_run_all_stops_waiting_at_it():
    deadline = Deadline.after(0.3)
    assert 0.0 < deadline.remaining() <= 0.3
    assert deadline.earlier_by(0.3).expired()
    started = time.monotonic()
    done = run_all({"quick": lambda: None, "stuck": lambda: time.sleep(5)}, deadline)
    waited = time.monotonic() - started
    assert done == {"quick": True, "stuck": False}
    # Slack for a busy machine: the bound is 0.3 s, the stuck call would take 5 s.
    assert waited < 3.0
    assert Deadline.after(-1).remaining() == 0.0
