"""A Flask app as Flask's tutorial writes one: ``flask_app:app``.

Routes: ``/health``, ``/items/<int:item_id>`` (one app span), ``/log`` (a
warning carrying the request object in ``extra``), ``/error`` (raises: Flask
logs it through ``app.logger`` and answers 500), anything else 404.
"""

import logging

from flask import Flask, request
from opentelemetry import trace

app = Flask(__name__)
tracer = trace.get_tracer("tests.flask")
log = logging.getLogger("tests.flask")


@app.get("/health")
def health():
    return "ok"


@app.get("/items/<int:item_id>")
def item(item_id: int):
    with tracer.start_as_current_span("load-item") as span:
        span.set_attribute("item.id", item_id)
    return f"item {item_id}"


@app.get("/log")
def log_view():
    log.warning("app-warning %s", request.path, extra={"request": request, "count": 3})
    return "ok"


@app.get("/error")
def error():
    raise RuntimeError("boom from a Flask view")
