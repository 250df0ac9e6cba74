"""The same user hook, kept with ours by gunicorn_otel.chain."""

import gunicorn_otel.conf as otel_conf
from gunicorn_otel import chain
from gunicorn_otel.conf import *  # noqa: F403


def my_post_fork(server, worker):
    server.log.info("user post_fork ran")


post_fork = chain(otel_conf.post_fork, my_post_fork)
