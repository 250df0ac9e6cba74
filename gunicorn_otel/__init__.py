"""OpenTelemetry that stays correct inside Gunicorn workers and FastAPI.

Import-light on purpose: Gunicorn imports this package in the master when it
loads ``gunicorn_otel.conf``.
"""

from gunicorn_otel.chain import chain

__all__ = ["chain", "__version__"]
__version__ = "0.1.0"
