"""Make a ``logging`` record's extras valid OpenTelemetry attribute values, quietly.

The log bridge turns every ``extra=`` field of a record into an attribute.
Frameworks put objects there: Django logs each 4xx/5xx response with
``extra={"status_code": 404, "request": <WSGIRequest>}``
(``django/utils/log.py``, ``log_response``).  The SDK accepts only
bool, str, bytes, int, float, None and sequences or mappings of those; for
anything else it logs ``Invalid type ... for attribute value`` on every
record (``opentelemetry/attributes/__init__.py``, ``_clean_attribute_value``)
and then stores ``str(value)`` anyway.

So we clean the values first, with no warning:

* valid values pass unchanged; sequences become tuples and mappings dicts,
  cleaned recursively (up to ``MAX_DEPTH`` levels and ``MAX_ITEMS`` items
  each: a ``range(10**9)`` in ``extra`` must not stall the worker);
* any other value becomes ``repr(value)`` cut to ``MAX_TEXT`` characters
  (Django's request becomes ``"<WSGIRequest: GET '/nope'>"``); one whose
  ``repr`` raises becomes ``"<TypeName>"``;
* mapping keys that are not strings become their ``repr`` the same way;
  empty keys are dropped (the SDK drops them too, with a warning).

Nothing here can raise: a record always reaches the exporter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MAX_TEXT = 128
MAX_DEPTH = 4
MAX_ITEMS = 128
_SCALARS = (bool, str, bytes, int, float)


def short_text(value: Any) -> str:
    """``repr(value)``, at most ``MAX_TEXT`` characters; never raises."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not cost the record
        return f"<{type(value).__qualname__}>"
    if not isinstance(text, str):
        return f"<{type(value).__qualname__}>"
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def clean_value(value: Any, depth: int = 0) -> Any:
    """``value`` as a valid OTel attribute value (see the module docstring)."""
    if value is None or isinstance(value, _SCALARS):
        return value
    if depth < MAX_DEPTH and _small(value):
        if isinstance(value, Mapping):
            return clean_attributes(value, depth + 1)
        if isinstance(value, Sequence):
            return tuple(clean_value(item, depth + 1) for item in value)
    return short_text(value)


def _small(value: Any) -> bool:
    try:
        return len(value) <= MAX_ITEMS
    except Exception:  # noqa: BLE001 - no len(): not a container we walk
        return False


def clean_attributes(attributes: Mapping, depth: int = 0) -> dict:
    """A new dict whose keys are non-empty strings and whose values are valid."""
    cleaned = {}
    try:
        items = list(attributes.items())
    except Exception:  # noqa: BLE001 - a mapping that cannot be read is shown as text
        return {"value": short_text(attributes)}
    for key, value in items:
        if not isinstance(key, str):
            key = short_text(key)
        if key:
            cleaned[key] = clean_value(value, depth)
    return cleaned
