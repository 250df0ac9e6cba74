"""Compose Gunicorn hooks so a user config can keep its own and ours.

Gunicorn loads exactly one config and each hook setting holds one callable,
checked for an exact positional arity (``gunicorn/config.py``
``validate_callable`` via ``util.get_arity``, which reads
``inspect.signature``).  A plain ``*args`` wrapper fails that check, so the
composed function carries the first hook's signature in ``__signature__``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _arity(hook: Callable) -> int:
    return sum(1 for p in inspect.signature(hook).parameters.values() if p.kind in _POSITIONAL)


def chain(*hooks: Callable) -> Callable:
    """One hook that calls ``hooks`` in order with the same arguments.

    All hooks must take the same number of positional arguments.  Every hook
    runs even if an earlier one raises; the first exception is re-raised at
    the end, so Gunicorn still sees the failure.
    """
    if not hooks:
        raise TypeError("chain() needs at least one hook")
    arities = {_arity(hook) for hook in hooks}
    if len(arities) != 1:
        names = ", ".join(f"{getattr(h, '__name__', h)}/{_arity(h)}" for h in hooks)
        raise TypeError(f"chain(): hooks take different numbers of arguments: {names}")

    def chained(*args):
        error = None
        for hook in hooks:
            try:
                hook(*args)
            except Exception as exc:  # noqa: BLE001 - re-raised below
                error = error or exc
        if error is not None:
            raise error

    first = hooks[0]
    chained.__signature__ = inspect.signature(first)  # type: ignore[attr-defined]  # read by inspect.signature
    chained.__name__ = getattr(first, "__name__", "chained")
    chained.__qualname__ = chained.__name__
    # gunicorn-otel's hook audit reads this to see whether ours is among them.
    chained.__gunicorn_otel_hooks__ = hooks  # type: ignore[attr-defined]
    chained.__doc__ = "Chained Gunicorn hook: " + ", ".join(getattr(h, "__qualname__", repr(h)) for h in hooks)
    return chained
