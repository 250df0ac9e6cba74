"""The endpoint's view of one snapshot directory: who is alive, what the dead left, the merge.

A scrape returns, per series:

* counters and histograms (``snapshot.CUMULATIVE_TYPES``): the sum over the
  live workers' latest snapshots, the master's, and the *baseline*: the last
  snapshots of every worker that ever exited, already summed.  A worker that
  exits moves its last values from "live" into the baseline, so the total
  never goes down, whether it was recycled (``max_requests``), retired by a
  HUP reload or SIGKILLed (then what it counted after its last snapshot, at
  most ``GUNICORN_OTEL_PROMETHEUS_INTERVAL``, is lost, but nothing shown is
  taken back).
* gauges (including OTel up-down counters, which the compatibility rules map
  to gauges): per live worker, with a ``gunicorn_worker_slot`` label; an
  exited worker's gauges disappear with it.
* ``target_info``: the workers' resource without the attributes that differ
  per process (``service.instance.id``, ``process.pid``, the slot), so one
  series per service.

Compaction keeps this bounded by the number of series, not of workers ever
started: an exited worker's files are deleted once its values are in
``baseline.snap``.  The baseline records which workers its last write
absorbed, so an endpoint killed between writing the baseline and deleting the
files does not count them twice when it restarts.

prometheus_client's multiprocess mode merges per-pid files the same way but
never compacts (prometheus/client_python #204, #275: a maintainer calls
compaction unsafe "as there's no locking and a pid might be reused").  Here
liveness is a ``flock`` the kernel drops at process death, and names carry the
worker's unique ``service.instance.id``, not its pid.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from gunicorn_otel._prometheus import snapshot as snap

log = logging.getLogger(__name__)

PER_PROCESS_LABELS = frozenset({"service_instance_id", "process_pid", "gunicorn_worker_slot"})
SLOT_LABEL = "gunicorn_worker_slot"
TARGET = "target"
# A temporary lock file is renamed within microseconds; one older than this was left by a crash.
_STALE_TMP_SECONDS = 30.0


def _key(sample_name: str, labels: dict) -> tuple:
    return (sample_name, tuple(sorted(labels.items())))


# (sample name, label items as written) -> (key, labels without empty values).  Bounded
# by the series seen, not by snapshots read; cleared if an app's labels run away.
_canonical: dict[tuple, tuple[tuple, dict]] = {}
_CANONICAL_MAX = 200_000


def _canonical_sample(sample_name: str, labels: dict) -> tuple[tuple, dict]:
    raw = (sample_name, tuple(labels.items()))
    hit = _canonical.get(raw)
    if hit is None:
        clean = {k: v for k, v in labels.items() if v != ""}
        hit = (_key(sample_name, clean), clean)
        if len(_canonical) >= _CANONICAL_MAX:
            _canonical.clear()
        _canonical[raw] = hit
    return hit


def prepare(families: list, slot=None) -> list:
    """Key every sample once per file version: ``[[name, type, help, unit, [(key, sample, labels, value)]]]``.

    Labels with an empty value are dropped: Prometheus treats ``x{a=""}`` and
    ``x`` as one series, and the exporter backfills a label some other data
    point has with ``""``, so two workers could otherwise emit the same series
    twice (a scrape Prometheus rejects).  Gauges get the worker's slot label
    here; ``target_info`` loses the per-process labels.  A scrape then merges
    with dictionary lookups only.  Every worker rewrites its file each second,
    so a scrape prepares every live file: the canonical form of a label set is
    memoised across files and scrapes.
    """
    out = []
    for name, typ, help_, unit, samples in families:
        keyed = []
        if typ == "info" and name == TARGET:
            for s, labels, value in samples:
                shared = {k: v for k, v in labels.items() if v != "" and k not in PER_PROCESS_LABELS}
                keyed.append((_key(s, shared), s, shared, value))
        elif slot is not None and typ not in snap.CUMULATIVE_TYPES:
            slot_item = (SLOT_LABEL, str(slot))
            for s, labels, value in samples:
                (_, items), clean = _canonical_sample(s, labels)
                keyed.append(((s, (*items, slot_item)), s, {**clean, SLOT_LABEL: slot_item[1]}, value))
        else:
            for s, labels, value in samples:
                key, clean = _canonical_sample(s, labels)
                keyed.append((key, s, clean, value))
        out.append([name, typ, help_, unit, keyed])
    return out


class _Families:
    """name -> [type, help, unit, {sample key: [sample_name, labels, value]}]."""

    def __init__(self) -> None:
        self.by_name: dict[str, list] = {}

    def copy(self) -> _Families:
        other = _Families()
        other.by_name = {
            name: [typ, help_, unit, {k: list(p) for k, p in points.items()}]
            for name, (typ, help_, unit, points) in self.by_name.items()
        }
        return other

    def add(self, prepared: list, *, cumulative_only: bool = False) -> None:
        by_name = self.by_name
        for name, typ, help_, unit, samples in prepared:
            cumulative = typ in snap.CUMULATIVE_TYPES
            if cumulative_only and not cumulative:
                continue
            entry = by_name.get(name)
            if entry is None:
                entry = by_name[name] = [typ, help_, unit, {}]
            elif entry[0] != typ:
                continue  # two processes disagree on a name's type: keep the first
            points = entry[3]
            if cumulative:
                for key, sample_name, labels, value in samples:
                    point = points.get(key)
                    if point is None:
                        points[key] = [sample_name, labels, value]
                    else:
                        point[2] += value
            else:
                for key, sample_name, labels, value in samples:
                    points[key] = [sample_name, labels, value]

    def export(self) -> list:
        return [
            [name, typ, help_, unit, list(points.values())] for name, (typ, help_, unit, points) in self.by_name.items()
        ]


class Store:
    """Reads one directory; all methods are serialised by one lock (the endpoint may be scraped concurrently)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple, dict, list]] = {}  # file name -> (stat key, snapshot, prepared)
        self._baseline = _Families()
        self._baseline_target: list = []
        self.absorbed_total = 0
        self._load_baseline()

    # -- baseline ------------------------------------------------------------

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _load_baseline(self) -> None:
        try:
            with open(self._path(snap.BASELINE_FILE), "rb") as f:
                data = snap.decode(f.read())
        except FileNotFoundError:
            return
        self._baseline.add(prepare(data["families"]))
        self._baseline_target = prepare(data.get("target", []))
        self.absorbed_total = data.get("absorbed_total", 0)
        # An endpoint killed after writing the baseline but before deleting what
        # it absorbed: those files are counted already.
        for worker_id in data.get("absorbed", []):
            self._remove_worker_files(worker_id)

    def _write_baseline(self, absorbed: list[str]) -> None:
        data = {
            "absorbed": absorbed,
            "absorbed_total": self.absorbed_total,
            "families": self._baseline.export(),
            "target": [
                [n, t, h, u, [[s, labels, v] for _k, s, labels, v in samples]]
                for n, t, h, u, samples in self._baseline_target
            ],
        }
        snap.write_atomically(self.directory, snap.BASELINE_FILE, snap.encode(data))

    def _remove_worker_files(self, worker_id: str) -> None:
        base = snap.WORKER_PREFIX + worker_id
        for name in (base + snap.SNAP_SUFFIX, snap.tmp_name(base + snap.SNAP_SUFFIX), base + snap.LOCK_SUFFIX):
            try:
                os.unlink(self._path(name))
            except FileNotFoundError:
                pass
            self._cache.pop(name, None)

    # -- compaction ----------------------------------------------------------

    def _scan(self) -> tuple[set[str], set[str], list[str]]:
        locks, snaps, stale_tmp = set(), set(), []
        now = time.time()
        with os.scandir(self.directory) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(snap.WORKER_PREFIX):
                    if name.endswith(snap.LOCK_SUFFIX):
                        locks.add(name[len(snap.WORKER_PREFIX) : -len(snap.LOCK_SUFFIX)])
                    elif name.endswith(snap.SNAP_SUFFIX):
                        snaps.add(name[len(snap.WORKER_PREFIX) : -len(snap.SNAP_SUFFIX)])
                elif name.endswith(snap.LOCK_SUFFIX + ".tmp"):
                    try:
                        if now - entry.stat().st_mtime > _STALE_TMP_SECONDS:
                            stale_tmp.append(name)
                    except FileNotFoundError:
                        pass
        return locks, snaps, stale_tmp

    def compact(self) -> list[str]:
        """Fold exited workers into the baseline and delete their files; returns the live worker ids."""
        with self._lock:
            return self._compact()

    def _compact(self) -> list[str]:
        locks, snaps, stale_tmp = self._scan()
        for name in stale_tmp:
            if snap.lock_is_free(self._path(name)):
                try:
                    os.unlink(self._path(name))
                except FileNotFoundError:
                    pass
        # A snapshot without a lock file: its worker is gone (locks are made before any snapshot).
        exited = {i for i in locks if snap.lock_is_free(self._path(snap.WORKER_PREFIX + i + snap.LOCK_SUFFIX))}
        dead = sorted((snaps - locks) | exited)
        if dead:
            for worker_id in dead:
                last = self._read(snap.WORKER_PREFIX + worker_id + snap.SNAP_SUFFIX)
                if last is not None:
                    self._baseline.add(last, cumulative_only=True)
                    target = [f for f in last if f[0] == TARGET and f[1] == "info"]
                    if target:
                        self._baseline_target = target
            self.absorbed_total += len(dead)
            self._write_baseline(dead)
            for worker_id in dead:
                self._remove_worker_files(worker_id)
        return sorted(locks - set(dead))

    # -- reading -------------------------------------------------------------

    def _read(self, name: str) -> list | None:
        """A snapshot, parsed and prepared once per version of the file (``os.replace`` gives each a new inode)."""
        path = self._path(name)
        try:
            st = os.stat(path)
            stat_key = (st.st_ino, st.st_mtime_ns, st.st_size)
            cached = self._cache.get(name)
            if cached is not None and cached[0] == stat_key:
                return cached[2]
            with open(path, "rb") as f:
                data = snap.decode(f.read())
        except FileNotFoundError:
            self._cache.pop(name, None)
            return None
        except ValueError:
            log.warning("gunicorn-otel: unreadable Prometheus snapshot %s skipped", name)
            return None
        slot = data.get("slot") if data.get("role") == "worker" else None
        prepared = prepare(data["families"], slot)
        self._cache[name] = (stat_key, data, prepared)
        return prepared

    def collect(self) -> list:
        """The merged families a scrape returns: ``[[name, type, help, unit, [[sample, labels, value], ...]], ...]``."""
        with self._lock:
            live_ids = self._compact()
            names = [snap.WORKER_PREFIX + i + snap.SNAP_SUFFIX for i in live_ids]
            for stale in set(self._cache) - set(names) - {snap.MASTER_FILE}:
                del self._cache[stale]
            merged = self._baseline.copy()
            merged.add(self._baseline_target)
            for name in (snap.MASTER_FILE, *names):
                prepared = self._read(name)
                if prepared is not None:
                    merged.add(prepared)
            return merged.export()

    def file_count(self) -> int:
        return len(os.listdir(self.directory))
