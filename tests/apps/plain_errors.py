"""Plain WSGI (``wsgi``) and ASGI (``asgi``) apps with no framework, for span naming and errors.

``/boom`` raises (the exception reaches the middleware), ``/fail`` answers 500
without raising, ``/routed/<n>`` (ASGI only) leaves its route template in the
scope the way routing frameworks do, anything else answers 200.
"""

from tests.apps import asgi_lifespan


class Boom(RuntimeError):
    pass


def wsgi(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/boom":
        raise Boom("boom from a plain WSGI app")
    status = "500 Internal Server Error" if path == "/fail" else "200 OK"
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        await asgi_lifespan.serve(receive, send)
        return
    path = scope["path"]
    if path == "/boom":
        raise Boom("boom from a plain ASGI app")
    if path.startswith("/routed/"):
        scope["route"] = "/routed/{n}"
    status = 500 if path == "/fail" else 200
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})
