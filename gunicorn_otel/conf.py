"""Gunicorn configuration module: ``gunicorn -c python:gunicorn_otel.conf app:app``.

(A bare ``-c gunicorn_otel.conf`` is read by Gunicorn as a file path.)  With a
config of your own, ``from gunicorn_otel.conf import *`` and combine hooks you
also define with ``gunicorn_otel.chain`` (see ``example_conf.py``).

Importing this module validates every ``OTEL_*`` and ``GUNICORN_OTEL_*``
variable in the master and exits with a clear message on a bad one.  It imports
nothing heavy: under gevent, modules such as ``ssl`` or ``urllib3`` imported
before ``monkey.patch_all()`` stay unpatched.  Each hook is one call into
``gunicorn_otel._master.hooks``.
"""

from gunicorn_otel._master import hooks as _hooks

_hooks.load_settings()

__all__ = [
    "on_starting",
    "when_ready",
    "pre_fork",
    "post_fork",
    "post_worker_init",
    "worker_exit",
    "worker_abort",
    "child_exit",
    "on_reload",
    "on_exit",
]


def on_starting(server):
    _hooks.on_starting(server)


def pre_fork(server, worker):
    _hooks.pre_fork(server, worker)


def post_fork(server, worker):
    _hooks.post_fork(server, worker)


def post_worker_init(worker):
    _hooks.post_worker_init(worker)


def worker_exit(server, worker):
    _hooks.worker_exit(server, worker)


def worker_abort(worker):
    _hooks.worker_abort(worker)


def when_ready(server):
    _hooks.when_ready(server)


def child_exit(server, worker):
    _hooks.child_exit(server, worker)


def on_reload(server):
    _hooks.on_reload(server)


def on_exit(server):
    _hooks.on_exit(server)
