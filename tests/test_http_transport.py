"""``http_transport`` against the SDK's requests transport, on real sockets.

The exporters send plain ``http://`` through ``http.client`` instead of
requests (``gunicorn_otel/_worker/http_transport.py``).  These tests prove the
replacement equal where it matters: the same request on the wire (method,
target, body, every header the SDK sets), the same outcome and the same
"connection error or not" answer (which decides the SDK's retries) for each way
a collector misbehaves, and requests still in charge wherever its own features
apply (TLS, proxies, netrc).
"""

from __future__ import annotations

import gzip
import socketserver
import threading

import pytest
import requests
from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gunicorn_otel import settings
from gunicorn_otel._worker import exporters, http_transport
from gunicorn_otel._worker.fast_span_exporter import FastOTLPSpanExporter
from tests.support.gunicorn_process import free_port

# At the floors and on every Python too: the transport relies on the exporters'
# private ``_transport`` argument and on ``http.client`` internals.
pytestmark = pytest.mark.matrix

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"


class _Recorder(socketserver.ThreadingTCPServer):
    """An HTTP/1.1 server that records each request as received and answers as told.

    ``behaviour`` per request, in order (the last one repeats):
    ``ok``; ``ok-then-close`` (answers keep-alive, then closes the connection);
    ``retry-after`` (503 with ``Retry-After: 0``); ``cut`` (a 200 whose body is
    shorter than its Content-Length, then close); ``hang`` (reads, never answers);
    ``hang-in-body`` (a 200 whose body never ends); ``early-413`` (answers 413 after
    the headers, without reading the body, and closes); ``drop`` (reads the request
    and closes without an answer).  ``answers`` counts the answers written whole.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *behaviours: str) -> None:
        self.behaviours = list(behaviours) or ["ok"]
        self.requests: list[dict] = []
        self.connections = 0
        self.answers = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.closed = threading.Event()  # set when a handler has closed its connection
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"

    def next_behaviour(self) -> str:
        with self.lock:
            return self.behaviours.pop(0) if len(self.behaviours) > 1 else self.behaviours[0]

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()
        self.thread.join(5)


class _RecordingHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: _Recorder = self.server  # type: ignore[assignment]
        with server.lock:
            server.connections += 1
        try:
            self._serve(server)
        finally:
            self.connection.close()
            server.closed.set()

    def _serve(self, server: _Recorder) -> None:
        while True:
            request_line = self.rfile.readline()
            if not request_line:
                return
            headers = []
            while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers.append((name.strip().lower(), value.strip()))
            method, target, _ = request_line.decode("latin-1").split(" ", 2)
            behaviour = server.next_behaviour()
            if behaviour == "early-413":
                with server.lock:
                    server.requests.append({"method": method, "target": target, "headers": headers, "body": b""})
                self.wfile.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            length = int(dict(headers).get("content-length", "0"))
            body = self.rfile.read(length)
            with server.lock:
                server.requests.append({"method": method, "target": target, "headers": headers, "body": body})
            if behaviour == "hang-in-body":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                self.wfile.flush()
                server.release.wait(10)
                return
            if behaviour == "hang":
                server.release.wait(10)
                return
            if behaviour == "drop":
                return
            if behaviour == "retry-after":
                self.wfile.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n")
                continue
            if behaviour == "cut":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                return
            self.wfile.write(_OK)
            with server.lock:
                server.answers += 1
            if behaviour == "ok-then-close":
                return


@pytest.fixture(autouse=True)
def _no_proxy_or_netrc(monkeypatch, tmp_path):
    """Whatever the machine's environment, no proxy and no netrc unless a test sets one."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


@pytest.fixture
def recorder():
    servers: list[_Recorder] = []

    def start(*behaviours: str) -> _Recorder:
        server = _Recorder(*behaviours)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _spans(count: int = 5):
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "t"}), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test.transport")
    for i in range(count):
        with tracer.start_as_current_span(f"span-{i}") as span:
            span.set_attribute("i", i)
    return list(memory.get_finished_spans())


def _ours(url: str, **env: str):
    values = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": url, "OTEL_EXPORTER_OTLP_TIMEOUT": "2", **env}
    exporter = exporters.build("traces", settings.load(values).exporting("traces"))
    assert isinstance(exporter._client._transport, http_transport.ExportTransport)
    return exporter


def _theirs() -> RequestsHTTPTransport:
    return RequestsHTTPTransport(session=requests.Session())


def _header_names(request: dict) -> set:
    return {name for name, _ in request["headers"]}


# -- the same request on the wire ------------------------------------------------------------


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_an_export_sends_what_the_sdk_requests_transport_sends(recorder, compression):
    server = recorder("ok")
    spans = _spans()
    sdk = FastOTLPSpanExporter(
        endpoint=server.url,
        headers={"x-tenant": "a b", "Authorization": "Bearer t"},
        compression=Compression(compression),
        timeout=2,
        session=requests.Session(),
    )
    assert not isinstance(sdk._client._transport, http_transport.ExportTransport)
    ours = _ours(
        server.url,
        OTEL_EXPORTER_OTLP_HEADERS="x-tenant=a%20b,Authorization=Bearer%20t",
        OTEL_EXPORTER_OTLP_COMPRESSION=compression,
    )
    assert sdk.export(spans) is SpanExportResult.SUCCESS
    assert ours.export(spans) is SpanExportResult.SUCCESS
    theirs_request, ours_request = server.requests
    assert (ours_request["method"], ours_request["target"]) == (theirs_request["method"], theirs_request["target"])
    decode = gzip.decompress if compression == "gzip" else bytes
    assert decode(ours_request["body"]) == decode(theirs_request["body"])
    theirs_headers, ours_headers = dict(theirs_request["headers"]), dict(ours_request["headers"])
    # Every header either sends is sent by both, with the same value, except what
    # each HTTP client adds of its own accord (see the module docstring).
    assert _header_names(ours_request) == _header_names(theirs_request) - {"accept", "connection"}
    for name in _header_names(ours_request) - {"accept-encoding", "content-length"}:
        assert ours_headers[name] == theirs_headers[name], name
    if compression == "none":
        assert ours_headers["content-length"] == theirs_headers["content-length"]
    assert ours_headers["content-type"] == "application/x-protobuf"
    assert ours_headers["user-agent"].startswith("OTel-OTLP-Exporter-Python/")
    assert ours_headers["x-tenant"] == "a b"
    assert ours_headers["accept-encoding"] == "identity"  # we never get a compressed answer to decode


def test_the_transport_sends_what_the_sdk_requests_transport_sends(recorder):
    server = recorder("ok")
    headers = {"Content-Type": "application/x-protobuf", "X-Custom": "1"}
    theirs = _theirs().request("POST", server.url + "?q=1", headers=headers, data=b"\x00body", timeout=2)
    ours = http_transport.build(verify=True, cert=None, session=requests.Session()).request(
        "POST", server.url + "?q=1", headers=headers, data=b"\x00body", timeout=2
    )
    assert (
        (ours.status_code, ours.reason, ours.error)
        == (theirs.status_code, theirs.reason, theirs.error)
        == (200, "OK", None)
    )
    assert ours.content() == theirs.content() == b""
    assert dict(ours.headers()) == {k: v for k, v in theirs.headers().items()}
    assert ours.headers()["CONTENT-TYPE"] == "application/x-protobuf"  # case-insensitive, like theirs
    theirs_request, ours_request = server.requests
    assert ours_request["target"] == theirs_request["target"] == "/v1/traces?q=1"
    assert ours_request["body"] == theirs_request["body"] == b"\x00body"


def test_a_large_body_goes_out_whole_in_one_send(recorder):
    # http.client sends the headers and the body in separate send calls; each
    # send releases the GIL an export thread then waits to get back.
    server = recorder("ok")
    body = bytes(range(256)) * 400  # 100 KiB
    sends = []

    class CountingSocket:
        def __init__(self, sock):
            self._sock = sock

        def sendall(self, data):
            sends.append(len(data))
            return self._sock.sendall(data)

        def __getattr__(self, name):
            return getattr(self._sock, name)

    conn = http_transport._OneSendConnection("127.0.0.1", server.server_address[1], timeout=5)
    conn.connect()
    conn.sock = CountingSocket(conn.sock)
    conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"")
    conn.close()
    assert len(sends) == 1
    assert sends[0] > len(body)
    theirs = _theirs().request(
        "POST", server.url, headers={"Content-Type": "application/x-protobuf"}, data=body, timeout=5
    )
    assert theirs.status_code == 200
    ours_request, theirs_request = server.requests
    assert ours_request["body"] == theirs_request["body"] == body
    assert (
        dict(ours_request["headers"])["content-length"]
        == dict(theirs_request["headers"])["content-length"]
        == str(len(body))
    )


# -- connections ------------------------------------------------------------------------------


def test_one_kept_alive_connection_serves_every_export(recorder):
    server = recorder("ok")
    ours = _ours(server.url)
    for _ in range(5):
        assert ours.export(_spans(2)) is SpanExportResult.SUCCESS
    assert len(server.requests) == 5
    assert server.connections == 1


@pytest.mark.parametrize(
    ("idle_check", "failed_attempts"), [(0.0, 0), (60.0, 1)], ids=["checked-before-reuse", "found-closed-on-send"]
)
def test_a_connection_the_collector_closed_costs_no_span(recorder, monkeypatch, idle_check, failed_attempts):
    # checked-before-reuse: the idle check sees the close, and a new connection is
    # opened with no failed attempt.  found-closed-on-send: the send on the closed
    # connection fails once as a connection error, which the SDK's client retries at
    # once on a new connection.
    monkeypatch.setattr(http_transport, "_IDLE_CHECK", idle_check)
    server = recorder("ok-then-close")
    ours = _ours(server.url)
    transport = ours._client._transport
    attempts = []
    request = transport.request

    def counted(*args, **kwargs):
        result = request(*args, **kwargs)
        attempts.append(result.error)
        return result

    transport.request = counted
    assert ours.export(_spans(2)) is SpanExportResult.SUCCESS
    assert server.closed.wait(5)  # the collector has closed the kept connection
    assert ours.export(_spans(3)) is SpanExportResult.SUCCESS
    failed = [error for error in attempts if error is not None]
    assert len(failed) == failed_attempts
    assert all(transport.is_connection_error(error) for error in failed)
    bodies = [request["body"] for request in server.requests if request["body"]]
    assert len(bodies) == 2  # each export arrived, once
    assert server.connections == 2


# -- misbehaving collectors: same outcome and same retry decision as requests ----------------


@pytest.mark.parametrize("behaviour", ["refused", "hang", "hang-in-body", "cut", "retry-after", "early-413", "no-time"])
def test_failures_are_classified_as_the_requests_transport_classifies_them(recorder, behaviour):
    if behaviour == "refused":
        url = f"http://127.0.0.1:{free_port()}/v1/traces"  # nothing listens there
    else:
        url = recorder("ok" if behaviour == "no-time" else behaviour).url
    theirs_transport = _theirs()
    ours_transport = http_transport.build(verify=True, cert=None, session=requests.Session())
    # early-413: a body far larger than the socket buffers, which the collector never reads
    data = b"x" * 8_000_000 if behaviour == "early-413" else b"x"
    timeout = 0.0 if behaviour == "no-time" else 0.5
    kwargs = dict(headers={"Content-Type": "application/x-protobuf"}, data=data, timeout=timeout)
    theirs = theirs_transport.request("POST", url, **kwargs)
    ours = ours_transport.request("POST", url, **kwargs)
    assert ours.status_code == theirs.status_code
    assert (ours.error is None) == (theirs.error is None)
    assert ours_transport.is_connection_error(ours.error) == theirs_transport.is_connection_error(theirs.error)
    if behaviour == "retry-after":
        assert ours.status_code == 503
        assert ours.headers()["retry-after"] == theirs.headers()["retry-after"] == "0"
    if behaviour in ("refused", "hang", "hang-in-body"):
        assert ours_transport.is_connection_error(ours.error)
    if behaviour in ("cut", "no-time"):
        assert not ours_transport.is_connection_error(ours.error)
    if behaviour == "early-413":
        assert ours.status_code == 413


def test_errors_of_the_requests_fallback_are_classified_by_it():
    # requests raises a bare OSError for a missing client certificate (it does not
    # retry it); an https collector goes through the fallback, whose answer counts.
    url = "https://127.0.0.1:9/v1/traces"
    theirs_transport = RequestsHTTPTransport(cert="/nonexistent/client.pem", session=requests.Session())
    ours_transport = http_transport.build(verify=True, cert="/nonexistent/client.pem", session=requests.Session())
    theirs = theirs_transport.request("POST", url, data=b"x", timeout=0.5)
    ours = ours_transport.request("POST", url, data=b"x", timeout=0.5)
    assert type(ours.error) is type(theirs.error) is OSError
    assert ours_transport.is_connection_error(ours.error) is theirs_transport.is_connection_error(theirs.error) is False


def test_a_503_with_retry_after_is_retried_by_the_sdk_and_delivered(recorder):
    server = recorder("retry-after", "ok")
    assert _ours(server.url).export(_spans(2)) is SpanExportResult.SUCCESS
    assert len(server.requests) == 2


# -- where requests stays in charge ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "env", "direct"),
    [
        ("http://127.0.0.1:4318/v1/traces", {}, True),
        ("http://collector:4318/v1/traces?x=1", {}, True),
        ("https://collector:4318/v1/traces", {}, False),
        ("http://user:secret@collector:4318/v1/traces", {}, False),
        ("http://collector:4318/v1/traces", {"HTTP_PROXY": "http://proxy:3128"}, False),
        ("http://collector:4318/v1/traces", {"ALL_PROXY": "http://proxy:3128"}, False),
        ("http://collector:4318/v1/traces", {"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "collector"}, True),
        ("http://collector:4318/v1/traces", {"HTTPS_PROXY": "http://proxy:3128"}, True),  # not for http://
        ("http://collector:4318/v1/my traces", {}, False),  # requests percent-encodes; http.client refuses
        ("http://collector:4318/v1/tr\u00e4ces", {}, False),
    ],
)
def test_which_urls_http_client_sends_to(monkeypatch, url, env, direct):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    route = http_transport.direct_route(url)
    assert (route is not None) == direct
    if route is not None:
        assert route.host in ("127.0.0.1", "collector")
        assert route.port == 4318
        assert route.target == url.split("4318", 1)[1]


def test_a_netrc_entry_for_the_collector_leaves_it_to_requests(monkeypatch, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine collector login u password p\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert http_transport.direct_route("http://collector:4318/v1/traces") is None
    assert http_transport.direct_route("http://other:4318/v1/traces") is not None


def test_a_proxied_collector_is_reached_through_requests(recorder, monkeypatch):
    # The "proxy" is the recorder itself: requests sends it the absolute URL.
    server = recorder("ok")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    ours = _ours("http://collector.invalid:4318/v1/traces")
    assert ours.export(_spans(1)) is SpanExportResult.SUCCESS
    (request,) = server.requests
    assert request["target"] == "http://collector.invalid:4318/v1/traces"


def test_the_exporters_take_a_transport():
    # ``_transport`` is a private argument of the SDK's exporters: if an upgrade
    # drops it, exporters.build falls back to ``session=`` and this says so.
    assert http_transport.supported()
