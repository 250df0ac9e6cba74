"""A request that blocks its worker past --timeout leaves its span, on every worker class.

Gunicorn's master SIGABRTs the worker, then SIGKILLs it about a second later;
the request spans still open must arrive ended with an error, with the error
log record that carries the stuck stack.
"""

from __future__ import annotations

import http.client
import os
import threading
import time

import pytest

from tests.conftest import otel_env

ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR


def _get_in_background(proc, path: str) -> threading.Thread:
    """Send a request whose answer (or the worker's death) the test does not wait for."""

    def send() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=30)
        try:
            conn.request("GET", path)
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def _wait_for_first_heartbeat(pid: int, timeout: float = 15) -> None:
    """Until the worker has sent Gunicorn's master its first heartbeat.

    The master times a worker out only after that: ``WorkerTmp.notify()`` sets
    the heartbeat file's mtime to ``time.monotonic()``, and until the first call
    it holds the file's creation time, wall-clock seconds, so ``monotonic() -
    last_update()`` stays negative (``gunicorn/workers/workertmp.py``,
    ``Arbiter.murder_workers``).  The tornado worker's first heartbeat is a
    ``PeriodicCallback`` one second after its loop starts, so a request that
    blocks the loop before then is never timed out.  The file is unlinked but
    open in the worker, under ``/proc/PID/fd``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            path = f"/proc/{pid}/fd/{fd}"
            try:
                if "wgunicorn-" in os.readlink(path) and os.stat(path).st_mtime <= time.monotonic() + 1:
                    return
            except OSError:  # an fd closed meanwhile
                continue
        time.sleep(0.05)
    raise AssertionError(f"worker {pid} sent no heartbeat within {timeout}s")


def _span(receiver, name: str, timeout: float = 20):
    assert receiver.wait_for(lambda: any(s.name == name for s in receiver.spans()), timeout=timeout), (
        name,
        [s.name for s in receiver.spans()],
    )
    return next(s for s in receiver.spans() if s.name == name)


def _innermost_frame_is_app(body: str) -> bool:
    frames = [line for line in body.splitlines() if line.lstrip().startswith("File ")]
    return "timed out; request stack" in body and bool(frames) and "stuck_app.py" in frames[-1]


def _assert_timed_out(span) -> None:
    assert span.proto.status.code == ERROR, span.proto
    assert span.attributes["error.type"] == "worker_timeout"


# gthread is not here: its main loop sends the heartbeat on every iteration
# while requests run in its thread pool (``ThreadWorker.run`` in
# ``gunicorn/workers/gthread.py``), so Gunicorn never times out a gthread worker
# for one stuck request.
CLASSES = {
    "sync": ("stuck_app:app", "sync", ()),
    "gevent": ("stuck_app:app", "gevent", ()),
    "tornado": ("stuck_app:app", "tornado", ()),
    "asgi": ("stuck_app:asgi_app", "asgi", ("--asgi-loop", "asyncio")),
    "uvicorn": ("stuck_app:asgi_app", "uvicorn_worker.UvicornWorker", ()),
}
CONCURRENT = ("gevent", "asgi", "uvicorn")


@pytest.mark.parametrize("name", list(CLASSES))
def test_timed_out_request_span_arrives_with_error(receiver, gunicorn, name):
    app, worker_class, extra = CLASSES[name]
    env = otel_env(receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="60000", OTEL_BLRP_SCHEDULE_DELAY="60000")
    proc = gunicorn(app, worker_class=worker_class, workers=1, env=env, args=("--timeout", "3", *extra))
    victim = proc.worker_pids()[0]
    _wait_for_first_heartbeat(victim)
    if name in CONCURRENT:
        _get_in_background(proc, "/slow?s=6")
    _get_in_background(proc, "/stuck?s=60&after_slow=" + ("1" if name in CONCURRENT else "0"))
    proc.wait_for_log(rf"WORKER TIMEOUT \(pid:{victim}\)", timeout=20)

    stuck = _span(receiver, "GET /stuck")
    _assert_timed_out(stuck)
    inner = _span(receiver, "blocking-call")
    _assert_timed_out(inner)
    events = {e.name: e for e in inner.proto.events}
    assert "exception" in events, inner.proto
    # The error record with the stuck stack, whose innermost frame is the app's blocking line.
    assert receiver.wait_for(
        lambda: any(_innermost_frame_is_app(r.body) for r in receiver.log_records()), timeout=10
    ), [r.body for r in receiver.log_records()]
    if name in CONCURRENT:
        slow = _span(receiver, "GET /slow", timeout=20)
        if name == "gevent":
            # The gevent worker survives the abort: the other request finishes normally.
            assert slow.proto.status.code != ERROR, slow.proto
        else:
            _assert_timed_out(slow)
