"""``gunicorn_otel.*`` metrics: what each worker exported and dropped, by reason.

Observable counters read the runtime's ``ExportStats`` at collection time, so
the hot path pays nothing extra.  The counts are cumulative per process; each
worker's series carries its own ``service.instance.id``.
"""

from __future__ import annotations

from opentelemetry.metrics import CallbackOptions, Observation

from gunicorn_otel._worker.stats import ExportStats


def register(meter_provider, stats: ExportStats) -> None:
    meter = meter_provider.get_meter("gunicorn_otel")

    def exported(options: CallbackOptions):
        return [Observation(counts["exported"], {"signal": signal}) for signal, counts in stats.snapshot().items()]

    def dropped(options: CallbackOptions):
        return [
            Observation(count, {"signal": signal, "reason": reason})
            for signal, counts in stats.snapshot().items()
            for reason, count in counts["dropped"].items()
        ]

    meter.create_observable_counter(
        "gunicorn_otel.exported",
        callbacks=[exported],
        unit="{item}",
        description="Telemetry items this worker exported, by signal",
    )
    meter.create_observable_counter(
        "gunicorn_otel.dropped",
        callbacks=[dropped],
        unit="{item}",
        description="Telemetry items this worker dropped, by signal and reason",
    )
