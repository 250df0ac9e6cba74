"""Apps shaped like real frameworks' apps, for GUNICORN_OTEL_WRAP_APP.

* ``app``: like Flask, a callable object delegating to its ``wsgi_app`` method.
* ``self_wrapped``: the same after the pattern from Flask's and OpenTelemetry's
  docs, ``app.wsgi_app = OpenTelemetryMiddleware(app.wsgi_app)``.
* ``fastapi_behind_middleware``: a FastAPI app inside a plain ASGI middleware
  that keeps it as ``.app``, as Starlette-style middlewares do.
"""

import wsgi_app
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware


class FlaskLike:
    def wsgi_app(self, environ, start_response):
        return wsgi_app.app(environ, start_response)

    def __call__(self, environ, start_response):
        return self.wsgi_app(environ, start_response)


app = FlaskLike()

self_wrapped = FlaskLike()
self_wrapped.wsgi_app = OpenTelemetryMiddleware(self_wrapped.wsgi_app)


class PassThrough:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


def _fastapi_behind_middleware():
    import fastapi_app

    return PassThrough(fastapi_app.app)


def __getattr__(name):  # import FastAPI only for the test that uses it
    if name == "fastapi_behind_middleware":
        return _fastapi_behind_middleware()
    raise AttributeError(name)
