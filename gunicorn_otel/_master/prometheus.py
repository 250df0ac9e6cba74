"""The master's part of the Prometheus endpoint: bind the port, run the serving process, stop it.

Master-safe: the standard library and our settings only, and no thread of
its own (master telemetry's existing export thread writes the master's
snapshot through ``write_master_snapshot``).  What runs in the master, all in
the arbiter's thread:

* ``on_starting``: bind ``OTEL_EXPORTER_PROMETHEUS_HOST:PORT`` (a port in use
  stops Gunicorn here, exit code 1, before any worker), make a private
  snapshot directory (mode 0700), and start the serving process with
  ``subprocess`` (``sys.executable -m gunicorn_otel._prometheus``), handing it
  the listening socket.  ``subprocess`` forks and execs at once, so the
  serving process carries none of the master's state, and the master has no
  thread whose lock a worker could inherit.  It waits (up to 15 s) for the
  process to say it serves: one that cannot start stops Gunicorn here too.
* the master keeps its copy of the listening socket, so a serving process
  that dies is replaced on the same socket and the port is never free for
  someone else to take.  It notices a death at the SIGCHLD it causes
  (``Arbiter.handle_chld`` is wrapped to look first, before gunicorn's
  ``waitpid(-1)`` reaps it as an unknown child) and at the next worker event.
* ``on_exit``: stop the serving process (SIGTERM, then SIGKILL after 1 s) and
  remove the directory.
* in every forked child (``forksafe``): close the inherited socket (the
  directory path stays: workers write their snapshots there).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from gunicorn_otel._master import forksafe

log = logging.getLogger(__name__)

# A serving process that dies this often within the window is not restarted again.
_MAX_RESTARTS = 5
_RESTART_WINDOW = 60.0
_STOP_SECONDS = 1.0
# Importing prometheus_client takes ~0.1 s; a loaded machine may need much longer.
_READY_SECONDS = 15.0


class Endpoint:
    """The listening socket, the snapshot directory and the serving process of one master."""

    def __init__(self, options, sock: socket.socket, directory: str, arbiter=None) -> None:
        self.options = options
        self.arbiter = arbiter
        # Gunicorn's logger: ours has no handler in the master.
        self.log = getattr(arbiter, "log", None) or log
        self.pid = forksafe.pid()
        self.sock = sock
        self.directory = directory
        self.process: subprocess.Popen | None = None
        self._deaths: list[float] = []
        self.gave_up = False

    def spawn(self, ready_fd: int | None = None) -> None:
        fd = self.sock.fileno()
        args = [
            sys.executable,
            "-m",
            "gunicorn_otel._prometheus",
            "--fd",
            str(fd),
            "--dir",
            self.directory,
            "--parent",
            str(self.pid),
            "--compact-every",
            str(max(0.2, min(self.options.interval, 5.0))),
        ]
        if ready_fd is not None:
            args += ["--ready-fd", str(ready_fd)]
        # The package as this process imported it, even if only the master's sys.path finds it.
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            args,
            pass_fds=(fd,) if ready_fd is None else (fd, ready_fd),
            stdin=subprocess.DEVNULL,
            close_fds=True,
            env=env,
        )

    def spawn_and_wait(self, timeout: float) -> None:
        """The first start: wait until it serves, so a process that cannot start stops Gunicorn."""
        read_end, write_end = os.pipe()
        try:
            self.spawn(ready_fd=write_end)
            os.close(write_end)
            write_end = -1
            ready, _, _ = select.select([read_end], [], [], timeout)
            said = os.read(read_end, 1) if ready else None
        finally:
            os.close(read_end)
            if write_end != -1:
                os.close(write_end)
        process = self.process
        if said == b"1" or process is None:
            return
        if said is None and process.poll() is None:
            self.log.warning(
                "gunicorn-otel: the Prometheus endpoint process %s is not ready after %gs; going on",
                process.pid,
                timeout,
            )
            return
        try:
            code = process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        self.process = None
        self.sock.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        raise SystemExit(
            f"gunicorn-otel: the Prometheus endpoint process failed to start (exit code {code}); its error is above"
        )

    def check(self) -> None:
        """Restart the serving process if it died; give up (and say so) if it keeps dying."""
        process = self.process
        if process is None or self.gave_up or forksafe.pid() != self.pid:
            return
        code = process.poll()
        if code is None:
            return
        if self.arbiter is not None and not getattr(self.arbiter, "LISTENERS", True):
            return  # Arbiter.stop has begun (it empties LISTENERS): on_exit cleans up, no restart
        # 0 also when gunicorn's waitpid(-1) reaped it first; the process itself never exits 0 while the master lives.
        now = time.monotonic()
        self._deaths = [t for t in self._deaths if now - t < _RESTART_WINDOW] + [now]
        how = (
            f"was killed by {signal.Signals(-code).name}"
            if code < 0
            else f"exited with code {code}"
            if code
            else "has exited"
        )
        if len(self._deaths) > _MAX_RESTARTS:
            self.gave_up = True
            self.process = None
            self.log.error(
                "gunicorn-otel: the Prometheus endpoint process (pid %s) %s, %d times in %ds; "
                "not restarting it: /metrics is down until Gunicorn restarts",
                process.pid,
                how,
                len(self._deaths),
                int(_RESTART_WINDOW),
            )
            return
        self.log.error(
            "gunicorn-otel: the Prometheus endpoint process (pid %s) %s; starting a new one "
            "(counters are kept: they live in the snapshot directory)",
            process.pid,
            how,
        )
        self.spawn()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            # Older Gunicorns reap (and log as a worker "sent SIGTERM!") any child from
            # their SIGCHLD handler; hold SIGCHLD until we have reaped ours ourselves.
            blocked = _in_main_thread() and _block_sigchld()
            try:
                process.terminate()
                try:
                    process.wait(_STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    try:
                        process.wait(_STOP_SECONDS)
                    except subprocess.TimeoutExpired:
                        self.log.warning("gunicorn-otel: the Prometheus endpoint process %s did not stop", process.pid)
            finally:
                if blocked:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        self.sock.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _block_sigchld() -> bool:
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    except (AttributeError, OSError, ValueError):
        return False
    return True


_current: Endpoint | None = None
# gunicorn_otel._prometheus.snapshot (standard library only), imported in on_starting,
# in the arbiter's thread: an import in the export thread could hold the import lock at fork.
_snapshot_module: Any = None
# The directory survives fork on purpose: workers write their snapshots there.
_directory: str | None = None
_interval: float = 1.0


@forksafe.register
def _close_in_child() -> None:
    global _current
    endpoint, _current = _current, None
    if endpoint is not None:
        endpoint.sock.close()


def snapshot_directory() -> str | None:
    """Where this process's workers write snapshots; None when no endpoint runs for them."""
    return _directory


def snapshot_interval() -> float:
    return _interval


def _mine() -> Endpoint | None:
    endpoint = _current
    return endpoint if endpoint is not None and endpoint.pid == forksafe.pid() else None


def bind(host: str, port: int) -> socket.socket:
    """Listen on ``host:port``, or stop Gunicorn with a message that says what to change."""
    where = f"OTEL_EXPORTER_PROMETHEUS_HOST={host} OTEL_EXPORTER_PROMETHEUS_PORT={port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SystemExit(f"gunicorn-otel: Prometheus endpoint {where}: cannot resolve {host!r}: {exc}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT of a previous run; not SO_REUSEPORT
        sock.bind(address)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        in_use = exc.errno == errno.EADDRINUSE
        reason = "the port is already in use (another process listens there)" if in_use else exc.strerror
        raise SystemExit(
            f"gunicorn-otel: cannot serve Prometheus metrics on {host}:{port} ({where}): {reason}; "
            "choose another port or stop the other process"
        ) from None
    return sock


def on_starting(server, settings) -> None:
    """Bind, make the directory, start the serving process.  Runs once, before any worker."""
    global _current, _directory, _interval, _snapshot_module
    options = settings.prometheus
    if settings.disabled or options is None or _mine() is not None:
        return
    from gunicorn_otel._prometheus import snapshot

    _snapshot_module = snapshot
    try:
        sock = bind(options.host, options.port)
    except SystemExit:
        pidfile = getattr(server, "pidfile", None)
        if pidfile is not None:
            pidfile.unlink()  # Gunicorn made it before on_starting and would leave it behind
        raise
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    directory = tempfile.mkdtemp(prefix="gunicorn-otel-prometheus-", dir=base)
    _give_to_workers(server, directory)
    endpoint = Endpoint(options, sock, directory, server)
    try:
        endpoint.spawn_and_wait(_READY_SECONDS)
    except SystemExit:
        pidfile = getattr(server, "pidfile", None)
        if pidfile is not None:
            pidfile.unlink()
        raise
    _current, _directory, _interval = endpoint, directory, options.interval
    _watch_sigchld(server)
    endpoint.log.info(
        "gunicorn-otel: Prometheus endpoint on http://%s:%s/metrics (process %s)",
        options.host,
        options.port,
        endpoint.process.pid if endpoint.process else "?",
    )


def _give_to_workers(server, directory: str) -> None:
    """Workers that run as another user (``--user``/``--group``) must write there too.

    Gunicorn switches a worker's uid after fork (``util.set_owner_process``) and
    chowns the worker's own temporary file the same way; the directory stays 0700.
    """
    cfg = getattr(server, "cfg", None)
    uid, gid = getattr(cfg, "uid", None), getattr(cfg, "gid", None)
    if isinstance(uid, int) and isinstance(gid, int) and (uid, gid) != (os.geteuid(), os.getegid()):
        os.chown(directory, uid, gid)


def _watch_sigchld(server) -> None:
    """Look at our serving process first whenever the arbiter handles SIGCHLD.

    ``Arbiter.run`` looks the handler up by name on the instance
    (gunicorn/arbiter.py, ``getattr(self, "handle_%s" % signame)``), and
    ``reap_workers`` would otherwise reap the serving process as an unknown
    child, leaving us no exit status.  SIGCLD may be the name it uses (an alias).
    """
    original = getattr(server, "handle_chld", None)
    if original is None:
        return

    # Gunicorn 27 calls it from its main loop with no argument; older ones install it as
    # the SIGCHLD handler itself (``handle_chld(sig, frame)``, bound in init_signals, which
    # runs after on_starting, so it is this wrapper that gets bound).
    def handle_chld(*args):
        check()
        return original(*args)

    server.handle_chld = server.handle_cld = handle_chld


def check() -> None:
    """At a worker event or SIGCHLD: restart the serving process if it died."""
    endpoint = _mine()
    if endpoint is not None:
        endpoint.check()


def on_exit() -> None:
    global _current, _directory
    endpoint = _mine()
    if endpoint is not None:
        endpoint.stop()
        _current = _directory = None


# -- the master's own counters on the endpoint ------------------------------------


def _label(key: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in key)


def master_families(counters: dict, names: dict, workers: int, version: str) -> list:
    """Master telemetry in snapshot form, named as opentelemetry-exporter-prometheus names worker metrics.

    ``counters`` maps ``(event, ((attribute, value), ...))`` to a count and
    ``names`` maps an event to its OTel metric name and description
    (``master_telemetry``); the master has no SDK to translate with, and these
    names need only the compatibility rules' two steps: ``.`` to ``_`` and
    ``_total`` on counters (their units are ``{...}`` annotations, which map to
    no suffix).
    """
    scope = {"otel_scope_name": "gunicorn_otel.master", "otel_scope_version": version, "otel_scope_schema_url": ""}
    families = []
    for event, (name, description) in names.items():
        family = _label(name)
        samples = [
            [family + "_total", {**scope, **{_label(k): str(v) for k, v in attributes}}, float(count)]
            for (e, attributes), count in counters.items()
            if e == event
        ]
        if samples:
            families.append([family, "counter", description, "", samples])
    families.append(
        [
            "gunicorn_master_workers",
            "gauge",
            "Worker processes the master has now",
            "",
            [["gunicorn_master_workers", dict(scope), float(workers)]],
        ]
    )
    return families


def write_master_snapshot(families: list) -> None:
    """Replace the master's snapshot (called from master telemetry's export thread: no lock, no import)."""
    directory = _directory
    endpoint = _current
    if directory is None or endpoint is None or endpoint.pid != forksafe.pid():
        return
    snapshot = _snapshot_module
    snapshot.write_atomically(
        directory,
        snapshot.MASTER_FILE,
        snapshot.encode({"id": "master", "pid": endpoint.pid, "slot": None, "role": "master", "families": families}),
    )
