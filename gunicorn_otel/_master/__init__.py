"""Master-safe internals: importable in the Gunicorn master before any fork.

At import time these modules use only the standard library, ``gunicorn_otel.settings``
and each other; never the SDK, ``ssl``, ``urllib3``, ``requests``, ``grpc`` or gevent
(``tests/test_layout.py`` enforces it).  Heavier imports happen inside functions,
at the moment they are needed.  Not a public API.
"""
