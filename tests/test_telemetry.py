"""streamops.telemetry: spans and metrics from a report (the SDK's in-memory exporters), logs."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import streamops as so
from streamops.telemetry import instrument, log_report, record_report, report_attributes
from streamops.testing import FakeStreamingModel, Fault

REPLY = "Mail ann.lee@example.com or bob@example.org, thanks."


class OTel:
    """A tracer and a meter provider writing to memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def options(self) -> dict[str, Any]:
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> its data points."""
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


@pytest.fixture
def otel() -> OTel:
    return OTel()


def pipeline() -> so.Operator[Any, Any]:
    return so.redact(["email"]) | so.budget(max_tokens=100, model="gpt-4o") | so.collect()


async def test_span_and_metrics_of_a_stream(otel: OTel) -> None:
    model = FakeStreamingModel(REPLY, format="openai", delay=0.01)
    stream = pipeline()(model.astream("who?"))
    async for _ in stream:
        pass
    record_report(stream.report, provider="openai", **otel.options())

    (span,) = otel.spans.get_finished_spans()
    assert span.name == "chat gpt-4o"
    assert span.kind == SpanKind.CLIENT
    attrs: dict[str, Any] = dict(span.attributes or {})
    usage = stream.report["usage"]
    assert isinstance(usage, so.ProviderUsage)
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-4o"
    assert attrs["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["streamops.redactions.email"] == 2
    assert attrs["streamops.hold_back.max_chars"] > 0
    assert attrs["streamops.cost"] > 0
    assert span.start_time is not None
    assert span.end_time is not None
    assert (span.end_time - span.start_time) / 1e9 >= 0.03  # the fake's delays, real time

    points = otel.metrics()
    by_type = {
        p.attributes["gen_ai.token.type"]: p.sum for p in points["gen_ai.client.token.usage"]
    }
    assert by_type == {"input": usage.prompt_tokens, "output": usage.completion_tokens}
    (ttft,) = points["gen_ai.client.operation.time_to_first_chunk"]
    assert 0 < ttft.sum < 1
    (duration,) = points["gen_ai.client.operation.duration"]
    assert duration.attributes["streamops.stop_reason"] == "complete"
    (redactions,) = points["streamops.redactions"]
    assert (redactions.value, redactions.attributes["streamops.rule"]) == (2, "email")
    assert points["streamops.cost"][0].value == pytest.approx(attrs["streamops.cost"])
    assert points["streamops.hold_back"][0].max > 0


def test_budget_cut_and_error_streams(otel: OTel) -> None:
    cut = so.budget(max_tokens=2)(["one two three four"])
    list(cut)
    assert report_attributes(cut.report)["gen_ai.response.finish_reasons"] == ("length",)

    model = FakeStreamingModel("a b c", faults=[Fault.raise_at(1, ConnectionResetError)])
    failing = so.redact()(model.stream())
    with pytest.raises(ConnectionResetError):
        list(failing)
    record_report(failing.report, **otel.options())
    (span,) = otel.spans.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.name == "chat"
    assert any(e.name == "exception" for e in span.events)


def test_instrument_records_when_the_stream_ends(otel: OTel) -> None:
    stream = so.redact(["email"])(["mail ann@example.com"])
    instrument(stream.report, model="my-model", attributes={"app.route": "/chat"}, **otel.options())
    assert otel.spans.get_finished_spans() == ()
    assert list(stream) == ["mail ", "[EMAIL]"]
    (span,) = otel.spans.get_finished_spans()
    assert span.name == "chat my-model"
    assert (span.attributes or {})["app.route"] == "/chat"


def test_log_report_is_structured(caplog: pytest.LogCaptureFixture) -> None:
    model = FakeStreamingModel(REPLY, format="anthropic")
    stream = pipeline()(model.stream("who?"))
    list(stream)
    with caplog.at_level(logging.INFO, logger="streamops"):
        log_report(stream.report, provider="anthropic")
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith("stream complete: ")
    assert "redactions email=2" in record.getMessage()
    data = record.__dict__["streamops"]
    assert data["gen_ai.provider.name"] == "anthropic"
    assert data["streamops.redactions.email"] == 2
    assert data["gen_ai.usage.output_tokens"] > 0

    error = ConnectionResetError("reset")
    failing = so.identity()(FakeStreamingModel("a b", faults=[Fault.raise_at(1, error)]).stream())
    with pytest.raises(ConnectionResetError):
        list(failing)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="streamops"):
        log_report(failing.report)
    assert caplog.records[0].levelno == logging.ERROR


def test_missing_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install 'streamops\[otel\]'"):
        record_report(so.StreamReport())


def test_example_telemetry() -> None:
    import runpy
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "telemetry_otel.py"
    span, line = runpy.run_path(str(path))["main"]()
    assert span["gen_ai.usage.output_tokens"] > 0
    assert span["streamops.redactions.email"] == 1
    assert "redactions email=1" in line
