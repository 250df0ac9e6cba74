"""The one optional C extension; everything else is in pyproject.toml.

``gunicorn_otel._worker._span_wire`` encodes the usual ended span in C (the
Python encoder, ``_worker/otlp_wire.py``, is the fallback and writes the same
bytes).  ``optional=True``: where it can't be compiled (no C compiler or no
Python headers), the install goes on and workers use the Python encoder;
``gunicorn-otel check`` says which one a worker gets.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "gunicorn_otel._worker._span_wire",
            ["gunicorn_otel/_worker/_span_wire.c"],
            optional=True,
        )
    ]
)
