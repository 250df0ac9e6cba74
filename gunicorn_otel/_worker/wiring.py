"""What ``post_worker_init`` wires once the app is loaded and Gunicorn's signals are set.

* trace ids for the access log, when its format asks for them (``access_log``);
* a SIGABRT handler where the worker class would not run ``worker_abort`` on a
  timeout (``abort_signal``);
* the timeout module, imported now so the signal handler never imports.

A failure costs only these features, never the worker.
"""

from __future__ import annotations

import logging

from gunicorn_otel._master import forksafe

log = logging.getLogger(__name__)


def install(worker) -> None:
    try:
        from gunicorn_otel._worker import abort_signal, access_log, timeout  # noqa: F401 - see above

        done = [access_log.install(worker), abort_signal.install(worker)]
        log.debug("gunicorn-otel: worker %s wired: %s", forksafe.pid(), [d for d in done if d])
    except Exception:  # costs these features, never the worker
        logging.getLogger("gunicorn.error").exception(
            "gunicorn-otel: could not wire access-log ids or the abort handler; serving without them"
        )
