"""TLS to the collector, both protocols, server-verified and mutual; headers stay secret."""

from __future__ import annotations

import shutil
import signal
import subprocess

import pytest

from tests.conftest import otel_env
from tests.support.receiver import OTLPGrpcReceiver, OTLPReceiver

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make certificates"),
]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = tmp_path_factory.mktemp("tls")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
    )
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, cn in (("server", "127.0.0.1"), ("client", "client")):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={cn}",
        )
        extra = ["-extfile", "san.cnf"] if name == "server" else []
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            *extra,
        )
    return {
        k: str(d / f)
        for k, f in {
            "ca": "ca.pem",
            "server_cert": "server.pem",
            "server_key": "server.key",
            "client_cert": "client.pem",
            "client_key": "client.key",
        }.items()
    }


def _tls_env(endpoint, certs, mutual, **extra):
    env = otel_env(endpoint, OTEL_EXPORTER_OTLP_CERTIFICATE=certs["ca"], OTEL_METRIC_EXPORT_INTERVAL="1000", **extra)
    if mutual:
        env.update(
            OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=certs["client_cert"],
            OTEL_EXPORTER_OTLP_CLIENT_KEY=certs["client_key"],
        )
    return env


@pytest.mark.parametrize("mutual", [False, True], ids=["server-tls", "mutual-tls"])
def test_otlp_http_over_tls(mutual, certs, gunicorn):
    tls = {"cert": certs["server_cert"], "key": certs["server_key"], "client_ca": certs["ca"] if mutual else None}
    with OTLPReceiver(tls=tls) as receiver:
        assert receiver.endpoint.startswith("https://")
        secret = "Bearer%20tls-secret-123"
        proc = gunicorn(
            "wsgi_app:app",
            worker_class="gthread",
            workers=1,
            env=_tls_env(receiver.endpoint, certs, mutual, OTEL_EXPORTER_OTLP_HEADERS=f"authorization={secret}"),
        )
        for _ in range(5):
            assert proc.get("/?spans=2")[0] == 200
        # The master's own telemetry goes over the same TLS settings.
        assert receiver.wait_for(
            lambda: any(m.resource.get("gunicorn.role") == "master" for m in receiver.metrics()), timeout=20
        )
        proc.stop(signal.SIGTERM, timeout=30)
        assert len([s for s in receiver.spans() if s.name == "work"]) == 10
    assert "tls-secret-123" not in proc.log_text()


@pytest.mark.parametrize("worker_class", ["gthread", "gevent"])
def test_otlp_grpc_over_mutual_tls(worker_class, certs, gunicorn):
    tls = {"cert": certs["server_cert"], "key": certs["server_key"], "client_ca": certs["ca"]}
    with OTLPGrpcReceiver(tls=tls) as receiver:
        env = _tls_env(
            receiver.endpoint.replace("http://", "https://"), certs, True, OTEL_EXPORTER_OTLP_PROTOCOL="grpc"
        )
        proc = gunicorn("wsgi_app:app", worker_class=worker_class, workers=1, env=env)
        for _ in range(5):
            assert proc.get("/?spans=2")[0] == 200
        proc.stop(signal.SIGTERM, timeout=30)
        assert len([s for s in receiver.spans() if s.name == "work"]) == 10
