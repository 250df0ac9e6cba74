"""A user's own Gunicorn config that keeps its hooks and adds gunicorn-otel's.

Run:  gunicorn -c example_conf.py examples.app:app

``from gunicorn_otel.conf import *`` brings in our hooks; a hook of the same
name defined below would silently replace ours, so combine them with
``chain`` instead.  ``chain`` keeps the exact positional signature that
Gunicorn's hook validation requires.
"""

import os

from gunicorn_otel import chain
from gunicorn_otel.conf import *  # noqa: F403 - hooks and settings validation
from gunicorn_otel.conf import post_fork as otel_post_fork
from gunicorn_otel.conf import worker_exit as otel_worker_exit

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WORKERS", "2"))
graceful_timeout = 30


def my_post_fork(server, worker):
    server.log.info("example_conf: my post_fork ran in worker %s", worker.pid)


def my_worker_exit(server, worker):
    server.log.info("example_conf: my worker_exit ran in worker %s", worker.pid)


# Ours first on the way in (telemetry ready for your code), yours first on
# the way out (your last log lines are still exported).
post_fork = chain(otel_post_fork, my_post_fork)
worker_exit = chain(my_worker_exit, otel_worker_exit)
