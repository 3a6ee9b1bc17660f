"""Telemetry from a stream's report: OpenTelemetry spans and metrics, and structured logs.

:func:`record_report` turns any finished stream's :class:`~streamops.StreamReport`
into one span and a set of metrics named by the OpenTelemetry GenAI semantic
conventions, plus streamops' own:

====================================================  =========================================
span attribute / metric                               from the report
====================================================  =========================================
``gen_ai.operation.name``                             ``"chat"`` (``operation=``)
``gen_ai.request.model``, ``gen_ai.provider.name``    the budget's ``model``, ``provider=``
``gen_ai.usage.input_tokens`` / ``output_tokens``     the provider's usage, else the budget's count
``gen_ai.response.finish_reasons``                    the stop reason
``gen_ai.client.token.usage`` (histogram, {token})    the same, by ``gen_ai.token.type``
``gen_ai.client.operation.duration`` (s)              stream start to end
``gen_ai.client.operation.time_to_first_chunk`` (s)   the collector's time to first chunk
``streamops.cost`` (counter, USD)                     the budget's cost
``streamops.redactions`` (counter, by ``streamops.rule``)  the redactor's count per rule
``streamops.hold_back`` (histogram, chars)            the most text redaction held at once
====================================================  =========================================

The span also carries ``streamops.stop_reason``, ``streamops.cost``,
``streamops.usage_mismatch``, ``streamops.redactions.<rule>`` and
``streamops.hold_back.max_chars``; a stream that failed sets the span's
status to error. The time to first chunk needs a :func:`~streamops.collect`
stage in the pipeline (it measures it). Spans start and end at the stream's
own start and end. Nothing here touches the stream: call it after the stream
ended, or let :func:`instrument` call it at the end.

:func:`log_report` writes the report to stdlib :mod:`logging` as one record
whose ``streamops`` attribute holds the summary (JSON formatters and log
pipelines pick it up), with a readable message.

Needs ``opentelemetry-api`` for spans and metrics (``pip install
'streamops[otel]'``); the SDK is yours to configure. :func:`log_report` needs
nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from ._core._extras import require
from ._core._public import fixup_module_metadata
from ._core._report import StopReason, StreamReport

__all__ = ("instrument", "log_report", "record_report", "report_attributes")

_SCOPE = "streamops"
# Stop reasons as GenAI finish reasons.
_FINISH = {
    "complete": "stop",
    "budget": "length",
    "truncated": "length",
    "blocked": "content_filter",
}


def _otel() -> tuple[Any, Any, Any]:
    require("opentelemetry", extra="otel", feature="streamops.telemetry")
    from opentelemetry import metrics, trace
    from opentelemetry.trace import Status, StatusCode

    return trace, metrics, (Status, StatusCode)


def _section(report: StreamReport, name: str) -> dict[str, Any]:
    section = report.sections.get(name)
    return section.model_dump(mode="json") if section is not None else {}


def _tokens(report: StreamReport) -> tuple[int | None, int | None]:
    """Input and output tokens: the provider's usage first, else the budget's count."""
    usage = _section(report, "usage")
    budget = _section(report, "budget")
    provider = budget.get("provider") or {}
    inp = usage.get("prompt_tokens", provider.get("prompt_tokens"))
    out = usage.get("completion_tokens", provider.get("completion_tokens"))
    if inp is None and budget:
        inp = budget.get("prompt_tokens") or None
    if out is None and budget:
        out = budget.get("completion_tokens")
    return inp, out


def _times(report: StreamReport) -> tuple[float | None, float | None]:
    start = end = None
    for event in report.events:
        if event.kind == "stream.start" and start is None:
            start = event.time
        elif event.kind == "stream.end":
            end = event.time
    metrics = _section(report, "collect").get("metrics") or {}
    start = metrics.get("started_at", start) if start is None else start
    end = metrics.get("ended_at", end) if end is None else end
    return start, end


def report_attributes(
    report: StreamReport,
    /,
    *,
    operation: str = "chat",
    provider: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """Return the span attributes of ``report`` (GenAI semantic conventions and streamops').

    >>> import streamops as so
    >>> s = so.redact(["email"])(["mail ann@example.com"])
    >>> _ = list(s)
    >>> attrs = report_attributes(s.report, provider="openai")
    >>> attrs["gen_ai.response.finish_reasons"], attrs["streamops.redactions.email"]
    (('stop',), 1)
    """
    budget = _section(report, "budget")
    redact = _section(report, "redact")
    attrs: dict[str, Any] = {"gen_ai.operation.name": operation}
    model = model or budget.get("model")
    if model:
        attrs["gen_ai.request.model"] = model
    if provider:
        attrs["gen_ai.provider.name"] = provider
    inp, out = _tokens(report)
    if inp is not None:
        attrs["gen_ai.usage.input_tokens"] = inp
    if out is not None:
        attrs["gen_ai.usage.output_tokens"] = out
    reason = None if report.stop_reason is None else str(report.stop_reason)
    if reason is not None:
        attrs["streamops.stop_reason"] = reason
        attrs["gen_ai.response.finish_reasons"] = (_FINISH.get(reason, reason),)
    if report.stop_detail:
        attrs["streamops.stop_detail"] = report.stop_detail
    if budget.get("cost") is not None:
        attrs["streamops.cost"] = budget["cost"]
    if budget.get("usage_mismatch") is not None:
        attrs["streamops.usage_mismatch"] = budget["usage_mismatch"]
    for rule, count in (redact.get("redacted") or {}).items():
        attrs[f"streamops.redactions.{rule}"] = count
    if "max_held" in redact:
        attrs["streamops.hold_back.max_chars"] = redact["max_held"]
    attrs["streamops.chunks_in"] = report.chunks_in
    attrs["streamops.chunks_out"] = report.chunks_out
    return attrs


def record_report(
    report: StreamReport,
    /,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    operation: str = "chat",
    provider: str | None = None,
    model: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """Record ``report`` as one OpenTelemetry span and its GenAI metrics.

    The span is named ``"{operation} {model}"`` (GenAI conventions), kind
    CLIENT, timed from the stream's start to its end. Metrics go to the
    ``streamops`` meter (see the module docstring for names). Providers
    default to OpenTelemetry's global ones. ``attributes`` are added to the
    span and to every metric point (a route, a tenant...).
    """
    trace, metrics, (status_cls, status_code) = _otel()
    tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
    meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider)
    attrs = report_attributes(report, operation=operation, provider=provider, model=model)
    extra = dict(attributes or {})
    start, end = _times(report)
    # The stream's clock (monotonic, or the loop's) as wall-clock nanoseconds.
    offset = time.time_ns() - int(report.clock() * 1e9)
    start_ns = None if start is None else offset + int(start * 1e9)
    end_ns = None if end is None else offset + int(end * 1e9)
    name = (
        f"{operation} {attrs['gen_ai.request.model']}"
        if "gen_ai.request.model" in attrs
        else operation
    )
    span = tracer.start_span(
        name,
        kind=trace.SpanKind.CLIENT,
        attributes={**attrs, **extra},
        start_time=start_ns,
    )
    if report.stop_reason == StopReason.ERROR or report.error is not None:
        span.set_status(status_cls(status_code.ERROR, repr(report.error)))
        if report.error is not None:
            span.record_exception(report.error)
    span.end(end_time=end_ns)

    common: dict[str, Any] = {"gen_ai.operation.name": operation, **extra}
    for key in ("gen_ai.request.model", "gen_ai.provider.name"):
        if key in attrs:
            common[key] = attrs[key]
    tokens = meter.create_histogram(
        "gen_ai.client.token.usage", unit="{token}", description="Tokens used per stream"
    )
    for kind, key in (
        ("input", "gen_ai.usage.input_tokens"),
        ("output", "gen_ai.usage.output_tokens"),
    ):
        if key in attrs:
            tokens.record(attrs[key], {**common, "gen_ai.token.type": kind})
    with_reason = {**common, "streamops.stop_reason": attrs.get("streamops.stop_reason", "")}
    if start is not None and end is not None:
        meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="Stream duration"
        ).record(end - start, with_reason)
    ttft = (_section(report, "collect").get("metrics") or {}).get("time_to_first_chunk")
    if ttft is not None:
        meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to the first chunk of the stream",
        ).record(ttft, common)
    if "streamops.cost" in attrs:
        meter.create_counter("streamops.cost", unit="USD", description="Cost of streams").add(
            attrs["streamops.cost"], common
        )
    redactions = meter.create_counter(
        "streamops.redactions", unit="{redaction}", description="Redactions by rule"
    )
    for key, count in attrs.items():
        if key.startswith("streamops.redactions."):
            redactions.add(
                count, {**common, "streamops.rule": key.removeprefix("streamops.redactions.")}
            )
    if "streamops.hold_back.max_chars" in attrs:
        meter.create_histogram(
            "streamops.hold_back", unit="{char}", description="Most text redaction held at once"
        ).record(attrs["streamops.hold_back.max_chars"], common)


def instrument(report: StreamReport, /, **options: Any) -> StreamReport:
    """Record ``report`` with :func:`record_report` as soon as its stream ends; return it.

    >>> import streamops as so
    >>> stream = so.redact()(["hello"])
    >>> _ = instrument(stream.report)  # spans and metrics go to the global providers
    >>> list(stream)
    ['hello']
    """
    _otel()  # fail now, not at the end of the stream, without the extra

    def at_end(event: Any) -> None:
        record_report(report, **options)

    report.subscribe(at_end, kinds=["stream.end"])
    return report


def log_report(
    report: StreamReport,
    /,
    *,
    logger: logging.Logger | str = "streamops",
    level: int = logging.INFO,
    **options: Any,
) -> None:
    """Write ``report`` to stdlib logging: one record, the summary in its ``streamops`` attribute.

    The message is readable (``stream complete: 3 chunks, redactions
    email=1``); ``record.streamops`` holds :func:`report_attributes` (the
    same flat keys as the span), for JSON log formatters. ``options`` go to
    :func:`report_attributes`. A stream that failed logs at ``ERROR``.

    >>> import logging, streamops as so
    >>> s = so.redact(["email"])(["mail ann@example.com"])
    >>> _ = list(s)
    >>> handler = logging.StreamHandler(__import__("sys").stdout)
    >>> log = logging.getLogger("streamops.demo"); log.addHandler(handler)
    >>> log.setLevel(logging.INFO); log.propagate = False
    >>> log_report(s.report, logger=log)
    stream complete: 1 chunks in, 2 out; redactions email=1
    """
    log = logging.getLogger(logger) if isinstance(logger, str) else logger
    attrs = report_attributes(report, **options)
    reason = attrs.get("streamops.stop_reason", "running")
    message = f"stream {reason}: {report.chunks_in} chunks in, {report.chunks_out} out"
    redacted = {
        k.removeprefix("streamops.redactions."): v
        for k, v in attrs.items()
        if k.startswith("streamops.redactions.")
    }
    if redacted:
        message += "; redactions " + ", ".join(f"{k}={v}" for k, v in sorted(redacted.items()))
    if "gen_ai.usage.output_tokens" in attrs:
        message += f"; tokens {attrs.get('gen_ai.usage.input_tokens', '?')} in"
        message += f", {attrs['gen_ai.usage.output_tokens']} out"
    if "streamops.cost" in attrs:
        message += f"; cost {attrs['streamops.cost']:.6f}"
    failed = report.stop_reason == StopReason.ERROR or report.error is not None
    log.log(logging.ERROR if failed else level, message, extra={"streamops": attrs})


fixup_module_metadata(__name__, globals(), __all__)
