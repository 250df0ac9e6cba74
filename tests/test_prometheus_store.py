"""The Prometheus endpoint's snapshot directory, driven through the code workers and the endpoint use.

These run the real storage code on a real directory: ``WorkerFiles`` (what a
worker's reader uses: flock, atomic replace) and ``Store`` (what the serving
process uses).  A recycled worker is simulated by closing its ``WorkerFiles``,
which releases its flock exactly as process death does; that is what makes
10,000 recycles affordable here.  Real recycling is in tests/test_prometheus.py.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import uuid

import pytest

from gunicorn_otel._prometheus import snapshot as snap
from gunicorn_otel._prometheus.store import Store

SCOPE = {"otel_scope_name": "app", "otel_scope_version": "", "otel_scope_schema_url": ""}


def families(requests: int, *, inflight: int = 0, slot: int = 1, pid: int = 1) -> list:
    """What a worker's reader writes after ``requests`` requests (the exporter's names and labels)."""
    labels = {**SCOPE, "http_method": "GET"}
    return [
        ["app_requests", "counter", "Requests", "", [["app_requests_total", labels, float(requests)]]],
        [
            "app_duration_seconds",
            "histogram",
            "Durations",
            "seconds",
            [
                ["app_duration_seconds_bucket", {**labels, "le": "0.1"}, float(requests)],
                ["app_duration_seconds_bucket", {**labels, "le": "+Inf"}, float(requests)],
                ["app_duration_seconds_count", labels, float(requests)],
                ["app_duration_seconds_sum", labels, requests * 0.01],
            ],
        ],
        ["app_inflight", "gauge", "In flight", "", [["app_inflight", dict(SCOPE), float(inflight)]]],
        [
            "target",
            "info",
            "Target metadata",
            "",
            [
                [
                    "target_info",
                    {
                        "service_name": "shop",
                        "service_instance_id": str(uuid.uuid4()),
                        "process_pid": str(pid),
                        "gunicorn_worker_slot": str(slot),
                    },
                    1.0,
                ]
            ],
        ],
    ]


@pytest.fixture
def shm_path(tmp_path):
    """A directory where the endpoint makes its own: /dev/shm when there is one (tmpfs, as in production)."""
    if not os.path.isdir("/dev/shm"):
        yield tmp_path
        return
    path = tempfile.mkdtemp(prefix="gunicorn-otel-test-", dir="/dev/shm")
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


def worker(directory, slot: int) -> snap.WorkerFiles:
    return snap.WorkerFiles(str(directory), str(uuid.uuid4()), os.getpid(), slot)


def by_sample(merged: list) -> dict:
    out = {}
    for _name, typ, _help, _unit, samples in merged:
        for sample_name, labels, value in samples:
            out[(sample_name, tuple(sorted(labels.items())))] = (typ, value)
    return out


def value(merged: list, sample_name: str, **labels) -> list[float]:
    return [
        v
        for (name, lbls), (_t, v) in by_sample(merged).items()
        if name == sample_name and all(dict(lbls).get(k) == want for k, want in labels.items())
    ]


def test_counters_and_histograms_sum_live_and_exited_workers(tmp_path):
    store = Store(str(tmp_path))
    a, b = worker(tmp_path, 1), worker(tmp_path, 2)
    a.write(families(5, slot=1))
    b.write(families(7, slot=2))
    assert value(store.collect(), "app_requests_total") == [12.0]
    a.write(families(9, slot=1))  # a serves 4 more, then exits (max_requests)
    a.close()
    merged = store.collect()
    assert value(merged, "app_requests_total") == [16.0]
    assert value(merged, "app_duration_seconds_count") == [16.0]
    assert value(merged, "app_duration_seconds_bucket", le="+Inf") == [16.0]
    assert store.absorbed_total == 1
    c = worker(tmp_path, 1)  # a's replacement starts from zero
    c.write(families(1, slot=1))
    assert value(store.collect(), "app_requests_total") == [17.0]


def test_gauges_are_per_live_slot_and_leave_with_their_worker(tmp_path):
    store = Store(str(tmp_path))
    a, b = worker(tmp_path, 1), worker(tmp_path, 2)
    a.write(families(1, inflight=3, slot=1))
    b.write(families(1, inflight=4, slot=2))
    merged = store.collect()
    assert sorted(value(merged, "app_inflight")) == [3.0, 4.0]
    assert value(merged, "app_inflight", gunicorn_worker_slot="1") == [3.0]
    b.close()
    assert value(store.collect(), "app_inflight") == [3.0]


def test_target_info_is_one_series_without_per_process_attributes(tmp_path):
    store = Store(str(tmp_path))
    for slot in (1, 2, 3):
        worker(tmp_path, slot).write(families(1, slot=slot, pid=100 + slot))
    targets = [(labels, v) for (name, labels), (_t, v) in by_sample(store.collect()).items() if name == "target_info"]
    assert targets == [((("service_name", "shop"),), 1.0)]


def test_ten_thousand_recycles_keep_state_bounded_and_counts_exact(shm_path):
    """Files, baseline size and merged series stay constant however many workers have exited."""
    tmp_path = shm_path
    store = Store(str(tmp_path))
    live = [worker(tmp_path, slot) for slot in (1, 2, 3, 4)]
    served = [0, 0, 0, 0]
    total = 0
    previous = 0.0
    files_seen, series_seen, baseline_sizes = set(), set(), set()
    for recycle in range(10_000):
        i = recycle % 4
        served[i] += 3
        total += 3
        live[i].write(families(served[i], slot=i + 1))
        live[i].close()  # exits (flock released, as at process death) after its final snapshot
        live[i] = worker(tmp_path, i + 1)
        served[i] = 0
        if recycle % 97 == 0:  # scrapes come at their own pace
            merged = store.collect()
            shown = value(merged, "app_requests_total")[0]
            assert shown == total  # exact, and so never below the previous scrape
            assert shown >= previous
            previous = shown
            files_seen.add(store.file_count())
            series_seen.add(len(by_sample(merged)))
            baseline_sizes.add(len(snap.decode((tmp_path / snap.BASELINE_FILE).read_bytes())["families"]))
    merged = store.collect()
    assert value(merged, "app_requests_total") == [float(total)]
    assert value(merged, "app_duration_seconds_count") == [float(total)]
    assert store.absorbed_total == 10_000
    # At most: 4 live lock files, baseline, and exited workers not yet compacted since the last scrape.
    assert max(files_seen) <= 4 + 1 + 2 * 97, files_seen
    assert store.file_count() == 5  # after compaction: 4 lock files (no snapshot yet) and the baseline
    assert len(series_seen) <= 2 and max(series_seen) <= 9, series_seen  # gauge series come and go with live workers
    assert len(baseline_sizes) == 1, baseline_sizes
    assert os.path.getsize(tmp_path / snap.BASELINE_FILE) < 4096


def test_an_endpoint_killed_mid_compaction_does_not_count_twice(tmp_path):
    store = Store(str(tmp_path))
    a = worker(tmp_path, 1)
    a.write(families(10))
    a.close()
    name = snap.WORKER_PREFIX + a.header["id"] + snap.SNAP_SUFFIX
    kept = (tmp_path / name).read_bytes()
    assert value(store.collect(), "app_requests_total") == [10.0]
    # The endpoint wrote the baseline, then died before deleting what it absorbed:
    (tmp_path / name).write_bytes(kept)
    (tmp_path / (snap.WORKER_PREFIX + a.header["id"] + snap.LOCK_SUFFIX)).write_bytes(b"")
    restarted = Store(str(tmp_path))
    assert value(restarted.collect(), "app_requests_total") == [10.0]
    assert not (tmp_path / name).exists()


def test_a_restarted_endpoint_keeps_the_baseline(tmp_path):
    a = worker(tmp_path, 1)
    a.write(families(4))
    a.close()
    assert value(Store(str(tmp_path)).collect(), "app_requests_total") == [4.0]
    b = worker(tmp_path, 1)
    b.write(families(2))
    assert value(Store(str(tmp_path)).collect(), "app_requests_total") == [6.0]


def test_a_worker_that_died_before_its_first_snapshot_leaves_nothing(tmp_path):
    store = Store(str(tmp_path))
    worker(tmp_path, 1).close()
    assert store.collect() == []
    assert sorted(os.listdir(tmp_path)) == [snap.BASELINE_FILE]


def test_a_live_lock_is_held_and_a_closed_one_is_free(tmp_path):
    a = worker(tmp_path, 1)
    lock = tmp_path / (snap.WORKER_PREFIX + a.header["id"] + snap.LOCK_SUFFIX)
    assert not snap.lock_is_free(str(lock))
    a.close()
    assert snap.lock_is_free(str(lock))


def test_disagreeing_types_keep_the_first_and_never_duplicate_a_name(tmp_path):
    store = Store(str(tmp_path))
    worker(tmp_path, 1).write([["x", "counter", "", "", [["x_total", {}, 1.0]]]])
    worker(tmp_path, 2).write([["x", "gauge", "", "", [["x", {}, 5.0]]]])
    merged = store.collect()
    assert [m[0] for m in merged] == ["x"]
    assert len(merged[0][4]) == 1


def test_settings_split_the_metrics_exporter_list():
    from gunicorn_otel.settings import load

    both = load({"OTEL_METRICS_EXPORTER": "otlp, prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT": "9100"})
    assert both.metrics.kind == "otlp"
    assert (both.prometheus.host, both.prometheus.port, both.prometheus.interval) == ("localhost", 9100, 1.0)
    alone = load({"OTEL_METRICS_EXPORTER": "prometheus", "GUNICORN_OTEL_PROMETHEUS_INTERVAL": "250"})
    assert alone.metrics.kind == "none" and "metrics" not in alone.enabled_signals()
    assert alone.prometheus.interval == 0.25
    assert load({}).prometheus is None
    assert load({"OTEL_METRICS_EXPORTER": "console,prometheus"}).metrics.kind == "console"


def test_an_empty_label_and_an_absent_one_are_one_series(tmp_path):
    """The exporter backfills labels with "": one worker's x{a=""} and another's x are the same series."""
    store = Store(str(tmp_path))
    worker(tmp_path, 1).write([["x", "counter", "", "", [["x_total", {"a": "", "b": "1"}, 2.0]]]])
    worker(tmp_path, 2).write([["x", "counter", "", "", [["x_total", {"b": "1"}, 3.0]]]])
    merged = store.collect()
    assert merged == [["x", "counter", "", "", [["x_total", {"b": "1"}, 5.0]]]]
