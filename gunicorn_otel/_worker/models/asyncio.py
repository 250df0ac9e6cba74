"""The asyncio model: Gunicorn's asgi worker and uvicorn's ``UvicornWorker``.

The producer of every span and log record is the event loop itself, and the
export thread competes with it for the GIL: each socket call of an export
releases the GIL and waits to get it back until the busy loop is forced to
hand it over.  Under FastAPI's native telemetry at saturation the SDK's batch
processor lost spans this way (issue #13; docs/fastapi.md recorded one asgi
round that dropped 119).

The mechanism is the thread model's (``_worker/thread_batch``, with
``_worker/send_ahead``: the loop posts each full span batch itself on a
non-blocking socket and reads the answer at the next one, so the export thread
stays asleep and stops competing with the loop for the GIL), on purpose:
the loop encodes each span as it ends (it holds the GIL anyway; the queue then
holds bytes, not GC-tracked span objects), and when the queue passes its
high-water mark while exports are healthy the loop waits, releasing the GIL,
until the export thread has taken a batch.  That wait stalls every connection
of the worker for its duration, so it must be short and rare: it ends as soon
as a batch is taken (a few milliseconds against a collector that answers), as
soon as an export has been in flight for ``slow_after``, and never starts while
exports fail or are slow.  Whatever may block (answers nobody read, failures,
retries, TLS, proxies, flush, shutdown) stays the SDK exporter's, in the
export thread.
``bench/saturation.py`` measures the loop's p99 against the SDK floor and
against a black-hole collector; docs/pipelines.md has the figures.
"""

from __future__ import annotations

from gunicorn_otel._worker.models.threads import ThreadModel


class AsyncioModel(ThreadModel):
    name = "asyncio"
    processor = "asyncio"


MODEL = AsyncioModel()
