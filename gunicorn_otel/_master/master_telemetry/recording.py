"""What the hooks record, in the arbiter's thread: counters and log records, under a short lock.

Hooks only count and append, under a lock that is never held across I/O;
the causes come from ``exit_causes``, the bodies from ``bodies``, and the
export thread (``sender``) takes what was recorded.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from gunicorn_otel import __version__
from gunicorn_otel._master import forksafe, prometheus
from gunicorn_otel._master.master_telemetry import bodies, exit_causes
from gunicorn_otel._master.master_telemetry.sender import Sender

log = logging.getLogger(__name__)

MAX_RECORDS = 1000


class ArbiterRecords(logging.Handler):
    """Reads exit statuses and timeouts from the arbiter's own ``gunicorn.error`` records."""

    def __init__(self, telemetry: MasterTelemetry) -> None:
        super().__init__(logging.DEBUG)
        self.telemetry = telemetry

    def emit(self, record: logging.LogRecord) -> None:
        if forksafe.pid() != self.telemetry.pid:
            return
        parsed = exit_causes.parse_record(str(record.msg), record.args)
        if parsed is None:
            return
        kind, pid, reason, code = parsed
        if kind == "timeout":
            self.telemetry.timed_out(pid)
        else:
            assert reason is not None
            self.telemetry.exit_status(pid, reason, exit_code=code)


class MasterTelemetry:
    """State for the arbiter's telemetry; every method but ``batches`` runs in the arbiter's thread."""

    def __init__(self, settings: Any, arbiter: Any, targets: dict, sender: Callable[..., Sender] = Sender) -> None:
        self.pid = forksafe.pid()
        self.instance_id = str(uuid.uuid4())
        self.settings = settings
        self.arbiter = arbiter
        self.targets = targets  # signal ("metrics", "logs") -> Exporting, OTLP/HTTP only
        self.prometheus = prometheus.snapshot_directory() is not None  # the master's own Prometheus endpoint
        self.start_ns = time.time_ns()
        self.arbiter_records = ArbiterRecords(self)
        self.sender = sender(targets, settings.metric.interval, self.batches)
        self._lock = threading.Lock()  # counters and records; never held across I/O
        self._counters: collections.Counter = collections.Counter()
        self._records: collections.deque = collections.deque()
        # Arbiter-thread only:
        self._status: dict[int, tuple[str, object]] = {}  # pid -> (reason, exit code)
        self._timed_out: set[int] = set()
        self._retiring: set[int] = set()
        self._spawns = collections.deque(["initial"] * arbiter.num_workers)
        self._owed = 0  # unplanned exits not yet replaced

    def start(self) -> None:
        logging.getLogger("gunicorn.error").addHandler(self.arbiter_records)
        self.sender.start()

    def stop(self, timeout: float) -> None:
        """Final export, waited for at most ``timeout`` s."""
        self.sender.stop(timeout)
        logging.getLogger("gunicorn.error").removeHandler(self.arbiter_records)

    # -- events, in the arbiter's thread ----------------------------------

    def spawning(self, slot: int | None) -> None:
        cause = exit_causes.boot_cause(self._spawns.popleft() if self._spawns else None, self._owed)
        if cause == "replacement":
            self._owed -= 1
        self._event(
            "boot",
            {"gunicorn.worker.boot.cause": cause},
            {"gunicorn.worker.slot": slot},
            f"worker slot {slot} booting ({cause})",
        )

    def exited(self, pid: int, slot: int | None, aborted: bool = False) -> None:
        reason, code = self._status.pop(pid, (exit_causes.CLEAN_EXIT, 0))
        timed_out = aborted or pid in self._timed_out
        self._timed_out.discard(pid)
        cause = exit_causes.exit_cause(self.arbiter, reason=reason, timed_out=timed_out, retiring=pid in self._retiring)
        self._retiring.discard(pid)
        if cause not in exit_causes.NOT_REPLACED:
            self._owed += 1
        self._exit_event(pid, slot, reason, code, cause)

    def exit_status(self, pid: int, reason: str, exit_code: object = None) -> None:
        self._status[pid] = (reason, exit_code)
        cause = exit_causes.halting_cause(exit_code)
        if cause is not None:
            # reap_workers raises HaltServer right after this line: no child_exit.
            self._status.pop(pid)
            self._exit_event(pid, None, reason, exit_code, cause)

    def timed_out(self, pid: int) -> None:
        self._timed_out.add(pid)
        self._event("timeout", {}, {"gunicorn.worker.pid": pid}, f"worker {pid} timed out (SIGABRT sent)")

    def reloading(self) -> None:
        self._retiring = set(self.arbiter.WORKERS)
        # Arbiter.reload spawns cfg.workers new workers right after on_reload.
        self._spawns = collections.deque(["reload"] * self.arbiter.num_workers)
        self._event("reload", {}, {}, "configuration reloaded (HUP); replacing all workers")

    def _exit_event(self, pid: int, slot: int | None, reason: str, code: object, cause: str) -> None:
        details: dict[str, object] = {"gunicorn.worker.pid": pid}
        if slot is not None:
            details["gunicorn.worker.slot"] = slot
        if isinstance(code, int):
            details["process.exit.code"] = code
        where = f"worker {pid}" + (f" (slot {slot})" if slot is not None else "")
        self._event(
            "exit",
            {"gunicorn.worker.exit.reason": reason, "gunicorn.worker.exit.cause": cause},
            details,
            f"{where} exited: {reason}, cause {cause}",
        )

    def _event(self, name: str, counted: dict, details: dict, body: str) -> None:
        """Count ``name`` by ``counted`` attributes; queue one log record with both."""
        stamp = time.time_ns()
        key = (name, tuple(sorted(counted.items())))
        with self._lock:
            self._counters[key] += 1
            if "logs" in self.targets:
                if len(self._records) >= MAX_RECORDS:
                    self._records.popleft()  # a crash loop against a dead collector: keep the latest
                self._records.append((stamp, name, {**counted, **details}, body))
        if name != "boot" or self.prometheus:  # boots are routine for OTLP; they go out with the next batch
            self.sender.wake()

    # -- in the export thread ---------------------------------------------

    def take(self) -> tuple[list, dict]:
        """The records queued since the last call, and the counters' totals."""
        with self._lock:
            records, self._records = list(self._records), collections.deque()
            counters = dict(self._counters)
        return records, counters

    def batches(self) -> list[tuple[str, Callable[[], bytes]]]:
        records, counters = self.take()
        out: list[tuple[str, Callable[[], bytes]]] = []
        if records:
            out.append(("logs", lambda: bodies.logs_body(self, records)))
        out.append(("metrics", lambda: bodies.metrics_body(self, counters)))
        if self.prometheus:
            self._write_prometheus(counters)
        return out

    def _write_prometheus(self, counters: dict) -> None:
        """The master's snapshot for its Prometheus endpoint: a local file, replaced atomically."""
        try:
            prometheus.write_master_snapshot(
                prometheus.master_families(counters, bodies.METRIC_NAMES, len(self.arbiter.WORKERS), __version__)
            )
        except OSError as exc:  # the directory is gone at shutdown, or the disk is full
            log.debug("gunicorn-otel: master snapshot for Prometheus not written: %s", exc)
