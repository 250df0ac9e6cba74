"""Which of our Gunicorn hooks a user config replaced without calling ours.

``from gunicorn_otel.conf import *`` followed by a ``def post_fork(server, worker)``
of one's own silently replaces ours: Gunicorn keeps one callable per hook.  With
``post_fork`` gone a sync worker builds no providers and exports nothing, while
the master's own telemetry still arrives, so a dashboard looks alive.

A hook counts as ours when it is the function in ``gunicorn_otel.conf``, a
``gunicorn_otel.chain`` result that includes it (``chain`` marks its result with
the hooks it calls), or a function whose code names the hook it replaces (it
calls ``conf.post_fork(...)`` or similar).  Anything else is reported with the
``chain`` line that fixes it.
"""

from __future__ import annotations

import sys

# Hook -> what is lost without ours.
HOOKS = {
    "post_fork": "workers build no providers (sync, gthread, tornado, asgi, uvicorn): nothing is exported",
    "post_worker_init": "gevent workers build no providers; no ready line; app wrapping is off",
    "worker_exit": "workers exit without flushing: the last spans, metrics and logs are lost",
    "worker_abort": "timed-out workers are not reported and not flushed",
    "pre_fork": "workers get no gunicorn.worker.slot and boots are not counted",
    "child_exit": "worker exits are not counted by the master",
    "when_ready": "the master's own telemetry does not start",
    "on_exit": "the master's last telemetry is not sent",
    "on_reload": "reloads are not counted",
    "on_starting": "start-up checks (shutdown bound, opentelemetry-instrument) do not run",
}

CHAIN_MARK = "__gunicorn_otel_hooks__"


def _ours(name: str):
    conf = sys.modules.get("gunicorn_otel.conf")
    return getattr(conf, name, None) if conf is not None else None


def calls_ours(name: str, hook) -> bool:
    """Whether ``hook`` is, contains or visibly calls gunicorn-otel's ``name`` hook."""
    ours = _ours(name)
    if hook is None:
        return False
    if ours is not None and hook is ours:
        return True
    if getattr(hook, "__module__", None) == "gunicorn_otel.conf":
        return True
    marked = getattr(hook, CHAIN_MARK, None)
    if marked is not None:
        return any(calls_ours(name, inner) for inner in marked)
    code = getattr(hook, "__code__", None)
    if code is not None and name in code.co_names:
        return True
    return False


def _fix(name: str, hook) -> str:
    user = getattr(hook, "__name__", name)
    return f"{name} = chain(gunicorn_otel.conf.{name}, {user})  # from gunicorn_otel import chain"


def audit(cfg) -> list[str]:
    """One message per hook we rely on that the loaded config replaced."""
    settings = getattr(cfg, "settings", {})
    if _ours("post_fork") is None:
        return []  # our config module was not loaded at all: nothing to compare with
    messages = []
    for name, lost in HOOKS.items():
        setting = settings.get(name)
        if setting is None:
            continue
        hook = setting.get()
        if calls_ours(name, hook):
            continue
        where = getattr(getattr(hook, "__code__", None), "co_filename", "?")
        messages.append(
            f"hook {name} ({getattr(hook, '__qualname__', hook)} in {where}) replaces gunicorn-otel's and does not "
            f"call it, so {lost}. Fix: {_fix(name, hook)}"
        )
    return messages
