"""Why a worker booted or exited, from what the arbiter holds at that moment: pure functions.

The arbiter is anything with Gunicorn's ``Arbiter`` attributes read here
(``LISTENERS``, ``WORKERS``, ``num_workers``, ``cfg.max_requests``), so the
logic is tested with a plain object (tests/test_exit_causes.py).

* ``reason`` is the wait status.  ``child_exit`` gets no status, but
  ``Arbiter.reap_workers`` (gunicorn/arbiter.py) logs it on ``gunicorn.error``
  just before calling the hook ("Worker (pid:N) exited with code C", "Worker
  (pid:N) was sent SIG!"); ``parse_record`` reads the record's arguments.  Exit
  code 0 is not logged, and a death by SIGTERM is logged at INFO, so with
  ``--log-level warning`` or higher such a worker reads as ``exit_code_0``.
* ``cause`` is what the arbiter was doing: ``shutdown`` (``Arbiter.stop`` has
  emptied ``LISTENERS``), ``timeout`` (``murder_workers`` set
  ``worker.aborted`` or logged "WORKER TIMEOUT"), ``reload`` (the worker was
  running when ``on_reload`` fired; the arbiter then retires every old
  worker), ``scale_down`` (the arbiter still has ``num_workers`` without it:
  TTOU or a surplus it killed), else ``max_requests`` for a clean exit when
  ``max_requests`` is set, ``voluntary`` for another clean exit, ``crash`` for
  the rest.  A worker that fails to boot (exit code 3 or 4) halts the arbiter
  without ``child_exit``; its cause comes from the exit code
  (``boot_failed``, ``app_load_failed``).
"""

from __future__ import annotations

from typing import Any

# gunicorn/arbiter.py: Arbiter.WORKER_BOOT_ERROR and APP_LOAD_ERROR.
HALTING_EXIT_CODES = {3: "boot_failed", 4: "app_load_failed"}
# Exits the arbiter does not replace with a new worker.
NOT_REPLACED = frozenset({"shutdown", "reload", "scale_down"})
CLEAN_EXIT = "exit_code_0"


def exit_cause(arbiter: Any, *, reason: str, timed_out: bool, retiring: bool) -> str:
    """The cause of a ``child_exit``; ``arbiter.WORKERS`` no longer holds the worker."""
    if not arbiter.LISTENERS:
        return "shutdown"
    if timed_out:
        return "timeout"
    if retiring:
        return "reload"
    if len(arbiter.WORKERS) >= arbiter.num_workers:
        return "scale_down"
    if reason == CLEAN_EXIT:
        return "max_requests" if getattr(arbiter.cfg, "max_requests", 0) else "voluntary"
    return "crash"


def halting_cause(exit_code: object) -> str | None:
    """``boot_failed``/``app_load_failed`` for the exit codes after which the arbiter halts."""
    return HALTING_EXIT_CODES.get(exit_code) if isinstance(exit_code, int) else None


def boot_cause(planned: str | None, owed: int) -> str:
    """Why a worker is forked: a planned boot (``initial``, ``reload``), else a replacement, else ``scale_up``."""
    if planned is not None:
        return planned
    return "replacement" if owed > 0 else "scale_up"


def parse_record(msg: str, args: object) -> tuple[str, int, str | None, object] | None:
    """A ``gunicorn.error`` record as ``("status", pid, reason, exit_code)`` or ``("timeout", pid, None, None)``.

    ``msg`` and ``args`` are the record's unformatted message and arguments,
    as gunicorn/arbiter.py writes them; any other record gives ``None``.
    """
    if not isinstance(args, tuple) or not args:
        return None
    if msg.startswith("Worker (pid:%s) exited with code") and len(args) >= 2:
        return ("status", args[0], f"exit_code_{args[1]}", args[1])
    if msg.startswith("Worker (pid:%s) was sent") and len(args) >= 2:
        return ("status", args[0], f"signal_{args[1]}", None)
    if msg.startswith("WORKER TIMEOUT"):
        return ("timeout", args[0], None, None)
    return None
