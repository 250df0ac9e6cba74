"""Worker-only internals, imported after fork (under gevent: after ``monkey.patch_all()``).

Not a public API: ``fastapi_otel`` uses ``gunicorn_otel._worker.runtime``'s public
functions, nothing else here.
"""
