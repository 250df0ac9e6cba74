"""``python -m gunicorn_otel check`` (also installed as the ``gunicorn-otel`` command)."""

import sys

from gunicorn_otel._master.check import main

if __name__ == "__main__":
    sys.exit(main())
