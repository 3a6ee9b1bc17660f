"""OpenTelemetry spans and metrics, and a structured log line, from a stream's report.

The SDK is configured here with in-memory exporters; in an app you set up
your own providers (OTLP, Prometheus...) and streamops uses the global ones.

Run: ``python examples/telemetry_otel.py``
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import streamops as so
from streamops.telemetry import log_report, record_report
from streamops.testing import FakeStreamingModel


async def amain() -> tuple[dict[str, Any], str]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    model = FakeStreamingModel("Reach me at ann@example.com.", format="openai")
    op = so.redact(["email"]) | so.budget(max_tokens=200, model="gpt-4o") | so.collect()
    stream = op(model.astream("contact?"))
    async for _ in stream:
        pass
    record_report(
        stream.report,
        provider="openai",
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )

    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("streamops.example")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    log_report(stream.report, logger=logger)
    (span,) = spans.get_finished_spans()
    return dict(span.attributes or {}), lines[0]


def main() -> tuple[dict[str, Any], str]:
    """Run the example; return the span's attributes and the log line."""
    attributes, line = asyncio.run(amain())
    print(attributes)
    print(line)
    return attributes, line


if __name__ == "__main__":
    main()
