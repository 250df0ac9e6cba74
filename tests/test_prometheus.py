"""OTEL_METRICS_EXPORTER=prometheus: one endpoint per master, scraped by a real Prometheus server.

Real Gunicorn, real HTTP, Debian's ``prometheus`` binary scraping every second;
values are read back through Prometheus's query API, as a dashboard would.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.request

import pytest

from tests.support.gunicorn_process import free_port, load, pid_alive
from tests.support.prometheus import PrometheusServer

pytestmark = pytest.mark.slow  # real Gunicorn processes and a real Prometheus server

SERIES = "sum(shop_orders_total)"
HISTOGRAM = "sum(shop_order_duration_seconds_count)"
HTTP_COUNT = 'sum(http_server_duration_milliseconds_count{http_status_code="200"})'


def prom_env(port: int, **overrides: str) -> dict:
    env = {
        "OTEL_SERVICE_NAME": "shop",
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
        "GUNICORN_OTEL_PROMETHEUS_INTERVAL": "200",
        "GUNICORN_OTEL_WRAP_APP": "true",
    }
    env.update(overrides)
    return env


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def endpoint_pids(master_pid: int) -> list[int]:
    """Children of the master running ``gunicorn_otel._prometheus``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == master_pid and b"gunicorn_otel._prometheus" in cmdline:
            pids.append(int(entry))
    return pids


def endpoint_directory(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        args = f.read().split(b"\0")
    return args[args.index(b"--dir") + 1].decode()


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"not true after {timeout}s: {what}")


@pytest.mark.parametrize("worker_class", ["sync", "gevent"])
def test_counters_match_requests_across_max_requests_recycling(gunicorn, tmp_path, worker_class):
    """4 workers recycled every ~40 requests: Prometheus's counter equals the requests served, no resets."""
    port = free_port()
    requests = 1200 if worker_class == "sync" else 600
    with PrometheusServer(f"127.0.0.1:{port}", tmp_path) as prom:
        proc = gunicorn(
            "prometheus_app:app",
            worker_class=worker_class,
            workers=4,
            env=prom_env(port),
            args=("--max-requests", "40", "--max-requests-jitter", "10"),
        )
        wait_until(prom.targets_up, 30, "Prometheus scrapes the endpoint")
        ok, errors = load(proc.base_url, "/order", requests=requests, concurrency=4, timeout=120)
        assert (ok, errors) == (requests, 0)
        assert prom.wait_for_value(SERIES, requests) == requests
        assert prom.wait_for_value(HISTOGRAM, requests) == requests
        assert prom.wait_for_value(HTTP_COUNT, requests) == requests
        assert prom.value("sum(resets(shop_orders_total[10m]))") == 0
        assert prom.value("sum(resets(shop_order_duration_seconds_count[10m]))") == 0

        # Recycling really happened, and every exited worker was folded into the baseline.
        def exits():
            return proc.log_text().count("Worker exiting")

        wait_until(
            lambda: prom.value("gunicorn_otel_prometheus_exited_workers_total") == exits(),
            30,
            "every exited worker absorbed",
        )
        # Observed: 600 keep-alive requests recycle only 3-5 gevent workers, against ~30 sync ones for 1200.
        assert exits() >= (4 if worker_class == "sync" else 2), proc.log_tail()
        assert prom.value(SERIES) == requests
        # Master telemetry is on the same endpoint.
        assert prom.wait_for_value("sum(gunicorn_master_worker_exits_total)", exits()) == exits()
        assert (
            prom.value('sum(gunicorn_master_worker_exits_total{gunicorn_worker_exit_cause="max_requests"})') == exits()
        )
        assert prom.wait_for_value("sum(gunicorn_master_worker_boots_total)", 4 + exits()) == 4 + exits()
        assert prom.value('gunicorn_master_worker_boots_total{gunicorn_worker_boot_cause="initial"}') == 4
        assert prom.wait_for_value("gunicorn_master_workers", 4) == 4

        # Gauges: one series per live worker, by slot.
        def slots():
            return {labels["gunicorn_worker_slot"] for labels, _ in prom.query("shop_worker_pid")}

        wait_until(lambda: slots() == {"1", "2", "3", "4"}, 20, "one pid gauge per slot")
        # Runtime metrics (GUNICORN_OTEL_RUNTIME_METRICS) reach the endpoint too: a gauge
        # per live slot, and CPU time summed over every worker that ever ran.
        memory = {labels["gunicorn_worker_slot"] for labels, _ in prom.query("process_memory_usage_bytes")}
        assert memory == {"1", "2", "3", "4"}
        assert prom.value("sum(process_cpu_time_seconds_total) > 0") is not None
        assert prom.value("sum(resets(process_cpu_time_seconds_total[10m]))") == 0
        # target_info: one series for the service, not one per worker ever started.
        assert [labels.get("service_name") for labels, _ in prom.query("target_info")] == ["shop"]
        if worker_class == "gevent":
            for _ in range(4):
                assert proc.get("/native-threads")[1] == b"0"  # the snapshot ticker is a greenlet
        proc.stop()


def test_hup_reload_and_sigkill_never_take_a_count_back(gunicorn, tmp_path):
    port = free_port()
    with PrometheusServer(f"127.0.0.1:{port}", tmp_path) as prom:
        proc = gunicorn("prometheus_app:app", workers=2, env=prom_env(port))
        wait_until(prom.targets_up, 30, "Prometheus scrapes the endpoint")
        assert load(proc.base_url, "/order", requests=200, concurrency=2) == (200, 0)
        assert prom.wait_for_value(SERIES, 200) == 200
        proc.signal(signal.SIGHUP)  # every worker replaced
        proc.wait_for_log(r"Handling signal: hup")
        assert load(proc.base_url, "/order", requests=100, concurrency=2) == (100, 0)
        assert prom.wait_for_value(SERIES, 300) == 300
        victim = proc.live_worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: not pid_alive(victim), 10, "the SIGKILLed worker is gone")
        assert load(proc.base_url, "/order", requests=100, concurrency=2) == (100, 0)
        # Killed after Prometheus showed all 300: its last snapshot held everything
        # it counted, so nothing is lost (a worker killed mid-load loses at most
        # its last GUNICORN_OTEL_PROMETHEUS_INTERVAL; nothing shown is taken back).
        assert prom.wait_for_value(SERIES, 400) == 400
        assert prom.wait_for_value("gunicorn_otel_prometheus_exited_workers_total", 3) == 3  # 2 reloaded, 1 killed
        assert prom.value("sum(resets(shop_orders_total[10m]))") == 0
        proc.stop()


def test_a_port_in_use_stops_gunicorn_at_start(gunicorn):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = gunicorn("prometheus_app:app", env=prom_env(port), start=False)
        code, log = proc.run_to_exit(timeout=30)
    assert code != 0
    assert f"cannot serve Prometheus metrics on 127.0.0.1:{port}" in log
    assert "already in use" in log
    assert "Booting worker" not in log


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_EXPORTER_PROMETHEUS_PORT", "http"),
        ("OTEL_EXPORTER_PROMETHEUS_PORT", "70000"),
        ("OTEL_METRICS_EXPORTER", "otlp,console,prometheus"),
        ("OTEL_METRICS_EXPORTER", "prometheus,statsd"),
    ],
)
def test_bad_prometheus_settings_stop_gunicorn_with_the_variable_named(gunicorn, name, value):
    proc = gunicorn("prometheus_app:app", env={**prom_env(free_port()), name: value}, start=False)
    code, log = proc.run_to_exit(timeout=30)
    assert code == 1
    assert f"{name}={value!r} is invalid" in log


def test_endpoint_process_is_restarted_and_dies_with_the_master(gunicorn):
    port = free_port()
    # --timeout 4: a sync worker looks for a new parent every timeout/2 seconds.
    proc = gunicorn("prometheus_app:app", workers=2, env=prom_env(port), args=("--timeout", "4"))
    assert load(proc.base_url, "/order", requests=50, concurrency=2) == (50, 0)
    first = wait_until(lambda: endpoint_pids(proc.master_pid), 10, "the endpoint process runs")
    assert len(first) == 1
    wait_until(lambda: "shop_orders_total" in scrape(port) and 'book"} 50.0' in scrape(port), 10, "50 counted")
    os.kill(first[0], signal.SIGKILL)
    second = wait_until(
        lambda: [p for p in endpoint_pids(proc.master_pid) if p != first[0]], 10, "a new endpoint process"
    )
    proc.wait_for_log(rf"Prometheus endpoint process \(pid {first[0]}\) was killed by SIGKILL; starting a new one")
    assert 'book"} 50.0' in scrape(port)  # counts live in the directory, not in the process
    directory = endpoint_directory(second[0])
    assert os.path.isdir(directory)
    os.kill(proc.master_pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(second[0]), 10, "the endpoint process exits when its master dies")
    workers = proc.worker_pids()
    wait_until(lambda: not any(pid_alive(p) for p in workers), 15, "the workers exit after their master")
    assert not os.path.exists(directory)


def test_clean_stop_removes_the_directory_and_frees_the_port(gunicorn):
    port = free_port()
    proc = gunicorn("prometheus_app:app", workers=1, env=prom_env(port))
    pid = wait_until(lambda: endpoint_pids(proc.master_pid), 10, "the endpoint process runs")[0]
    directory = endpoint_directory(pid)
    assert os.path.isdir(directory)
    result = proc.stop()
    assert result.returncode == 0
    assert not pid_alive(pid)
    assert not os.path.exists(directory)
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


def test_check_shows_the_endpoint_and_reports_a_port_in_use():
    import subprocess
    import sys

    from tests.support.gunicorn_process import ROOT

    port = free_port()
    env = {**os.environ, **prom_env(port)}
    shown = subprocess.run(
        [sys.executable, "-m", "gunicorn_otel", "check"],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"prometheus: one endpoint per master on http://127.0.0.1:{port}/metrics" in shown.stdout
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        busy = subprocess.run(
            [sys.executable, "-m", "gunicorn_otel", "check"],
            env=env,
            cwd=str(ROOT),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert busy.returncode == 2
    assert f"ERROR: gunicorn-otel: cannot serve Prometheus metrics on 127.0.0.1:{port}" in busy.stdout


def test_an_endpoint_process_that_cannot_start_stops_gunicorn(gunicorn, tmp_path):
    """A broken prometheus_client (here one that raises on import) is found at start, not at the first scrape."""
    broken = tmp_path / "broken" / "prometheus_client"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('this prometheus_client is broken')\n")
    env = {**prom_env(free_port()), "PYTHONPATH": str(tmp_path / "broken")}
    proc = gunicorn("prometheus_app:app", env=env, start=False)
    code, log = proc.run_to_exit(timeout=60)
    assert code == 1
    assert "this prometheus_client is broken" in log
    assert "the Prometheus endpoint process failed to start (exit code 1)" in log
    assert "Booting worker" not in log
