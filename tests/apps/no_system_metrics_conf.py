"""Our config in an environment without opentelemetry-instrumentation-system-metrics.

``sys.modules[name] = None`` is the import system's own "this module cannot be
imported": ``find_spec`` returns None and ``import`` raises ImportError, in the
master and (inherited by fork) in every worker.
"""

import sys

sys.modules["opentelemetry.instrumentation.system_metrics"] = None  # type: ignore[assignment]

from gunicorn_otel.conf import *  # noqa: E402, F403
