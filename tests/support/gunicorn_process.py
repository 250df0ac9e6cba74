"""Run real Gunicorn the way a user does, and always stop it.

Every wait has a deadline; every process started here is killed by pid when the
test ends, whatever happened, so a hung worker can't outlive a test run.
"""

from __future__ import annotations

import http.client
import os
import pathlib
import re
import signal as signals
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "apps"

_BOOT = re.compile(r"Booting worker with pid: (\d+)")
_FLUSHED = re.compile(r"gunicorn-otel: pid \d+ flushed in ([\d.]+)s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signals.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return not pid_alive(pid)


@dataclass
class StopResult:
    returncode: int
    elapsed: float


class GunicornProcess:
    def __init__(
        self,
        app: str,
        *,
        worker_class: str = "sync",
        workers: int = 1,
        config: str | None = "python:gunicorn_otel.conf",
        args=(),
        env: dict | None = None,
        log_path: pathlib.Path,
        ready_path: str = "/health",
        ready_log: str | None = None,
    ) -> None:
        self.app = app
        self.worker_class = worker_class
        self.workers = workers
        self.config = config
        self.args = list(args)
        self.log_path = pathlib.Path(log_path)
        self.ready_path = ready_path
        # With our config, each worker logs this from post_worker_init, right
        # before it serves; waiting for it closes a start-up race in which a
        # signal sent to a still-booting worker is lost (TornadoWorker.run
        # sets alive=True after its signal handlers are installed).
        if ready_log is None and config and "gunicorn_otel" in config:
            ready_log = r"gunicorn-otel: worker \d+ ready"
        self.ready_log = re.compile(ready_log) if ready_log else None
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), str(APPS), self.env.get("PYTHONPATH", "")) if p)
        self.popen: subprocess.Popen | None = None
        self._log_file = None
        self._known_pids: set[int] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def master_pid(self) -> int:
        return self.popen.pid

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "-b",
            f"127.0.0.1:{self.port}",
            "-k",
            self.worker_class,
            "-w",
            str(self.workers),
        ]
        if self.config:
            cmd += ["-c", self.config]
        return cmd + self.args + [self.app]

    def _spawn(self) -> None:
        self._log_file = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            self.command(),
            cwd=str(ROOT),
            env=self.env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self._known_pids.add(self.popen.pid)

    def start(self, ready_timeout: float = 30) -> GunicornProcess:
        self._spawn()
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AssertionError(f"gunicorn exited early with {self.popen.returncode}:\n{self.log_tail()}")
            booted = len(self.worker_pids()) >= self.workers
            if booted and self.ready_log is not None:
                booted = len(self.ready_log.findall(self.log_text())) >= self.workers
            if booted:
                try:
                    if self.get(self.ready_path, timeout=2)[0] < 500:
                        return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"gunicorn not ready after {ready_timeout}s:\n{self.log_tail()}")

    def run_to_exit(self, timeout: float = 30) -> tuple[int, str]:
        """For runs expected to stop by themselves (bad configuration)."""
        self._spawn()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"gunicorn still running after {timeout}s:\n{self.log_tail()}") from None
        return self.popen.returncode, self.log_text()

    def worker_pids(self) -> list[int]:
        pids = [int(m) for m in _BOOT.findall(self.log_text())]
        self._known_pids.update(pids)
        return pids

    def wait_for_new_worker(self, known: int, timeout: float) -> int:
        """The pid of the worker booted after the first ``known`` ones, once its boot is logged."""
        deadline = time.monotonic() + timeout
        while len(pids := self.worker_pids()) <= known:
            if time.monotonic() >= deadline:
                raise AssertionError(f"no worker booted after the first {known} in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.02)
        return pids[known]

    def flush_times(self) -> list[float]:
        """Each worker's exit flush, in seconds, as the worker logged it."""
        return [float(t) for t in _FLUSHED.findall(self.log_text())]

    def live_worker_pids(self) -> list[int]:
        return [pid for pid in self.worker_pids() if pid_alive(pid)]

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def signal(self, sig: int) -> None:
        os.kill(self.master_pid, sig)

    def stop(self, sig: int = signals.SIGTERM, timeout: float = 40) -> StopResult:
        self.worker_pids()
        started = time.monotonic()
        os.kill(self.master_pid, sig)
        try:
            returncode = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise AssertionError(f"gunicorn did not stop within {timeout}s:\n{self.log_tail()}") from None
        elapsed = time.monotonic() - started
        for pid in self._known_pids:
            _wait_gone(pid, 5)
        return StopResult(returncode, elapsed)

    def kill_all(self) -> None:
        self.worker_pids()
        for pid in self._known_pids:
            _kill(pid)
        if self.popen is not None:
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for pid in self._known_pids:
            _wait_gone(pid, 5)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, pattern: str, timeout: float = 20) -> re.Match:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = regex.search(self.log_text())
            if match:
                return match
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not in the log after {timeout}s:\n{self.log_tail()}")

    def __enter__(self) -> GunicornProcess:
        return self

    def __exit__(self, *exc) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.kill_all()
        else:
            for pid in set(self.worker_pids()) | self._known_pids:
                _kill(pid)
        if self._log_file is not None:
            self._log_file.close()


def load(base_url: str, path: str, *, requests: int, concurrency: int, timeout: float = 30) -> tuple[int, int]:
    """Send ``requests`` GETs over ``concurrency`` keep-alive connections; (ok, errors)."""
    host, port = base_url.rsplit("//", 1)[1].split(":")
    counts = {"ok": 0, "err": 0}
    lock = threading.Lock()
    remaining = [requests]
    deadline = time.monotonic() + timeout

    def take() -> bool:
        with lock:
            if remaining[0] <= 0 or time.monotonic() > deadline:
                return False
            remaining[0] -= 1
            return True

    def client() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        while take():
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
            with lock:
                counts["ok" if ok else "err"] += 1
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 1)
    return counts["ok"], counts["err"]
