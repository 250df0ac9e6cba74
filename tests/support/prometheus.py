"""A real Prometheus server (Debian's ``prometheus`` package) scraping an endpoint under test.

Started on 127.0.0.1 with a scrape config of its own, queried through its HTTP
API, stopped by pid.  A missing binary fails the test loudly (``.ci/run``
installs the package); it never skips.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.support.gunicorn_process import free_port

BINARY = os.environ.get("PROMETHEUS_BINARY", "prometheus")


class PrometheusServer:
    def __init__(self, target: str, tmp: pathlib.Path, *, scrape_interval: str = "1s") -> None:
        binary = shutil.which(BINARY)
        if binary is None:
            pytest.fail(
                f"the Prometheus server binary {BINARY!r} is not installed: "
                "apt-get install -y prometheus (.ci/run does this)",
                pytrace=False,
            )
        self.binary = binary
        self.port = free_port()
        self.tmp = tmp
        self.config = tmp / "prometheus.yml"
        self.config.write_text(
            "global:\n"
            f"  scrape_interval: {scrape_interval}\n"
            f"  scrape_timeout: {scrape_interval}\n"
            "scrape_configs:\n"
            "  - job_name: gunicorn\n"
            "    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        self.log_path = tmp / "prometheus.log"
        self.popen: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> PrometheusServer:
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                pytest.fail(f"prometheus exited with {self.popen.returncode}:\n{self.log_tail()}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"prometheus not ready after {timeout}s:\n{self.log_tail()}", pytrace=False)

    def query(self, expr: str) -> list:
        """An instant query's result vector: ``[(labels, float), ...]``."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return [(item["metric"], float(item["value"][1])) for item in body["data"]["result"]]

    def value(self, expr: str) -> float | None:
        """The single value of ``expr``, or None while it has no result."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return result[0][1] if result else None

    def wait_for_value(self, expr: str, expected: float, timeout: float = 30) -> float | None:
        """Poll until ``expr`` equals ``expected``; returns the last value seen either way."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.value(expr)
            if seen == expected:
                return seen
            time.sleep(0.25)
        return seen

    def targets_up(self) -> bool:
        return self.value('up{job="gunicorn"}') == 1.0

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()
        self.popen = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
