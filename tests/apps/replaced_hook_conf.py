"""A user config that imports ours and then replaces post_fork without chain (issue 10's case)."""

from gunicorn_otel.conf import *  # noqa: F403

MARKER = "user post_fork ran"


def post_fork(server, worker):
    server.log.info(MARKER)
