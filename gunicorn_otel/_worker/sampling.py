"""The sampler named by ``OTEL_TRACES_SAMPLER``, built from validated settings.

The SDK's own lookup logs and falls back to always-on for an unknown name; the
settings module has already refused those, so this mapping can be total.
"""

from __future__ import annotations


def build_sampler(name: str, ratio: float):
    from opentelemetry.sdk.trace import sampling

    if name == "always_on":
        return sampling.ALWAYS_ON
    if name == "always_off":
        return sampling.ALWAYS_OFF
    if name == "traceidratio":
        return sampling.TraceIdRatioBased(ratio)
    if name == "parentbased_always_off":
        return sampling.ParentBased(sampling.ALWAYS_OFF)
    if name == "parentbased_traceidratio":
        return sampling.ParentBased(sampling.TraceIdRatioBased(ratio))
    return sampling.ParentBased(sampling.ALWAYS_ON)
