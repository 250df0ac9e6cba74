"""Build one exporter per signal from resolved settings.

Exporters get every option explicitly from ``Settings`` instead of reading
``OTEL_EXPORTER_OTLP_*`` themselves: the master validated those values, and an
exporter left to read the environment would reintroduce the SDK's silent
fallbacks (an invalid HTTP timeout becomes 10 s with only a log line).

Spans over OTLP/HTTP use ``FastOTLPSpanExporter``: the SDK exporter with a
wire-format encoder ~6x cheaper per span, proven equal to the official
encoder in ``tests/test_otlp_wire.py``.  Every OTLP/HTTP exporter sends
through ``http_transport`` (plain ``http://`` by ``http.client``, the rest by
requests), proven equal to the SDK's requests transport in
``tests/test_http_transport.py``.

Imports happen inside the functions: this module is imported only in a worker
at build time, after gevent has patched (see ``worker_kinds``).
"""

from __future__ import annotations

from gunicorn_otel.settings import Exporting


def build(signal: str, options: Exporting):
    """The exporter for ``signal`` ("traces", "metrics", "logs"), or None for ``none``."""
    if options.kind == "none":
        return None
    if options.kind == "console":
        return _console(signal)
    if options.kind == "pretty":
        from gunicorn_otel._worker import console

        return console.exporter(signal)
    if options.protocol == "grpc":
        return _grpc(signal, options)
    return _http(signal, options)


def _console(signal: str):
    if signal == "traces":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if signal == "metrics":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

    return ConsoleLogRecordExporter()


def _session():
    """A requests session that keeps the CA bundle it was given.

    The SDK sets ``session.verify`` to ``OTEL_EXPORTER_OTLP_CERTIFICATE``, but
    requests replaces a session's ``verify`` with ``REQUESTS_CA_BUNDLE`` or
    ``CURL_CA_BUNDLE`` from the environment on every request, so wherever those
    are set (many container images) the collector's CA was silently ignored and
    every export failed verification.  Proxies from the environment still apply.
    """
    import requests

    class _KeepVerify(requests.Session):
        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if isinstance(self.verify, str) and verify in (None, True):
                settings["verify"] = self.verify
            return settings

    return _KeepVerify()


def _transport_kwargs(options: Exporting) -> dict:
    """``_transport=`` our ``http_transport`` where the SDK takes one, else ``session=`` as before.

    ``verify`` and ``cert`` are derived as the SDK's ``_build_transport`` derives
    them (our settings already resolved the signal's and the generic variables).
    """
    session = _session()
    try:
        from gunicorn_otel._worker import http_transport
    except ImportError:  # opentelemetry-exporter-http-transport moved or gone: the SDK's own transport
        return {"session": session}
    if not http_transport.supported():
        return {"session": session}
    cert = (
        (options.client_certificate, options.client_key)
        if options.client_certificate and options.client_key
        else options.client_certificate
    )
    return {"_transport": http_transport.build(verify=options.certificate or True, cert=cert, session=session)}


def _http(signal: str, options: Exporting):
    from opentelemetry.exporter.otlp.proto.http import Compression

    kwargs = dict(
        **_transport_kwargs(options),
        endpoint=options.endpoint,
        headers=dict(options.headers),
        timeout=options.timeout,
        compression=Compression(options.compression),
        certificate_file=options.certificate,
        client_key_file=options.client_key,
        client_certificate_file=options.client_certificate,
    )
    if signal == "traces":
        from gunicorn_otel._worker.fast_span_exporter import FastOTLPSpanExporter

        return FastOTLPSpanExporter(**kwargs)
    if signal == "metrics":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(**kwargs)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter(**kwargs)


def _grpc_credentials(options: Exporting):
    """TLS material for gRPC, read from the files the settings validated."""
    if not (options.certificate or options.client_certificate):
        return None
    import grpc

    def read(path):
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()

    return grpc.ssl_channel_credentials(
        root_certificates=read(options.certificate),
        private_key=read(options.client_key),
        certificate_chain=read(options.client_certificate),
    )


def _grpc(signal: str, options: Exporting):
    import grpc

    endpoint = options.endpoint or "http://localhost:4317"
    insecure = options.insecure
    if insecure is None:
        insecure = endpoint.startswith("http://")
    kwargs = dict(
        endpoint=endpoint,
        insecure=insecure,
        credentials=_grpc_credentials(options),
        headers=dict(options.headers),
        timeout=options.timeout,
        compression=grpc.Compression.Gzip if options.compression == "gzip" else grpc.Compression.NoCompression,
    )
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(**kwargs)
    if signal == "metrics":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(**kwargs)
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    return OTLPLogExporter(**kwargs)
