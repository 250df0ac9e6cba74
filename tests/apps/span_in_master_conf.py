"""A config that makes a span in the master before loading ours (under opentelemetry-instrument
that span is queued in the wrapper's batch processor)."""

from opentelemetry import trace

trace.get_tracer("conf").start_span("made-in-the-master").end()

from gunicorn_otel.conf import *  # noqa: E402, F403
