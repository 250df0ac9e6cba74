"""OTEL_RESOURCE_ATTRIBUTES: what the master accepts, every worker's SDK reads the same way, quietly."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import otel_env

pytestmark = pytest.mark.slow  # real Gunicorn processes


@pytest.mark.parametrize("value", ["a=1,,b=2", "a=1,", "a=1,=2", "a=1,b"])
def test_items_the_sdk_would_warn_about_stop_gunicorn_before_any_worker(value, gunicorn):
    proc = gunicorn("wsgi_app:app", env={"OTEL_RESOURCE_ATTRIBUTES": value}, start=False)
    returncode, output = proc.run_to_exit(timeout=30)
    assert returncode != 0
    assert f"OTEL_RESOURCE_ATTRIBUTES={value!r} is invalid" in output, output
    assert "Booting worker" not in output


@pytest.mark.matrix
def test_accepted_value_reaches_every_worker_as_the_sdk_reads_it_without_warnings(receiver, gunicorn):
    # Keys are not URL-decoded by the SDK, values are (after stripping).
    env = otel_env(receiver.endpoint, OTEL_RESOURCE_ATTRIBUTES="team=shop, region = eu%2Dwest ,k%20=%20v")
    proc = gunicorn("wsgi_app:app", workers=2, env=env)
    for _ in range(4):
        assert proc.get("/")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    spans = [s for s in receiver.spans() if s.name == "work"]
    assert len(spans) == 4
    for span in spans:
        assert {k: span.resource.get(k) for k in ("team", "region", "k%20")} == {
            "team": "shop",
            "region": "eu-west",
            "k%20": " v",
        }
        assert not {"k", "k "} & set(span.resource), "the master and the SDK must not read one item as two keys"
    log = proc.log_text()
    assert "Invalid key value resource attribute pair" not in log, log
    assert "warning" not in log.lower(), log
