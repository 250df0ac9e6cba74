"""An OTLP/HTTP receiver the tests own, built on ``opentelemetry-proto``.

Tests count what really arrived over the wire, so the receiver decodes real
protobuf requests and keeps every span, log record and metric.  It can also
misbehave on demand, the way collectors do in production: answer slowly,
answer 503 with Retry-After, accept connections and never answer (a black
hole), or stop listening (connection refused) and come back on the same port.

``python -m tests.support.receiver --port 4318`` runs one in the foreground
and prints what arrives once a second (used by the benchmarks).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.server
import socket
import socketserver
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

PATHS = {
    "/v1/traces": (trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse),
    "/v1/metrics": (metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse),
    "/v1/logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
}


def any_value(value) -> Any:
    """An OTLP ``AnyValue`` as a plain Python value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def attributes(key_values) -> dict:
    return {kv.key: any_value(kv.value) for kv in key_values}


@dataclass
class _Received:
    """One received item: its resource's attributes, its scope's name and the proto itself."""

    resource: dict
    scope: str
    proto: Any

    @property
    def attributes(self) -> dict:
        return attributes(self.proto.attributes)

    @property
    def trace_id(self) -> str:
        return self.proto.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.proto.span_id.hex()


class ReceivedSpan(_Received):
    @property
    def name(self) -> str:
        return self.proto.name

    @property
    def kind(self) -> int:
        return self.proto.kind


class ReceivedLog(_Received):
    @property
    def body(self) -> str:
        value = any_value(self.proto.body)
        return value if isinstance(value, str) else repr(value)


class ReceivedMetric(_Received):
    @property
    def name(self) -> str:
        return self.proto.name

    def data_points(self) -> list:
        kind = self.proto.WhichOneof("data")
        return list(getattr(self.proto, kind).data_points) if kind else []


# path -> (resource list, scope list, item list field names, item class)
_LAYOUT = {
    "/v1/traces": ("resource_spans", "scope_spans", "spans", ReceivedSpan),
    "/v1/logs": ("resource_logs", "scope_logs", "log_records", ReceivedLog),
    "/v1/metrics": ("resource_metrics", "scope_metrics", "metrics", ReceivedMetric),
}


def _items(path: str):
    """A function turning one decoded request for ``path`` into received items."""
    resources_field, scopes_field, items_field, cls = _LAYOUT[path]

    def flatten(request) -> list:
        items = []
        for resource_group in getattr(request, resources_field):
            resource = attributes(resource_group.resource.attributes)
            for scope_group in getattr(resource_group, scopes_field):
                items += [cls(resource, scope_group.scope.name, item) for item in getattr(scope_group, items_field)]
        return items

    return flatten


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_POST(self):
        receiver: OTLPReceiver = self.server.receiver
        if receiver._hold_while_blackhole():
            self.close_connection = True
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        mode, delay, retry_after = receiver._mode_snapshot()
        if mode == "slow":
            receiver._stopping.wait(delay)
        if mode == "unavailable":
            receiver._count(self.path, rejected=True)
            self._reply(503, b"", {"Retry-After": str(retry_after)} if retry_after is not None else {})
            return
        if mode == "error":
            receiver._count(self.path, rejected=True)
            self._reply(400, b"")
            return
        types = PATHS.get(self.path)
        if types is None:
            self._reply(404, b"")
            return
        request_type, response_type = types
        request = request_type.FromString(body)
        # Stored before answering, so a test that saw the exporter succeed
        # finds it here; taken back if the answer can't go out (a request cut
        # off by "down" mode failed for the exporter too).
        receiver._store(self.path, request)
        try:
            self._reply(200, response_type().SerializeToString())
        except OSError:
            receiver._unstore(self.path, request)
            raise

    def _reply(self, status: int, payload: bytes, headers: dict | None = None) -> None:
        """Send the whole response in one write, so it either went out or it didn't."""
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self._headers_buffer.append(b"\r\n")
        response = b"".join(self._headers_buffer) + payload
        self._headers_buffer = []
        self.wfile.write(response)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, receiver):
        self.receiver = receiver
        self.connections: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        # A connection that "down" mode cut, or whose client gave up, is part
        # of the scenario; socketserver would print a traceback for each.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class OTLPReceiver:
    """Receives OTLP/HTTP on 127.0.0.1; see the module docstring for the fault modes."""

    MODES = ("ok", "slow", "unavailable", "error", "blackhole", "down")

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, tls: dict | None = None) -> None:
        """``tls``: {"cert": path, "key": path, "client_ca": path or None} serves https
        (and requires a client certificate signed by ``client_ca`` when given)."""
        self.host = host
        self.port = port
        self.tls = tls
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._mode = "ok"
        self._delay = 0.0
        self._retry_after: int | None = None
        self._spans: list[ReceivedSpan] = []
        self._logs: list[ReceivedLog] = []
        self._metrics: list[ReceivedMetric] = []
        self._raw: dict[str, list] = {}
        self._flattened: dict[str, int] = {}
        self._requests: dict[str, int] = {}
        self._rejected: dict[str, int] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------

    def start(self) -> OTLPReceiver:
        self._listen()
        return self

    def _listen(self) -> None:
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        if self.tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls["cert"], self.tls["key"])
            if self.tls.get("client_ca"):
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(self.tls["client_ca"])
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.drop_connections()
        server.server_close()
        self._thread.join(5)

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        self._close()

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    # -- fault modes -----------------------------------------------------

    def set_mode(self, mode: str, *, delay: float = 0.0, retry_after: int | None = None) -> None:
        if mode not in self.MODES:
            raise ValueError(f"unknown mode {mode!r}")
        with self._cond:
            previous = self._mode
            self._mode, self._delay, self._retry_after = mode, delay, retry_after
            self._cond.notify_all()
        if mode == "down" and previous != "down":
            self._close()
        elif mode != "down" and previous == "down":
            self._listen()

    def _mode_snapshot(self):
        with self._cond:
            return self._mode, self._delay, self._retry_after

    def _hold_while_blackhole(self) -> bool:
        """Hang a request, unanswered, while in black-hole mode; True if it was held."""
        with self._cond:
            if self._mode != "blackhole":
                return False
            while self._mode == "blackhole" and not self._stopping.is_set():
                self._cond.wait(0.5)
            return True

    # -- storage ---------------------------------------------------------

    def _count(self, path: str, rejected: bool = False) -> None:
        with self._cond:
            table = self._rejected if rejected else self._requests
            table[path] = table.get(path, 0) + 1
            self._cond.notify_all()

    def _store(self, path: str, request) -> None:
        """Keep the decoded request; items are flattened lazily, on query.

        The receiver shares the machine's CPU with the servers under test, so
        the hot path does as little as possible.
        """
        with self._cond:
            self._raw.setdefault(path, []).append(request)
            self._requests[path] = self._requests.get(path, 0) + 1
            self._cond.notify_all()

    def _unstore(self, path: str, request) -> None:
        with self._cond:
            raw = self._raw.get(path, [])
            index = next(i for i in range(len(raw) - 1, -1, -1) if raw[i] is request)
            if index < self._flattened.get(path, 0):
                return  # already handed out by a query; keep the record consistent
            del raw[index]
            self._requests[path] -= 1

    def _flatten(self, path: str, target: list, flatten) -> list:
        """Append items of requests not flattened yet to ``target``; return a copy."""
        with self._cond:
            raw = self._raw.get(path, [])
            done = self._flattened.get(path, 0)
            pending = raw[done:]
            self._flattened[path] = len(raw)
            for request in pending:
                target.extend(flatten(request))
            return list(target)

    def spans(self) -> list[ReceivedSpan]:
        return self._flatten("/v1/traces", self._spans, _items("/v1/traces"))

    def span_count(self) -> int:
        """Cheap count without building objects (for load tests)."""
        with self._cond:
            return sum(
                len(ss.spans)
                for r in self._raw.get("/v1/traces", [])
                for rs in r.resource_spans
                for ss in rs.scope_spans
            )

    def log_records(self) -> list[ReceivedLog]:
        return self._flatten("/v1/logs", self._logs, _items("/v1/logs"))

    def metrics(self) -> list[ReceivedMetric]:
        return self._flatten("/v1/metrics", self._metrics, _items("/v1/metrics"))

    def rejected_count(self, path: str) -> int:
        with self._cond:
            return self._rejected.get(path, 0)

    def clear(self) -> None:
        with self._cond:
            self._spans.clear()
            self._logs.clear()
            self._metrics.clear()
            self._raw.clear()
            self._flattened.clear()
            self._requests.clear()
            self._rejected.clear()

    # -- waiting ---------------------------------------------------------

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Re-check ``predicate`` after every request received, until ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._cond.release()
                try:
                    if predicate():
                        return True
                finally:
                    self._cond.acquire()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))

    def wait_for_spans(
        self, count: int, timeout: float, predicate: Callable[[ReceivedSpan], bool] | None = None
    ) -> list:
        def matching():
            return [s for s in self.spans() if predicate is None or predicate(s)]

        self.wait_for(lambda: len(matching()) >= count, timeout)
        return matching()


class _BlackHole:
    """A listening socket that accepts connections and never reads or answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@contextlib.contextmanager
def blackhole():
    hole = _BlackHole()
    try:
        yield hole
    finally:
        hole.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OTLP/HTTP receiver that prints counts once a second")
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--host", default="127.0.0.1")
    ns = parser.parse_args(argv)
    with OTLPReceiver(ns.host, ns.port) as receiver:
        print(f"receiving OTLP/HTTP on {receiver.endpoint}", flush=True)
        try:
            while True:
                time.sleep(1)
                points = sum(len(m.data_points()) for m in receiver.metrics())
                print(
                    f"spans={len(receiver.spans())} log_records={len(receiver.log_records())} metric_points={points}",
                    flush=True,
                )
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())


class OTLPGrpcReceiver(OTLPReceiver):
    """The same store and queries, fed by OTLP/gRPC (modes: ok and slow only)."""

    def start(self) -> OTLPGrpcReceiver:
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        receiver = self

        def handler(path, response_type):
            def export(request, context):
                mode, delay, _ = receiver._mode_snapshot()
                if mode == "slow":
                    receiver._stopping.wait(delay)
                receiver._store(path, request)
                return response_type()

            return export

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            Export = staticmethod(handler("/v1/traces", trace_service_pb2.ExportTraceServiceResponse))

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            Export = staticmethod(handler("/v1/metrics", metrics_service_pb2.ExportMetricsServiceResponse))

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            Export = staticmethod(handler("/v1/logs", logs_service_pb2.ExportLogsServiceResponse))

        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self._grpc)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self._grpc)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self._grpc)
        address = f"{self.host}:{self.port}"
        if self.tls:

            def read(path):
                with open(path, "rb") as f:
                    return f.read()

            credentials = grpc.ssl_server_credentials(
                [(read(self.tls["key"]), read(self.tls["cert"]))],
                root_certificates=read(self.tls["client_ca"]) if self.tls.get("client_ca") else None,
                require_client_auth=bool(self.tls.get("client_ca")),
            )
            self.port = self._grpc.add_secure_port(address, credentials)
        else:
            self.port = self._grpc.add_insecure_port(address)
        self._grpc.start()
        return self

    def set_mode(self, mode: str, *, delay: float = 0.0, retry_after: int | None = None) -> None:
        if mode not in ("ok", "slow"):
            raise ValueError("the gRPC receiver supports only 'ok' and 'slow'")
        with self._cond:
            self._mode, self._delay = mode, delay

    def stop(self) -> None:
        self._stopping.set()
        self._grpc.stop(grace=None).wait(5)
