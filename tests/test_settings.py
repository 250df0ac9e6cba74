"""Settings: every bad value is refused with a message naming variable, value and accepted form."""

import pathlib

import pytest

from gunicorn_otel import settings
from gunicorn_otel.settings import BatchOptions, SettingsError, load

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_defaults():
    s = load({})
    assert s.disabled is False
    assert s.shutdown_timeout == 5.0
    assert s.traces.kind == "otlp"
    assert s.traces.protocol == "http/protobuf"
    assert s.traces.endpoint == "http://localhost:4318/v1/traces"
    assert s.logs.endpoint == "http://localhost:4318/v1/logs"
    assert s.bsp == BatchOptions(schedule_delay=5.0, max_queue_size=2048, max_export_batch_size=512, send_ahead=True)
    assert s.blrp == BatchOptions(schedule_delay=1.0, max_queue_size=2048, max_export_batch_size=512)


def test_send_ahead_can_be_turned_off_and_never_applies_to_logs():
    s = load({"GUNICORN_OTEL_SEND_AHEAD": "false"})
    assert s.bsp.send_ahead is False
    assert load({}).blrp.send_ahead is False


def test_per_signal_values_win_over_general_ones():
    s = load(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://metrics.example:443/custom",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "3",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "7.5",
        }
    )
    assert s.traces.endpoint == "http://collector:4318/v1/traces"
    assert s.metrics.endpoint == "https://metrics.example:443/custom"
    assert s.traces.timeout == 7.5
    assert s.logs.timeout == 3.0


@pytest.mark.parametrize(
    "name, value, accepted",
    [
        ("OTEL_SDK_DISABLED", "yes please", "true or false"),
        ("OTEL_TRACES_EXPORTER", "jaeger", "otlp, console, pretty, none"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "http/protobuf, grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "http:// or https:// URL"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "ten", "positive number"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "0", "positive number"),
        ("OTEL_BSP_SCHEDULE_DELAY", "abc", "positive whole number"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "-1", "positive whole number"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "0", "positive whole number"),
        ("OTEL_TRACES_SAMPLER", "sometimes", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5", "0 to 1"),
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "lots", "non-negative whole number"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem", "readable file"),
        ("GUNICORN_OTEL_SHUTDOWN_TIMEOUT", "-2", "positive number"),
        ("GUNICORN_OTEL_PROCESSOR", "fast", "auto, threads, asyncio, gevent, batch, simple"),
    ],
)
def test_bad_value_names_variable_value_and_accepted_form(name, value, accepted):
    with pytest.raises(SettingsError) as err:
        load({name: value})
    message = str(err.value)
    assert name in message
    assert repr(value) in message
    assert accepted in message


def test_batch_larger_than_queue_is_refused():
    with pytest.raises(SettingsError, match="OTEL_BSP_MAX_EXPORT_BATCH_SIZE=600 .*OTEL_BSP_MAX_QUEUE_SIZE"):
        load({"OTEL_BSP_MAX_QUEUE_SIZE": "500", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "600"})


def test_header_values_never_appear_in_errors():
    secret = "api-key-SECRET123"
    with pytest.raises(SettingsError) as err:
        load({"OTEL_EXPORTER_OTLP_HEADERS": secret})
    assert "SECRET123" not in str(err.value)
    assert "OTEL_EXPORTER_OTLP_HEADERS" in str(err.value)
    s = load({"OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=SECRET123"})
    assert s.traces.headers == {"x-api-key": "SECRET123"}
    assert "SECRET123" not in repr(s)
    assert "SECRET123" not in str(s.traces.redacted())


def test_sdk_disabled_accepts_the_usual_spellings():
    assert load({"OTEL_SDK_DISABLED": "TRUE"}).disabled is True
    assert load({"OTEL_SDK_DISABLED": "false"}).disabled is False
    assert load({"OTEL_SDK_DISABLED": "true"}).enabled_signals() == []


def test_unknown_plugin_variables_are_reported():
    env = {"GUNICORN_OTEL_SHUTDOWN_TIMOUT": "3", "GUNICORN_OTEL_PROCESSOR": "auto"}
    assert settings.unknown_plugin_variables(env) == ["GUNICORN_OTEL_SHUTDOWN_TIMOUT"]


def test_readme_table_is_generated_from_the_declarations():
    readme = (ROOT / "README.md").read_text()
    assert settings.markdown_table() in readme, (
        "regenerate with: python -c 'from gunicorn_otel.settings import markdown_table; print(markdown_table())'"
    )
