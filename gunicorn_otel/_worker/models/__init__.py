"""One object per concurrency model: it builds that model's pipelines and does its set-up.

A model is a module here named after it (``threads``, ``asyncio``, ``gevent``,
``sdk_batch``, ``simple``)
whose ``MODEL`` is a ``Model``.  ``gunicorn_otel._master.worker_kinds`` maps
Gunicorn worker classes and ``GUNICORN_OTEL_PROCESSOR`` values to these names;
``get(name)`` imports the module only when a worker asks for it, so this
package imports nothing heavy itself (``gevent``'s module must not import
gevent or the SDK before ``monkey.patch_all()``).

Adding a model: write ``<name>.py`` with a ``Model`` subclass and
``MODEL = ...``, add the name to ``worker_kinds`` and point the worker classes
at it there.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gunicorn_otel._master.deadline import Deadline  # noqa: F401 - for processors' signatures
    from gunicorn_otel._worker.stats import ExportStats
    from gunicorn_otel.settings import BatchOptions, MetricOptions, Settings


class Model:
    """What every concurrency model provides; the defaults do nothing model-specific.

    The processors a model builds take ``shutdown(deadline: Deadline | None = None) -> bool``
    (True: nothing left behind): ``Runtime.shutdown`` passes the hook's deadline
    down; the SDK's own call (``TracerProvider.shutdown()``, no argument) then
    finds them already stopped.
    """

    name = ""
    processor = ""  # the label in the "worker ready" log line: threads, asyncio, gevent, batch, simple

    def prepare(self, settings: Settings) -> None:
        """``post_fork``, before the worker class's own set-up (gevent: before ``patch_all``)."""

    def setup(self, settings: Settings) -> None:
        """Just before the runtime builds its first SDK object."""

    def span_processor(self, exporter: Any, stats: ExportStats, options: BatchOptions) -> Any:
        raise NotImplementedError

    def log_processor(self, exporter: Any, stats: ExportStats, options: BatchOptions) -> Any:
        raise NotImplementedError

    def metric_reader(self, exporter: Any, options: MetricOptions) -> Any:
        raise NotImplementedError

    def prometheus_reader(self, files: Any, interval: float) -> Any:
        """The reader that feeds the master's Prometheus endpoint (``_worker.prometheus_reader``).

        Its ticker is a daemon thread here; the gevent model's is a greenlet.
        """
        from gunicorn_otel._worker.prometheus_reader import SnapshotReader

        return SnapshotReader(files, interval, greenlets=False)

    def warm_master(self, settings: Settings) -> None:
        """In the Gunicorn master (``on_starting``), only for models whose imports are fork-safe there."""


def get(name: str) -> Model:
    """The model called ``name`` (a ``worker_kinds`` model name)."""
    module = importlib.import_module(f"{__name__}.{name}")
    return module.MODEL
